// Enforcement obligations carried by Cedar annotations on the determining permit policies.
//
// Cedar allows a request when any one permit is satisfied, so several permits may determine a
// decision. ztedge applies the strictest combination: the most approvals, every rate limit, the
// shortest cache TTL. `@safety("true")` holds only if every determining permit says so, so a
// non-safety permit cannot ride along into fail-closed mode.
import { parseDurationMs } from '../duration.js';
import type { RateLimit } from '../store/rate-limiter.js';

export type { RateLimit };

export interface Obligations {
  approvals: number;
  /** Entity uids (Cedar text, e.g. `Role::"supervisor"`) an approver must be `in`; empty = any permitted approver. */
  approvers: string[];
  rates: RateLimit[];
  /** Undefined: use the bundle default. */
  cacheTtlMs: number | undefined;
  safety: boolean;
}

export interface ObligationProblem {
  policyId: string;
  annotation: string;
  message: string;
}

export class ObligationError extends Error {
  readonly code = 'OBLIGATION_INVALID';
  constructor(readonly problems: ObligationProblem[]) {
    super(problems.map((p) => `${p.policyId} @${p.annotation}: ${p.message}`).join('; '));
    this.name = 'ObligationError';
  }
}

interface AnnotatedPolicy {
  id: string;
  annotations: Record<string, string>;
}

const MAX_APPROVALS = 16;

/**
 * Reads the obligations of the determining permit policies. A malformed annotation is an error:
 * enforcing half an obligation would fail open, so the caller denies the command.
 */
export function obligationsOf(permits: readonly AnnotatedPolicy[]): Obligations {
  const problems: ObligationProblem[] = [];
  const result: Obligations = { approvals: 0, approvers: [], rates: [], cacheTtlMs: undefined, safety: permits.length > 0 };
  for (const p of permits) {
    const a = p.annotations;
    const bad = (annotation: string, message: string) => problems.push({ policyId: p.id, annotation, message });
    if (a.approval !== undefined) {
      const n = /^\d{1,2}$/.test(a.approval) ? Number(a.approval) : NaN;
      if (!(n >= 1 && n <= MAX_APPROVALS)) bad('approval', `must be a number of approvers from 1 to ${MAX_APPROVALS}`);
      else result.approvals = Math.max(result.approvals, n);
    }
    if (a.approvers !== undefined) {
      const list = a.approvers.split(',').map((s) => s.trim()).filter(Boolean);
      if (list.length === 0 || list.some((s) => !/^[A-Za-z_][\w:]*::"[^"]*"$/.test(s))) {
        bad('approvers', 'must be a comma-separated list of entity uids like Role::"supervisor"');
      } else {
        for (const uid of list) if (!result.approvers.includes(uid)) result.approvers.push(uid);
      }
    }
    if (a.rate !== undefined) {
      const m = /^(\d{1,9})\/(.+)$/.exec(a.rate);
      const periodMs = m ? parseDurationMs(m[2]!) : undefined;
      const count = m ? Number(m[1]) : 0;
      if (m === null || periodMs === undefined || periodMs <= 0 || count < 1) bad('rate', 'must look like "20/60s" (count/period)');
      else result.rates.push({ policyId: p.id, count, periodMs });
    }
    if (a.cache_ttl !== undefined) {
      const ms = parseDurationMs(a.cache_ttl);
      if (ms === undefined) bad('cache_ttl', 'must be a duration like "30s"');
      else result.cacheTtlMs = result.cacheTtlMs === undefined ? ms : Math.min(result.cacheTtlMs, ms);
    }
    if (a.safety !== undefined && a.safety !== 'true' && a.safety !== 'false') bad('safety', 'must be "true" or "false"');
    if (a.safety !== 'true') result.safety = false;
  }
  if (problems.length > 0) throw new ObligationError(problems);
  return result;
}
