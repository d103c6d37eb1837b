// Cedar stores decimals, durations and datetimes in a signed 64-bit integer and reports any
// result outside it as an overflow error.
export const I64_MIN = -(2n ** 63n);
export const I64_MAX = 2n ** 63n - 1n;

export function fitsI64(value: bigint): boolean {
  return value >= I64_MIN && value <= I64_MAX;
}

export function compareBigInt(a: bigint, b: bigint): number {
  return a < b ? -1 : a > b ? 1 : 0;
}
