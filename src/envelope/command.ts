// The ztedge command envelope: a COSE_Sign1 (tag 18) over CWT claims
//   iss (1, optional: the signing key's principal), aud (3, the target device id), exp (4), nbf (5, optional), iat (6),
//   cti (7, 16 random bytes), and private claims "act" (action id), "res" (resource entity
//   uid, e.g. `Robot::"arm-1"`), "args" (a map of text keys; becomes context.args),
// signed with external_aad = CBOR [deviceId, topic] (see contextAad).
import type { CoseAlgorithm } from '../crypto/algorithms.js';
import type { PrivateKey } from '../crypto/keys.js';
import type { CborMap, CborMapKey, CborValue, Encodable } from './cbor.js';
import {
  CLAIM,
  type EarlyTimes,
  MAX_TEXT_CLAIM_LENGTH,
  checkTimes,
  invalid,
  readCti,
  readOptionalTime,
  readText,
  readTime,
  toNumericDate,
} from './claims.js';
import { EnvelopeError } from './errors.js';
import {
  DEFAULT_CLOCK_SKEW_MS,
  DEFAULT_MAX_LIFETIME_MS,
  type EnvelopeVerifyOptions,
  type OpenedEnvelope,
  openEnvelope,
  openEnvelopeAsync,
  randomCti,
  readIssuer,
  sealEnvelope,
} from './signed-claims.js';

/** The topic, relative to the device prefix, that commands arrive on. */
export const COMMAND_TOPIC = 'cmd';

export const COMMAND_CLAIM = { act: 'act', res: 'res', args: 'args' } as const;

/** A value inside args: what a Cedar context record can hold. Integers stay exact. */
export type ArgValue = string | number | bigint | boolean | ArgValue[] | CommandArgs;
export interface CommandArgs {
  [name: string]: ArgValue;
}

export interface CommandClaims {
  iss: string;
  aud: string;
  expMs: number;
  nbfMs?: number;
  iatMs: number;
  cti: Uint8Array;
  act: string;
  res: string;
  /** A null-prototype record; keys come from the sender. */
  args: CommandArgs;
}

export interface VerifiedCommand {
  claims: CommandClaims;
  issuer: string;
  kid: Uint8Array;
  alg: CoseAlgorithm;
  /** SHA-256 of the envelope bytes; approvals and results refer to the command by it. */
  digest: Uint8Array;
  /** Set only with `tolerateEarly`: the iat or nbf is ahead of `now` by more than the skew. */
  early?: EarlyTimes;
}

/**
 * Verifies a command envelope for `deviceId` received on `topic`. Throws EnvelopeError with
 * a stable code; checks run structure → headers → key → signature → claims.
 */
export function verifyCommand(bytes: Uint8Array, options: EnvelopeVerifyOptions): VerifiedCommand {
  return readCommand(openEnvelope(bytes, options), options);
}

/** verifyCommand with the signature checked off the event loop (the agent's hot path). */
export async function verifyCommandAsync(bytes: Uint8Array, options: EnvelopeVerifyOptions): Promise<VerifiedCommand> {
  return readCommand(await openEnvelopeAsync(bytes, options), options);
}

/** The claims of a command whose signature verified. */
function readCommand(opened: OpenedEnvelope, options: EnvelopeVerifyOptions): VerifiedCommand {
  const { claims } = opened;
  const iss = readIssuer(opened);
  const aud = readText(claims, CLAIM.aud, 'aud');
  const expMs = readTime(claims, CLAIM.exp, 'exp');
  const nbfMs = readOptionalTime(claims, CLAIM.nbf, 'nbf');
  const iatMs = readTime(claims, CLAIM.iat, 'iat');
  const cti = readCti(claims);
  const act = readText(claims, COMMAND_CLAIM.act, 'act');
  const res = readResource(claims);
  const args = readArgs(claims);
  const early = checkTimes(
    { iatMs, expMs, nbfMs },
    {
      nowMs: options.now,
      clockSkewMs: options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS,
      maxLifetimeMs: options.maxLifetimeMs ?? DEFAULT_MAX_LIFETIME_MS,
      tolerateEarly: options.tolerateEarly === true,
    },
  );
  if (aud !== options.deviceId) {
    throw new EnvelopeError('ENVELOPE_WRONG_AUDIENCE', `addressed to ${JSON.stringify(aud)}, not this device`);
  }
  const verified: CommandClaims = { iss, aud, expMs, iatMs, cti, act, res, args };
  if (nbfMs !== undefined) verified.nbfMs = nbfMs;
  const command: VerifiedCommand = { claims: verified, issuer: iss, kid: opened.kid, alg: opened.alg.id, digest: opened.digest };
  if (early !== undefined) command.early = early;
  return command;
}

/** The replay guard's contract (ReplayGuard in replay-guard.ts, on SQLite). */
export interface ReplayRecorder {
  checkAndRecord(entry: { keyId: Uint8Array; cti: Uint8Array; expMs: number }, nowMs: number, sharedBy?: number): void;
}

/**
 * verifyCommand, then records (kid, cti) with the replay guard: the whole admission check.
 * The guard must keep entries at least `clockSkewMs` past exp, as long as this verifier
 * would still accept the command.
 */
export function acceptCommand(bytes: Uint8Array, options: EnvelopeVerifyOptions, replay: ReplayRecorder): VerifiedCommand {
  const command = verifyCommand(bytes, options);
  replay.checkAndRecord({ keyId: command.kid, cti: command.claims.cti, expMs: command.claims.expMs }, options.now);
  return command;
}

export interface SignCommandInput {
  key: PrivateKey;
  alg?: CoseAlgorithm;
  kid?: Uint8Array;
  /**
   * The iss claim: the principal the key belongs to in the bundle (e.g. `Agent::"planner"`);
   * omitted when not given, and the agent then takes the key's principal.
   */
  issuer?: string;
  /** The target device: the aud claim and the first element of external_aad. */
  deviceId: string;
  topic: string;
  action: string;
  resource: string;
  args?: Readonly<Record<string, Encodable>>;
  /** Signing time, ms since the epoch. */
  now: number;
  lifetimeMs: number;
  notBefore?: number;
  /** Default: 16 fresh random bytes. */
  cti?: Uint8Array;
}

export function signCommand(input: SignCommandInput): Uint8Array {
  if (!(input.lifetimeMs >= 1000)) throw new EnvelopeError('ENVELOPE_CLAIM_INVALID', 'lifetime must be at least one second');
  const iat = toNumericDate(input.now);
  const claims = new Map<CborMapKey, Encodable>([
    ...(input.issuer === undefined ? [] : [[CLAIM.iss, input.issuer] as const]),
    [CLAIM.aud, input.deviceId],
    [CLAIM.exp, toNumericDate(input.now + input.lifetimeMs)],
    [CLAIM.iat, iat],
    [CLAIM.cti, input.cti ?? randomCti()],
    [COMMAND_CLAIM.act, input.action],
    [COMMAND_CLAIM.res, input.resource],
    [COMMAND_CLAIM.args, input.args ?? {}],
  ]);
  if (input.notBefore !== undefined) claims.set(CLAIM.nbf, toNumericDate(input.notBefore));
  return sealEnvelope(claims, input);
}

// A Cedar entity uid: one or more `::`-separated identifiers, then a quoted id. The policy
// engine parses it fully; this keeps obvious garbage out of the audit log.
const ENTITY_UID = /^[A-Za-z_][A-Za-z0-9_]*(?:::[A-Za-z_][A-Za-z0-9_]*)*::"(?:[^"\\]|\\.)*"$/s;

function readResource(claims: CborMap): string {
  const res = readText(claims, COMMAND_CLAIM.res, 'res');
  if (!ENTITY_UID.test(res)) throw invalid('res', 'must be an entity uid like Type::"id"');
  return res;
}

const INT64_MIN = -(1n << 63n);
const INT64_MAX = (1n << 63n) - 1n;

function readArgs(claims: CborMap): CommandArgs {
  const args = claims.get(COMMAND_CLAIM.args);
  if (args === undefined) return Object.create(null) as CommandArgs;
  if (!(args instanceof Map)) throw invalid('args', 'must be a map');
  return toRecord(args, 'args');
}

/**
 * Keys refused anywhere in args. The records built here have no prototype, but args travel on
 * (audit encoder, executors, controllers written in JavaScript) where such a key can replace an
 * object's prototype: refused at the door, with a code of its own.
 */
const RESERVED_ARG_KEYS = new Set(['__proto__', 'constructor', 'prototype']);

function toRecord(map: CborMap, path: string): CommandArgs {
  const record = Object.create(null) as CommandArgs;
  for (const [key, value] of map) {
    if (typeof key !== 'string') throw invalid('args', `${path} has a non-text key ${String(key)}`);
    if (key.length > MAX_TEXT_CLAIM_LENGTH) throw invalid('args', `${path} has an over-long key`);
    if (RESERVED_ARG_KEYS.has(key)) throw new EnvelopeError('ENVELOPE_ARGS_RESERVED_KEY', `claim args: ${path} has the reserved key ${JSON.stringify(key)}`);
    record[key] = toArg(value, `${path}.${key}`);
  }
  return record;
}

function toArg(value: CborValue, path: string): ArgValue {
  if (typeof value === 'string' || typeof value === 'boolean') return value;
  if (typeof value === 'number') return value;
  if (typeof value === 'bigint') {
    if (value < INT64_MIN || value > INT64_MAX) throw invalid('args', `${path} is outside the 64-bit integer range`);
    return value;
  }
  if (Array.isArray(value)) return value.map((item, i) => toArg(item, `${path}[${i}]`));
  if (value instanceof Map) return toRecord(value, path);
  throw invalid('args', `${path} must be a string, integer, boolean, array or map`);
}
