// Just-in-time grants: when a command held for approval reaches its quorum and its determining
// policies say so (`@grant_ttl`), the approved (principal, action, resource) is granted until an
// expiry, under those policies. Grants live in the state database, so they are honoured offline
// and after a reboot. Whenever the active bundle changes, a grant survives only if the new bundle
// still carries each of its policies with a grant (and never longer than the new grant time).
import type { Database, Statement } from 'better-sqlite3';
import { migrate } from './state-db.js';

const SCHEMA_V1 = `
CREATE TABLE IF NOT EXISTS jit_grants (
  principal TEXT NOT NULL,
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  expires_ms INTEGER NOT NULL,
  granted_ms INTEGER NOT NULL,
  bundle_revision INTEGER NOT NULL,
  command_digest BLOB NOT NULL,
  PRIMARY KEY (principal, action, resource)
);
`;

// Grants of older agents came from an undocumented default after any approval, not from a
// policy: they are dropped, not carried over under no policy.
const SCHEMA_V2 = `
DELETE FROM jit_grants;
ALTER TABLE jit_grants ADD COLUMN policies TEXT NOT NULL DEFAULT '[]';
`;

export interface Grant {
  principal: string;
  action: string;
  resource: string;
  expiresMs: number;
  grantedMs: number;
  bundleRevision: number;
  /** The approved command that created it. */
  commandDigest: Uint8Array;
  /** The determining policies (with @approval and @grant_ttl) it was granted under. */
  policies: readonly string[];
}

export interface LiveGrant {
  expiresMs: number;
  policies: readonly string[];
}

export class GrantStore {
  private readonly upsert: Statement;
  private readonly lookup: Statement;

  constructor(private readonly db: Database) {
    migrate(db, 'jit_grants', [SCHEMA_V1, SCHEMA_V2]);
    // A new grant for the same triple replaces the old one only if it lasts longer.
    this.upsert = db.prepare(`
      INSERT INTO jit_grants (principal, action, resource, expires_ms, granted_ms, bundle_revision, command_digest, policies)
      VALUES (@principal, @action, @resource, @expiresMs, @grantedMs, @bundleRevision, @commandDigest, @policies)
      ON CONFLICT (principal, action, resource) DO UPDATE SET
        expires_ms = excluded.expires_ms, granted_ms = excluded.granted_ms, bundle_revision = excluded.bundle_revision,
        command_digest = excluded.command_digest, policies = excluded.policies
      WHERE excluded.expires_ms > jit_grants.expires_ms`);
    this.lookup = db.prepare('SELECT expires_ms, policies FROM jit_grants WHERE principal = ? AND action = ? AND resource = ? AND expires_ms > ?');
  }

  grant(g: Grant): void {
    if (!(g.expiresMs > g.grantedMs)) throw new RangeError('a grant must expire after it is granted');
    if (g.policies.length === 0) throw new RangeError('a grant is granted under at least one policy');
    this.upsert.run({ ...g, commandDigest: Buffer.from(g.commandDigest), policies: JSON.stringify(g.policies) });
  }

  /** True if a live grant covers exactly this principal, action and resource at `nowMs`. */
  has(principal: string, action: string, resource: string, nowMs: number): boolean {
    return this.lookup.get(principal, action, resource, nowMs) !== undefined;
  }

  /** The live grant of exactly this principal, action and resource at `nowMs`, if any. */
  find(principal: string, action: string, resource: string, nowMs: number): LiveGrant | undefined {
    const row = this.lookup.get(principal, action, resource, nowMs) as { expires_ms: number; policies: string } | undefined;
    return row === undefined ? undefined : { expiresMs: row.expires_ms, policies: readPolicies(row.policies) };
  }

  /** Live grants, oldest first (at most `limit`). */
  list(nowMs: number, limit = -1): Grant[] {
    const rows = this.db.prepare('SELECT * FROM jit_grants WHERE expires_ms > ? ORDER BY granted_ms, principal, action, resource LIMIT ?').all(nowMs, limit) as Row[];
    return rows.map(fromRow);
  }

  /** How many grants are live. */
  count(nowMs: number): number {
    return (this.db.prepare('SELECT count(*) AS n FROM jit_grants WHERE expires_ms > ?').get(nowMs) as { n: number }).n;
  }

  /**
   * The active bundle changed: keeps a grant only if every policy it was granted under is in
   * `grantTimes` (the new bundle's policies with @grant_ttl, by id, with their grant time), and
   * then never past its grant time plus the shortest of those. Returns the grants dropped, and
   * those cut short with their new expiry.
   */
  reconcile(grantTimes: ReadonlyMap<string, number>): { dropped: Grant[]; shortened: Grant[] } {
    const dropped: Grant[] = [];
    const shortened: Grant[] = [];
    this.db.transaction(() => {
      const remove = this.db.prepare('DELETE FROM jit_grants WHERE principal = ? AND action = ? AND resource = ?');
      const cut = this.db.prepare('UPDATE jit_grants SET expires_ms = ? WHERE principal = ? AND action = ? AND resource = ?');
      for (const grant of (this.db.prepare('SELECT * FROM jit_grants ORDER BY granted_ms').all() as Row[]).map(fromRow)) {
        const times = grant.policies.map((id) => grantTimes.get(id));
        if (times.length === 0 || times.some((t) => t === undefined)) {
          remove.run(grant.principal, grant.action, grant.resource);
          dropped.push(grant);
          continue;
        }
        const until = grant.grantedMs + Math.min(...(times as number[]));
        if (until < grant.expiresMs) {
          cut.run(until, grant.principal, grant.action, grant.resource);
          shortened.push({ ...grant, expiresMs: until });
        }
      }
    })();
    return { dropped, shortened };
  }

  /** Revokes grants issued under bundle revisions below `revision` (all grants if omitted). */
  revoke(belowRevision?: number): number {
    if (belowRevision === undefined) return this.db.prepare('DELETE FROM jit_grants').run().changes;
    return this.db.prepare('DELETE FROM jit_grants WHERE bundle_revision < ?').run(belowRevision).changes;
  }

  prune(nowMs: number): number {
    return this.db.prepare('DELETE FROM jit_grants WHERE expires_ms <= ?').run(nowMs).changes;
  }
}

interface Row {
  principal: string;
  action: string;
  resource: string;
  expires_ms: number;
  granted_ms: number;
  bundle_revision: number;
  command_digest: Buffer;
  policies: string;
}

function fromRow(r: Row): Grant {
  return {
    principal: r.principal,
    action: r.action,
    resource: r.resource,
    expiresMs: r.expires_ms,
    grantedMs: r.granted_ms,
    bundleRevision: r.bundle_revision,
    commandDigest: new Uint8Array(r.command_digest),
    policies: readPolicies(r.policies),
  };
}

/** A stored policy list; anything else reads as none (such a grant covers nothing and is dropped at the next bundle). */
function readPolicies(text: string): string[] {
  try {
    const value: unknown = JSON.parse(text);
    return Array.isArray(value) && value.every((v) => typeof v === 'string') ? value : [];
  } catch {
    return [];
  }
}
