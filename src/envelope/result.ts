// A command result: a COSE_Sign1 by the device key over CWT claims iss (the device), cti,
// iat and private claims "cmd" (digest of the command envelope), "decision" ("allow",
// "deny" or "pending"), "policies" (determining policy ids), "reasons" (text) and "outcome" (what
// happened to the command, e.g. "executed", "not_executed", "failed"), bound to
// [deviceId, topic], and "grant" (the expiry of the just-in-time grant the command created or
// was allowed by) when there is one. A result has no exp: it is a record, not an authorization.
import type { CoseAlgorithm } from '../crypto/algorithms.js';
import type { PrivateKey } from '../crypto/keys.js';
import { type CborMap, type CborMapKey, type Encodable, decodeCbor } from './cbor.js';
import { CLAIM, DIGEST_LENGTH, checkTimes, invalid, readBytes, readCti, readOptionalTime, readText, readTextList, readTime, toNumericDate } from './claims.js';
import { type CoseLimits, decodeLimits, decodeSign1 } from './cose.js';
import { EnvelopeError } from './errors.js';
import { DEFAULT_CLOCK_SKEW_MS, type EnvelopeVerifyOptions, openEnvelope, randomCti, readIssuer, sealEnvelope, sealEnvelopeAsync } from './signed-claims.js';

export const RESULT_TOPIC = 'cmd/result';

/** `pending`: held for approval; a second result follows when the command is settled. */
export type ResultDecision = 'allow' | 'deny' | 'pending';

export interface ResultClaims {
  iss: string;
  iatMs: number;
  cti: Uint8Array;
  cmd: Uint8Array;
  decision: ResultDecision;
  policies: string[];
  reasons: string[];
  outcome: string;
  /** Expiry of the just-in-time grant the command created (APPROVED) or was allowed by (JIT_GRANT). */
  grantExpiresMs?: number;
}

export interface VerifiedResult {
  claims: ResultClaims;
  issuer: string;
  kid: Uint8Array;
  alg: CoseAlgorithm;
  digest: Uint8Array;
}

export function verifyResult(bytes: Uint8Array, options: EnvelopeVerifyOptions): VerifiedResult {
  const opened = openEnvelope(bytes, options);
  const iss = readIssuer(opened);
  if (iss !== options.deviceId) throw invalid('iss', `must be the device ${JSON.stringify(options.deviceId)}`);
  const claims = readResultClaims(opened.claims);
  checkTimes({ iatMs: claims.iatMs }, { nowMs: options.now, clockSkewMs: options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS });
  return { claims, issuer: iss, kid: opened.kid, alg: opened.alg.id, digest: opened.digest };
}

/**
 * Reads a result's claims WITHOUT checking its signature, issuer or time: for a sender that holds
 * no device key, which must then present the result as unverified. Shapes are checked as above.
 */
export function readUnverifiedResult(bytes: Uint8Array, limits: CoseLimits = {}): ResultClaims {
  const message = decodeSign1(bytes, { ...limits, requireTag: true });
  const claims = decodeCbor(message.payload, decodeLimits(limits, false));
  if (!(claims instanceof Map)) throw new EnvelopeError('ENVELOPE_MALFORMED', 'payload must be a CWT claims map');
  return readResultClaims(claims);
}

function readResultClaims(claims: CborMap): ResultClaims {
  const iss = readText(claims, CLAIM.iss, 'iss');
  const iatMs = readTime(claims, CLAIM.iat, 'iat');
  const cti = readCti(claims);
  const cmd = readBytes(claims, 'cmd', 'cmd', DIGEST_LENGTH);
  const decision = readText(claims, 'decision', 'decision');
  if (decision !== 'allow' && decision !== 'deny' && decision !== 'pending') throw invalid('decision', 'must be "allow", "deny" or "pending"');
  const policies = readTextList(claims, 'policies', 'policies');
  const reasons = readTextList(claims, 'reasons', 'reasons');
  const outcome = readText(claims, 'outcome', 'outcome');
  const grantExpiresMs = readOptionalTime(claims, 'grant', 'grant');
  return { iss, iatMs, cti, cmd, decision, policies, reasons, outcome, ...(grantExpiresMs === undefined ? {} : { grantExpiresMs }) };
}

export interface SignResultInput {
  /** The device key. */
  key: PrivateKey;
  alg?: CoseAlgorithm;
  kid?: Uint8Array;
  /** The device id: iss, and the first element of external_aad. */
  deviceId: string;
  topic: string;
  commandDigest: Uint8Array;
  decision: ResultDecision;
  policies: readonly string[];
  reasons: readonly string[];
  outcome: string;
  /** The just-in-time grant's expiry, when the command created or used one. */
  grantExpiresMs?: number;
  now: number;
  cti?: Uint8Array;
}

export function signResult(input: SignResultInput): Uint8Array {
  return sealEnvelope(resultClaims(input), input);
}

/** signResult with the signature made on libuv's thread pool (the agent's hot path). */
export async function signResultAsync(input: SignResultInput): Promise<Uint8Array> {
  return sealEnvelopeAsync(resultClaims(input), input);
}

function resultClaims(input: SignResultInput): Map<CborMapKey, Encodable> {
  if (input.commandDigest.length !== DIGEST_LENGTH) throw new EnvelopeError('ENVELOPE_CLAIM_INVALID', 'command digest must be 32 bytes');
  return new Map<CborMapKey, Encodable>([
    [CLAIM.iss, input.deviceId],
    [CLAIM.iat, toNumericDate(input.now)],
    [CLAIM.cti, input.cti ?? randomCti()],
    ['cmd', input.commandDigest],
    ['decision', input.decision],
    ['policies', input.policies],
    ['reasons', input.reasons],
    ['outcome', input.outcome],
    ...(input.grantExpiresMs === undefined ? [] : [['grant', toNumericDate(input.grantExpiresMs)] as const]),
  ]);
}
