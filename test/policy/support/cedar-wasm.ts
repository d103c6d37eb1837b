// The reference Cedar implementation (cedar-wasm) behind a small typed surface, used as a test
// oracle and a benchmark peer. It takes entities and context as JavaScript values, so data given
// to it must stay within what JSON.parse reads exactly (integers up to 2^53).
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { EntityJson, EntityUidJson, Context } from '@cedar-policy/cedar-wasm/nodejs';

export type { EntityJson, Context };

export interface OracleRequest {
  principal: { type: string; id: string };
  action: { type: string; id: string };
  resource: { type: string; id: string };
  context: Context;
}

/** What the oracle decided: the decision, determining policy ids and errored policy ids. */
export interface OracleDecision {
  decision: 'allow' | 'deny';
  reasons: string[];
  errored: string[];
}

/** cedar-wasm refused the call as a whole (bad policy text, entities or context). */
export class OracleFailure extends Error {
  override name = 'OracleFailure';
}

export const cedarVersion: string = cedar.getCedarVersion();

function toDecision(answer: cedar.AuthorizationAnswer): OracleDecision {
  if (answer.type === 'failure') {
    throw new OracleFailure(answer.errors.map((e) => e.message).join('; '));
  }
  const { decision, diagnostics } = answer.response;
  return {
    decision,
    reasons: [...diagnostics.reason].sort(),
    errored: diagnostics.errors.map((e) => e.policyId).sort(),
  };
}

function uid(u: { type: string; id: string }): EntityUidJson {
  return { type: u.type, id: u.id };
}

/** One-shot authorization: parses the policy text on every call. */
export function oracleIsAuthorized(policies: string, entities: EntityJson[], request: OracleRequest): OracleDecision {
  return toDecision(
    cedar.isAuthorized({
      principal: uid(request.principal),
      action: uid(request.action),
      resource: uid(request.resource),
      context: request.context,
      policies: { staticPolicies: policies },
      entities,
    }),
  );
}

/** The evaluation errors cedar-wasm reports, with their messages. */
export function oracleErrors(policies: string, entities: EntityJson[], request: OracleRequest): Array<{ policyId: string; message: string }> {
  const answer = cedar.isAuthorized({
    principal: uid(request.principal),
    action: uid(request.action),
    resource: uid(request.resource),
    context: request.context,
    policies: { staticPolicies: policies },
    entities,
  });
  if (answer.type === 'failure') throw new OracleFailure(answer.errors.map((e) => e.message).join('; '));
  return answer.response.diagnostics.errors.map((e) => ({ policyId: e.policyId, message: e.error.message }));
}

/** Returns cedar-wasm's parse errors for a policy text, or an empty list when it parses. */
export function oracleParseErrors(policies: string): string[] {
  const answer = cedar.checkParsePolicySet({ staticPolicies: policies });
  return answer.type === 'success' ? [] : answer.errors.map((e) => e.message);
}

let preparedCount = 0;

/**
 * A policy set parsed once into cedar-wasm's thread-local cache. Entities still cross the
 * JavaScript/Wasm boundary on every call: that is how the stateful API works.
 */
export class PreparsedOraclePolicySet {
  readonly id: string;

  constructor(policies: string) {
    this.id = `pset${preparedCount++}`;
    const answer = cedar.preparsePolicySet(this.id, { staticPolicies: policies });
    if (answer.type === 'failure') throw new OracleFailure(answer.errors.map((e) => e.message).join('; '));
  }

  isAuthorized(entities: EntityJson[], request: OracleRequest): OracleDecision {
    return toDecision(
      cedar.statefulIsAuthorized({
        principal: uid(request.principal),
        action: uid(request.action),
        resource: uid(request.resource),
        context: request.context,
        preparsedPolicySetId: this.id,
        entities,
      }),
    );
  }
}
