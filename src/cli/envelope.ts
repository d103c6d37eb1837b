// `ztedge envelope verify|inspect`: check or show a COSE_Sign1 message: any COSE_Sign1 (the
// COSE working group examples too), with the ztedge command claims checked when the payload
// is a command.
import { readFileSync } from 'node:fs';
import { openStateDb } from '../store/state-db.js';
import { algorithmInfo } from '../crypto/algorithms.js';
import { fromHex, toHex } from '../crypto/bytes.js';
import { CryptoError } from '../crypto/errors.js';
import { readPublicKeyFile } from '../crypto/key-files.js';
import { getVerifier } from '../crypto/verifier.js';
import { type CborValue, CborTagged, decodeCbor } from '../envelope/cbor.js';
import { COMMAND_CLAIM, COMMAND_TOPIC, type VerifiedCommand, acceptCommand, verifyCommand } from '../envelope/command.js';
import { type CoseSign1, DEFAULT_MAX_BYTES, HEADER, decodeLimits, decodeSign1, verifySign1 } from '../envelope/cose.js';
import { EnvelopeError } from '../envelope/errors.js';
import { ReplayGuard } from '../store/replay-guard.js';
import type { EnvelopeVerifyOptions } from '../envelope/signed-claims.js';
import { type CliIo, type CommandGroup, type ParsedArgs, UsageError, flag, parseArgs, requireFlag } from './command.js';

const USAGE = `Usage: ztedge envelope <command> [options]

Commands:
  verify FILE --key PUB [--aad HEX | --device D [--topic T]] [--verifier native|noble]
         [--replay-db FILE]
      Verify a COSE_Sign1 message (tagged or untagged) with the SPKI PEM key PUB and print it
      as JSON. --aad is the external_aad in hex. When the payload is a ztedge command its
      claims are checked too (expiry, audience...), bound to --device and --topic (default
      cmd) or to the [device, topic] pair encoded in --aad; --replay-db records it in that
      state database and refuses a replay. Exit 0 when valid; otherwise 1 and the error code
      on standard error.
  inspect FILE
      Print a COSE_Sign1 message as JSON without verifying it.

FILE is a binary file, a file of hex, or - for standard input.`;

export const envelopeCommand: CommandGroup = {
  summary: 'verify or inspect COSE_Sign1 envelopes',
  usage: USAGE,
  run: async (args, io) => {
    const [command, ...rest] = args;
    try {
      switch (command) {
        case 'verify':
          return await verify(parseArgs(rest), io);
        case 'inspect':
          return await inspect(parseArgs(rest), io);
        default:
          throw new UsageError(command === undefined ? 'missing command' : `unknown command '${command}'`);
      }
    } catch (err) {
      if (err instanceof EnvelopeError || err instanceof CryptoError) {
        io.stderr(`${err.code}: ${err.message}`);
        return 1;
      }
      throw err;
    }
  },
};

async function verify(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const bytes = await readEnvelope(parsed, io);
  const key = readPublicKeyFile(requireFlag(parsed, 'key'));
  const verifier = getVerifier(flag(parsed, 'verifier') ?? 'native');
  const aad = parseAad(flag(parsed, 'aad'));
  const message = decodeSign1(bytes, { requireTag: false });
  const claims = commandClaims(message);
  if (claims === undefined) {
    if (flag(parsed, 'replay-db') !== undefined) throw new UsageError('--replay-db applies to ztedge commands only');
    const verified = verifySign1(bytes, { key, externalAad: aad, requireTag: false, verifier });
    io.stdout(renderJson({ valid: true, ...describeMessage(verified.message) }));
    return 0;
  }
  const [deviceId, topic] = commandContext(parsed, aad);
  const options: EnvelopeVerifyOptions = { keyResolver: () => key, deviceId, topic, now: Date.now(), verifier };
  const command = withReplayGuard(flag(parsed, 'replay-db'), (guard) =>
    guard === undefined ? verifyCommand(bytes, options) : acceptCommand(bytes, options, guard),
  );
  io.stdout(renderJson({ valid: true, ...describeMessage(message), command: describeCommand(command) }));
  return 0;
}

async function inspect(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const message = decodeSign1(await readEnvelope(parsed, io), { requireTag: false });
  io.stdout(renderJson(describeMessage(message)));
  return 0;
}

async function readEnvelope(parsed: ParsedArgs, io: CliIo): Promise<Uint8Array> {
  if (parsed.positionals.length !== 1) throw new UsageError('expected one FILE argument');
  const path = parsed.positionals[0]!;
  let raw: Uint8Array;
  try {
    raw = path === '-' ? await io.readStdin() : readFileSync(path);
  } catch (err) {
    throw new EnvelopeError('ENVELOPE_UNREADABLE', `cannot read ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  // A COSE message never starts with an ASCII hex digit (tag 18 is 0xd2, an array 0x8_), so a
  // file of hex digits (what `cmd sign` prints) is unambiguous.
  const text = Buffer.from(raw).toString('latin1').trim();
  if (raw.length <= 2 * DEFAULT_MAX_BYTES + 2 && /^[0-9a-fA-F]+$/.test(text)) return fromHex(text) ?? raw;
  return raw;
}

function parseAad(text: string | undefined): Uint8Array | undefined {
  if (text === undefined) return undefined;
  const aad = fromHex(text);
  if (aad === undefined) throw new UsageError(`--aad must be hex, not '${text}'`);
  return aad;
}

/** The payload as a claims map when it is a ztedge command (a CBOR map with "act"). */
function commandClaims(message: CoseSign1): Map<unknown, CborValue> | undefined {
  let payload: CborValue;
  try {
    payload = decodeCbor(message.payload, decodeLimits({}, false));
  } catch {
    return undefined;
  }
  return payload instanceof Map && payload.has(COMMAND_CLAIM.act) ? payload : undefined;
}

/** [deviceId, topic] from --device/--topic, or decoded from --aad. */
function commandContext(parsed: ParsedArgs, aad: Uint8Array | undefined): [string, string] {
  const device = flag(parsed, 'device');
  if (device !== undefined) {
    if (aad !== undefined) throw new UsageError('give either --aad or --device/--topic, not both');
    return [device, flag(parsed, 'topic') ?? COMMAND_TOPIC];
  }
  if (aad !== undefined) {
    let context: CborValue | undefined;
    try {
      context = decodeCbor(aad, decodeLimits({}, false));
    } catch {
      context = undefined;
    }
    if (Array.isArray(context) && context.length === 2 && typeof context[0] === 'string' && typeof context[1] === 'string') {
      return [context[0], context[1]];
    }
    throw new UsageError('--aad of a ztedge command must encode [deviceId, topic]');
  }
  throw new UsageError('a ztedge command is bound to its device and topic: give --device (and --topic) or --aad');
}

function withReplayGuard<T>(path: string | undefined, run: (guard: ReplayGuard | undefined) => T): T {
  if (path === undefined) return run(undefined);
  const db = openStateDb(path);
  try {
    return run(new ReplayGuard(db));
  } finally {
    db.close();
  }
}

function describeMessage(message: CoseSign1): Record<string, unknown> {
  const alg = message.protectedHeader.get(HEADER.alg);
  const kid = message.protectedHeader.get(HEADER.kid) ?? message.unprotectedHeader.get(HEADER.kid);
  return {
    tagged: message.tagged,
    alg: algorithmInfo(alg)?.name ?? alg ?? null,
    kid: kid instanceof Uint8Array ? toHex(kid) : null,
    protected: message.protectedHeader,
    unprotected: message.unprotectedHeader,
    payload: describePayload(message.payload),
    signature: message.signature,
  };
}

/** The payload decoded when it is strict CBOR, as text when it is UTF-8, else as hex. */
function describePayload(payload: Uint8Array): unknown {
  try {
    return { cbor: decodeCbor(payload, decodeLimits({}, false)) };
  } catch {
    try {
      return { text: new TextDecoder('utf-8', { fatal: true }).decode(payload) };
    } catch {
      return { hex: toHex(payload) };
    }
  }
}

function describeCommand(command: VerifiedCommand): Record<string, unknown> {
  const { claims } = command;
  return {
    issuer: command.issuer,
    digest: toHex(command.digest),
    aud: claims.aud,
    act: claims.act,
    res: claims.res,
    args: claims.args,
    iat: new Date(claims.iatMs).toISOString(),
    exp: new Date(claims.expMs).toISOString(),
    ...(claims.nbfMs === undefined ? {} : { nbf: new Date(claims.nbfMs).toISOString() }),
    cti: toHex(claims.cti),
  };
}

/**
 * JSON for people and scripts: byte strings as hex, big integers as exact JSON numbers,
 * CBOR maps as objects (integer labels become their decimal text).
 */
export function renderJson(value: unknown): string {
  return render(value, '');
}

function render(value: unknown, indent: string): string {
  if (value === null || value === undefined) return 'null';
  if (typeof value === 'bigint') return value.toString();
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'string') return JSON.stringify(value);
  if (value instanceof Uint8Array) return JSON.stringify(toHex(value));
  if (value instanceof CborTagged) return render({ tag: value.tag, value: value.value }, indent);
  const inner = indent + '  ';
  if (Array.isArray(value)) {
    if (value.length === 0) return '[]';
    return `[\n${value.map((item) => inner + render(item, inner)).join(',\n')}\n${indent}]`;
  }
  const entries: [string, unknown][] = value instanceof Map ? [...value].map(([k, v]) => [String(k), v]) : Object.entries(value as object);
  if (entries.length === 0) return '{}';
  return `{\n${entries.map(([k, v]) => `${inner}${JSON.stringify(k)}: ${render(v, inner)}`).join(',\n')}\n${indent}}`;
}
