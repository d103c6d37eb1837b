import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Datetime, DATETIME_TYPE } from '../../src/policy/ext/datetime.js';
import { Duration } from '../../src/policy/ext/duration.js';
import { ExtensionError } from '../../src/policy/ext/error.js';
import { cedarString, disagreements, type Outcome } from './ext-cedar-oracle.js';

const I64_MAX = 2n ** 63n - 1n;
const I64_MIN = -(2n ** 63n);
const DAY = 86_400_000n;

const at = (ms: bigint) => Datetime.fromEpochMs(ms);
const ms = (text: string) => Datetime.parse(text).epochMs;

describe('Datetime.parse', () => {
  it.each([
    ['1970-01-01', 0n],
    ['1970-01-01T00:00:00Z', 0n],
    ['1970-01-01T00:00:00.000Z', 0n],
    ['1970-01-01T00:00:00+0000', 0n],
    ['1970-01-01T00:00:00-0000', 0n],
    ['1969-12-31T23:59:59.999Z', -1n],
    ['1970-01-01T01:00:00+0100', 0n],
    ['1969-12-31T23:00:00-0100', 0n],
    ['2024-10-15T11:38:02.101Z', 1728992282101n],
    ['0000-01-01', -62167219200000n],
    ['9999-12-31T23:59:59.999Z', 253402300799999n],
    ['0000-01-01T00:00:00+2359', -62167219200000n - 86_340_000n],
    ['9999-12-31T23:59:59.999-2359', 253402300799999n + 86_340_000n],
  ])('accepts %s as %s ms since the epoch', (text, epochMs) => {
    expect(ms(text)).toBe(epochMs);
  });

  it('normalizes offsets to UTC', () => {
    expect(ms('2024-10-15T11:38:02.101+1134')).toBe(ms('2024-10-15T00:04:02.101Z'));
    expect(ms('2024-10-15T11:38:02-1134')).toBe(ms('2024-10-15T23:12:02Z'));
    expect(ms('2024-10-15T23:59:00+2359')).toBe(ms('2024-10-15'));
    expect(ms('2024-10-15T00:00:00-2359')).toBe(ms('2024-10-15T23:59:00Z'));
  });

  it.each(['2024-02-29', '2000-02-29', '1600-02-29', '0000-02-29', '2024-01-31', '2024-04-30', '2023-12-31'])(
    'accepts the calendar day %s',
    (text) => {
      const [year, month, day] = text.split('-').map(Number);
      expect(ms(text)).toBe(platformUtcMs(year, month, day));
    },
  );

  it.each([
    // calendar
    '2023-02-29', '1900-02-29', '2100-02-29', '2024-02-30', '2024-04-31', '2024-06-31', '2024-09-31', '2024-11-31', '2024-01-32',
    '2024-00-01', '2024-13-01', '2024-01-00', '2024-01-99',
    // time of day and offset
    '2024-01-01T24:00:00Z', '2024-01-01T23:60:00Z', '2024-01-01T23:59:60Z', '2016-12-31T23:59:60Z', '2024-01-01T00:00:00+2400',
    '2024-01-01T00:00:00+0060', '2024-01-01T00:00:00-2400',
    // shape
    '', 'a', '-', '-1', '11-12-13', '1111-1x-20', '2024-1-01', '2024-01-1', '24-01-01', '+2024-01-01', '-2024-01-01',
    '12024-01-01', '2024/01/01', '2024-01-01Z', '2024-01-01T', '2024-01-01T01:', '2024-01-01T01:02', '2024-01-01T01:02:0b',
    '2024-01-01T01::02:03', '2024-01-01T00:00:00', '2024-01-01T00:00:00ZZ', '2024-01-01T00:00:00z', '2024-01-01t00:00:00Z',
    '2024-01-01 00:00:00Z', '2024-01-01T00:00:00.5Z', '2024-01-01T00:00:00.1234Z', '2024-01-01T00:00:00.Z',
    '2024-01-01T00:00:00+01:00', '2024-01-01T00:00:00+01', '2024-01-01T00:00:00+010', '2024-01-01T00:00:00.000',
    '2024-01-01T00:00:00,000Z', '2024-01-01T00:00Z', '2024-01-01T00:00:00.000+0000Z', ' 2024-01-01', '2024-01-01 ',
    '٢٠٢٤-01-01', '2024-01-01T00:00:00GMT',
  ])('refuses %j', (text) => {
    expect(() => Datetime.parse(text)).toThrow(ExtensionError);
  });

  it('agrees with the platform calendar on every valid date and time', () => {
    const fields = fc.record({
      year: fc.integer({ min: 0, max: 9999 }),
      month: fc.integer({ min: 1, max: 12 }),
      day: fc.integer({ min: 1, max: 31 }),
      hour: fc.integer({ min: 0, max: 23 }),
      minute: fc.integer({ min: 0, max: 59 }),
      second: fc.integer({ min: 0, max: 59 }),
      millis: fc.integer({ min: 0, max: 999 }),
      offsetMinutes: fc.integer({ min: -(24 * 60 - 1), max: 24 * 60 - 1 }),
    });
    fc.assert(
      fc.property(fields, (f) => {
        const reference = platformUtc(f.year, f.month, f.day);
        reference.setUTCHours(f.hour, f.minute, f.second, f.millis);
        const text =
          `${pad(f.year, 4)}-${pad(f.month, 2)}-${pad(f.day, 2)}T${pad(f.hour, 2)}:${pad(f.minute, 2)}:${pad(f.second, 2)}` +
          `.${pad(f.millis, 3)}${f.offsetMinutes < 0 ? '-' : '+'}${pad(Math.floor(Math.abs(f.offsetMinutes) / 60), 2)}${pad(Math.abs(f.offsetMinutes) % 60, 2)}`;
        if (reference.getUTCDate() !== f.day) {
          // The platform rolled an impossible day (Feb 30) into the next month.
          expect(() => Datetime.parse(text)).toThrow(ExtensionError);
        } else {
          expect(Datetime.parse(text).epochMs).toBe(BigInt(reference.getTime() - f.offsetMinutes * 60_000));
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('names its Cedar type', () => {
    expect(DATETIME_TYPE).toBe('datetime');
  });
});

describe('Datetime arithmetic', () => {
  it('offsets by a duration, either sign', () => {
    const start = Datetime.parse('2024-02-28T12:00:00Z');
    expect(start.offset(Duration.parse('1d')).equals(Datetime.parse('2024-02-29T12:00:00Z'))).toBe(true);
    expect(start.offset(Duration.parse('-12h1ms')).equals(Datetime.parse('2024-02-27T23:59:59.999Z'))).toBe(true);
  });

  it('refuses an offset past either end of i64', () => {
    expect(at(I64_MAX).offset(Duration.parse('0ms')).epochMs).toBe(I64_MAX);
    expect(() => at(I64_MAX).offset(Duration.parse('1ms'))).toThrow(ExtensionError);
    expect(() => at(I64_MIN).offset(Duration.parse('-1ms'))).toThrow(ExtensionError);
    expect(at(I64_MIN).offset(Duration.parse('9223372036854775807ms')).epochMs).toBe(-1n);
  });

  it('measures the duration since another datetime, signed', () => {
    const earlier = Datetime.parse('2024-01-01');
    const later = Datetime.parse('2024-01-02T01:00:00.500Z');
    expect(later.durationSince(earlier).ms).toBe(DAY + 3_600_500n);
    expect(earlier.durationSince(later).ms).toBe(-(DAY + 3_600_500n));
    expect(() => at(I64_MIN).durationSince(at(1n))).toThrow(ExtensionError);
    expect(() => at(I64_MAX).durationSince(at(-1n))).toThrow(ExtensionError);
    expect(at(-1n).durationSince(at(I64_MAX)).ms).toBe(I64_MIN);
  });

  it.each([
    ['2024-10-15T11:38:02.101Z', '2024-10-15', 41882101n],
    ['2024-10-15', '2024-10-15', 0n],
    ['1969-12-31T23:59:59.999Z', '1969-12-31', DAY - 1n],
    ['1969-12-31', '1969-12-31', 0n],
    ['0000-01-01T00:00:00.001Z', '0000-01-01', 1n],
    ['2024-10-15T00:30:00+0100', '2024-10-14', DAY - 1_800_000n],
  ])('splits %s into day %s and time %s ms (floor, never toward zero)', (text, date, time) => {
    const instant = Datetime.parse(text);
    expect(instant.toDate().equals(Datetime.parse(date))).toBe(true);
    expect(instant.toTime().ms).toBe(time);
  });

  it('splits the i64 extremes: toDate overflows below the first whole day, toTime never does', () => {
    expect(() => at(I64_MIN).toDate()).toThrow(ExtensionError);
    expect(at(I64_MIN).toTime().ms).toBe(I64_MIN - (I64_MIN / DAY - 1n) * DAY);
    expect(at(I64_MAX).toDate().epochMs).toBe((I64_MAX / DAY) * DAY);
    expect(at(I64_MAX).toTime().ms).toBe(I64_MAX % DAY);
  });

  it('keeps date + time equal to the instant', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: I64_MIN + DAY, max: I64_MAX }), (epochMs) => {
        const instant = at(epochMs);
        const time = instant.toTime();
        expect(time.ms >= 0n && time.ms < DAY).toBe(true);
        expect(instant.toDate().offset(time).equals(instant)).toBe(true);
      }),
    );
  });

  it('builds from epoch milliseconds within i64 only', () => {
    expect(() => at(I64_MAX + 1n)).toThrow(ExtensionError);
    expect(() => at(I64_MIN - 1n)).toThrow(ExtensionError);
  });
});

describe('Datetime comparison and printing', () => {
  it('compares instants, whatever the spelling', () => {
    expect(Datetime.parse('2024-01-01').equals(Datetime.parse('2024-01-01T00:00:00.000Z'))).toBe(true);
    expect(Datetime.parse('2024-01-01T01:00:00+0100').equals(Datetime.parse('2024-01-01'))).toBe(true);
    expect(Datetime.parse('2024-01-01').compare(Datetime.parse('2024-01-02'))).toBe(-1);
    expect(Datetime.parse('2024-01-01T00:00:00-0001').compare(Datetime.parse('2024-01-01'))).toBe(1);
    expect(Datetime.parse('2024-01-01T00:00:00+0000').compare(Datetime.parse('2024-01-01'))).toBe(0);
  });

  it.each([
    ['2024-10-15T11:38:02.101+1134', '2024-10-15T00:04:02.101Z'],
    ['1970-01-01', '1970-01-01T00:00:00.000Z'],
    ['1969-12-31T23:59:59.999Z', '1969-12-31T23:59:59.999Z'],
    ['0000-02-29', '0000-02-29T00:00:00.000Z'],
  ])('prints %s as the UTC literal %s', (text, printed) => {
    expect(Datetime.parse(text).toString()).toBe(printed);
  });

  it('prints instants beyond year 9999 as Cedar prints computed datetimes', () => {
    expect(Datetime.parse('0000-01-01T00:00:00+0001').toString()).toBe('datetime("1970-01-01").offset(duration("-62167219260000ms"))');
    expect(at(I64_MAX).toString()).toBe('datetime("1970-01-01").offset(duration("9223372036854775807ms"))');
    expect(Datetime.parse('9999-12-31T23:59:59.999-0001').toString()).toBe('datetime("1970-01-01").offset(duration("253402300859999ms"))');
  });

  it('round-trips every instant of years 0000-9999 through its printed form', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: ms('0000-01-01'), max: ms('9999-12-31T23:59:59.999Z') }), (epochMs) => {
        expect(Datetime.parse(at(epochMs).toString()).epochMs).toBe(epochMs);
      }),
    );
  });
});

describe('Datetime against untrusted input', () => {
  it('throws nothing but ExtensionError', () => {
    const datetimeish = fc.string({ unit: fc.constantFrom(...'0123456789-T:.Z+'), maxLength: 32 });
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), datetimeish), (text) => {
        try {
          Datetime.parse(text);
        } catch (error) {
          expect(error).toBeInstanceOf(ExtensionError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('Datetime agrees with the reference Cedar implementation', () => {
  const twoDigits = fc.integer({ min: 0, max: 99 }).map((n) => pad(n, 2));
  const structured = fc
    .tuple(
      fc.integer({ min: 0, max: 9999 }).map((n) => pad(n, 4)),
      fc.oneof(fc.integer({ min: 1, max: 12 }).map((n) => pad(n, 2)), twoDigits),
      fc.oneof(fc.integer({ min: 28, max: 31 }).map((n) => pad(n, 2)), twoDigits),
      fc.oneof(fc.constant(''), fc.tuple(fc.oneof(fc.integer({ min: 0, max: 23 }).map((n) => pad(n, 2)), twoDigits), twoDigits, twoDigits).map((hms) => `T${hms.join(':')}`)),
      fc.constantFrom('', '.000', '.999', '.5', '.1234'),
      fc.oneof(fc.constantFrom('Z', '', 'z', '+0000', '-0000'), fc.tuple(fc.constantFrom('+', '-'), twoDigits, twoDigits).map((o) => o.join(''))),
    )
    .map(([y, m, d, time, millis, zone]) => (time === '' ? `${y}-${m}-${d}` : `${y}-${m}-${d}${time}${millis}${zone}`));
  const candidates = fc.oneof(
    { arbitrary: structured, weight: 4 },
    fc.string({ unit: fc.constantFrom(...'0123456789-T:.Z+'), maxLength: 28 }),
    fc.tuple(structured, fc.string({ unit: fc.constantFrom(...'0T:.Z+- '), maxLength: 2 })).map(([a, b]) => a + b),
  );

  it('on acceptance, instant and printed form', () => {
    const texts = [...new Set(fc.sample(candidates, { numRuns: 3000, seed: 1729 }))];
    const cases = texts.flatMap((text): Array<{ expression: string; expected: Outcome }> => {
      const ours = tryParse(text);
      const literal = `datetime(${cedarString(text)})`;
      if (ours === undefined) return [{ expression: `${literal} == datetime("1970-01-01")`, expected: 'error' }];
      return [
        { expression: `${literal} == datetime("1970-01-01").offset(duration("${ours.epochMs}ms"))`, expected: 'true' },
        { expression: `${literal} == datetime(${cedarString(ours.toString())})`, expected: 'true' },
      ];
    });
    expect(cases.filter((c) => c.expected === 'true').length).toBeGreaterThan(600);
    expect(cases.filter((c) => c.expected === 'error').length).toBeGreaterThan(300);
    expect(disagreements(cases)).toEqual([]);
  });

  it('on offset, durationSince, toDate and toTime, overflow included', () => {
    const instant = fc.oneof(
      fc.bigInt({ min: -(10n ** 15n), max: 10n ** 15n }),
      fc.bigInt({ min: I64_MIN, max: I64_MAX }),
      fc.constantFrom(I64_MIN, I64_MIN + 1n, I64_MAX, I64_MAX - 1n, -DAY, -DAY - 1n, -1n, 0n),
    );
    const pairs = fc.sample(fc.tuple(instant, instant), { numRuns: 400, seed: 31337 });
    const cedarAt = (epochMs: bigint) => `datetime("1970-01-01").offset(duration("${epochMs}ms"))`;
    const expectOutcome = (expression: string, compute: () => string): { expression: string; expected: Outcome } => {
      try {
        return { expression: `${expression} == ${compute()}`, expected: 'true' };
      } catch (error) {
        if (!(error instanceof ExtensionError)) throw error;
        return { expression: `${expression} == ${expression}`, expected: 'error' };
      }
    };
    const cases = pairs.flatMap(([a, b]) => [
      expectOutcome(`${cedarAt(a)}.offset(duration("${b}ms"))`, () => cedarAt(at(a).offset(Duration.fromMilliseconds(b)).epochMs)),
      expectOutcome(`${cedarAt(a)}.durationSince(${cedarAt(b)})`, () => `duration("${at(a).durationSince(at(b)).ms}ms")`),
      expectOutcome(`${cedarAt(a)}.toDate()`, () => cedarAt(at(a).toDate().epochMs)),
      expectOutcome(`${cedarAt(a)}.toTime()`, () => `duration("${at(a).toTime().ms}ms")`),
      { expression: `${cedarAt(a)} < ${cedarAt(b)}`, expected: (at(a).compare(at(b)) < 0 ? 'true' : 'false') as Outcome },
    ]);
    expect(cases.filter((c) => c.expected === 'error').length).toBeGreaterThan(50);
    expect(disagreements(cases)).toEqual([]);
  });
});

// Date.UTC maps years 0-99 to 1900-1999; setUTCFullYear does not.
function platformUtc(year: number, month: number, day: number): Date {
  const date = new Date(0);
  date.setUTCFullYear(year, month - 1, day);
  return date;
}

function platformUtcMs(year: number, month: number, day: number): bigint {
  return BigInt(platformUtc(year, month, day).getTime());
}

function pad(value: number, width: number): string {
  return value.toString().padStart(width, '0');
}

function tryParse(text: string): Datetime | undefined {
  try {
    return Datetime.parse(text);
  } catch (error) {
    if (error instanceof ExtensionError) return undefined;
    throw error;
  }
}
