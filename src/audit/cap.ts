// The audit cap's reserve, apart from the log so that configuration can check it without opening
// a database: the part of the cap kept for AUDIT_FULL denials and lifecycle records.

/** Smallest reserve by default: room for some thousands of denials and lifecycle records. */
export const MIN_DEFAULT_RESERVE_BYTES = 256 * 1024;

/** The reserve when none is given: 1 % of the cap, at least 256 KiB, at most the cap itself. */
export function defaultReserveBytes(capBytes: number): number {
  return Math.min(capBytes, Math.max(MIN_DEFAULT_RESERVE_BYTES, Math.floor(capBytes / 100)));
}
