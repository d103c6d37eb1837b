// An approval: a COSE_Sign1 from an approver over CWT claims iss (optional), iat, exp, cti and private
// claims "cmd" (the SHA-256 digest of the command envelope it decides on) and "dec"
// ("approve" or "reject"), bound like every envelope to [deviceId, topic].
import type { CoseAlgorithm } from '../crypto/algorithms.js';
import type { PrivateKey } from '../crypto/keys.js';
import type { CborMapKey, Encodable } from './cbor.js';
import { CLAIM, DIGEST_LENGTH, checkTimes, invalid, readBytes, readCti, readText, readTime, toNumericDate } from './claims.js';
import { EnvelopeError } from './errors.js';
import {
  DEFAULT_CLOCK_SKEW_MS,
  DEFAULT_MAX_LIFETIME_MS,
  type EnvelopeVerifyOptions,
  openEnvelope,
  randomCti,
  readIssuer,
  sealEnvelope,
} from './signed-claims.js';

export const APPROVAL_TOPIC = 'approve';

export type ApprovalDecision = 'approve' | 'reject';

export interface ApprovalClaims {
  iss: string;
  iatMs: number;
  expMs: number;
  cti: Uint8Array;
  /** Digest of the command envelope this approval decides on. */
  cmd: Uint8Array;
  dec: ApprovalDecision;
}

export interface VerifiedApproval {
  claims: ApprovalClaims;
  issuer: string;
  kid: Uint8Array;
  alg: CoseAlgorithm;
  digest: Uint8Array;
}

export function verifyApproval(bytes: Uint8Array, options: EnvelopeVerifyOptions): VerifiedApproval {
  const opened = openEnvelope(bytes, options);
  const { claims } = opened;
  const iss = readIssuer(opened);
  const iatMs = readTime(claims, CLAIM.iat, 'iat');
  const expMs = readTime(claims, CLAIM.exp, 'exp');
  const cti = readCti(claims);
  const cmd = readBytes(claims, 'cmd', 'cmd', DIGEST_LENGTH);
  const dec = readText(claims, 'dec', 'dec');
  if (dec !== 'approve' && dec !== 'reject') throw invalid('dec', 'must be "approve" or "reject"');
  checkTimes(
    { iatMs, expMs },
    {
      nowMs: options.now,
      clockSkewMs: options.clockSkewMs ?? DEFAULT_CLOCK_SKEW_MS,
      maxLifetimeMs: options.maxLifetimeMs ?? DEFAULT_MAX_LIFETIME_MS,
    },
  );
  return { claims: { iss, iatMs, expMs, cti, cmd, dec }, issuer: iss, kid: opened.kid, alg: opened.alg.id, digest: opened.digest };
}

export interface SignApprovalInput {
  key: PrivateKey;
  alg?: CoseAlgorithm;
  kid?: Uint8Array;
  /** The iss claim (the approver's principal); omitted when not given. */
  issuer?: string;
  deviceId: string;
  topic: string;
  commandDigest: Uint8Array;
  decision: ApprovalDecision;
  now: number;
  lifetimeMs: number;
  cti?: Uint8Array;
}

export function signApproval(input: SignApprovalInput): Uint8Array {
  if (input.commandDigest.length !== DIGEST_LENGTH) throw new EnvelopeError('ENVELOPE_CLAIM_INVALID', 'command digest must be 32 bytes');
  if (!(input.lifetimeMs >= 1000)) throw new EnvelopeError('ENVELOPE_CLAIM_INVALID', 'lifetime must be at least one second');
  const claims = new Map<CborMapKey, Encodable>([
    ...(input.issuer === undefined ? [] : [[CLAIM.iss, input.issuer] as const]),
    [CLAIM.exp, toNumericDate(input.now + input.lifetimeMs)],
    [CLAIM.iat, toNumericDate(input.now)],
    [CLAIM.cti, input.cti ?? randomCti()],
    ['cmd', input.commandDigest],
    ['dec', input.decision],
  ]);
  return sealEnvelope(claims, input);
}
