import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { DecisionCache, contextReadsOf, decisionKey } from '../../src/store/decision-cache.js';
import { Entities, PolicySet, enforce, requestFromJson } from '../../src/policy/index.js';

const policies = PolicySet.fromText(`
permit (principal, action == Action::"move", resource) when { context.args.speed < 100 };
forbid (principal, action, resource) when { context has zone && context.zone == "C" };
`);
const entities = Entities.empty();
const request = (context: object, principal = 'a') =>
  requestFromJson({ principal: { type: 'User', id: principal }, action: { type: 'Action', id: 'move' }, resource: { type: 'Arm', id: '1' }, context });

describe('decision cache', () => {
  it('keys on exactly the context paths the policies read, including their absence', () => {
    const reads = contextReadsOf(policies);
    expect(reads).toEqual([['args', 'speed'], ['zone']]);
    const key = (ctx: object, p?: string) => decisionKey('d1', request(ctx, p), reads);
    const base = key({ args: { speed: 5n }, note: 'x' });
    expect(key({ args: { speed: 5n }, note: 'other' })).toBe(base); // unread attribute
    expect(key({ args: { speed: 6n }, note: 'x' })).not.toBe(base);
    expect(key({ args: { speed: 5n }, zone: 'A' })).not.toBe(base); // present vs absent
    expect(key({ args: { speed: 5n } }, 'b')).not.toBe(base);
    expect(decisionKey('d2', request({ args: { speed: 5n } }), reads)).not.toBe(base);
    expect(contextReadsOf(PolicySet.fromText('permit (principal, action, resource) when { context == {} };'))).toBe('all');
  });

  it('serves entries until their TTL, evicts the least recently used, and survives a reopen through the table', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ztedge-dcache-')), 'state.db');
    let db = openStateDb(path);
    let cache = new DecisionCache(db, 2);
    const reads = contextReadsOf(policies);
    const req = (speed: bigint) => request({ args: { speed } });
    const k = (speed: bigint) => decisionKey('d', req(speed), reads);
    const d1 = enforce(policies, entities, req(1n));
    cache.set(k(1n), d1, 0, 1000);
    cache.set(k(2n), enforce(policies, entities, req(2n)), 0, 1000);
    expect(cache.get(k(1n), 999)).toEqual(d1);
    cache.set(k(3n), enforce(policies, entities, req(3n)), 0, 1000); // evicts k(2) from memory
    expect(cache.counters()).toMatchObject({ hits: 1, size: 2 });
    expect(cache.get(k(2n), 10)).toBeDefined(); // from the table
    expect(cache.counters().tableHits).toBe(1);
    expect(cache.get(k(1n), 1000)).toBeUndefined(); // expired
    db.close();
    db = openStateDb(path);
    cache = new DecisionCache(db, 10);
    expect(cache.get(k(3n), 500)?.decision).toBe('allow');
    cache.clear();
    expect(cache.get(k(3n), 500)).toBeUndefined();
    db.close();
  });

  it('stores nothing with a zero TTL and works memory-only', () => {
    const cache = new DecisionCache(null, 4);
    const key = decisionKey('d', request({ args: { speed: 1n } }), 'all');
    cache.set(key, enforce(policies, entities, request({ args: { speed: 1n } })), 0, 0);
    expect(cache.get(key, 0)).toBeUndefined();
    expect(cache.counters()).toEqual({ hits: 0, misses: 1, tableHits: 0, size: 0 });
  });
});
