import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Duration, DURATION_TYPE } from '../../src/policy/ext/duration.js';
import { ExtensionError } from '../../src/policy/ext/error.js';
import { cedarString, disagreements, type Outcome } from './ext-cedar-oracle.js';

const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);
const SECOND = 1000n;
const MINUTE = 60n * SECOND;
const HOUR = 60n * MINUTE;
const DAY = 24n * HOUR;

describe('Duration.parse', () => {
  it.each([
    ['1ms', 1n],
    ['1s', SECOND],
    ['1m', MINUTE],
    ['1h', HOUR],
    ['1d', DAY],
    ['1d2h3m4s5ms', DAY + 2n * HOUR + 3n * MINUTE + 4n * SECOND + 5n],
    ['-1d2h', -(DAY + 2n * HOUR)],
    ['1m1ms', MINUTE + 1n],
    ['90m', 90n * MINUTE],
    ['-0ms', 0n],
    ['0d', 0n],
    ['00001ms', 1n],
    ['9223372036854775807ms', I64_MAX],
    ['-9223372036854775808ms', I64_MIN],
    ['9223372036854775s807ms', I64_MAX],
    ['-9223372036854775s808ms', I64_MIN],
    ['106751991167d', 106751991167n * DAY],
    ['-106751991167d', -106751991167n * DAY],
  ])('accepts %s as %s ms', (text, ms) => {
    expect(Duration.parse(text).ms).toBe(ms);
  });

  it.each([
    '', '-', '1', 'd', 'ms', '1d1d', '1h1d', '1ms1s', '1s1m', '1m1h', '1mm', '1msms', '1D', '1H', ' 1d', '1d ', '1 d', '+1d',
    '--1d', '1.5h', '-1d-2h', '1d-2h', '1w', '1y', '1us', 'P1D', '١d',
    '9223372036854775808ms', '-9223372036854775809ms', '106751991168d', '18446744073709551616ms', '9223372036854775s808ms',
    '99999999999999999999999999d',
  ])('refuses %j', (text) => {
    expect(() => Duration.parse(text)).toThrow(ExtensionError);
  });

  it('names its Cedar type', () => {
    expect(DURATION_TYPE).toBe('duration');
  });
});

describe('Duration conversions', () => {
  it.each([
    ['1d2h3m4s5ms', 93784005n, 93784n, 1563n, 26n, 1n],
    ['-1d2h3m4s5ms', -93784005n, -93784n, -1563n, -26n, -1n],
    ['-1500ms', -1500n, -1n, 0n, 0n, 0n],
    ['59s999ms', 59999n, 59n, 0n, 0n, 0n],
    ['-9223372036854775808ms', I64_MIN, -9223372036854775n, -153722867280912n, -2562047788015n, -106751991167n],
  ])('%s converts, truncating toward zero', (text, ms, seconds, minutes, hours, days) => {
    const duration = Duration.parse(text);
    expect([duration.toMilliseconds(), duration.toSeconds(), duration.toMinutes(), duration.toHours(), duration.toDays()]).toEqual([
      ms, seconds, minutes, hours, days,
    ]);
  });

  it('builds from milliseconds within i64 only', () => {
    expect(Duration.fromMilliseconds(I64_MIN).equals(Duration.parse('-9223372036854775808ms'))).toBe(true);
    expect(() => Duration.fromMilliseconds(I64_MAX + 1n)).toThrow(ExtensionError);
    expect(() => Duration.fromMilliseconds(I64_MIN - 1n)).toThrow(ExtensionError);
  });
});

describe('Duration comparison and printing', () => {
  it('compares by length', () => {
    expect(Duration.parse('1h').equals(Duration.parse('60m'))).toBe(true);
    expect(Duration.parse('-0ms').equals(Duration.parse('0d'))).toBe(true);
    expect(Duration.parse('1h').compare(Duration.parse('61m'))).toBe(-1);
    expect(Duration.parse('1d').compare(Duration.parse('23h59m59s999ms'))).toBe(1);
    expect(Duration.parse('-1ms').compare(Duration.parse('-1ms'))).toBe(0);
  });

  it('prints the millisecond count, as Cedar does', () => {
    expect(Duration.parse('1h30m').toString()).toBe('5400000ms');
    expect(Duration.parse('-1s').toString()).toBe('-1000ms');
    expect(Duration.parse('-0ms').toString()).toBe('0ms');
  });

  it('round-trips every representable value', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: I64_MIN, max: I64_MAX }), (ms) => {
        const duration = Duration.fromMilliseconds(ms);
        expect(Duration.parse(duration.toString()).ms).toBe(ms);
      }),
    );
  });
});

describe('Duration against untrusted input', () => {
  it('throws nothing but ExtensionError', () => {
    const durationish = fc.string({ unit: fc.constantFrom(...'0123456789dhms-'), maxLength: 30 });
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), durationish), (text) => {
        try {
          Duration.parse(text);
        } catch (error) {
          expect(error).toBeInstanceOf(ExtensionError);
        }
      }),
      { numRuns: 2000 },
    );
  });

  it('handles a megabyte literal promptly', () => {
    expect(() => Duration.parse(`${'9'.repeat(1 << 20)}d`)).toThrow(ExtensionError);
    expect(() => Duration.parse(`${'1'.repeat(1 << 20)}x`)).toThrow(ExtensionError);
    expect(Duration.parse(`${'0'.repeat(1 << 20)}7s`).ms).toBe(7000n);
  });
});

describe('Duration agrees with the reference Cedar implementation', () => {
  const quantity = fc.oneof(
    fc.bigInt({ min: 0n, max: 1000n }),
    fc.bigInt({ min: 0n, max: 2n ** 64n }),
    fc.constantFrom(106751991167n, 106751991168n, 2562047788015n, 153722867280912n, 9223372036854775n, 9223372036854775807n, 9223372036854775808n),
  );
  const unitPairs = fc.array(fc.tuple(quantity, fc.constantFrom('d', 'h', 'm', 's', 'ms')), { maxLength: 4 });
  const ordered = fc
    .tuple(fc.constantFrom('', '-'), fc.subarray(['d', 'h', 'm', 's', 'ms'], { minLength: 1 }), fc.array(quantity, { minLength: 5, maxLength: 5 }))
    .map(([sign, units, quantities]) => sign + units.map((unit, i) => `${quantities[i]}${unit}`).join(''));
  const candidates = fc.oneof(
    { arbitrary: ordered, weight: 3 },
    fc.tuple(fc.constantFrom('', '-', '+'), unitPairs).map(([sign, pairs]) => sign + pairs.map(([n, unit]) => `${n}${unit}`).join('')),
    fc.string({ unit: fc.constantFrom(...'0123456789dhms-'), maxLength: 10 }),
  );

  it('on acceptance and value', () => {
    const texts = [...new Set(fc.sample(candidates, { numRuns: 3000, seed: 424242 }))];
    const cases = texts.map((text): { expression: string; expected: Outcome } => {
      const ours = tryParse(text);
      return ours === undefined
        ? { expression: `duration(${cedarString(text)}) == duration("0ms")`, expected: 'error' }
        : { expression: `duration(${cedarString(text)}) == duration(${cedarString(ours.toString())})`, expected: 'true' };
    });
    expect(cases.filter((c) => c.expected === 'true').length).toBeGreaterThan(300);
    expect(cases.filter((c) => c.expected === 'error').length).toBeGreaterThan(300);
    expect(disagreements(cases)).toEqual([]);
  });

  it('on conversions', () => {
    const durations = fc.sample(fc.bigInt({ min: I64_MIN, max: I64_MAX }), { numRuns: 300, seed: 99 }).map(Duration.fromMilliseconds);
    const conversions = ['toMilliseconds', 'toSeconds', 'toMinutes', 'toHours', 'toDays'] as const;
    const cases = durations.flatMap((duration) =>
      conversions.map((method) => {
        // Cedar has no negative Long literal for i64 min: compare through subtraction instead.
        const ours = duration[method]();
        return { expression: `duration(${cedarString(duration.toString())}).${method}() - (${ours / 2n}) == ${ours - ours / 2n}`, expected: 'true' as Outcome };
      }),
    );
    expect(disagreements(cases)).toEqual([]);
  });
});

function tryParse(text: string): Duration | undefined {
  try {
    return Duration.parse(text);
  } catch (error) {
    if (error instanceof ExtensionError) return undefined;
    throw error;
  }
}
