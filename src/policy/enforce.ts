// The decision the rest of ztedge acts on. Cedar skips a policy whose condition errors; for a
// forbid that means a guard silently stops guarding, so strict mode (the default) denies when
// any forbid whose scope matched the request failed to evaluate.
import { isAuthorized } from './authorizer.js';
import type { AuthzRequest, Decision } from './authorizer.js';
import type { Entities } from './entities.js';
import type { PolicySet } from './policy-set.js';

/** Why a request is denied; empty when it is allowed. */
export type ReasonCode = 'FORBIDDEN' | 'FORBID_ERRORED' | 'NO_PERMIT';

export interface EnforcedDecision extends Decision {
  /** Cedar alone would have allowed this request; strict mode denied it (FORBID_ERRORED). */
  strictDeny: boolean;
  reasonCodes: ReasonCode[];
}

export interface EnforceOptions {
  /** Deny when a matching forbid errors. Default true. */
  strict?: boolean;
}

export function enforce(
  policies: PolicySet,
  entities: Entities,
  request: AuthzRequest,
  { strict = true }: EnforceOptions = {},
): EnforcedDecision {
  const decision = isAuthorized(policies, entities, request);
  // Scopes never fail, so every errored policy had a scope matching this request.
  const erroredForbids = strict
    ? decision.errors.filter((e) => policies.get(e.policyId)?.effect === 'forbid')
    : [];
  const forbidden = decision.decision === 'deny' && decision.determining.length > 0;
  const reasonCodes: ReasonCode[] = [];
  if (forbidden) reasonCodes.push('FORBIDDEN');
  if (erroredForbids.length > 0) reasonCodes.push('FORBID_ERRORED');
  if (decision.decision === 'deny' && !forbidden) reasonCodes.push('NO_PERMIT');
  if (decision.decision === 'allow' && erroredForbids.length > 0) {
    // The permits that allowed it do not determine a deny: the errored forbids do.
    const determining = erroredForbids.map((e) => policies.get(e.policyId)!.determining);
    return {
      decision: 'deny',
      reasons: determining.map((p) => p.id),
      determining,
      errors: decision.errors,
      strictDeny: true,
      reasonCodes,
    };
  }
  return { ...decision, strictDeny: false, reasonCodes };
}
