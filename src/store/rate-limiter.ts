// Rate limits from `@rate("N/PERIOD")`, counted per (policy, principal, action) over a sliding
// window, and kept across restarts.
//
// Counting happens in memory (the event times of each key's current window); every accepted
// event is also written to SQLite through the state database's group commit. The write is queued
// before the command's audit record, so it is committed in the same transaction as that record
// or an earlier one: an executed command's rate event is on disk no later than its audit record.
import type { Database, Statement } from 'better-sqlite3';
import { GroupCommit } from './group-commit.js';
import { migrate } from './state-db.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rate_events (
  key TEXT NOT NULL,
  time_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_events_key_time ON rate_events (key, time_ms);
`;

export interface RateLimit {
  /** The policy that set it (rate counters are kept per policy, principal and action). */
  policyId: string;
  count: number;
  periodMs: number;
}

export interface RateCheck {
  allowed: boolean;
  /** The limit that refused, when not allowed. */
  limit?: RateLimit;
  /** When the oldest counted event leaves the window (ms since epoch), when not allowed. */
  retryAtMs?: number;
}

export interface RateLimiterOptions {
  /** The database's shared group commit; without one the limiter batches its own writes. */
  commits?: GroupCommit;
}

const ALLOWED: RateCheck = Object.freeze({ allowed: true });

/** Longest period a limit may have; bounds memory and the on-disk window. */
const MAX_PERIOD_MS = 7 * 86_400_000;

/**
 * One key's event times, oldest first. Events are dropped from the front as they leave the
 * period; the array is compacted only once most of it is dropped, so each call is O(1) amortized.
 */
class EventWindow {
  private times: number[] = [];
  private start = 0;
  /** The period this key was last checked against (a policy has one @rate). */
  periodMs = MAX_PERIOD_MS;

  /** Drops events at or before `sinceMs`; returns how many remain. */
  countAfter(sinceMs: number): number {
    while (this.start < this.times.length && this.times[this.start]! <= sinceMs) this.start++;
    if (this.start > 64 && this.start * 2 > this.times.length) {
      this.times = this.times.slice(this.start);
      this.start = 0;
    }
    return this.times.length - this.start;
  }

  /** The n-th newest event (n = 1 is the newest). */
  newest(n: number): number {
    return this.times[this.times.length - n]!;
  }

  add(timeMs: number): void {
    this.times.push(timeMs);
  }
}

export class RateLimiter {
  private readonly events = new Map<string, EventWindow>();
  private readonly insert: Statement;
  private readonly pruneKey: Statement;
  private readonly commits: GroupCommit;

  constructor(
    private readonly db: Database,
    opts: RateLimiterOptions = {},
  ) {
    migrate(db, 'rate_limit', [SCHEMA]);
    this.commits = opts.commits ?? new GroupCommit(db);
    this.insert = db.prepare('INSERT INTO rate_events (key, time_ms) VALUES (?, ?)');
    this.pruneKey = db.prepare('DELETE FROM rate_events WHERE key = ? AND time_ms <= ?');
    this.load();
  }

  /**
   * Whether one more event is allowed under every limit, without counting it (pure: it only
   * forgets events that have left their period).
   */
  check(limits: readonly RateLimit[], principal: string, action: string, nowMs: number): RateCheck {
    for (const limit of limits) {
      const window = this.window(keyOf(limit.policyId, principal, action));
      window.periodMs = Math.min(limit.periodMs, MAX_PERIOD_MS);
      const counted = window.countAfter(nowMs - window.periodMs);
      if (counted >= limit.count) return { allowed: false, limit, retryAtMs: window.newest(limit.count) + limit.periodMs };
    }
    return ALLOWED;
  }

  /**
   * Counts one event under each limit (after check() allowed it, in the same turn). The events
   * are written in the next group commit; if that commit fails they stay counted in memory
   * (erring on the side of refusing).
   */
  record(limits: readonly RateLimit[], principal: string, action: string, nowMs: number): void {
    if (limits.length === 0) return;
    const keys = limits.map((l) => keyOf(l.policyId, principal, action));
    for (const key of keys) this.window(key).add(nowMs);
    this.commits
      .run(() => {
        for (const key of keys) this.insert.run(key, nowMs);
      })
      .catch(() => undefined); // the same commit carries the decision's audit record, which reports it
  }

  /** check(), and record() when allowed: all or nothing, nothing counted for a refused request. */
  consume(limits: readonly RateLimit[], principal: string, action: string, nowMs: number): RateCheck {
    const check = this.check(limits, principal, action, nowMs);
    if (check.allowed) this.record(limits, principal, action, nowMs);
    return check;
  }

  /** Commits queued writes now (with everything else queued on the same group commit). */
  flush(): void {
    this.commits.flush();
  }

  /**
   * Deletes stored events that have left their key's period (the longest possible period for
   * keys not used since the last restart); returns how many rows were deleted.
   */
  prune(nowMs: number): number {
    let removed = 0;
    this.db.transaction(() => {
      for (const [key, window] of this.events) {
        removed += this.pruneKey.run(key, nowMs - window.periodMs).changes;
        if (window.countAfter(nowMs - window.periodMs) === 0) this.events.delete(key);
      }
      removed += this.db.prepare('DELETE FROM rate_events WHERE time_ms <= ?').run(nowMs - MAX_PERIOD_MS).changes;
    })();
    return removed;
  }

  private window(key: string): EventWindow {
    let window = this.events.get(key);
    if (window === undefined) this.events.set(key, (window = new EventWindow()));
    return window;
  }

  private load(): void {
    const rows = this.db.prepare('SELECT key, time_ms FROM rate_events ORDER BY key, time_ms').all() as Array<{ key: string; time_ms: number }>;
    for (const { key, time_ms } of rows) this.window(key).add(time_ms);
  }
}

function keyOf(policyId: string, principal: string, action: string): string {
  // JSON keeps the three parts unambiguous whatever characters the uids contain.
  return JSON.stringify([policyId, principal, action]);
}
