import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { Database } from '../../src/store/state-db.js';
import { openStateDb } from '../../src/store/state-db.js';
import { EnvelopeError } from '../../src/envelope/errors.js';
import { MAX_TIME_MS, TrustedClock } from '../../src/store/trusted-clock.js';

const T0 = Date.UTC(2025, 5, 1);
const STEP = 60_000;

let tmp: string;
let dbFile: string;
const open: Database[] = [];

function openDb(): Database {
  const db = openStateDb(dbFile);
  open.push(db);
  return db;
}

/** Simulates a reboot: the database is closed and opened again by a new clock. */
function reboot(systemNow: () => number): TrustedClock {
  for (const db of open.splice(0)) db.close();
  return new TrustedClock(openDb(), systemNow, { persistStepMs: STEP });
}

beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-clock-'));
  dbFile = path.join(tmp, 'state.db');
});
afterEach(() => {
  for (const db of open.splice(0)) db.close();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('TrustedClock', () => {
  it('follows the system clock while it is ahead of the floor', () => {
    let system = T0;
    const clock = new TrustedClock(openDb(), () => system, { persistStepMs: STEP });
    expect(clock.now()).toBe(T0);
    clock.observe(T0 - 5000);
    system = T0 + 1000;
    expect(clock.now()).toBe(T0 + 1000);
  });

  it('never answers earlier than signed time it has seen', () => {
    let system = T0;
    const clock = new TrustedClock(openDb(), () => system, { persistStepMs: STEP });
    clock.observe(T0 + 10_000);
    expect(clock.now()).toBe(T0 + 10_000);
    system = 0; // clock set back to 1970
    expect(clock.now()).toBe(T0 + 10_000);
    clock.observe(T0); // an older signed time does not lower the floor
    expect(clock.floor()).toBe(T0 + 10_000);
  });

  it('keeps the floor across a reboot with a reset RTC', () => {
    const clock = new TrustedClock(openDb(), () => T0, { persistStepMs: STEP });
    clock.observe(T0 + STEP); // moved a whole step: written at once
    const after = reboot(() => 0);
    expect(after.floor()).toBe(T0 + STEP);
    expect(after.now()).toBe(T0 + STEP);
  });

  it('writes small advances lazily, but never loses a floor that now() handed out', () => {
    const first = new TrustedClock(openDb(), () => T0 + 3_600_000, { persistStepMs: STEP });
    first.observe(T0 + STEP); // written (first observation moves from 0)
    first.observe(T0 + STEP + 1000); // below a step past the stored floor: in memory only
    expect(first.now()).toBe(T0 + 3_600_000); // answered by the system clock, not the floor
    const lazy = reboot(() => 0);
    expect(lazy.floor()).toBe(T0 + STEP);

    lazy.observe(T0 + STEP + 2000); // in memory only...
    expect(lazy.now()).toBe(T0 + STEP + 2000); // ...until the floor is the answer: then it is written
    const relied = reboot(() => 0);
    expect(relied.now()).toBe(T0 + STEP + 2000);
  });

  it('persist() writes the current floor', () => {
    const clock = new TrustedClock(openDb(), () => T0 + 3_600_000, { persistStepMs: STEP });
    clock.observe(T0 + STEP);
    clock.observe(T0 + STEP + 10);
    clock.persist();
    expect(reboot(() => 0).floor()).toBe(T0 + STEP + 10);
  });

  it('rejects nonsense signed times and keeps the floor', () => {
    const clock = new TrustedClock(openDb(), () => T0, { persistStepMs: STEP });
    clock.observe(T0);
    for (const bad of [Number.NaN, -1, Number.POSITIVE_INFINITY, MAX_TIME_MS + 1, Date.UTC(10000, 0, 1)]) {
      let code: string | undefined;
      try {
        clock.observe(bad);
      } catch (err) {
        code = (err as EnvelopeError).code;
      }
      expect(code).toBe('ENVELOPE_TIME_INVALID');
    }
    expect(clock.floor()).toBe(T0);
    clock.observe(MAX_TIME_MS);
    expect(clock.floor()).toBe(MAX_TIME_MS);
  });

  it('answers with the floor when the system clock gives no valid time', () => {
    let system = Number.NaN;
    const clock = new TrustedClock(openDb(), () => system, { persistStepMs: STEP });
    clock.observe(T0);
    expect(clock.now()).toBe(T0);
    system = -5;
    expect(clock.now()).toBe(T0);
    system = Number.POSITIVE_INFINITY;
    expect(clock.now()).toBe(T0);
  });

  it('refuses an invalid floor found in the database', () => {
    const db = openDb();
    new TrustedClock(db, () => T0);
    db.pragma('ignore_check_constraints = ON');
    db.prepare('UPDATE trusted_clock SET floor_ms = -1').run();
    let code: string | undefined;
    try {
      new TrustedClock(db, () => T0);
    } catch (err) {
      code = (err as { code?: string }).code;
    }
    expect(code).toBe('STATE_DB_CORRUPT');
  });
});
