// Just-in-time grants: when a command held for approval reaches its quorum, the approved
// (principal, action, resource) is granted until an expiry. Grants live in the state database,
// so they are honoured offline and after a reboot; a bundle can revoke them (all, or those issued
// under older bundle revisions).
import type { Database, Statement } from 'better-sqlite3';
import { migrate } from './state-db.js';

const SCHEMA = `
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

export interface Grant {
  principal: string;
  action: string;
  resource: string;
  expiresMs: number;
  grantedMs: number;
  bundleRevision: number;
  commandDigest: Uint8Array;
}

export class GrantStore {
  private readonly upsert: Statement;
  private readonly lookup: Statement;

  constructor(private readonly db: Database) {
    migrate(db, 'jit_grants', [SCHEMA]);
    // A new grant for the same triple replaces the old one only if it lasts longer.
    this.upsert = db.prepare(`
      INSERT INTO jit_grants (principal, action, resource, expires_ms, granted_ms, bundle_revision, command_digest)
      VALUES (@principal, @action, @resource, @expiresMs, @grantedMs, @bundleRevision, @commandDigest)
      ON CONFLICT (principal, action, resource) DO UPDATE SET
        expires_ms = excluded.expires_ms, granted_ms = excluded.granted_ms,
        bundle_revision = excluded.bundle_revision, command_digest = excluded.command_digest
      WHERE excluded.expires_ms > jit_grants.expires_ms`);
    this.lookup = db.prepare('SELECT expires_ms FROM jit_grants WHERE principal = ? AND action = ? AND resource = ? AND expires_ms > ?');
  }

  grant(g: Grant): void {
    if (!(g.expiresMs > g.grantedMs)) throw new RangeError('a grant must expire after it is granted');
    this.upsert.run({ ...g, commandDigest: Buffer.from(g.commandDigest) });
  }

  /** True if a live grant covers exactly this principal, action and resource at `nowMs`. */
  has(principal: string, action: string, resource: string, nowMs: number): boolean {
    return this.lookup.get(principal, action, resource, nowMs) !== undefined;
  }

  /** The live grant of exactly this principal, action and resource at `nowMs`, if any. */
  find(principal: string, action: string, resource: string, nowMs: number): { expiresMs: number; policies: readonly string[] } | undefined {
    const row = this.lookup.get(principal, action, resource, nowMs) as { expires_ms: number } | undefined;
    return row === undefined ? undefined : { expiresMs: row.expires_ms, policies: [] };
  }

  list(nowMs: number): Grant[] {
    const rows = this.db.prepare('SELECT * FROM jit_grants WHERE expires_ms > ? ORDER BY granted_ms').all(nowMs) as Array<Record<string, unknown>>;
    return rows.map((r) => ({
      principal: r.principal as string,
      action: r.action as string,
      resource: r.resource as string,
      expiresMs: r.expires_ms as number,
      grantedMs: r.granted_ms as number,
      bundleRevision: r.bundle_revision as number,
      commandDigest: new Uint8Array(r.command_digest as Buffer),
    }));
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
