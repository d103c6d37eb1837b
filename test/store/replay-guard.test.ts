import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../src/store/state-db.js';
import { openStateDb } from '../../src/store/state-db.js';
import { EnvelopeError } from '../../src/envelope/errors.js';
import { ReplayGuard } from '../../src/store/replay-guard.js';

const T0 = Date.UTC(2025, 0, 1);
const SKEW = 30_000;

let tmp: string;
let dbFile: string;
const open: Database[] = [];

function openDb(): Database {
  const db = openStateDb(dbFile);
  open.push(db);
  return db;
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-replay-'));
  dbFile = path.join(tmp, 'state.db');
});
afterEach(() => {
  for (const db of open.splice(0)) if (db.open) db.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function cti(n: number): Uint8Array {
  const bytes = new Uint8Array(16);
  new DataView(bytes.buffer).setUint32(12, n);
  return bytes;
}

function codeOf(run: () => unknown): string | undefined {
  try {
    run();
  } catch (err) {
    if (err instanceof EnvelopeError) return err.code;
    throw err;
  }
  return undefined;
}

describe('ReplayGuard', () => {
  it('accepts a command once, keyed on (issuer, cti)', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    const exp = T0 + 60_000;
    guard.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: exp }, T0);
    expect(codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: exp }, T0 + 1))).toBe('ENVELOPE_REPLAY');
    // A later exp on the same claims is still the same command id from the same issuer.
    expect(codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: exp + 5000 }, T0 + 2))).toBe(
      'ENVELOPE_REPLAY',
    );
    expect(codeOf(() => guard.checkAndRecord({ issuer: 'planner', cti: cti(1), expMs: exp }, T0))).toBeUndefined();
    expect(codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: cti(2), expMs: exp }, T0))).toBeUndefined();
    expect(guard.size()).toBe(3);
  });

  it('compares cti by content, whatever buffer view carries it', () => {
    const guard = new ReplayGuard(openDb());
    const backing = new Uint8Array(64);
    backing.set(cti(7), 20);
    guard.checkAndRecord({ issuer: 'ops', cti: cti(7), expMs: T0 + 60_000 }, T0);
    const view = backing.subarray(20, 36);
    expect(codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: view, expMs: T0 + 60_000 }, T0))).toBe('ENVELOPE_REPLAY');
  });

  it('remembers accepted commands across a restart', () => {
    const first = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    first.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: T0 + 60_000 }, T0);
    first.checkAndRecord({ issuer: 'ops', cti: cti(2), expMs: T0 + 60_000 }, T0);
    open[0].close();

    const second = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    expect(second.size()).toBe(2);
    expect(codeOf(() => second.checkAndRecord({ issuer: 'ops', cti: cti(2), expMs: T0 + 60_000 }, T0 + 10))).toBe(
      'ENVELOPE_REPLAY',
    );
    expect(codeOf(() => second.checkAndRecord({ issuer: 'ops', cti: cti(3), expMs: T0 + 60_000 }, T0 + 10))).toBeUndefined();
  });

  it('keeps an entry until exp + skew and prunes it after', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: SKEW, pruneIntervalMs: 3_600_000 });
    const exp = T0 + 10_000;
    guard.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: exp }, T0);
    guard.checkAndRecord({ issuer: 'ops', cti: cti(2), expMs: exp + 50_000 }, T0);

    expect(guard.prune(exp + SKEW - 1)).toBe(0);
    expect(codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: exp }, exp + SKEW - 1))).toBe(
      'ENVELOPE_REPLAY',
    );
    expect(guard.prune(exp + SKEW)).toBe(1);
    expect(guard.size()).toBe(1);
    // Once pruned, the same envelope is refused as expired, never accepted again.
    expect(codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: exp }, exp + SKEW))).toBe(
      'ENVELOPE_EXPIRED',
    );
    expect(codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: cti(2), expMs: exp + 50_000 }, exp + SKEW))).toBe(
      'ENVELOPE_REPLAY',
    );
  });

  it('refuses, after a prune, what it may have forgotten even if the clock goes back (also after restart)', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    guard.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: T0 + 10_000 }, T0);
    const later = T0 + 3_600_000;
    expect(guard.prune(later)).toBe(1);
    open[0].close();

    // The clock now reads T0 again (an RTC reset): the pruned command is not yet expired by it.
    const restarted = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    expect(codeOf(() => restarted.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: T0 + 10_000 }, T0 + 1))).toBe(
      'ENVELOPE_EXPIRED',
    );
    expect(
      codeOf(() => restarted.checkAndRecord({ issuer: 'ops', cti: cti(9), expMs: later + 60_000 }, T0 + 1)),
    ).toBeUndefined();
  });

  it('prunes on its own once the interval has passed', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: 0, pruneIntervalMs: 60_000 });
    for (let i = 0; i < 5; i++) guard.checkAndRecord({ issuer: 'ops', cti: cti(i), expMs: T0 + 1000 }, T0);
    guard.checkAndRecord({ issuer: 'ops', cti: cti(100), expMs: T0 + 120_000 }, T0 + 30_000);
    expect(guard.size()).toBe(6);
    guard.checkAndRecord({ issuer: 'ops', cti: cti(101), expMs: T0 + 120_000 }, T0 + 60_000);
    expect(guard.size()).toBe(2);
  });

  it('fails closed when full of live entries, and never evicts one', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: 0, maxEntries: 3 });
    guard.checkAndRecord({ issuer: 'ops', cti: cti(1), expMs: T0 + 10_000 }, T0);
    guard.checkAndRecord({ issuer: 'ops', cti: cti(2), expMs: T0 + 20_000 }, T0);
    guard.checkAndRecord({ issuer: 'ops', cti: cti(3), expMs: T0 + 20_000 }, T0);
    expect(codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: cti(4), expMs: T0 + 20_000 }, T0 + 1))).toBe(
      'ENVELOPE_REPLAY_STORE_FULL',
    );
    for (const n of [1, 2, 3]) {
      expect(codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: cti(n), expMs: T0 + 20_000 }, T0 + 2))).toBe(
        'ENVELOPE_REPLAY',
      );
    }
    // Once cti 1 has expired there is room again.
    expect(
      codeOf(() => guard.checkAndRecord({ issuer: 'ops', cti: cti(4), expMs: T0 + 20_000 }, T0 + 10_000)),
    ).toBeUndefined();
    expect(guard.size()).toBe(3);
  });

  it('joins an enclosing transaction: a rolled-back record is forgotten and frees its capacity', () => {
    const db = openDb();
    const guard = new ReplayGuard(db, { clockSkewMs: 0, maxEntries: 1 });
    const entry = { issuer: 'ops', cti: cti(1), expMs: T0 + 60_000 };
    const withAudit = db.transaction((fail: boolean) => {
      guard.checkAndRecord(entry, T0);
      if (fail) throw new Error('audit append failed');
    });
    expect(() => withAudit(true)).toThrow('audit append failed');
    expect(guard.size()).toBe(0);
    withAudit(false);
    expect(codeOf(() => guard.checkAndRecord(entry, T0 + 1))).toBe('ENVELOPE_REPLAY');
    expect(codeOf(() => guard.checkAndRecord({ ...entry, cti: cti(2) }, T0 + 1))).toBe('ENVELOPE_REPLAY_STORE_FULL');
  });

  it('rejects malformed entries without recording anything', () => {
    const guard = new ReplayGuard(openDb());
    const ok = { issuer: 'ops', cti: cti(1), expMs: T0 + 60_000 };
    const bad = [
      { ...ok, issuer: '' },
      { ...ok, issuer: 'x'.repeat(1025) },
      { ...ok, cti: new Uint8Array(0) },
      { ...ok, cti: new Uint8Array(65) },
      { ...ok, cti: 'not bytes' as unknown as Uint8Array },
      { ...ok, expMs: Number.NaN },
      { ...ok, expMs: 1.5 },
      { ...ok, expMs: -1 },
    ];
    for (const entry of bad) expect(codeOf(() => guard.checkAndRecord(entry, T0))).toBe('ENVELOPE_MALFORMED');
    expect(codeOf(() => guard.checkAndRecord(ok, Number.POSITIVE_INFINITY))).toBe('ENVELOPE_MALFORMED');
    expect(guard.size()).toBe(0);
  });

  it('matches a model of the window over random command sequences', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            issuer: fc.constantFrom('a', 'b'),
            id: fc.integer({ min: 0, max: 5 }),
            lifetime: fc.integer({ min: -2000, max: 5000 }),
            advance: fc.integer({ min: 0, max: 3000 }),
            prune: fc.boolean(),
          }),
          { maxLength: 60 },
        ),
        (steps) => {
          const db = openStateDb(':memory:');
          open.push(db);
          const skew = 500;
          const guard = new ReplayGuard(db, { clockSkewMs: skew, maxEntries: 1_000_000, pruneIntervalMs: 1_000_000 });
          const live = new Map<string, number>();
          let watermark = 0;
          let now = T0;
          for (const step of steps) {
            now += step.advance;
            if (step.prune) {
              guard.prune(now);
              watermark = Math.max(watermark, now);
            }
            const key = `${step.issuer}/${step.id}`;
            const expires = now + step.lifetime + skew;
            const expected =
              expires <= now || expires <= watermark
                ? 'ENVELOPE_EXPIRED'
                : (live.get(key) ?? 0) > now
                  ? 'ENVELOPE_REPLAY'
                  : undefined;
            const actual = codeOf(() =>
              guard.checkAndRecord({ issuer: step.issuer, cti: cti(step.id), expMs: now + step.lifetime }, now),
            );
            expect(actual).toBe(expected);
            if (expected === undefined) live.set(key, expires);
          }
        },
      ),
      { numRuns: 100 },
    );
  });
});
