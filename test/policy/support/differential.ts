// Runs one authorization case through ztedge's engine and through cedar-wasm and compares the
// decision, the set of determining policies and the set of errored policies.
import { Entities, PolicySet, isAuthorized, requestFromJson } from '../../../src/policy/index.js';
import { oracleIsAuthorized } from './cedar-wasm.js';
import type { OracleDecision } from './cedar-wasm.js';
import type { GeneratedCase } from './generators.js';

export interface Outcome {
  decision: 'allow' | 'deny';
  reasons: string[];
  errored: string[];
}

/** Our engine, fed JSON text (the lossless path), as the agent would be. */
export function engineOutcome(c: GeneratedCase): Outcome {
  const policies = PolicySet.fromText(c.policies);
  const entities = Entities.fromJson(JSON.stringify(c.entities));
  const request = requestFromJson(JSON.stringify(c.request));
  const d = isAuthorized(policies, entities, request);
  return {
    decision: d.decision,
    reasons: [...d.reasons].sort(),
    errored: d.errors.map((e) => e.policyId).sort(),
  };
}

export function oracleOutcome(c: GeneratedCase): OracleDecision {
  return oracleIsAuthorized(c.policies, c.entities, c.request);
}

const show = (o: Outcome) => `${o.decision} reasons=[${o.reasons.join(', ')}] errored=[${o.errored.join(', ')}]`;

export function sameOutcome(a: Outcome, b: Outcome): boolean {
  return show(a) === show(b);
}

/** A self-contained reproducer: policy text, entities, request and both outcomes. */
export function reproducer(c: GeneratedCase, ours: Outcome | string, oracle: Outcome | string): string {
  return [
    '--- policies ---',
    c.policies,
    '--- entities ---',
    JSON.stringify(c.entities),
    '--- request ---',
    JSON.stringify(c.request),
    `--- ztedge:     ${typeof ours === 'string' ? ours : show(ours)}`,
    `--- cedar-wasm: ${typeof oracle === 'string' ? oracle : show(oracle)}`,
  ].join('\n');
}
