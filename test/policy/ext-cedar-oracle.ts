// The reference Cedar implementation (cedar-wasm) as a test oracle for extension semantics:
// evaluates many boolean Cedar expressions in one authorization call, one policy each.
import { isAuthorized } from '@cedar-policy/cedar-wasm/nodejs';

export type Outcome = 'true' | 'false' | 'error';

/** A Cedar string literal for `text` (text must be valid Unicode, no lone surrogates). */
export function cedarString(text: string): string {
  let out = '"';
  for (const char of text) {
    const code = char.codePointAt(0) ?? 0;
    if (char === '"' || char === '\\') out += `\\${char}`;
    else if (code >= 0x20 && code < 0x7f) out += char;
    else out += `\\u{${code.toString(16)}}`;
  }
  return `${out}"`;
}

export function evaluateWithCedar(expressions: readonly string[]): Outcome[] {
  const staticPolicies: Record<string, string> = {};
  expressions.forEach((expression, index) => {
    staticPolicies[`p${index}`] = `permit(principal, action, resource) when { ${expression} };`;
  });
  const answer = isAuthorized({
    principal: { type: 'User', id: 'u' },
    action: { type: 'Action', id: 'a' },
    resource: { type: 'Resource', id: 'r' },
    context: {},
    policies: { staticPolicies },
    entities: [],
  });
  if (answer.type !== 'success') throw new Error(`cedar-wasm refused the batch: ${JSON.stringify(answer.errors)}`);
  const outcomes: Outcome[] = expressions.map(() => 'false');
  for (const id of answer.response.diagnostics.reason) outcomes[Number(id.slice(1))] = 'true';
  for (const { policyId } of answer.response.diagnostics.errors) outcomes[Number(policyId.slice(1))] = 'error';
  return outcomes;
}

/** Pairs each expression with Cedar's outcome and returns those that differ from `expected`. */
export function disagreements(cases: ReadonlyArray<{ expression: string; expected: Outcome }>): string[] {
  const outcomes = evaluateWithCedar(cases.map((c) => c.expression));
  return cases.flatMap((c, index) =>
    outcomes[index] === c.expected ? [] : [`${c.expression}: cedar says ${outcomes[index]}, we say ${c.expected}`],
  );
}
