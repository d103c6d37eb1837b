// `ztedge cmd sign`: sign a command envelope for a device (for operators, tests and demos);
// `ztedge cmd send` (send.ts): sign, publish and wait for the result.
import { writeFileSync } from 'node:fs';
import { parseDurationMs } from '../duration.js';
import { toHex, fromHex } from '../crypto/bytes.js';
import { readPrivateKeyFile } from '../crypto/key-files.js';
import { COMMAND_TOPIC, signCommand } from '../envelope/command.js';
import { parseCommandArgs } from './command-args.js';
import { type CommandSpec, type ParsedArgs, UsageError, defineGroup, flag, requireFlag } from './command.js';
import { sendCommandSpec } from './send.js';

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

const DEFAULT_LIFETIME = '60s';

const signCommandSpec: CommandSpec = {
  name: 'sign',
  summary: 'sign a command envelope for a device (to a file, or hex on standard output)',
  usage: SIGN_USAGE,
  options: {
    key: { type: 'string' },
    iss: { type: 'string' },
    aud: { type: 'string' },
    act: { type: 'string' },
    res: { type: 'string' },
    args: { type: 'string' },
    lifetime: { type: 'string' },
    topic: { type: 'string' },
    kid: { type: 'string' },
    out: { type: 'string' },
  },
  run: (parsed, io) => {
    const lifetimeText = flag(parsed, 'lifetime') ?? DEFAULT_LIFETIME;
    const lifetimeMs = parseDurationMs(lifetimeText);
    if (lifetimeMs === undefined || lifetimeMs < 1000) throw new UsageError(`--lifetime must be a duration of at least 1s, like 60s or 5m, not '${lifetimeText}'`);
    const kidText = flag(parsed, 'kid');
    const kid = kidText === undefined ? undefined : fromHex(kidText);
    if (kid !== undefined && kid.length === 0) throw new UsageError('--kid must not be empty');
    if (kidText !== undefined && kid === undefined) throw new UsageError(`--kid must be hex, not '${kidText}'`);
    const commandArgs = parseCommandArgs(flag(parsed, 'args'));
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
  },
};

export const cmdCommand = defineGroup({
  name: 'cmd',
  summary: 'sign a command envelope, or send one to a device and wait for its result',
  commands: [signCommandSpec, sendCommandSpec],
});

function writeEnvelope(parsed: ParsedArgs, envelope: Uint8Array, stdout: (text: string) => void): void {
  const out = flag(parsed, 'out');
  if (out === undefined) stdout(toHex(envelope));
  else writeFileSync(out, envelope);
}
