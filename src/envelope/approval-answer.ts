// The answer to an approval: a COSE_Sign1 by the device key telling the approver what became of
// its approval — counted, the quorum reached, its rejection applied, or refused and why — over
// CWT claims iss (the device), iat, cti and private claims "approval" (the SHA-256 of the
// approval envelope), "cmd" (the digest of the command it names; 32 zero bytes when the approval
// could not be read), "code" and "message" (the outcome, as a stable code and in words), and when
// known "approvals" and "required" (the quorum so far) and "grant" (the expiry of the
// just-in-time grant the quorum created). Bound to [deviceId, "approve/result"], so it never
// passes for a command result, nor the reverse. Like a result it has no exp: it is a record.
import type { CoseAlgorithm } from '../crypto/algorithms.js';
import type { PrivateKey } from '../crypto/keys.js';
import { type CborMap, type CborMapKey, type Encodable, decodeCbor } from './cbor.js';
import { CLAIM, DIGEST_LENGTH, checkTimes, invalid, readBytes, readCti, readOptionalTime, readText, readTime, toNumericDate } from './claims.js';
import { type CoseLimits, decodeLimits, decodeSign1 } from './cose.js';
import { EnvelopeError } from './errors.js';
import { DEFAULT_CLOCK_SKEW_MS, type EnvelopeVerifyOptions, openEnvelope, randomCti, readIssuer, sealEnvelopeAsync } from './signed-claims.js';

export const APPROVAL_ANSWER_TOPIC = 'approve/result';

/** Codes that mean the approval did what its signer asked; every other code is a refusal. */
export const APPROVAL_ACCEPTED_CODES: ReadonlySet<string> = new Set(['APPROVAL_COUNTED', 'APPROVAL_QUORUM', 'APPROVAL_REJECTED']);

const MAX_COUNT = 1_000_000;

export interface ApprovalAnswerClaims {
  iss: string;
  iatMs: number;
  cti: Uint8Array;
  /** SHA-256 of the approval envelope answered. */
  approval: Uint8Array;
  /** Digest of the command the approval names (32 zero bytes when unread). */
  cmd: Uint8Array;
  code: string;
  message: string;
  approvals?: number;
  required?: number;
  grantExpiresMs?: number;
}

export interface SignApprovalAnswerInput {
  /** The device key. */
  key: PrivateKey;
  alg?: CoseAlgorithm;
  kid?: Uint8Array;
  deviceId: string;
  approval: Uint8Array;
  command?: Uint8Array;
  code: string;
  message: string;
  approvals?: number;
  required?: number;
  grantExpiresMs?: number;
  now: number;
}

/** Signed on libuv's thread pool, as results are. */
export async function signApprovalAnswerAsync(input: SignApprovalAnswerInput): Promise<Uint8Array> {
  if (input.approval.length !== DIGEST_LENGTH || (input.command !== undefined && input.command.length !== DIGEST_LENGTH)) {
    throw new EnvelopeError('ENVELOPE_CLAIM_INVALID', 'approval and command digests must be 32 bytes');
  }
  const claims = new Map<CborMapKey, Encodable>([
    [CLAIM.iss, input.deviceId],
    [CLAIM.iat, toNumericDate(input.now)],
    [CLAIM.cti, randomCti()],
    ['approval', input.approval],
    ['cmd', input.command ?? new Uint8Array(DIGEST_LENGTH)],
    ['code', input.code.slice(0, 128)],
    ['message', (input.message || input.code).slice(0, 1000)],
    ...(input.approvals === undefined ? [] : [['approvals', input.approvals] as const]),
    ...(input.required === undefined ? [] : [['required', input.required] as const]),
    ...(input.grantExpiresMs === undefined ? [] : [['grant', toNumericDate(input.grantExpiresMs)] as const]),
  ]);
  return sealEnvelopeAsync(claims, { ...input, topic: APPROVAL_ANSWER_TOPIC });
}

export function verifyApprovalAnswer(bytes: Uint8Array, options: Omit<EnvelopeVerifyOptions, 'topic'>): ApprovalAnswerClaims {
  const opened = openEnvelope(bytes, { ...options, topic: APPROVAL_ANSWER_TOPIC });
  const iss = readIssuer(opened);
  if (iss !== options.deviceId) throw invalid('iss', `must be the device ${JSON.stringify(options.deviceId)}`);
  const claims = readAnswerClaims(opened.claims);
  checkTimes({ iatMs: claims.iatMs }, { nowMs: options.now, clockSkewMs: options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS });
  return claims;
}

/**
 * Reads an answer's claims WITHOUT checking its signature, issuer or time: for an approver that
 * holds no device key, which must then present the answer as unverified.
 */
export function readUnverifiedApprovalAnswer(bytes: Uint8Array, limits: CoseLimits = {}): ApprovalAnswerClaims {
  const message = decodeSign1(bytes, { ...limits, requireTag: true });
  const claims = decodeCbor(message.payload, decodeLimits(limits, false));
  if (!(claims instanceof Map)) throw new EnvelopeError('ENVELOPE_MALFORMED', 'payload must be a CWT claims map');
  return readAnswerClaims(claims);
}

function readAnswerClaims(claims: CborMap): ApprovalAnswerClaims {
  const approvals = readCount(claims, 'approvals');
  const required = readCount(claims, 'required');
  const grantExpiresMs = readOptionalTime(claims, 'grant', 'grant');
  return {
    iss: readText(claims, CLAIM.iss, 'iss'),
    iatMs: readTime(claims, CLAIM.iat, 'iat'),
    cti: readCti(claims),
    approval: readBytes(claims, 'approval', 'approval', DIGEST_LENGTH),
    cmd: readBytes(claims, 'cmd', 'cmd', DIGEST_LENGTH),
    code: readText(claims, 'code', 'code'),
    message: readText(claims, 'message', 'message'),
    ...(approvals === undefined ? {} : { approvals }),
    ...(required === undefined ? {} : { required }),
    ...(grantExpiresMs === undefined ? {} : { grantExpiresMs }),
  };
}

function readCount(claims: CborMap, name: string): number | undefined {
  if (!claims.has(name)) return undefined;
  const value = claims.get(name);
  if (typeof value !== 'number' || !Number.isInteger(value) || value < 0 || value > MAX_COUNT) throw invalid(name, `must be an integer from 0 to ${MAX_COUNT}`);
  return value;
}
