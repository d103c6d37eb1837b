// `ztedge cmd sign`: sign a command envelope for a device (for operators, tests and demos);
// `ztedge cmd send` (send.ts): sign, publish and wait for the result.
import { writeFileSync } from 'node:fs';
import { parseDurationMs } from '../duration.js';
import { toHex, fromHex } from '../crypto/bytes.js';
import { CryptoError } from '../crypto/errors.js';
import { readPrivateKeyFile } from '../crypto/key-files.js';
import { COMMAND_TOPIC, signCommand } from '../envelope/command.js';
import { EnvelopeError } from '../envelope/errors.js';
import { parseCommandArgs } from './command-args.js';
import { type CommandGroup, type ParsedArgs, UsageError, flag, parseArgs, requireFlag } from './command.js';
import { SEND_USAGE, sendCommand } from './send.js';

const SIGN_USAGE = `Usage: ztedge cmd sign --key KEY --iss PRINCIPAL --aud DEVICE --act ACTION --res 'Type::"id"'
                       [--args JSON] [--lifetime 60s] [--topic cmd] [--kid HEX] [--out FILE]

Signs a command envelope (COSE_Sign1 with CWT claims) with the private key in KEY.
  --iss       the issuing principal, as the bundle's issuers list names it (e.g. Operator::"ana")
  --aud       the target device id; with --topic it is bound into the signature
  --args      a JSON object; integers must be exact in JSON (|n| < 2^53), no floats or nulls
  --lifetime  time until exp (default 60s)
  --topic     the topic relative to the device prefix (default cmd)
  --kid       key id to put in the header (default: derived from the public key)
Writes the envelope to FILE, or its hex to standard output.`;

const USAGE = `${SIGN_USAGE}\n\n${SEND_USAGE}`;

const DEFAULT_LIFETIME = '60s';

export const cmdCommand: CommandGroup = {
  summary: 'sign a command envelope, or send one to a device and wait for its result',
  usage: USAGE,
  run: async (args, io) => {
    const [command, ...rest] = args;
    if (command === 'send') return sendCommand(rest, io);
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
