import { civilFromDays, daysFromCivil, daysInMonth, floorDiv, floorMod } from './calendar.js';
import { Duration } from './duration.js';
import { ExtensionError } from './error.js';
import { compareBigInt, fitsI64 } from './int64.js';
import { quoteLiteral } from './quote.js';

export const DATETIME_TYPE = 'datetime';

// The five forms Cedar accepts: YYYY-MM-DD, then optionally Thh:mm:ss, optional .SSS, and
// Z or a ±hhmm offset.
const DATETIME_SHAPE =
  /^([0-9]{4})-([0-9]{2})-([0-9]{2})(?:T([0-9]{2}):([0-9]{2}):([0-9]{2})(?:\.([0-9]{3}))?(?:Z|([+-])([0-9]{2})([0-9]{2})))?$/;

const MS_PER_SECOND = 1000n;
const MS_PER_MINUTE = 60n * MS_PER_SECOND;
const MS_PER_HOUR = 60n * MS_PER_MINUTE;
const MS_PER_DAY = 24n * MS_PER_HOUR;

/** Cedar `datetime`: milliseconds since 1970-01-01T00:00:00Z (leap seconds ignored) in i64. */
export class Datetime {
  private constructor(readonly epochMs: bigint) {}

  static parse(text: string): Datetime {
    const match = DATETIME_SHAPE.exec(text);
    if (match === null) throw new ExtensionError(`invalid datetime pattern: ${quoteLiteral(text)}`);
    // Absent groups (a date alone, no milliseconds, `Z`) are undefined and take the defaults.
    const [, year, month, day, hour = '0', minute = '0', second = '0', millis = '0', sign, offsetHour = '0', offsetMinute = '0'] =
      match;
    const [y, mo, d] = [Number(year), Number(month), Number(day)];
    if (mo < 1 || mo > 12 || d < 1 || d > daysInMonth(y, mo)) throw new ExtensionError(`invalid date: ${quoteLiteral(text)}`);
    const [h, mi, s] = [Number(hour), Number(minute), Number(second)];
    // Second 60 is refused: a leap second cannot be told from a typo without a leap-second table.
    if (h > 23 || mi > 59 || s > 59) throw new ExtensionError(`invalid hour/minute/second: ${quoteLiteral(text)}`);
    const [oh, om] = [Number(offsetHour), Number(offsetMinute)];
    if (oh > 23 || om > 59) throw new ExtensionError(`invalid UTC offset: ${quoteLiteral(text)}`);
    const localMs =
      daysFromCivil(y, mo, d) * MS_PER_DAY +
      BigInt(h) * MS_PER_HOUR + BigInt(mi) * MS_PER_MINUTE + BigInt(s) * MS_PER_SECOND + BigInt(millis);
    const offsetMs = BigInt(oh) * MS_PER_HOUR + BigInt(om) * MS_PER_MINUTE;
    // A local time ahead of UTC (+hhmm) is earlier in UTC.
    return new Datetime(sign === '-' ? localMs + offsetMs : localMs - offsetMs);
  }

  static fromEpochMs(epochMs: bigint): Datetime {
    if (!fitsI64(epochMs)) throw new ExtensionError(`datetime ${epochMs}ms from the epoch overflows a 64-bit integer`);
    return new Datetime(epochMs);
  }

  offset(duration: Duration): Datetime {
    const epochMs = this.epochMs + duration.ms;
    if (!fitsI64(epochMs)) throw new ExtensionError(`overflow when adding an offset: ${this}+(${duration})`);
    return new Datetime(epochMs);
  }

  /** this − other. */
  durationSince(other: Datetime): Duration {
    const ms = this.epochMs - other.epochMs;
    if (!fitsI64(ms)) throw new ExtensionError(`overflow when computing the duration between ${this} and ${other}`);
    return Duration.fromMilliseconds(ms);
  }

  /** Midnight (UTC) of this instant's day; days before 1970 round down, not toward zero. */
  toDate(): Datetime {
    const epochMs = this.epochMs - floorMod(this.epochMs, MS_PER_DAY);
    if (!fitsI64(epochMs)) throw new ExtensionError(`overflow when computing the date of ${this}`);
    return new Datetime(epochMs);
  }

  /** Time since this instant's (UTC) midnight: always in [0, 24h). */
  toTime(): Duration {
    return Duration.fromMilliseconds(floorMod(this.epochMs, MS_PER_DAY));
  }

  compare(other: Datetime): number {
    return compareBigInt(this.epochMs, other.epochMs);
  }

  equals(other: Datetime): boolean {
    return this.epochMs === other.epochMs;
  }

  /**
   * `YYYY-MM-DDThh:mm:ss.SSSZ`, a literal Cedar accepts and parses back to this instant. Instants
   * outside years 0000–9999 (reachable only through `offset`) have no literal; they print as
   * Cedar prints every computed datetime: `datetime("1970-01-01").offset(duration("<ms>ms"))`.
   */
  toString(): string {
    const days = floorDiv(this.epochMs, MS_PER_DAY);
    const { year, month, day } = civilFromDays(days);
    if (year < 0n || year > 9999n) return `datetime("1970-01-01").offset(duration("${this.epochMs}ms"))`;
    const msOfDay = this.epochMs - days * MS_PER_DAY;
    const hour = msOfDay / MS_PER_HOUR;
    const minute = (msOfDay % MS_PER_HOUR) / MS_PER_MINUTE;
    const second = (msOfDay % MS_PER_MINUTE) / MS_PER_SECOND;
    const millis = msOfDay % MS_PER_SECOND;
    return (
      `${pad(year, 4)}-${pad(month, 2)}-${pad(day, 2)}` +
      `T${pad(hour, 2)}:${pad(minute, 2)}:${pad(second, 2)}.${pad(millis, 3)}Z`
    );
  }
}

function pad(value: bigint | number, width: number): string {
  return value.toString().padStart(width, '0');
}
