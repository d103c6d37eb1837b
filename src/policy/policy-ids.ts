// Policy ids as people name them. Cedar numbers the policies of a text `policy0`, `policy1`, ...;
// an operator names them with `@id("...")`. Everywhere ztedge names a policy (decisions, results,
// the audit log, the API, policy tests) the `@id` is the policy's id and the positional id is
// used only where there is none, as Cedar's own command-line tool renames policies from `@id`.
// Two policies with the same id would make every decision naming it ambiguous: refused, naming
// both places.
import type { Loc, PolicyAst } from './ast.js';
import type { Diagnostic } from './errors.js';

export type PolicyIdCode = 'POLICY_DUPLICATE_ID' | 'POLICY_EMPTY_ID';

export interface NamedPolicies {
  /** The policies, each with its `@id` as id when it has one (otherwise unchanged). */
  readonly policies: PolicyAst[];
  /** Ids used twice (at the second use) and empty `@id`s, in source order. */
  readonly problems: Array<Diagnostic<PolicyIdCode>>;
}

const where = (loc: Loc): string => `${loc.source}:${loc.line}:${loc.column}`;

export function idsFromAnnotations(policies: readonly PolicyAst[]): NamedPolicies {
  const named: PolicyAst[] = [];
  const problems: Array<Diagnostic<PolicyIdCode>> = [];
  const firstUse = new Map<string, Loc>();
  for (const policy of policies) {
    const annotation = policy.annotations.find((a) => a.key === 'id');
    if (annotation !== undefined && annotation.value === '') {
      problems.push({ code: 'POLICY_EMPTY_ID', message: '`@id` needs a name, e.g. `@id("estop")`', ...annotation.loc });
    }
    const id = annotation === undefined || annotation.value === '' ? policy.id : annotation.value;
    const loc = annotation?.loc ?? policy.loc;
    const first = firstUse.get(id);
    if (first !== undefined) {
      problems.push({ code: 'POLICY_DUPLICATE_ID', message: `policy id ${JSON.stringify(id)} is already used at ${where(first)}`, ...loc });
    } else {
      firstUse.set(id, loc);
    }
    named.push(id === policy.id ? policy : { ...policy, id });
  }
  return { policies: named, problems };
}
