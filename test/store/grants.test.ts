import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { GrantStore } from '../../src/store/grants.js';

const base = {
  principal: 'Agent::"planner"',
  action: 'Action::"move"',
  resource: 'Arm::"arm-01"',
  grantedMs: 1000,
  expiresMs: 61_000,
  bundleRevision: 7,
  commandDigest: new Uint8Array(32).fill(1),
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
});
