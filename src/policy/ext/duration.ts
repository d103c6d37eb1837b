import { ExtensionError } from './error.js';
import { compareBigInt, fitsI64 } from './int64.js';
import { quoteLiteral } from './quote.js';

export const DURATION_TYPE = 'duration';

// Cedar's grammar: an optional `-`, then quantity-unit pairs, largest unit first, each unit at
// most once. The empty string and a lone `-` match the pattern but are refused separately.
const DURATION_SHAPE = /^(-?)(?:([0-9]+)d)?(?:([0-9]+)h)?(?:([0-9]+)m)?(?:([0-9]+)s)?(?:([0-9]+)ms)?$/;
const UNIT_MS = [86_400_000n, 3_600_000n, 60_000n, 1000n, 1n] as const;
// No quantity with more significant digits than i64 max (19) can fit.
const MAX_QUANTITY_DIGITS = 19;

/** Cedar `duration`: a signed number of milliseconds in i64. */
export class Duration {
  private constructor(readonly ms: bigint) {}

  static parse(text: string): Duration {
    const match = text === '' || text === '-' ? null : DURATION_SHAPE.exec(text);
    if (match === null) throw new ExtensionError(`invalid duration pattern: ${quoteLiteral(text)}`);
    let magnitude = 0n;
    UNIT_MS.forEach((unitMs, index) => {
      const quantity = match[index + 2];
      if (quantity === undefined) return;
      const significant = quantity.replace(/^0+/, '');
      if (significant.length > MAX_QUANTITY_DIGITS) throw overflow(text);
      magnitude += BigInt(significant || '0') * unitMs;
    });
    // Every term has the same sign, so checking the total is the same as checking each step.
    const ms = match[1] === '-' ? -magnitude : magnitude;
    if (!fitsI64(ms)) throw overflow(text);
    return new Duration(ms);
  }

  static fromMilliseconds(ms: bigint): Duration {
    if (!fitsI64(ms)) throw new ExtensionError(`duration of ${ms}ms overflows a 64-bit integer`);
    return new Duration(ms);
  }

  // Each conversion truncates toward zero, as Cedar's (Rust's) integer division does.
  toMilliseconds(): bigint {
    return this.ms;
  }

  toSeconds(): bigint {
    return this.ms / 1000n;
  }

  toMinutes(): bigint {
    return this.toSeconds() / 60n;
  }

  toHours(): bigint {
    return this.toMinutes() / 60n;
  }

  toDays(): bigint {
    return this.toHours() / 24n;
  }

  compare(other: Duration): number {
    return compareBigInt(this.ms, other.ms);
  }

  equals(other: Duration): boolean {
    return this.ms === other.ms;
  }

  /** Cedar's canonical form: the whole duration in milliseconds (`-90000ms`). */
  toString(): string {
    return `${this.ms}ms`;
  }
}

function overflow(text: string): ExtensionError {
  return new ExtensionError(`duration ${quoteLiteral(text)} overflows a 64-bit millisecond count`);
}
