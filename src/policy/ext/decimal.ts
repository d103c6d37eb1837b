import { ExtensionError } from './error.js';
import { compareBigInt, fitsI64 } from './int64.js';
import { quoteLiteral } from './quote.js';

export const DECIMAL_TYPE = 'decimal';

const FRACTION_DIGITS = 4;
const SCALE = 10n ** BigInt(FRACTION_DIGITS);
// Cedar's grammar: at least one digit on each side of the point, no exponent, no `+`.
const DECIMAL_SHAPE = /^(-?)([0-9]+)\.([0-9]+)$/;
// i64 max / 10^4 has 15 integer digits: a 16th significant digit always overflows.
const MAX_WHOLE_DIGITS = 15;

/** Cedar `decimal`: a fixed-point number with four fractional digits, stored as value × 10^4 in i64. */
export class Decimal {
  private constructor(readonly scaled: bigint) {}

  static parse(text: string): Decimal {
    const match = DECIMAL_SHAPE.exec(text);
    if (match === null) throw new ExtensionError(`${quoteLiteral(text)} is not a well-formed decimal value`);
    const [, sign, whole, fraction] = match;
    if (fraction.length > FRACTION_DIGITS) {
      throw new ExtensionError(`too many digits after the decimal in ${quoteLiteral(text)} (at most ${FRACTION_DIGITS})`);
    }
    // Leading zeros are allowed in any number; strip them so a long literal costs nothing.
    const significant = whole.replace(/^0+/, '');
    if (significant.length > MAX_WHOLE_DIGITS) throw overflow(text);
    const magnitude = BigInt(significant || '0') * SCALE + BigInt(fraction.padEnd(FRACTION_DIGITS, '0'));
    const scaled = sign === '-' ? -magnitude : magnitude;
    if (!fitsI64(scaled)) throw overflow(text);
    return new Decimal(scaled);
  }

  compare(other: Decimal): number {
    return compareBigInt(this.scaled, other.scaled);
  }

  equals(other: Decimal): boolean {
    return this.scaled === other.scaled;
  }

  /** Canonical form: optional `-`, the integer part, a point and exactly four digits (`-1.0500`). */
  toString(): string {
    const negative = this.scaled < 0n;
    const magnitude = negative ? -this.scaled : this.scaled;
    const fraction = (magnitude % SCALE).toString().padStart(FRACTION_DIGITS, '0');
    return `${negative ? '-' : ''}${magnitude / SCALE}.${fraction}`;
  }
}

function overflow(text: string): ExtensionError {
  return new ExtensionError(`overflow when converting ${quoteLiteral(text)} to decimal`);
}
