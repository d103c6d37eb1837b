// Cedar authorization: deny unless some permit is satisfied and no forbid is. A policy whose
// condition fails to evaluate is skipped and reported. Reasons and errors come in policy order.
import type { CompiledPolicy, EvalEnv } from './compile.js';
import type { Entities } from './entities.js';
import { EvalError } from './eval-error.js';
import type { PolicySet } from './policy-set.js';
import type { CedarRecord, EntityUid } from './value.js';

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

export interface DeterminingPolicy {
  id: string;
  name?: string;
  effect: 'permit' | 'forbid';
  annotations: Record<string, string>;
}

export interface Decision {
  decision: 'allow' | 'deny';
  /** Ids of the determining policies: satisfied forbids when forbidden, else satisfied permits. */
  reasons: string[];
  determining: DeterminingPolicy[];
  errors: PolicyError[];
}

/** Accumulates one request's outcomes; lists are put in policy order at the end. */
class Outcome {
  permits: CompiledPolicy[] = [];
  forbids: CompiledPolicy[] = [];
  errors: Array<{ policy: CompiledPolicy; error: PolicyError }> = [];

  evaluate(policies: readonly CompiledPolicy[] | undefined, env: EvalEnv): void {
    if (policies === undefined) return;
    for (const p of policies) {
      if (!p.matchesScope(env)) continue;
      let satisfied: boolean;
      try {
        satisfied = p.satisfiesConditions(env);
      } catch (e) {
        this.errors.push({ policy: p, error: policyError(p, e) });
        continue;
      }
      if (satisfied) (p.effect === 'permit' ? this.permits : this.forbids).push(p);
    }
  }

  decide(): Decision {
    const byPosition = (a: { position: number }, b: { position: number }) => a.position - b.position;
    const errors =
      this.errors.length === 0
        ? []
        : this.errors.sort((a, b) => byPosition(a.policy, b.policy)).map((x) => x.error);
    const determining = this.forbids.length > 0 ? this.forbids : this.permits;
    if (determining.length > 1) determining.sort(byPosition);
    return {
      decision: this.forbids.length === 0 && this.permits.length > 0 ? 'allow' : 'deny',
      reasons: determining.map((p) => p.id),
      determining: determining.map((p) => p.determining),
      errors,
    };
  }
}

function policyError(p: CompiledPolicy, e: unknown): PolicyError {
  // Anything but an EvalError is a defect in the evaluator; it still only costs this policy.
  const code = e instanceof EvalError ? e.code : 'EVAL_INTERNAL';
  const message = e instanceof Error ? e.message : String(e);
  return p.name === undefined ? { policyId: p.id, code, message } : { policyId: p.id, policyName: p.name, code, message };
}

function envOf(entities: Entities, request: AuthzRequest): EvalEnv {
  return {
    principal: request.principal,
    action: request.action,
    resource: request.resource,
    context: request.context,
    entities,
  };
}

/** Cedar's authorization decision, evaluating only the policies the index selects. */
export function isAuthorized(policies: PolicySet, entities: Entities, request: AuthzRequest): Decision {
  const env = envOf(entities, request);
  const candidates = policies.candidatesFor(entities, request.action);
  const outcome = new Outcome();
  outcome.evaluate(candidates.byPrincipal.get(request.principal.key), env);
  outcome.evaluate(candidates.byResource.get(request.resource.key), env);
  outcome.evaluate(candidates.rest, env);
  return outcome.decide();
}

/** The same decision evaluating every policy in order, without the index: the reference. */
export function isAuthorizedUnindexed(policies: PolicySet, entities: Entities, request: AuthzRequest): Decision {
  const outcome = new Outcome();
  outcome.evaluate(policies.policies, envOf(entities, request));
  return outcome.decide();
}
