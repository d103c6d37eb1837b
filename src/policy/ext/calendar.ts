// Proleptic Gregorian calendar <-> days since 1970-01-01, exact for any bigint day count.
// Algorithms from Howard Hinnant, "chrono-Compatible Low-Level Date Algorithms".

export interface CivilDate {
  readonly year: bigint;
  readonly month: number;
  readonly day: number;
}

const DAYS_PER_ERA = 146_097n; // 400 years
const EPOCH_SHIFT = 719_468n; // days from 0000-03-01 to 1970-01-01

export function isLeapYear(year: number): boolean {
  return year % 4 === 0 && (year % 100 !== 0 || year % 400 === 0);
}

const DAYS_IN_MONTH = [31, 28, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31] as const;

export function daysInMonth(year: number, month: number): number {
  return month === 2 && isLeapYear(year) ? 29 : DAYS_IN_MONTH[month - 1];
}

/** Days since 1970-01-01 of a valid civil date (month 1–12, day within the month). */
export function daysFromCivil(year: number, month: number, day: number): bigint {
  // Years start in March so the leap day is the last day of the year.
  const y = BigInt(month <= 2 ? year - 1 : year);
  const era = floorDiv(y, 400n);
  const yearOfEra = y - era * 400n;
  const shiftedMonth = BigInt(month > 2 ? month - 3 : month + 9);
  const dayOfYear = (153n * shiftedMonth + 2n) / 5n + BigInt(day - 1);
  const dayOfEra = yearOfEra * 365n + yearOfEra / 4n - yearOfEra / 100n + dayOfYear;
  return era * DAYS_PER_ERA + dayOfEra - EPOCH_SHIFT;
}

export function civilFromDays(days: bigint): CivilDate {
  const z = days + EPOCH_SHIFT;
  const era = floorDiv(z, DAYS_PER_ERA);
  const dayOfEra = z - era * DAYS_PER_ERA;
  const yearOfEra = (dayOfEra - dayOfEra / 1460n + dayOfEra / 36_524n - dayOfEra / 146_096n) / 365n;
  const dayOfYear = dayOfEra - (365n * yearOfEra + yearOfEra / 4n - yearOfEra / 100n);
  const shiftedMonth = (5n * dayOfYear + 2n) / 153n;
  const day = Number(dayOfYear - (153n * shiftedMonth + 2n) / 5n + 1n);
  const month = Number(shiftedMonth < 10n ? shiftedMonth + 3n : shiftedMonth - 9n);
  const year = yearOfEra + era * 400n + (month <= 2 ? 1n : 0n);
  return { year, month, day };
}

export function floorDiv(a: bigint, b: bigint): bigint {
  const quotient = a / b;
  return (a % b !== 0n && (a < 0n) !== (b < 0n)) ? quotient - 1n : quotient;
}

/** Remainder with the sign of the (positive) divisor: always in [0, b). */
export function floorMod(a: bigint, b: bigint): bigint {
  return a - floorDiv(a, b) * b;
}
