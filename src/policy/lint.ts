// Checks of parsed policies for what Cedar loads but what is nonetheless a mistake, for the
// operator's tools (`policy fmt --check`, `bundle build`); the engine itself loads such policies
// as Cedar does.
//
// A call to an extension function or method with the wrong number of arguments parses in Cedar
// and fails each time it is evaluated, so the policy can never apply where the call is reached.
import type { Expr, PolicyAst } from './ast.js';
import { forEachExpr } from './ast-walk.js';
import type { Diagnostic } from './errors.js';
import { extensionFunction } from './extensions.js';

export type LintCode = 'POLICY_EXTENSION_ARITY';

export type LintDiagnostic = Diagnostic<LintCode>;

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** The problem with one call, if its argument count differs from the registry's. */
function arityProblem(e: Expr): LintDiagnostic | undefined {
  if (e.kind !== 'call' && e.kind !== 'method') return undefined;
  const fn = extensionFunction(e.kind === 'call' ? e.fn : e.method);
  if (fn === undefined || fn.style !== (e.kind === 'call' ? 'function' : 'method')) return undefined;
  // What the author wrote: a method's receiver is not one of its arguments.
  const expected = e.kind === 'method' ? fn.arity - 1 : fn.arity;
  if (e.args.length === expected) return undefined;
  return {
    code: 'POLICY_EXTENSION_ARITY',
    message:
      `\`${fn.name}\` takes ${plural(expected, 'argument')}, got ${e.args.length}: ` +
      'Cedar loads this policy, but the call fails whenever it is evaluated',
    ...e.loc,
  };
}

/** Every extension call with the wrong number of arguments, in source order. */
export function extensionArityProblems(policies: readonly PolicyAst[]): LintDiagnostic[] {
  const problems: LintDiagnostic[] = [];
  for (const policy of policies) {
    forEachExpr(policy, (e) => {
      const problem = arityProblem(e);
      if (problem !== undefined) problems.push(problem);
    });
  }
  return problems;
}
