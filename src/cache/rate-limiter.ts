// Rate limits from `@rate("N/PERIOD")`, counted per (policy, principal, action) over a sliding
// window, and kept across restarts.
//
// Counting happens in memory (a sorted list of event times per key); every accepted event is also
// written to SQLite. Writes arriving in one turn of the event loop share one transaction, and that
// flush is scheduled before the command's audit record is committed, so an executed command's
// rate event is on disk no later than its audit record.
import type { Database, Statement } from 'better-sqlite3';
import { migrate } from '../agent/state-db.js';
import type { RateLimit } from '../agent/obligations.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS rate_events (
  key TEXT NOT NULL,
  time_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS rate_events_key_time ON rate_events (key, time_ms);
`;

export interface RateCheck {
  allowed: boolean;
  /** The limit that refused, when not allowed. */
  limit?: RateLimit;
  /** When the oldest counted event leaves the window (ms since epoch), when not allowed. */
  retryAtMs?: number;
}

/** Longest period a limit may have; bounds memory and the on-disk window. */
const MAX_PERIOD_MS = 7 * 86_400_000;

export class RateLimiter {
  private readonly events = new Map<string, number[]>();
  private readonly insert: Statement;
  private pendingWrites: Array<[string, number]> = [];
  private flushScheduled = false;

  constructor(private readonly db: Database) {
    migrate(db, 'rate_limit', [SCHEMA]);
    this.insert = db.prepare('INSERT INTO rate_events (key, time_ms) VALUES (?, ?)');
    this.load();
  }

  /**
   * Checks every limit; if all allow, counts one event under each (all or nothing) and returns
   * allowed. Nothing is counted for a refused request.
   */
  consume(limits: readonly RateLimit[], principal: string, action: string, nowMs: number): RateCheck {
    const keys = limits.map((l) => keyOf(l.policyId, principal, action));
    for (let i = 0; i < limits.length; i++) {
      const limit = limits[i]!;
      const times = this.window(keys[i]!, nowMs - Math.min(limit.periodMs, MAX_PERIOD_MS));
      if (times.length >= limit.count) return { allowed: false, limit, retryAtMs: times[times.length - limit.count]! + limit.periodMs };
    }
    for (const key of keys) {
      let times = this.events.get(key);
      if (times === undefined) this.events.set(key, (times = []));
      times.push(nowMs);
      this.pendingWrites.push([key, nowMs]);
    }
    if (keys.length > 0) this.scheduleFlush();
    return { allowed: true };
  }

  /** Writes pending events now (also called by the scheduled flush). */
  flush(): void {
    this.flushScheduled = false;
    const writes = this.pendingWrites;
    this.pendingWrites = [];
    if (writes.length === 0) return;
    this.db.transaction(() => {
      for (const [key, t] of writes) this.insert.run(key, t);
    })();
  }

  /** Drops events older than the longest period; returns how many rows were deleted. */
  prune(nowMs: number): number {
    for (const [key, times] of this.events) {
      const kept = times.filter((t) => t > nowMs - MAX_PERIOD_MS);
      if (kept.length === 0) this.events.delete(key);
      else this.events.set(key, kept);
    }
    return this.db.prepare('DELETE FROM rate_events WHERE time_ms <= ?').run(nowMs - MAX_PERIOD_MS).changes;
  }

  private window(key: string, sinceMs: number): number[] {
    const times = this.events.get(key);
    if (times === undefined) return [];
    let first = 0;
    while (first < times.length && times[first]! <= sinceMs) first++;
    return times.slice(first);
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => this.flush());
  }

  private load(): void {
    const rows = this.db.prepare('SELECT key, time_ms FROM rate_events ORDER BY key, time_ms').all() as Array<{ key: string; time_ms: number }>;
    for (const { key, time_ms } of rows) {
      let times = this.events.get(key);
      if (times === undefined) this.events.set(key, (times = []));
      times.push(time_ms);
    }
  }
}

function keyOf(policyId: string, principal: string, action: string): string {
  // JSON keeps the three parts unambiguous whatever characters the uids contain.
  return JSON.stringify([policyId, principal, action]);
}
