// Trusted time: the system clock, but never earlier than a floor raised by times seen in verified
// signed data (command iat, bundle creation). A device whose RTC resets to 1970 on reboot, or
// whose clock is set back, therefore cannot re-accept expired commands or bundles.
//
// Persistence rule. The floor is stored in the state database and only ever raised. observe()
// raises it in memory and writes it when it has moved `persistStepMs` or more past the stored
// value, so a steady stream of signed times costs one write per step, not one per command.
// The part not yet written is never relied on: whenever now() would answer with the floor (the
// floor is ahead of the system clock, so the answer comes from the floor), the floor is written
// first. So every time value now() has handed out is at or below either the system clock or the
// stored floor, and after a crash now() never answers earlier than the floor a decision used.
// Signed times the floor rose to but no decision used may be lost up to `persistStepMs`.
//
// Only signed data raises the floor; the system clock never does, so a clock set far ahead by
// mistake is forgotten once it is corrected.
import type { Database } from './state-db.js';
import { migrate, StateDbError } from './state-db.js';
import { EnvelopeError } from '../envelope/errors.js';

/** 9999-12-31T23:59:59.999Z: later "times" are nonsense, not a clock reading. */
export const MAX_TIME_MS = 253_402_300_799_999;

export interface TrustedClockOptions {
  /** How far the floor may move past the stored value before observe() writes it (default 60 s). */
  persistStepMs?: number;
}

const MIGRATIONS = [
  `CREATE TABLE trusted_clock (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     floor_ms INTEGER NOT NULL CHECK (floor_ms BETWEEN 0 AND ${MAX_TIME_MS})
   ) STRICT;
   INSERT INTO trusted_clock (id, floor_ms) VALUES (1, 0);`,
];

const DEFAULT_PERSIST_STEP_MS = 60_000;

export class TrustedClock {
  private readonly persistStepMs: number;
  private readonly writeFloor;
  private floorMs: number;
  private storedFloorMs: number;

  constructor(
    db: Database,
    private readonly systemNow: () => number,
    opts: TrustedClockOptions = {},
  ) {
    const step = opts.persistStepMs ?? DEFAULT_PERSIST_STEP_MS;
    if (!Number.isSafeInteger(step) || step < 0) {
      throw new RangeError(`TrustedClock persistStepMs must be a non-negative integer, got ${step}`);
    }
    this.persistStepMs = step;
    migrate(db, 'trusted_clock', MIGRATIONS);
    this.writeFloor = db.prepare<[number]>('UPDATE trusted_clock SET floor_ms = max(floor_ms, ?) WHERE id = 1');
    const stored = (db.prepare('SELECT floor_ms FROM trusted_clock WHERE id = 1').get() as { floor_ms: unknown } | undefined)
      ?.floor_ms;
    if (!isValidTime(stored)) {
      throw new StateDbError('STATE_DB_CORRUPT', `trusted clock floor in the state database is invalid: ${String(stored)}`);
    }
    this.floorMs = stored;
    this.storedFloorMs = stored;
  }

  /**
   * Trusted now: max(system clock, floor). A system clock reading that is not a valid time
   * (NaN, negative, past year 9999) counts as absent, and the floor answers.
   */
  now(): number {
    const system = this.systemNow();
    if (isValidTime(system) && system >= this.floorMs) return Math.floor(system);
    if (this.floorMs > this.storedFloorMs) this.persist();
    return this.floorMs;
  }

  /** Raises the floor to a time taken from verified signed data. */
  observe(signedTimeMs: number): void {
    if (!isValidTime(signedTimeMs)) {
      throw new EnvelopeError(
        'ENVELOPE_TIME_INVALID',
        `signed time ${signedTimeMs} is not between 0 and ${MAX_TIME_MS} ms since the epoch`,
      );
    }
    const time = Math.floor(signedTimeMs);
    if (time <= this.floorMs) return;
    this.floorMs = time;
    if (this.floorMs - this.storedFloorMs >= this.persistStepMs) this.persist();
  }

  /** The current floor (possibly ahead of the stored one by less than persistStepMs). */
  floor(): number {
    return this.floorMs;
  }

  /** Writes the floor now (e.g. on orderly shutdown). */
  persist(): void {
    if (this.floorMs <= this.storedFloorMs) return;
    this.writeFloor.run(this.floorMs);
    this.storedFloorMs = this.floorMs;
  }
}

function isValidTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= MAX_TIME_MS;
}
