// Enforcement obligations carried by Cedar annotations on the determining permit policies.
//
// Cedar allows a request when any one permit is satisfied, so several permits may determine a
// decision. ztedge applies the strictest combination: the most approvals, every rate limit.
// `@safety("true")` holds only if every determining permit says so, so a non-safety permit
// cannot ride along into fail-closed mode; a just-in-time grant (`@grant_ttl`) exists only if
// every determining permit that asks for approvals grants one, and lasts the shortest of them.
//
// Annotations are read once per bundle (bundle build and activation refuse a malformed one,
// located, so it never reaches the command path) into a table by policy id; the command path
// only combines the table's entries.
import { parseDurationMs } from '../duration.js';
import type { RateLimit } from '../store/rate-limiter.js';
import { ZtedgeError } from '../errors.js';

export type { RateLimit };

export interface Obligations {
  readonly approvals: number;
  /** Entity uids (Cedar text, e.g. `Role::"supervisor"`) an approver must be `in`; empty = any permitted approver. */
  readonly approvers: readonly string[];
  readonly rates: readonly RateLimit[];
  readonly safety: boolean;
  /**
   * How long the just-in-time grant an approval creates lasts (`@grant_ttl`): the approved
   * principal may repeat the action on the resource without a new quorum until then. Undefined:
   * no grant, every command needs its own approvals.
   */
  readonly grantTtlMs?: number;
}

export type ObligationCode = 'OBLIGATION_INVALID' | 'ANNOTATION_UNSUPPORTED';

export interface ObligationProblem {
  policyId: string;
  annotation: string;
  code: ObligationCode;
  /** Reads after `@<annotation> `, e.g. `must be "true" or "false"`. */
  message: string;
}

export class ObligationError extends ZtedgeError<'OBLIGATION_INVALID'> {
  constructor(readonly problems: ObligationProblem[]) {
    super('OBLIGATION_INVALID', problems.map((p) => `${p.policyId} @${p.annotation} ${p.message}`).join('; '));
  }
}

interface AnnotatedPolicy {
  readonly id: string;
  readonly annotations: Readonly<Record<string, string>>;
}

/** Obligations of each policy of a bundle, by policy id. */
export type ObligationTable = ReadonlyMap<string, Obligations>;

const MAX_APPROVALS = 16;
/** A grant is just in time: at least a second, at most a day. */
const MIN_GRANT_TTL_MS = 1000;
const MAX_GRANT_TTL_MS = 86_400_000;

export const NO_OBLIGATIONS: Obligations = Object.freeze({ approvals: 0, approvers: Object.freeze([]), rates: Object.freeze([]), safety: false });

/** Annotations ztedge refuses rather than carry as if they did something, with why. */
const UNSUPPORTED: Readonly<Record<string, string>> = {
  cache_ttl: 'the agent decides every command anew and keeps no decision cache in the command path; remove the annotation',
};

/**
 * Reads one policy's obligation annotations. Every malformed one is a problem naming it:
 * enforcing half an obligation would fail open.
 */
export function readObligations(policy: AnnotatedPolicy): { obligations: Obligations; problems: ObligationProblem[] } {
  const a = policy.annotations;
  const problems: ObligationProblem[] = [];
  const bad = (annotation: string, message: string, code: ObligationCode = 'OBLIGATION_INVALID') => problems.push({ policyId: policy.id, annotation, code, message });
  let approvals = 0;
  const approvers: string[] = [];
  const rates: RateLimit[] = [];
  let grantTtlMs: number | undefined;
  if (a.approval !== undefined) {
    const n = /^\d{1,2}$/.test(a.approval) ? Number(a.approval) : NaN;
    if (!(n >= 1 && n <= MAX_APPROVALS)) bad('approval', `must be a number of approvers from 1 to ${MAX_APPROVALS}`);
    else approvals = n;
  }
  if (a.approvers !== undefined) {
    const list = a.approvers.split(',').map((s) => s.trim()).filter(Boolean);
    if (list.length === 0 || list.some((s) => !/^[A-Za-z_][\w:]*::"[^"]*"$/.test(s))) {
      bad('approvers', 'must be a comma-separated list of entity uids like Role::"supervisor"');
    } else {
      for (const uid of list) if (!approvers.includes(uid)) approvers.push(uid);
    }
  }
  if (a.rate !== undefined) {
    const m = /^(\d{1,9})\/(.+)$/.exec(a.rate);
    const periodMs = m ? parseDurationMs(m[2]!) : undefined;
    const count = m ? Number(m[1]) : 0;
    if (m === null || periodMs === undefined || periodMs <= 0 || count < 1) bad('rate', 'must look like "20/60s" (count/period)');
    else rates.push({ policyId: policy.id, count, periodMs });
  }
  if (a.grant_ttl !== undefined) {
    const ms = parseDurationMs(a.grant_ttl);
    if (ms === undefined || ms < MIN_GRANT_TTL_MS || ms > MAX_GRANT_TTL_MS) bad('grant_ttl', 'must be a duration from 1s to 24h, like "10m"');
    // A grant waives this policy's approvals for repeats; without approvals it would grant nothing.
    else if (a.approval === undefined) bad('grant_ttl', 'needs @approval on the same policy: a grant lets an approved command be repeated without new approvals');
    else grantTtlMs = ms;
  }
  for (const [key, why] of Object.entries(UNSUPPORTED)) if (a[key] !== undefined) bad(key, `is not supported: ${why}`, 'ANNOTATION_UNSUPPORTED');
  if (a.safety !== undefined && a.safety !== 'true' && a.safety !== 'false') bad('safety', 'must be "true" or "false"');
  return {
    obligations: { approvals, approvers, rates, safety: a.safety === 'true', ...(grantTtlMs === undefined ? {} : { grantTtlMs }) },
    problems,
  };
}

/**
 * The obligations of every policy of a set whose annotations were checked (bundle build and
 * activation): throws ObligationError otherwise.
 */
export function obligationTable(policies: Iterable<AnnotatedPolicy>): ObligationTable {
  const table = new Map<string, Obligations>();
  const problems: ObligationProblem[] = [];
  for (const policy of policies) {
    const read = readObligations(policy);
    problems.push(...read.problems);
    table.set(policy.id, read.obligations);
  }
  if (problems.length > 0) throw new ObligationError(problems);
  return table;
}

/**
 * The combined obligations of the determining permits, from the bundle's table. One permit (the
 * common case) gives its own entry, shared and read-only: nothing is allocated per command.
 */
export function combineObligations(permits: readonly AnnotatedPolicy[], table: ObligationTable): Obligations {
  if (permits.length === 1) {
    const only = table.get(permits[0]!.id);
    if (only !== undefined) return only;
  }
  return combine(permits.map((p) => table.get(p.id) ?? readChecked(p)));
}

/**
 * Reads and combines the obligations of the determining permit policies, checking each
 * annotation. A malformed one throws ObligationError: the caller denies the command.
 */
export function obligationsOf(permits: readonly AnnotatedPolicy[]): Obligations {
  return combine(permits.map(readChecked));
}

function readChecked(policy: AnnotatedPolicy): Obligations {
  const read = readObligations(policy);
  if (read.problems.length > 0) throw new ObligationError(read.problems);
  return read.obligations;
}

function combine(each: readonly Obligations[]): Obligations {
  let approvals = 0;
  const approvers: string[] = [];
  const rates: RateLimit[] = [];
  let safety = each.length > 0;
  let grantTtlMs: number | undefined;
  let ungranted = false;
  for (const o of each) {
    approvals = Math.max(approvals, o.approvals);
    for (const uid of o.approvers) if (!approvers.includes(uid)) approvers.push(uid);
    rates.push(...o.rates);
    if (!o.safety) safety = false;
    if (o.approvals > 0) {
      if (o.grantTtlMs === undefined) ungranted = true;
      else grantTtlMs = Math.min(grantTtlMs ?? Infinity, o.grantTtlMs);
    }
  }
  return { approvals, approvers, rates, safety, ...(ungranted || grantTtlMs === undefined ? {} : { grantTtlMs }) };
}
