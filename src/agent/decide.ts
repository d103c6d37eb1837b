// The decision on one verified command, as a value: what the active bundle's policies and their
// obligations say, given the facts the agent vouches for (time, posture, attestation, online,
// source, fail-closed mode, a full audit log), the live just-in-time grants and the rate limits'
// counts. Pure: nothing is written, counted, held, executed or recorded here — the pipeline
// (pipeline.ts) does that with the Verdict, once.
//
// The order of the checks is the order of the pipeline behaviour table:
//   resource not hosted on this device      deny     RESOURCE_NOT_ON_DEVICE (no policy runs)
//   args, action or resource unusable       deny     ARGS_INVALID / ACTION_INVALID / RESOURCE_INVALID
//   Cedar (strict)                           deny     NO_PERMIT / FORBIDDEN / FORBID_ERRORED
//   iat or nbf early, trusted time in doubt  refused  the envelope's code, unless allowed by permits
//                                                     that are all @safety (then CLOCK_IN_DOUBT)
//   fail-closed mode, not @safety            deny     FAIL_CLOSED
//   audit log full, not @safety              deny     AUDIT_FULL
//   approved at quorum, too few for now      deny     APPROVALS_INSUFFICIENT
//   approved at quorum                       allow    APPROVED (and a grant, only when @grant_ttl says so)
//   over a @rate                             deny     RATE_LIMITED
//   @approval, a live grant covers it        allow    JIT_GRANT (@grant_ttl on the permits that ask)
//   @approval                                pending  APPROVAL_REQUIRED (hold for approval)
//   otherwise                                allow    PERMITTED
import type { AppendArea } from '../audit/log.js';
import { type ObligationTable, ObligationError, type Obligations, NO_OBLIGATIONS, combineObligations } from '../bundle/obligations.js';
import type { BundleIssuer } from '../bundle/content.js';
import type { VerifiedBundle } from '../bundle/verify.js';
import type { VerifiedCommand } from '../envelope/command.js';
import { enforce, type DeterminingPolicy, type PolicyError } from '../policy/index.js';
import type { RateCheck, RateLimit } from '../store/rate-limiter.js';
import { type ContextFacts, RequestBuildError, buildRequest, isHostedOn, resourceUid } from './request-context.js';

export interface FailClosedState {
  active: boolean;
  reason?: string;
}

/** What the agent vouches for at the moment of the decision. */
export interface DecisionFacts extends ContextFacts {
  failClosed: FailClosedState;
  /** The audit log's cap is reached: only @safety commands may go on. */
  auditFull: boolean;
}

/** A live just-in-time grant of (principal, action, resource). */
export interface GrantTerms {
  readonly expiresMs: number;
  /** The determining policies (with @approval and @grant_ttl) it was granted under. */
  readonly policies: readonly string[];
}

export interface GrantLookup {
  find(principal: string, action: string, resource: string, nowMs: number): GrantTerms | undefined;
}

export interface RateState {
  /** Whether one more event is allowed under every limit; counts nothing. */
  check(limits: readonly RateLimit[], principal: string, action: string, nowMs: number): RateCheck;
}

export interface DecideInput {
  deviceId: string;
  command: VerifiedCommand;
  /** The bundle entry of the key that signed the command. */
  issuer: BundleIssuer;
  bundle: VerifiedBundle;
  facts: DecisionFacts;
  grants: GrantLookup;
  rate: RateState;
  /**
   * Set when a held command reached its quorum: it is asked again (the bundle, posture or mode
   * may have changed since), without a new hold, and without counting its rate again.
   */
  approved?: { approvals: number };
}

export type VerdictDecision = 'allow' | 'deny' | 'pending' | 'refused';

export interface ApprovalHold {
  required: number;
  /** Entity uids an approver must be in; empty: any approver the policy permits. */
  approvers: readonly string[];
}

export interface Verdict {
  /**
   * allow: execute; deny: do not; pending: hold for approval; refused: not decided at all (an
   * early iat or nbf while trusted time is in doubt): counted and sampled like any refused input.
   */
  decision: VerdictDecision;
  /** Stable reason codes, e.g. PERMITTED, FORBIDDEN, RATE_LIMITED. */
  reasons: string[];
  /** Ids of the determining policies. */
  policies: string[];
  obligations: Obligations;
  /** Policies whose evaluation errored. */
  errors: readonly PolicyError[];
  /** Why, in words, where the code alone does not say. */
  note?: string;
  /** pending: the quorum the command waits for. */
  hold?: ApprovalHold;
  /** JIT_GRANT: the grant that allows it. APPROVED: the grant its approval creates (@grant_ttl). */
  grant?: GrantTerms;
  /** Rate limits under which the pipeline counts one event (allow and pending). */
  count: readonly RateLimit[];
  /** Where the decision record goes: a full log takes only @safety allows (safety) and denials (reserve). */
  area: AppendArea;
}

const NOTHING: readonly never[] = Object.freeze([]);
const STRICT = { strict: true } as const;

export function decide(input: DecideInput): Verdict {
  const { command, bundle, facts } = input;
  const { act, res, args } = command.claims;
  let request;
  try {
    if (!isHostedOn(bundle.entities, resourceUid(res), input.deviceId)) {
      const note = `${res.slice(0, 200)} is neither Device::"${input.deviceId}" nor declared in the bundle as hosted on it`;
      return early(command) ?? refusal('RESOURCE_NOT_ON_DEVICE', facts, NO_OBLIGATIONS, NOTHING, NOTHING, note);
    }
    request = buildRequest(input.issuer.principal, act, res, args, facts);
  } catch (err) {
    if (err instanceof RequestBuildError) return early(command) ?? refusal(err.code, facts, NO_OBLIGATIONS, NOTHING, NOTHING, err.message);
    throw err;
  }
  const decision = enforce(bundle.policies, bundle.entities, request, STRICT);
  const policies = decision.determining.map((d) => d.id);
  if (decision.decision === 'deny') {
    return early(command) ?? { decision: 'deny', reasons: decision.reasonCodes, policies, obligations: NO_OBLIGATIONS, errors: decision.errors, count: NOTHING, area: deniedArea(facts) };
  }
  let obligations: Obligations;
  try {
    // An allow is determined by permits only.
    obligations = combineObligations(decision.determining, bundle.obligations);
  } catch (err) {
    if (err instanceof ObligationError) return early(command) ?? refusal(err.code, facts, NO_OBLIGATIONS, policies, decision.errors, err.message);
    throw err;
  }
  if (!obligations.safety) {
    const refused = early(command);
    if (refused !== undefined) return refused;
    if (facts.failClosed.active) return refusal('FAIL_CLOSED', facts, obligations, policies, decision.errors);
    if (facts.auditFull) return refusal('AUDIT_FULL', facts, obligations, policies, decision.errors);
  }
  const principal = input.issuer.principal.key;
  if (input.approved !== undefined) {
    // A bundle activated while the command was held may ask for more approvals than it got.
    if (obligations.approvals > input.approved.approvals) {
      return refusal('APPROVALS_INSUFFICIENT', facts, obligations, policies, decision.errors, `the policy now asks for ${obligations.approvals} approvals; ${input.approved.approvals} were given`);
    }
    const grant = obligations.grantTtlMs === undefined ? undefined : { expiresMs: facts.nowMs + obligations.grantTtlMs, policies: approvalPolicies(decision.determining, bundle.obligations) };
    return allowed(['APPROVED'], policies, obligations, decision.errors, facts, NOTHING, grant);
  }
  if (obligations.rates.length > 0 && !input.rate.check(obligations.rates, principal, act, facts.nowMs).allowed) {
    return refusal('RATE_LIMITED', facts, obligations, policies, decision.errors);
  }
  if (obligations.approvals > 0) {
    // A live grant from an earlier approval of the same (principal, action, resource) waives a
    // new quorum when the policies asking for approvals now are ones it was granted under, and
    // they still grant. It never stands in for a permit: a bundle that drops the permit revokes it.
    const grant = obligations.grantTtlMs === undefined ? undefined : input.grants.find(principal, act, res, facts.nowMs);
    if (grant !== undefined && covers(grant, decision.determining, bundle.obligations)) return allowed(withDoubt(['JIT_GRANT'], command), policies, obligations, decision.errors, facts, obligations.rates, grant);
    return {
      decision: 'pending',
      reasons: ['APPROVAL_REQUIRED'],
      policies,
      obligations,
      errors: decision.errors,
      hold: { required: obligations.approvals, approvers: obligations.approvers },
      count: obligations.rates,
      area: deniedArea(facts),
    };
  }
  return allowed(withDoubt(['PERMITTED'], command), policies, obligations, decision.errors, facts, obligations.rates);
}

/** The determining permits that ask for approvals: those a grant is granted under. */
function approvalPolicies(determining: readonly DeterminingPolicy[], table: ObligationTable): string[] {
  return determining.filter((d) => (table.get(d.id)?.approvals ?? 0) > 0).map((d) => d.id);
}

/** Whether every determining permit asking for approvals is one the grant was granted under. */
function covers(grant: GrantTerms, determining: readonly DeterminingPolicy[], table: ObligationTable): boolean {
  for (const d of determining) if ((table.get(d.id)?.approvals ?? 0) > 0 && !grant.policies.includes(d.id)) return false;
  return true;
}

/**
 * While trusted time is in doubt, an early iat or nbf is let through only for an allow by
 * permits that are all @safety; anything else is refused with the envelope's own code.
 */
function early(command: VerifiedCommand): Verdict | undefined {
  if (command.early === undefined) return undefined;
  const { code, message } = command.early;
  return {
    decision: 'refused',
    reasons: [code],
    policies: [],
    obligations: NO_OBLIGATIONS,
    errors: NOTHING,
    note: `${message} (trusted time is in doubt; only @safety actions are let through)`,
    count: NOTHING,
    area: 'reserve',
  };
}

function withDoubt(reasons: string[], command: VerifiedCommand): string[] {
  if (command.early !== undefined) reasons.push('CLOCK_IN_DOUBT');
  return reasons;
}

function allowed(
  reasons: string[],
  policies: string[],
  obligations: Obligations,
  errors: readonly PolicyError[],
  facts: DecisionFacts,
  count: readonly RateLimit[],
  grant?: GrantTerms,
): Verdict {
  // A full log takes an allow only for a @safety command (every other one is denied AUDIT_FULL above).
  const verdict: Verdict = { decision: 'allow', reasons, policies, obligations, errors, count, area: facts.auditFull ? 'safety' : 'normal' };
  if (grant !== undefined) verdict.grant = grant;
  return verdict;
}

function refusal(code: string, facts: DecisionFacts, obligations: Obligations, policies: readonly string[], errors: readonly PolicyError[], note?: string): Verdict {
  const verdict: Verdict = { decision: 'deny', reasons: [code], policies: policies as string[], obligations, errors, count: NOTHING, area: deniedArea(facts) };
  if (note !== undefined) verdict.note = note;
  return verdict;
}

function deniedArea(facts: DecisionFacts): AppendArea {
  return facts.auditFull ? 'reserve' : 'normal';
}
