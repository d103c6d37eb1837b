// `ztedge cmd sign`: sign a command envelope for a device (for operators, tests and demos).
import { writeFileSync } from 'node:fs';
import { parseDurationMs } from '../agent/config.js';
import { toHex, fromHex } from '../crypto/bytes.js';
import { CryptoError } from '../crypto/errors.js';
import { readPrivateKeyFile } from '../crypto/key-files.js';
import type { Encodable } from '../envelope/cbor.js';
import { COMMAND_TOPIC, signCommand } from '../envelope/command.js';
import { EnvelopeError } from '../envelope/errors.js';
import { type CommandGroup, type ParsedArgs, UsageError, flag, parseArgs, requireFlag } from './command.js';

const USAGE = `Usage: ztedge cmd sign --key KEY --iss PRINCIPAL --aud DEVICE --act ACTION --res 'Type::"id"'
                       [--args JSON] [--lifetime 60s] [--topic cmd] [--kid HEX] [--out FILE]

Signs a command envelope (COSE_Sign1 with CWT claims) with the private key in KEY.
  --iss       the issuing principal, as the bundle's issuers list names it (e.g. Operator::"ana")
  --aud       the target device id; with --topic it is bound into the signature
  --args      a JSON object; integers must be exact in JSON (|n| < 2^53), no floats or nulls
  --lifetime  time until exp (default 60s)
  --topic     the topic relative to the device prefix (default cmd)
  --kid       key id to put in the header (default: derived from the public key)
Writes the envelope to FILE, or its hex to standard output.`;

const DEFAULT_LIFETIME = '60s';

export const cmdCommand: CommandGroup = {
  summary: 'sign command envelopes',
  usage: USAGE,
  run: async (args, io) => {
    const [command, ...rest] = args;
    if (command !== 'sign') throw new UsageError(command === undefined ? 'missing command' : `unknown command '${command}'`);
    const parsed = parseArgs(rest);
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    const lifetimeText = flag(parsed, 'lifetime') ?? DEFAULT_LIFETIME;
    const lifetimeMs = parseDurationMs(lifetimeText);
    if (lifetimeMs === undefined || lifetimeMs < 1000) throw new UsageError(`--lifetime must be a duration of at least 1s, like 60s or 5m, not '${lifetimeText}'`);
    const kidText = flag(parsed, 'kid');
    const kid = kidText === undefined ? undefined : fromHex(kidText);
    if (kid !== undefined && kid.length === 0) throw new UsageError('--kid must not be empty');
    if (kidText !== undefined && kid === undefined) throw new UsageError(`--kid must be hex, not '${kidText}'`);
    const commandArgs = parseCommandArgs(flag(parsed, 'args'));
    try {
      const envelope = signCommand({
        key: readPrivateKeyFile(requireFlag(parsed, 'key')),
        kid,
        issuer: requireFlag(parsed, 'iss'),
        deviceId: requireFlag(parsed, 'aud'),
        topic: flag(parsed, 'topic') ?? COMMAND_TOPIC,
        action: requireFlag(parsed, 'act'),
        resource: requireFlag(parsed, 'res'),
        args: commandArgs,
        now: Date.now(),
        lifetimeMs,
      });
      writeEnvelope(parsed, envelope, io.stdout);
      return 0;
    } catch (err) {
      if (err instanceof CryptoError || err instanceof EnvelopeError) {
        io.stderr(`${err.code}: ${err.message}`);
        return 1;
      }
      throw err;
    }
  },
};

function writeEnvelope(parsed: ParsedArgs, envelope: Uint8Array, stdout: (text: string) => void): void {
  const out = flag(parsed, 'out');
  if (out === undefined) stdout(toHex(envelope));
  else writeFileSync(out, envelope);
}

/**
 * --args as a JSON object. JSON.parse has already rounded any integer beyond 2^53, so such
 * values (and floats, which signed args do not carry, and nulls) are refused rather than sent
 * with silently different digits.
 */
function parseCommandArgs(text: string | undefined): Record<string, Encodable> | undefined {
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
