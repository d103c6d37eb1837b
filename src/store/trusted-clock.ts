// Trusted time: the system clock, but never earlier than a floor that only trusted sources
// raise. A device whose RTC resets to 1970 on reboot, or whose clock is set back, therefore
// cannot re-accept expired commands or bundles.
//
// Trusted sources, and only these, raise the floor:
// - the local clock's own progress: the monotonic clock's elapsed time since the floor was last
//   set (never the wall clock's reading, so a wall clock set far ahead by mistake is forgotten
//   once it is corrected);
// - the `created` time of a bundle the agent activated (signed by k-of-n roots): observe();
// - signed time from the agent's upstream (a collector's acknowledgement): observeUpstream().
// Claims in a command or an approval never do: any key holder could otherwise push the time
// forward and have every honest command, the e-stop included, refused as expired. The command
// pipeline is given only now() and inDoubt().
//
// Persistence rule. The floor is stored in the state database and only ever raised. A raise from
// signed data is written when it moves `persistStepMs` or more past the stored value, and in any
// case before now() first answers with it (the floor is ahead of the system clock, so the answer
// comes from the floor). So every time value now() has handed out is at or below either the system
// clock or the stored floor, and after a crash now() never answers earlier than a signed floor a
// decision used. The monotonic progress on top is written by persist() (on the agent's
// housekeeping interval and at stop); up to one interval of it may be lost in a crash, which only
// makes the floor lower, never wrong.
import type { Database } from './state-db.js';
import { migrate, StateDbError } from './state-db.js';
import { EnvelopeError } from '../envelope/errors.js';

/** 9999-12-31T23:59:59.999Z: later "times" are nonsense, not a clock reading. */
export const MAX_TIME_MS = 253_402_300_799_999;

export interface TrustedClockOptions {
  /** How far a signed raise may move past the stored value before it is written (default 60 s). */
  persistStepMs?: number;
  /** Monotonic milliseconds (default performance.now): how the local clock's progress is measured. */
  monotonicNow?: () => number;
}

/** What the command pipeline may ask of trusted time: read it, never raise it. */
export interface TimeSource {
  now(): number;
  /**
   * True when the system clock gives no valid time or reads earlier than the floor: trusted
   * time then comes from the floor, which is only a lower bound of the real time.
   */
  inDoubt(): boolean;
}

const MIGRATIONS = [
  `CREATE TABLE trusted_clock (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     floor_ms INTEGER NOT NULL CHECK (floor_ms BETWEEN 0 AND ${MAX_TIME_MS})
   ) STRICT;
   INSERT INTO trusted_clock (id, floor_ms) VALUES (1, 0);`,
];

const DEFAULT_PERSIST_STEP_MS = 60_000;

export class TrustedClock implements TimeSource {
  private readonly persistStepMs: number;
  private readonly monotonicNow: () => number;
  private readonly writeFloor;
  /** The floor as last set (stored or raised by a signed time), at monotonic time `anchorMono`. */
  private anchorMs: number;
  private anchorMono: number;
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
    this.monotonicNow = opts.monotonicNow ?? (() => performance.now());
    migrate(db, 'trusted_clock', MIGRATIONS);
    this.writeFloor = db.prepare<[number]>('UPDATE trusted_clock SET floor_ms = max(floor_ms, ?) WHERE id = 1');
    const stored = (db.prepare('SELECT floor_ms FROM trusted_clock WHERE id = 1').get() as { floor_ms: unknown } | undefined)
      ?.floor_ms;
    if (!isValidTime(stored)) {
      throw new StateDbError('STATE_DB_CORRUPT', `trusted clock floor in the state database is invalid: ${String(stored)}`);
    }
    this.anchorMs = stored;
    this.anchorMono = this.monotonicNow();
    this.storedFloorMs = stored;
  }

  /**
   * Trusted now: max(system clock, floor). A system clock reading that is not a valid time
   * (NaN, negative, past year 9999) counts as absent, and the floor answers.
   */
  now(): number {
    const floor = this.floor();
    const system = this.systemNow();
    if (isValidTime(system) && system >= floor) return Math.floor(system);
    if (this.anchorMs > this.storedFloorMs) this.persist();
    return floor;
  }

  inDoubt(): boolean {
    const system = this.systemNow();
    return !isValidTime(system) || system < this.floor();
  }

  /** Raises the floor to the `created` time of a bundle the agent activated (signed by its roots). */
  observe(signedTimeMs: number): void {
    this.raise(signedTimeMs);
  }

  /**
   * Raises the floor to a time signed by the agent's upstream (e.g. in a collector's
   * acknowledgement), once its signature has been checked against a pinned key.
   */
  observeUpstream(signedTimeMs: number): void {
    this.raise(signedTimeMs);
  }

  /** The current floor: the last trusted time set, plus the local clock's progress since. */
  floor(): number {
    const elapsed = this.monotonicNow() - this.anchorMono;
    return Math.min(MAX_TIME_MS, this.anchorMs + (elapsed > 0 ? Math.floor(elapsed) : 0));
  }

  /** Writes the floor now (on the housekeeping interval and on orderly shutdown). */
  persist(): void {
    const floor = this.floor();
    if (floor <= this.storedFloorMs) return;
    this.writeFloor.run(floor);
    this.storedFloorMs = floor;
  }

  private raise(signedTimeMs: number): void {
    if (!isValidTime(signedTimeMs)) {
      throw new EnvelopeError(
        'ENVELOPE_TIME_INVALID',
        `signed time ${signedTimeMs} is not between 0 and ${MAX_TIME_MS} ms since the epoch`,
      );
    }
    const time = Math.floor(signedTimeMs);
    if (time <= this.floor()) return;
    this.anchorMs = time;
    this.anchorMono = this.monotonicNow();
    if (time - this.storedFloorMs >= this.persistStepMs) this.persist();
  }
}

function isValidTime(value: unknown): value is number {
  return typeof value === 'number' && Number.isFinite(value) && value >= 0 && value <= MAX_TIME_MS;
}
