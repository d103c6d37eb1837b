import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Decimal, DECIMAL_TYPE } from '../../src/policy/ext/decimal.js';
import { ExtensionError } from '../../src/policy/ext/error.js';
import { cedarString, disagreements, type Outcome } from './ext-cedar-oracle.js';

const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);

describe('Decimal.parse', () => {
  it.each([
    ['1.0', 10000n],
    ['-1.0', -10000n],
    ['123.456', 1234560n],
    ['0.1234', 1234n],
    ['-0.0123', -123n],
    ['-0.5', -5000n],
    ['-0.0', 0n],
    ['007.5', 75000n],
    ['00000000000000000000000000000000001.5', 15000n],
    ['922337203685477.5807', I64_MAX],
    ['-922337203685477.5808', I64_MIN],
  ])('accepts %s as %s ten-thousandths', (text, scaled) => {
    expect(Decimal.parse(text).scaled).toBe(scaled);
  });

  it.each([
    '', '1', '1.', '.5', '-.5', '+1.5', '--1.5', '1.23456', '1.00000', '1.0e3', '1e3', ' 1.0', '1.0 ', '1,5',
    '1..0', '1.2.3', '-', '.', 'NaN', 'Infinity', '0x1.0', '١.5', '1.٥',
    '922337203685477.5808', '-922337203685477.5809', '9223372036854775807.0', '99999999999999999999999.0',
  ])('refuses %j', (text) => {
    expect(() => Decimal.parse(text)).toThrow(ExtensionError);
  });

  it('names its Cedar type', () => {
    expect(DECIMAL_TYPE).toBe('decimal');
  });
});

describe('Decimal comparison', () => {
  it('compares by value, not by spelling', () => {
    expect(Decimal.parse('1.0').equals(Decimal.parse('1.0000'))).toBe(true);
    expect(Decimal.parse('-0.0').equals(Decimal.parse('0.0'))).toBe(true);
    expect(Decimal.parse('1.0001').equals(Decimal.parse('1.0'))).toBe(false);
    expect(Decimal.parse('-0.5').equals(Decimal.parse('0.5'))).toBe(false);
  });

  it('orders numerically with -1/0/1', () => {
    const ascending = ['-922337203685477.5808', '-1.5', '-1.0', '-0.0001', '0.0', '0.0001', '0.1', '1.0', '10.0', '922337203685477.5807'];
    for (let i = 0; i < ascending.length; i++) {
      for (let j = 0; j < ascending.length; j++) {
        expect(Decimal.parse(ascending[i]).compare(Decimal.parse(ascending[j]))).toBe(Math.sign(i - j));
      }
    }
  });
});

describe('Decimal.toString', () => {
  it.each([
    ['1.5', '1.5000'],
    ['1.05', '1.0500'],
    ['-0.5', '-0.5000'],
    ['-0.0', '0.0000'],
    ['-12.0001', '-12.0001'],
    ['007.25', '7.2500'],
    ['-922337203685477.5808', '-922337203685477.5808'],
  ])('prints %s as %s', (text, printed) => {
    expect(Decimal.parse(text).toString()).toBe(printed);
  });

  it('round-trips every representable value', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: I64_MIN, max: I64_MAX }), (scaled) => {
        const value = Decimal.parse(decimalText(scaled));
        expect(value.scaled).toBe(scaled);
        expect(Decimal.parse(value.toString()).equals(value)).toBe(true);
      }),
    );
  });
});

describe('Decimal against untrusted input', () => {
  it('throws nothing but ExtensionError', () => {
    const decimalish = fc.string({ unit: fc.constantFrom(...'0123456789.-+e ١'), maxLength: 30 });
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), decimalish), (text) => {
        try {
          Decimal.parse(text);
        } catch (error) {
          expect(error).toBeInstanceOf(ExtensionError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('refuses a megabyte literal promptly', () => {
    expect(() => Decimal.parse(`${'9'.repeat(1 << 20)}.0`)).toThrow(ExtensionError);
    expect(Decimal.parse(`${'0'.repeat(1 << 20)}1.0`).scaled).toBe(10000n);
  });
});

describe('Decimal agrees with the reference Cedar implementation', () => {
  const digits = (min: number, max: number) => fc.string({ unit: fc.constantFrom(...'0123456789'), minLength: min, maxLength: max });
  const candidates = fc.oneof(
    { arbitrary: fc.tuple(fc.constantFrom('', '-'), digits(1, 16), fc.constant('.'), digits(1, 5)).map((parts) => parts.join('')), weight: 3 },
    fc.tuple(fc.constantFrom('', '-', '+', '--'), digits(0, 20), fc.constantFrom('.', '', '..', 'e'), digits(0, 6)).map((parts) => parts.join('')),
    fc.tuple(fc.constantFrom('', '-'), fc.constantFrom('922337203685477', '922337203685478', '0000922337203685477'), fc.constantFrom('.5807', '.5808', '.5809', '.58', '.9999')).map((parts) => parts.join('')),
    fc.string({ unit: fc.constantFrom(...'0123456789.-'), maxLength: 12 }),
  );

  it('on acceptance, value and canonical form', () => {
    const texts = [...new Set(fc.sample(candidates, { numRuns: 3000, seed: 20240601 }))];
    const cases = texts.map((text): { expression: string; expected: Outcome } => {
      const ours = tryParse(text);
      return ours === undefined
        ? { expression: `decimal(${cedarString(text)}) == decimal("0.0")`, expected: 'error' }
        : { expression: `decimal(${cedarString(text)}) == decimal(${cedarString(ours.toString())})`, expected: 'true' };
    });
    expect(cases.filter((c) => c.expected === 'true').length).toBeGreaterThan(300);
    expect(disagreements(cases)).toEqual([]);
  });

  it('on ordering', () => {
    const values = fc
      .sample(fc.bigInt({ min: -(10n ** 9n), max: 10n ** 9n }), { numRuns: 400, seed: 7 })
      .map((scaled) => Decimal.parse(decimalText(scaled)));
    const cases = values.slice(1).map((right, index) => {
      const left = values[index];
      return {
        expression: `decimal(${cedarString(left.toString())}).lessThan(decimal(${cedarString(right.toString())}))`,
        expected: (left.compare(right) < 0 ? 'true' : 'false') as Outcome,
      };
    });
    expect(disagreements(cases)).toEqual([]);
  });
});

// Independent of Decimal.toString: the plain decimal spelling of value × 10^-4.
function decimalText(scaled: bigint): string {
  const magnitude = scaled < 0n ? -scaled : scaled;
  return `${scaled < 0n ? '-' : ''}${magnitude / 10000n}.${(magnitude % 10000n).toString().padStart(4, '0')}`;
}

function tryParse(text: string): Decimal | undefined {
  try {
    return Decimal.parse(text);
  } catch (error) {
    if (error instanceof ExtensionError) return undefined;
    throw error;
  }
}
