// The decision cache: an in-memory LRU in front of a SQLite table.
//
// A key covers everything a decision can depend on: the bundle digest, principal, action,
// resource, and the context attributes the bundle's policies actually read (statically known
// per policy; a policy that reads context dynamically makes the whole context part of the key).
// Entries live for the bundle's cache TTL, survive a restart through the table, and are dropped
// wholesale when a bundle activates or the posture changes.
//
// Not in the command path: `npm run bench:cache` shows a lookup does not beat deciding a local
// policy again. It is kept, tested, for decisions that are expensive or not local (delegated to
// an upstream service, and needed while the site is offline).
import { createHash } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import { migrate } from './state-db.js';
import { CedarRecord, type AuthzRequest, type ContextReads, type EnforcedDecision, type PolicySet, valueKey } from '../policy/index.js';

const SCHEMA = `
CREATE TABLE decision_cache (
  key BLOB PRIMARY KEY,
  expires_ms INTEGER NOT NULL,
  decision TEXT NOT NULL
) STRICT;
CREATE INDEX decision_cache_expiry ON decision_cache (expires_ms);
`;

export interface CachedDecision {
  decision: EnforcedDecision;
  expiresMs: number;
}

export interface DecisionCacheStats {
  hits: number;
  misses: number;
  /** Hits served from the table after the in-memory entry was gone (e.g. after a restart). */
  tableHits: number;
  size: number;
}

/** The context paths a whole policy set reads: the union over its policies. */
export function contextReadsOf(policies: PolicySet): ContextReads {
  const paths = new Map<string, readonly string[]>();
  for (const p of policies.policies) {
    if (p.contextReads === 'all') return 'all';
    for (const path of p.contextReads) paths.set(JSON.stringify(path), path);
  }
  return [...paths.values()].sort((a, b) => JSON.stringify(a).localeCompare(JSON.stringify(b)));
}

/**
 * The cache key of a request: the bundle digest, the three uids and the values (or absence) of
 * each context path read, length-prefixed so the parts stay unambiguous. The table stores its
 * SHA-256; the in-memory LRU uses the text itself (hashing would cost more than deciding).
 */
export function decisionKey(bundleDigest: string, request: AuthzRequest, reads: ContextReads): string {
  let key = `${bundleDigest.length}:${bundleDigest}`;
  const part = (s: string) => {
    key += `${s.length}:${s}`;
  };
  part(request.principal.key);
  part(request.action.key);
  part(request.resource.key);
  if (reads === 'all') part(valueKey(request.context));
  else {
    for (const path of reads) {
      let value: unknown = request.context;
      for (const name of path) value = value instanceof CedarRecord && value.has(name) ? value.get(name) : undefined;
      part(value === undefined ? '-' : '+' + valueKey(value as Parameters<typeof valueKey>[0]));
    }
  }
  return key;
}

function tableKey(key: string): Buffer {
  return createHash('sha256').update(key).digest();
}

export class DecisionCache {
  private readonly lru = new Map<string, CachedDecision>();
  private readonly select: Statement | undefined;
  private readonly upsert: Statement | undefined;
  private readonly stats = { hits: 0, misses: 0, tableHits: 0 };

  /** `db` null: memory only (the bench shows a table read costs more than deciding again). */
  constructor(
    private readonly db: Database | null,
    private readonly maxEntries: number,
  ) {
    if (!Number.isSafeInteger(maxEntries) || maxEntries < 1) throw new RangeError('maxEntries must be a positive integer');
    if (db !== null) {
      migrate(db, 'decision_cache', [SCHEMA]);
      this.select = db.prepare('SELECT expires_ms, decision FROM decision_cache WHERE key = ?');
      this.upsert = db.prepare('INSERT INTO decision_cache (key, expires_ms, decision) VALUES (?, ?, ?) ON CONFLICT (key) DO UPDATE SET expires_ms = excluded.expires_ms, decision = excluded.decision');
    }
  }

  get(key: string, nowMs: number): EnforcedDecision | undefined {
    const hit = this.lru.get(key);
    if (hit !== undefined) {
      if (hit.expiresMs > nowMs) {
        // Re-insert: Map order is the recency order.
        this.lru.delete(key);
        this.lru.set(key, hit);
        this.stats.hits++;
        return hit.decision;
      }
      this.lru.delete(key);
    }
    const row = this.select?.get(tableKey(key)) as { expires_ms: number; decision: string } | undefined;
    if (row !== undefined && row.expires_ms > nowMs) {
      const decision = JSON.parse(row.decision) as EnforcedDecision;
      this.remember(key, { decision, expiresMs: row.expires_ms });
      this.stats.hits++;
      this.stats.tableHits++;
      return decision;
    }
    this.stats.misses++;
    return undefined;
  }

  /** Stores a decision for `ttlMs`; a TTL of 0 stores nothing. Written through to the table. */
  set(key: string, decision: EnforcedDecision, nowMs: number, ttlMs: number): void {
    if (!(ttlMs > 0)) return;
    const entry = { decision, expiresMs: nowMs + ttlMs };
    this.remember(key, entry);
    this.upsert?.run(tableKey(key), entry.expiresMs, JSON.stringify(decision));
  }

  /** Drops every entry (bundle activation, posture change). */
  clear(): void {
    this.lru.clear();
    this.db?.prepare('DELETE FROM decision_cache').run();
  }

  prune(nowMs: number): number {
    for (const [id, e] of this.lru) if (e.expiresMs <= nowMs) this.lru.delete(id);
    return this.db?.prepare('DELETE FROM decision_cache WHERE expires_ms <= ?').run(nowMs).changes ?? 0;
  }

  counters(): DecisionCacheStats {
    return { ...this.stats, size: this.lru.size };
  }

  private remember(key: string, entry: CachedDecision): void {
    this.lru.set(key, entry);
    if (this.lru.size > this.maxEntries) this.lru.delete(this.lru.keys().next().value!);
  }
}
