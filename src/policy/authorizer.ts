// Cedar authorization: deny unless some permit is satisfied and no forbid is. A policy whose
// condition fails to evaluate is skipped and reported. Reasons and errors come in policy order.
import { evalEnv } from './compile-expr.js';
import type { EvalEnv } from './compile-expr.js';
import type { CompiledPolicy } from './compile.js';
import type { Entities } from './entities.js';
import { EvalError } from './eval-error.js';
import type { PolicySet } from './policy-set.js';
import type { CedarRecord, EntityUid } from './value.js';
import type { DeterminingPolicy } from './ast.js';

export type { DeterminingPolicy };

export interface AuthzRequest {
  principal: EntityUid;
  action: EntityUid;
  resource: EntityUid;
  context: CedarRecord;
}

export interface PolicyError {
  policyId: string;
  policyName?: string;
  code: string;
  message: string;
}

export interface Decision {
  decision: 'allow' | 'deny';
  /** Ids of the determining policies: satisfied forbids when forbidden, else satisfied permits. */
  reasons: string[];
  determining: DeterminingPolicy[];
  errors: PolicyError[];
}

// Per-request scratch lists, reused: evaluation is synchronous and never re-entered, so one
// set suffices and a decision allocates only what it returns.
const satisfiedPermits: CompiledPolicy[] = [];
const satisfiedForbids: CompiledPolicy[] = [];
const errored: Array<{ policy: CompiledPolicy; error: PolicyError }> = [];

// Popping is inlined; assigning `length` is a slow runtime call, even on an empty array.
function resetScratch(): void {
  while (satisfiedPermits.length !== 0) satisfiedPermits.pop();
  while (satisfiedForbids.length !== 0) satisfiedForbids.pop();
  while (errored.length !== 0) errored.pop();
}

/** Evaluates policies; `actionMatched` when the index already checked their action scope. */
function evaluateAll(policies: readonly CompiledPolicy[] | undefined, env: EvalEnv, actionMatched: boolean): void {
  if (policies === undefined) return;
  for (let i = 0; i < policies.length; i++) {
    const p = policies[i]!;
    if (!(actionMatched ? p.matchesScopeButAction(env) : p.matchesScope(env))) continue;
    let satisfied: boolean;
    try {
      satisfied = p.satisfiesConditions(env);
    } catch (e) {
      errored.push({ policy: p, error: policyError(p, e) });
      continue;
    }
    if (satisfied) (p.effect === 'permit' ? satisfiedPermits : satisfiedForbids).push(p);
  }
}

/** Evaluates the policies filed under `uid` or under any of its `ancestors`. */
function evaluateGroups(
  byGroup: ReadonlyMap<string, readonly CompiledPolicy[]>,
  uid: EntityUid,
  ancestors: ReadonlySet<string>,
  env: EvalEnv,
): void {
  if (byGroup.size === 0) return;
  evaluateAll(byGroup.get(uid.key), env, true);
  if (ancestors.size <= byGroup.size) {
    for (const key of ancestors) evaluateAll(byGroup.get(key), env, true);
  } else {
    for (const [key, policies] of byGroup) if (ancestors.has(key)) evaluateAll(policies, env, true);
  }
}

const byPosition = (a: CompiledPolicy, b: CompiledPolicy): number => a.position - b.position;

/** Builds the decision from the scratch lists (in policy order) and clears them. */
function decide(): Decision {
  const forbidden = satisfiedForbids.length > 0;
  const determining = forbidden ? satisfiedForbids : satisfiedPermits;
  if (determining.length > 1) determining.sort(byPosition);
  const reasons: string[] = [];
  const policies: DeterminingPolicy[] = [];
  for (const p of determining) {
    reasons.push(p.id);
    policies.push(p.determining);
  }
  const errors: PolicyError[] = [];
  if (errored.length > 0) {
    errored.sort((a, b) => a.policy.position - b.policy.position);
    for (const x of errored) errors.push(x.error);
  }
  const decision: Decision = {
    decision: !forbidden && satisfiedPermits.length > 0 ? 'allow' : 'deny',
    reasons,
    determining: policies,
    errors,
  };
  resetScratch();
  return decision;
}

function policyError(p: CompiledPolicy, e: unknown): PolicyError {
  // Anything but an EvalError is a defect in the evaluator; it still only costs this policy.
  const code = e instanceof EvalError ? e.code : 'EVAL_INTERNAL';
  const message = e instanceof Error ? e.message : String(e);
  return p.name === undefined ? { policyId: p.id, code, message } : { policyId: p.id, policyName: p.name, code, message };
}

/** Cedar's authorization decision, evaluating only the policies the index selects. */
export function isAuthorized(policies: PolicySet, entities: Entities, request: AuthzRequest): Decision {
  const env = evalEnv(entities, request);
  const candidates = policies.candidatesFor(entities, request.action);
  resetScratch();
  evaluateAll(candidates.byPrincipal.get(request.principal.key), env, true);
  evaluateAll(candidates.byResource.get(request.resource.key), env, true);
  evaluateGroups(candidates.byPrincipalGroup, request.principal, env.principalAncestors, env);
  evaluateGroups(candidates.byResourceGroup, request.resource, env.resourceAncestors, env);
  evaluateAll(candidates.rest, env, true);
  return decide();
}

/** The same decision evaluating every policy in order, without the index: the reference. */
export function isAuthorizedUnindexed(policies: PolicySet, entities: Entities, request: AuthzRequest): Decision {
  resetScratch();
  evaluateAll(policies.policies, evalEnv(entities, request), false);
  return decide();
}
