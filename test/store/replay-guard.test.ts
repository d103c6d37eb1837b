import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import fc from 'fast-check';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../src/store/state-db.js';
import { migrate, openStateDb } from '../../src/store/state-db.js';
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

/** A key id (16 bytes) named for readability. */
function kid(name: string): Uint8Array {
  return new TextEncoder().encode(name.padEnd(16, '.'));
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
  it('accepts a command once, keyed on (key id, cti)', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    const exp = T0 + 60_000;
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: exp }, T0);
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: exp }, T0 + 1))).toBe('ENVELOPE_REPLAY');
    // A later exp on the same claims is still the same command id from the same issuer.
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: exp + 5000 }, T0 + 2))).toBe(
      'ENVELOPE_REPLAY',
    );
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('planner'), cti: cti(1), expMs: exp }, T0))).toBeUndefined();
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: cti(2), expMs: exp }, T0))).toBeUndefined();
    expect(guard.size()).toBe(3);
  });

  it('compares cti by content, whatever buffer view carries it', () => {
    const guard = new ReplayGuard(openDb());
    const backing = new Uint8Array(64);
    backing.set(cti(7), 20);
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(7), expMs: T0 + 60_000 }, T0);
    const view = backing.subarray(20, 36);
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: view, expMs: T0 + 60_000 }, T0))).toBe('ENVELOPE_REPLAY');
  });

  it('remembers accepted commands across a restart', () => {
    const first = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    first.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: T0 + 60_000 }, T0);
    first.checkAndRecord({ keyId: kid('ops'), cti: cti(2), expMs: T0 + 60_000 }, T0);
    open[0].close();

    const second = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    expect(second.size()).toBe(2);
    expect(codeOf(() => second.checkAndRecord({ keyId: kid('ops'), cti: cti(2), expMs: T0 + 60_000 }, T0 + 10))).toBe(
      'ENVELOPE_REPLAY',
    );
    expect(codeOf(() => second.checkAndRecord({ keyId: kid('ops'), cti: cti(3), expMs: T0 + 60_000 }, T0 + 10))).toBeUndefined();
  });

  it('keeps an entry until exp + skew and prunes it after', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: SKEW, pruneIntervalMs: 3_600_000 });
    const exp = T0 + 10_000;
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: exp }, T0);
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(2), expMs: exp + 50_000 }, T0);

    expect(guard.prune(exp + SKEW - 1)).toBe(0);
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: exp }, exp + SKEW - 1))).toBe(
      'ENVELOPE_REPLAY',
    );
    expect(guard.prune(exp + SKEW)).toBe(1);
    expect(guard.size()).toBe(1);
    // Once pruned, the same envelope is refused as expired, never accepted again.
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: exp }, exp + SKEW))).toBe(
      'ENVELOPE_EXPIRED',
    );
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: cti(2), expMs: exp + 50_000 }, exp + SKEW))).toBe(
      'ENVELOPE_REPLAY',
    );
  });

  it('refuses, after a prune, what it may have forgotten even if the clock goes back (also after restart)', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: T0 + 10_000 }, T0);
    const later = T0 + 3_600_000;
    expect(guard.prune(later)).toBe(1);
    open[0].close();

    // The clock now reads T0 again (an RTC reset): the pruned command is not yet expired by it.
    const restarted = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    expect(codeOf(() => restarted.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: T0 + 10_000 }, T0 + 1))).toBe(
      'ENVELOPE_EXPIRED',
    );
    expect(
      codeOf(() => restarted.checkAndRecord({ keyId: kid('ops'), cti: cti(9), expMs: later + 60_000 }, T0 + 1)),
    ).toBeUndefined();
  });

  it('prunes on its own once the interval has passed', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: 0, pruneIntervalMs: 60_000 });
    for (let i = 0; i < 5; i++) guard.checkAndRecord({ keyId: kid('ops'), cti: cti(i), expMs: T0 + 1000 }, T0);
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(100), expMs: T0 + 120_000 }, T0 + 30_000);
    expect(guard.size()).toBe(6);
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(101), expMs: T0 + 120_000 }, T0 + 60_000);
    expect(guard.size()).toBe(2);
  });

  it('fails closed when full of live entries, and never evicts one', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: 0, maxEntries: 3 });
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(1), expMs: T0 + 10_000 }, T0);
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(2), expMs: T0 + 20_000 }, T0);
    guard.checkAndRecord({ keyId: kid('ops'), cti: cti(3), expMs: T0 + 20_000 }, T0);
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: cti(4), expMs: T0 + 20_000 }, T0 + 1))).toBe(
      'ENVELOPE_REPLAY_STORE_FULL',
    );
    for (const n of [1, 2, 3]) {
      expect(codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: cti(n), expMs: T0 + 20_000 }, T0 + 2))).toBe(
        'ENVELOPE_REPLAY',
      );
    }
    // Once cti 1 has expired there is room again.
    expect(
      codeOf(() => guard.checkAndRecord({ keyId: kid('ops'), cti: cti(4), expMs: T0 + 20_000 }, T0 + 10_000)),
    ).toBeUndefined();
    expect(guard.size()).toBe(3);
  });

  it('joins an enclosing transaction: a rolled-back record is forgotten and frees its capacity', () => {
    const db = openDb();
    const guard = new ReplayGuard(db, { clockSkewMs: 0, maxEntries: 1 });
    const entry = { keyId: kid('ops'), cti: cti(1), expMs: T0 + 60_000 };
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

  it('keeps (key id, cti) apart per key: nobody can use up another signer\'s cti', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: SKEW });
    const entry = { cti: cti(1), expMs: T0 + 60_000 };
    guard.checkAndRecord({ keyId: kid('mallory'), ...entry }, T0);
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('planner'), ...entry }, T0))).toBeUndefined();
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('planner'), ...entry }, T0))).toBe('ENVELOPE_REPLAY');
  });

  it('gives each key its share of the store when told how many keys share it', () => {
    const guard = new ReplayGuard(openDb(), { clockSkewMs: 0, maxEntries: 10, pruneIntervalMs: 1_000_000 });
    for (let n = 0; n < 5; n++) guard.checkAndRecord({ keyId: kid('mallory'), cti: cti(n), expMs: T0 + 60_000 }, T0, 2);
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('mallory'), cti: cti(5), expMs: T0 + 60_000 }, T0, 2))).toBe('ENVELOPE_REPLAY_QUOTA');
    for (let n = 0; n < 5; n++) expect(codeOf(() => guard.checkAndRecord({ keyId: kid('planner'), cti: cti(n), expMs: T0 + 1000 }, T0, 2))).toBeUndefined();
    // Reservations count too, and expired entries make room again.
    expect(() => guard.reserve({ keyId: kid('planner'), cti: cti(9), expMs: T0 + 60_000 }, T0, 2)).toThrow(/share/);
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('planner'), cti: cti(10), expMs: T0 + 60_000 }, T0 + 1001, 2))).toBeUndefined();
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('mallory'), cti: cti(6), expMs: T0 + 60_000 }, T0 + 1001, 2))).toBe('ENVELOPE_REPLAY_QUOTA');
  });

  it('migrates the earlier (iss, cti) table: its live rows refuse their cti under every key until they expire', () => {
    const db = openDb();
    // The schema of the first version, with rows written by an agent before the upgrade.
    migrate(db, 'replay', [
      `CREATE TABLE replay_seen (issuer TEXT NOT NULL, cti BLOB NOT NULL, expires_ms INTEGER NOT NULL, PRIMARY KEY (issuer, cti)) STRICT, WITHOUT ROWID;
       CREATE INDEX replay_seen_expiry ON replay_seen (expires_ms);
       CREATE TABLE replay_watermark (id INTEGER PRIMARY KEY CHECK (id = 1), pruned_through_ms INTEGER NOT NULL) STRICT;
       INSERT INTO replay_watermark (id, pruned_through_ms) VALUES (1, 0);`,
    ]);
    const insert = db.prepare('INSERT INTO replay_seen (issuer, cti, expires_ms) VALUES (?, ?, ?)');
    insert.run('planner', Buffer.from(cti(1)), T0 + 60_000);
    insert.run('mallory', Buffer.from(cti(1)), T0 + 90_000);
    insert.run('planner', Buffer.from(cti(2)), T0 + 10_000);
    const guard = new ReplayGuard(db, { clockSkewMs: 0, pruneIntervalMs: 1_000_000 });
    expect(guard.size()).toBe(2);
    for (const signer of ['planner', 'mallory', 'anyone']) {
      expect(codeOf(() => guard.checkAndRecord({ keyId: kid(signer), cti: cti(1), expMs: T0 + 60_000 }, T0 + 1))).toBe('ENVELOPE_REPLAY');
    }
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('planner'), cti: cti(3), expMs: T0 + 60_000 }, T0 + 1))).toBeUndefined();
    // Once the migrated rows have expired (and are pruned), the cti is each signer's own again.
    guard.prune(T0 + 90_000);
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('planner'), cti: cti(1), expMs: T0 + 150_000 }, T0 + 90_001))).toBeUndefined();
    expect(codeOf(() => guard.checkAndRecord({ keyId: kid('mallory'), cti: cti(1), expMs: T0 + 150_000 }, T0 + 90_001))).toBeUndefined();
  });

  it('rejects malformed entries without recording anything', () => {
    const guard = new ReplayGuard(openDb());
    const ok = { keyId: kid('ops'), cti: cti(1), expMs: T0 + 60_000 };
    const bad = [
      { ...ok, keyId: new Uint8Array(0) },
      { ...ok, keyId: new Uint8Array(65) },
      { ...ok, keyId: 'ops' as unknown as Uint8Array },
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
              guard.checkAndRecord({ keyId: kid(step.issuer), cti: cti(step.id), expMs: now + step.lifetime }, now),
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
