import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { migrate, openStateDb } from '../../src/store/state-db.js';
import { GrantStore } from '../../src/store/grants.js';

const base = {
  principal: 'Agent::"planner"',
  action: 'Action::"move"',
  resource: 'Arm::"arm-01"',
  grantedMs: 1000,
  expiresMs: 61_000,
  bundleRevision: 7,
  commandDigest: new Uint8Array(32).fill(1),
  policies: ['move-needs-approval'],
};

describe('GrantStore', () => {
  it('honours a grant for exactly its triple until it expires, across a restart', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ztedge-grants-')), 'state.db');
    let db = openStateDb(path);
    new GrantStore(db).grant(base);
    db.close();
    db = openStateDb(path);
    const grants = new GrantStore(db);
    expect(grants.has(base.principal, base.action, base.resource, 60_999)).toBe(true);
    expect(grants.has(base.principal, base.action, base.resource, 61_000)).toBe(false);
    expect(grants.has(base.principal, base.action, 'Arm::"arm-02"', 2000)).toBe(false);
    expect(grants.has('Agent::"other"', base.action, base.resource, 2000)).toBe(false);
    expect(grants.list(2000)).toEqual([base]);
    db.close();
  });

  it('never shortens a grant, and revokes by bundle revision', () => {
    const grants = new GrantStore(openStateDb(':memory:'));
    grants.grant(base);
    grants.grant({ ...base, expiresMs: 5000, bundleRevision: 9 });
    expect(grants.list(0)[0]).toMatchObject({ expiresMs: 61_000, bundleRevision: 7 });
    grants.grant({ ...base, resource: 'Arm::"arm-02"', bundleRevision: 9 });
    expect(grants.revoke(8)).toBe(1);
    expect(grants.list(0).map((g) => g.resource)).toEqual(['Arm::"arm-02"']);
    expect(grants.revoke()).toBe(1);
    expect(() => grants.grant({ ...base, expiresMs: 1000 })).toThrow(RangeError);
  });

  it('finds a live grant with the policies it was granted under', () => {
    const grants = new GrantStore(openStateDb(':memory:'));
    grants.grant(base);
    expect(grants.find(base.principal, base.action, base.resource, 2000)).toEqual({ expiresMs: 61_000, policies: ['move-needs-approval'] });
    expect(grants.find(base.principal, base.action, base.resource, 61_000)).toBeUndefined();
    expect(() => grants.grant({ ...base, policies: [] })).toThrow(RangeError);
  });

  it('keeps a grant across a bundle change only under the same policy ids with a grant, never longer than the new grant time', () => {
    const grants = new GrantStore(openStateDb(':memory:'));
    grants.grant(base);
    grants.grant({ ...base, resource: 'Arm::"arm-02"', policies: ['move-needs-approval', 'night-shift'] });
    grants.grant({ ...base, resource: 'Arm::"arm-03"', policies: ['other'] });
    // The new bundle keeps move-needs-approval with a grant of 30 s, drops night-shift and other.
    const change = grants.reconcile(new Map([['move-needs-approval', 30_000]]));
    expect(change.dropped.map((g) => g.resource)).toEqual(['Arm::"arm-02"', 'Arm::"arm-03"']);
    expect(change.shortened.map((g) => g.resource)).toEqual(['Arm::"arm-01"']);
    expect(grants.list(0)).toEqual([{ ...base, expiresMs: 31_000 }]);
    // A bundle without it drops it.
    expect(grants.reconcile(new Map()).dropped.map((g) => g.resource)).toEqual(['Arm::"arm-01"']);
    expect(grants.list(0)).toEqual([]);
  });

  it('drops grants an older agent stored without a policy when it opens the database', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ztedge-grants-v1-')), 'state.db');
    const db = openStateDb(path);
    migrate(db, 'jit_grants', [
      'CREATE TABLE jit_grants (principal TEXT NOT NULL, action TEXT NOT NULL, resource TEXT NOT NULL, expires_ms INTEGER NOT NULL, granted_ms INTEGER NOT NULL, bundle_revision INTEGER NOT NULL, command_digest BLOB NOT NULL, PRIMARY KEY (principal, action, resource))',
    ]);
    db.prepare('INSERT INTO jit_grants VALUES (?, ?, ?, ?, ?, ?, ?)').run(base.principal, base.action, base.resource, 61_000, 1000, 7, Buffer.alloc(32));
    const grants = new GrantStore(db);
    expect(grants.has(base.principal, base.action, base.resource, 2000)).toBe(false);
    expect(grants.list(0)).toEqual([]);
    db.close();
  });
});
