// CWT claims (RFC 8392) as ztedge envelopes use them: typed readers over the decoded claims
// map, the time checks, and the external_aad that binds an envelope to its device and topic.
//
// Times are CWT NumericDates: integer seconds since the epoch (floats are refused by the
// CBOR layer). Internally they are milliseconds, like every clock in ztedge.
import { type CborMap, type CborMapKey, type CborValue, encodeCbor } from './cbor.js';
import { EnvelopeError } from './errors.js';

export const CLAIM = { iss: 1, aud: 3, exp: 4, nbf: 5, iat: 6, cti: 7 } as const;

/** cti is the nonce the replay guard records: 16 random bytes. */
export const CTI_LENGTH = 16;
export const MAX_TEXT_CLAIM_LENGTH = 1024;
/** Approvals and results name a command by the SHA-256 of its envelope bytes. */
export const DIGEST_LENGTH = 32;

/**
 * external_aad of every ztedge envelope: the deterministic CBOR encoding of the array
 * [deviceId, topic]. The topic is the MQTT topic relative to the device's prefix (`cmd`,
 * `approve`, `cmd/result`), so the binding survives a change of the site prefix while an
 * envelope still cannot be replayed to another device or on another topic.
 */
export function contextAad(deviceId: string, topic: string): Uint8Array {
  // One device, a handful of topics: encoded once each (every command and result needs one).
  let byTopic = aads.get(deviceId);
  if (byTopic === undefined) {
    if (aads.size >= MAX_CACHED_AADS) aads.clear();
    aads.set(deviceId, (byTopic = new Map()));
  }
  let aad = byTopic.get(topic);
  if (aad === undefined) {
    if (byTopic.size >= MAX_CACHED_AADS) byTopic.clear();
    byTopic.set(topic, (aad = encodeCbor([deviceId, topic])));
  }
  return aad;
}

/** Encoded external_aad by device and topic; read-only (callers copy it into a Sig_structure). */
const aads = new Map<string, Map<string, Uint8Array>>();
const MAX_CACHED_AADS = 64;

export function missing(name: string): EnvelopeError {
  return new EnvelopeError('ENVELOPE_CLAIM_MISSING', `claim ${name} is missing`);
}

export function invalid(name: string, reason: string): EnvelopeError {
  return new EnvelopeError('ENVELOPE_CLAIM_INVALID', `claim ${name} ${reason}`);
}

function present(claims: CborMap, key: CborMapKey, name: string): CborValue {
  const value = claims.get(key);
  if (value === undefined) throw missing(name);
  return value;
}

export function readText(claims: CborMap, key: CborMapKey, name: string): string {
  const value = present(claims, key, name);
  if (typeof value !== 'string') throw invalid(name, 'must be a text string');
  if (value.length === 0 || value.length > MAX_TEXT_CLAIM_LENGTH) {
    throw invalid(name, `must be 1 to ${MAX_TEXT_CLAIM_LENGTH} characters`);
  }
  return value;
}

export function readTextList(claims: CborMap, key: CborMapKey, name: string): string[] {
  const value = present(claims, key, name);
  if (!Array.isArray(value) || value.some((item) => typeof item !== 'string')) {
    throw invalid(name, 'must be an array of text strings');
  }
  return value as string[];
}

export function readBytes(claims: CborMap, key: CborMapKey, name: string, length: number): Uint8Array {
  const value = present(claims, key, name);
  if (!(value instanceof Uint8Array) || value.length !== length) throw invalid(name, `must be a ${length}-byte string`);
  return value;
}

export function readCti(claims: CborMap): Uint8Array {
  return readBytes(claims, CLAIM.cti, 'cti', CTI_LENGTH);
}

/** A NumericDate claim, in milliseconds. */
export function readTime(claims: CborMap, key: CborMapKey, name: string): number {
  const value = present(claims, key, name);
  // Beyond 2^53 ms the value is not a time; a bigint here is refused, not rounded.
  if (typeof value !== 'number' || value < 0 || value > MAX_NUMERIC_DATE_SECONDS) {
    throw invalid(name, 'must be a non-negative integer NumericDate');
  }
  return value * 1000;
}

export function readOptionalTime(claims: CborMap, key: CborMapKey, name: string): number | undefined {
  return claims.has(key) ? readTime(claims, key, name) : undefined;
}

const MAX_NUMERIC_DATE_SECONDS = Math.floor(Number.MAX_SAFE_INTEGER / 1000);

export interface TimePolicy {
  nowMs: number;
  /** Tolerated clock difference between signer and verifier. */
  clockSkewMs: number;
  /** Longest accepted exp − iat; absent for envelopes without exp. */
  maxLifetimeMs?: number;
  /**
   * Report an iat or nbf ahead of now (beyond the skew) instead of refusing it: for a caller that
   * knows its `now` is only a lower bound of the real time and decides itself (the agent lets
   * `@safety` commands through then). Expiry and lifetime are checked either way.
   */
  tolerateEarly?: boolean;
}

/** An iat or nbf ahead of now that checkTimes was told to tolerate: the code it would have refused with. */
export interface EarlyTimes {
  code: 'ENVELOPE_IAT_FUTURE' | 'ENVELOPE_NOT_YET_VALID';
  message: string;
}

export interface ClaimTimes {
  iatMs: number;
  expMs?: number;
  nbfMs?: number;
}

/**
 * exp, nbf, iat not in the future, then lifetime; each its own EnvelopeError code. With
 * `tolerateEarly`, an early nbf or iat is returned instead of thrown.
 */
export function checkTimes(times: ClaimTimes, policy: TimePolicy): EarlyTimes | undefined {
  const { nowMs, clockSkewMs } = policy;
  if (times.expMs !== undefined && nowMs >= times.expMs + clockSkewMs) {
    throw new EnvelopeError('ENVELOPE_EXPIRED', `expired at ${new Date(times.expMs).toISOString()}`);
  }
  let early: EarlyTimes | undefined;
  if (times.nbfMs !== undefined && nowMs + clockSkewMs < times.nbfMs) {
    early = { code: 'ENVELOPE_NOT_YET_VALID', message: `not valid before ${new Date(times.nbfMs).toISOString()}` };
  } else if (times.iatMs > nowMs + clockSkewMs) {
    early = { code: 'ENVELOPE_IAT_FUTURE', message: `issued at ${new Date(times.iatMs).toISOString()}, in the future` };
  }
  if (early !== undefined && !policy.tolerateEarly) throw new EnvelopeError(early.code, early.message);
  if (times.expMs !== undefined) {
    if (times.expMs <= times.iatMs) throw invalid('exp', 'must be after iat');
    if (policy.maxLifetimeMs !== undefined && times.expMs - times.iatMs > policy.maxLifetimeMs) {
      throw new EnvelopeError(
        'ENVELOPE_LIFETIME_TOO_LONG',
        `lifetime ${(times.expMs - times.iatMs) / 1000}s exceeds ${policy.maxLifetimeMs / 1000}s`,
      );
    }
  }
  return early;
}

/** NumericDate seconds for a millisecond time (rounded down). */
export function toNumericDate(ms: number): number {
  return Math.floor(ms / 1000);
}
