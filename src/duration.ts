// Durations as operators write them in configuration, annotations and flags.

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Parses "250ms", "30s", "5m", "2h", "1d" (one number, one unit) into milliseconds. */
export function parseDurationMs(text: string): number | undefined {
  const m = /^(\d{1,12})(ms|s|m|h|d)$/.exec(text.trim());
  if (m === null) return undefined;
  return Number(m[1]) * DURATION_UNITS[m[2]!]!;
}
