// Flag values several commands read: `--args` of the commands that sign a command envelope
// (`cmd sign`, `cmd send`), and durations (`--timeout 10s`, `--lifetime 2m`).
import { parseDurationMs } from '../duration.js';
import type { Encodable } from '../envelope/cbor.js';
import { type ParsedArgs, UsageError, flag } from './command.js';

export function durationFlag(parsed: ParsedArgs, name: string, fallback: string, minMs: number): number {
  const text = flag(parsed, name) ?? fallback;
  const ms = parseDurationMs(text);
  if (ms === undefined || ms < minMs) throw new UsageError(`--${name} must be a duration like 10s or 2m (at least ${minMs} ms), not '${text}'`);
  return ms;
}

/**
 * --args as a JSON object. JSON.parse has already rounded any integer beyond 2^53, so such
 * values (and floats, which signed args do not carry, and nulls) are refused rather than sent
 * with silently different digits.
 */
export function parseCommandArgs(text: string | undefined): Record<string, Encodable> | undefined {
  if (text === undefined) return undefined;
  let value: unknown;
  try {
    value = JSON.parse(text, (_key, item: unknown) => {
      if (typeof item === 'number' && !Number.isSafeInteger(item)) {
        throw new UsageError(`--args: ${item} is not an exact integer (floats and integers beyond 2^53 are not allowed)`);
      }
      if (item === null) throw new UsageError('--args: null is not allowed');
      return item;
    });
  } catch (err) {
    if (err instanceof UsageError) throw err;
    throw new UsageError(`--args is not valid JSON: ${(err as Error).message}`);
  }
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new UsageError('--args must be a JSON object');
  return value as Record<string, Encodable>;
}
