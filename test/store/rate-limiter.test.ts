import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { RateLimiter } from '../../src/store/rate-limiter.js';

const limit = { policyId: 'policy4', count: 3, periodMs: 60_000 };
const agent = 'Agent::"planner"';

describe('RateLimiter', () => {
  it('allows N per sliding period per principal and action, then recovers', () => {
    const rl = new RateLimiter(openStateDb(':memory:'));
    const t0 = 1_000_000;
    expect([0, 1, 2].map((i) => rl.consume([limit], agent, 'move', t0 + i).allowed)).toEqual([true, true, true]);
    const refused = rl.consume([limit], agent, 'move', t0 + 10);
    expect(refused).toEqual({ allowed: false, limit, retryAtMs: t0 + 60_000 });
    // Other principal and other action have their own budgets.
    expect(rl.consume([limit], 'Agent::"other"', 'move', t0 + 10).allowed).toBe(true);
    expect(rl.consume([limit], agent, 'grip', t0 + 10).allowed).toBe(true);
    // The first event leaves the window after one period.
    expect(rl.consume([limit], agent, 'move', t0 + 60_000).allowed).toBe(true);
    expect(rl.consume([limit], agent, 'move', t0 + 60_000).allowed).toBe(false);
  });

  it('counts nothing when any of several limits refuses', () => {
    const rl = new RateLimiter(openStateDb(':memory:'));
    const tight = { policyId: 'policy1', count: 1, periodMs: 1000 };
    const loose = { policyId: 'policy2', count: 2, periodMs: 1000 };
    expect(rl.consume([tight, loose], agent, 'move', 0).allowed).toBe(true);
    expect(rl.consume([tight, loose], agent, 'move', 1).allowed).toBe(false);
    expect(rl.consume([loose], agent, 'move', 2).allowed).toBe(true);
    expect(rl.consume([loose], agent, 'move', 3)).toMatchObject({ allowed: false, limit: loose });
  });

  it('keeps its counts across a restart', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ztedge-rate-')), 'state.db');
    let db = openStateDb(path);
    let rl = new RateLimiter(db);
    for (let i = 0; i < 3; i++) expect(rl.consume([limit], agent, 'move', 5000 + i).allowed).toBe(true);
    rl.flush();
    db.close();
    db = openStateDb(path);
    rl = new RateLimiter(db);
    expect(rl.consume([limit], agent, 'move', 5003).allowed).toBe(false);
    expect(rl.consume([limit], agent, 'move', 65_000).allowed).toBe(true);
    rl.flush();
    db.close();
  });
});
