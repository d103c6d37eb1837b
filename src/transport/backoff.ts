// Reconnect delays: exponential growth with "equal jitter" (half fixed, half random), so a
// fleet that lost the same broker does not come back in lockstep, yet no device retries in a
// tight loop.

export interface BackoffPolicy {
  /** Delay ceiling for the first retry. */
  initialMs: number;
  /** The ceiling never grows past this. */
  maxMs: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = { initialMs: 500, maxMs: 60_000 };

/**
 * Delay before retry number `attempt` (0 for the first): uniformly in [ceiling/2, ceiling]
 * where ceiling = min(maxMs, initialMs · 2^attempt). `random` returns a number in [0, 1).
 */
export function backoffDelayMs(attempt: number, policy: BackoffPolicy, random: () => number): number {
  const exponent = Math.min(Math.max(0, Math.floor(attempt)), 30);
  const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** exponent);
  const unit = Math.min(Math.max(random(), 0), 1);
  return Math.round(ceiling / 2 + (unit * ceiling) / 2);
}

export function checkBackoffPolicy(policy: BackoffPolicy): string | null {
  if (!Number.isFinite(policy.initialMs) || policy.initialMs <= 0) return 'backoff.initialMs must be a positive number';
  if (!Number.isFinite(policy.maxMs) || policy.maxMs < policy.initialMs) return 'backoff.maxMs must be at least backoff.initialMs';
  return null;
}
