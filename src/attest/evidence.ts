// Evidence: an Entity Attestation Token (RFC 9711) as a COSE_Sign1 by the device key, bound by
// external_aad to [device, "attest/evidence"] like every ztedge envelope. Pure (the signature is
// made on libuv's thread pool).
//
// Claims (CWT/EAT keys where the registries have one, text keys for ztedge's own):
//   1 iss          device id                     6 iat          NumericDate
//   10 eat_nonce   the challenger's nonce        256 ueid       0x01 (RAND) ‖ device key id
//   270 swname     "ztedge"                      271 swversion  [agent version]
//   "profile"      firmware profile              "measurements" [record, ...] in path order
//   "composite"    32 bytes                      "measuredAt"   NumericDate of the measurement
//   "posture"      trusted|degraded|untrusted    "mismatches"   [path, ...]
//   "bundle"       { revision, digest } | null   "rot"          "tpm2" | "software-only"
//   "tpm"          { pcr, quote, signature, log: [digest, ...], ak } (rot = tpm2 only)
//
// Verification names the first thing wrong, each with its own code, in this order: malformed,
// another device's key, measurements that do not reproduce the composite, signature, nonce,
// age, then (with a TPM) AK, quote signature, quote nonce, PCR against the replayed log, the
// log's last entry against the composite; then, when references are given, the measurements
// against them.
import type { CoseAlgorithm } from '../crypto/algorithms.js';
import { bytesEqual, fromHex, toHex } from '../crypto/bytes.js';
import { KID_LENGTH, type PrivateKey, type PublicKey, publicKeyFromRaw } from '../crypto/keys.js';
import { type CborMap, type CborMapKey, type CborValue, type Encodable, decodeCbor } from '../envelope/cbor.js';
import { contextAad } from '../envelope/claims.js';
import { checkHeaders, decodeSign1, verifySign1Signature } from '../envelope/cose.js';
import { EnvelopeError } from '../envelope/errors.js';
import { sealEnvelopeAsync } from '../envelope/signed-claims.js';
import { type Assessment, type Posture, type ReferenceValues, assess, referencesFor } from './compare.js';
import { AttestError } from './errors.js';
import { parseDevicePath } from './glob.js';
import { type TpmQuote, verifyQuote } from './quote.js';
import { type MeasurementRecord, compositeDigest, recordFromCbor, recordToCbor } from './record.js';

export const EVIDENCE_TOPIC = 'attest/evidence';
export const NONCE_MIN_BYTES = 8;
export const NONCE_MAX_BYTES = 64;
export const EVIDENCE_MAX_BYTES = 4 * 1024 * 1024;
export const DEFAULT_MAX_AGE_MS = 5 * 60_000;
const CLOCK_SKEW_MS = 30_000;

export const EAT = { iss: 1, iat: 6, nonce: 10, ueid: 256, swname: 270, swversion: 271 } as const;
/** UEID type byte for a random (here: derived from a key hash) identifier. */
const UEID_RAND = 0x01;

export type RootOfTrust = 'tpm2' | 'software-only';

export interface TpmEvidence {
  readonly quote: TpmQuote;
  readonly log: readonly Uint8Array[];
  readonly ak: PublicKey;
}

export interface EvidenceInput {
  readonly key: PrivateKey;
  readonly deviceId: string;
  readonly nonce: Uint8Array;
  /** Milliseconds since the epoch. */
  readonly now: number;
  readonly profile: string;
  readonly records: readonly MeasurementRecord[];
  readonly composite: Uint8Array;
  readonly measuredAtMs: number;
  readonly posture: Posture;
  readonly mismatches: readonly string[];
  readonly bundle: { readonly revision: number; readonly digest: string } | null;
  readonly agentVersion: string;
  readonly tpm?: TpmEvidence;
}

/** The device's UEID: type RAND followed by its key id (a hash of the device public key). */
export function ueidOf(key: PublicKey): Uint8Array {
  const ueid = new Uint8Array(1 + KID_LENGTH);
  ueid[0] = UEID_RAND;
  ueid.set(key.kid, 1);
  return ueid;
}

/** Checks a challenge nonce's length; ATTEST_NONCE_INVALID. */
export function checkNonce(nonce: Uint8Array): void {
  if (nonce.length < NONCE_MIN_BYTES || nonce.length > NONCE_MAX_BYTES) {
    throw new AttestError('ATTEST_NONCE_INVALID', `a nonce must be ${NONCE_MIN_BYTES} to ${NONCE_MAX_BYTES} bytes, got ${nonce.length}`);
  }
}

export function evidenceClaims(input: EvidenceInput): Map<CborMapKey, Encodable> {
  checkNonce(input.nonce);
  const claims = new Map<CborMapKey, Encodable>([
    [EAT.iss, input.deviceId],
    [EAT.iat, Math.floor(input.now / 1000)],
    [EAT.nonce, input.nonce],
    [EAT.ueid, ueidOf(input.key.publicKey)],
    [EAT.swname, 'ztedge'],
    [EAT.swversion, [input.agentVersion]],
    ['profile', input.profile],
    ['measurements', input.records.map(recordToCbor)],
    ['composite', input.composite],
    ['measuredAt', Math.floor(input.measuredAtMs / 1000)],
    ['posture', input.posture],
    ['mismatches', [...input.mismatches]],
    ['bundle', input.bundle === null ? null : { revision: input.bundle.revision, digest: fromHex(input.bundle.digest)! }],
    ['rot', input.tpm === undefined ? 'software-only' : 'tpm2'],
  ]);
  if (input.tpm !== undefined) {
    claims.set('tpm', {
      pcr: input.tpm.quote.pcr,
      quote: input.tpm.quote.attest,
      signature: input.tpm.quote.signature,
      log: input.tpm.log.map((entry) => Uint8Array.from(entry)),
      ak: input.tpm.ak.raw,
    });
  }
  return claims;
}

/** Signs the evidence with the device key (on libuv's thread pool). */
export function signEvidence(input: EvidenceInput, alg?: CoseAlgorithm): Promise<Uint8Array> {
  return sealEnvelopeAsync(evidenceClaims(input), { key: input.key, deviceId: input.deviceId, topic: EVIDENCE_TOPIC, ...(alg === undefined ? {} : { alg }) });
}

export interface VerifyEvidenceOptions {
  /** The device's public key (from enrolment). */
  readonly deviceKey: PublicKey;
  /** The nonce this verifier sent. */
  readonly nonce: Uint8Array;
  /** Verifier time, milliseconds since the epoch. */
  readonly now: number;
  /** Oldest acceptable iat. Default 5 minutes. */
  readonly maxAgeMs?: number;
  /** The device's attestation key, pinned: then a TPM quote is required and must be by it. */
  readonly ak?: PublicKey;
  /** Reference values (e.g. a bundle source's attestation.json): the measurements must match. */
  readonly references?: readonly ReferenceValues[];
}

export interface VerifiedEvidence {
  readonly deviceId: string;
  readonly iatMs: number;
  readonly profile: string;
  readonly records: readonly MeasurementRecord[];
  /** Lowercase hex. */
  readonly composite: string;
  readonly measuredAtMs: number;
  /** As the device judged it. */
  readonly posture: Posture;
  readonly mismatches: readonly string[];
  readonly bundle: { readonly revision: number; readonly digest: string } | null;
  readonly agentVersion: string;
  readonly rootOfTrust: RootOfTrust;
  readonly tpm?: { readonly pcr: number; readonly ak: PublicKey; readonly logLength: number; readonly quoteClock: bigint };
  /** Present when references were given (and then without mismatches). */
  readonly assessment?: Assessment;
}

/** Verifies evidence; throws AttestError with the code of the first problem found. */
export function verifyEvidence(bytes: Uint8Array, options: VerifyEvidenceOptions): VerifiedEvidence {
  if (bytes.length > EVIDENCE_MAX_BYTES) throw malformed(`evidence is ${bytes.length} bytes, at most ${EVIDENCE_MAX_BYTES}`);
  let message;
  let header;
  let claims: CborValue;
  try {
    message = decodeSign1(bytes, { maxBytes: EVIDENCE_MAX_BYTES, maxDepth: 8, requireTag: true });
    header = checkHeaders(message, { requireProtectedKid: true });
    claims = decodeCbor(message.payload, { maxBytes: EVIDENCE_MAX_BYTES, maxDepth: 4 });
  } catch (err) {
    if (err instanceof EnvelopeError) throw malformed(`${err.message} [${err.code}]`);
    throw err;
  }
  const { deviceKey } = options;
  if (header.kid === undefined || !bytesEqual(header.kid, deviceKey.kid)) {
    throw new AttestError('ATTEST_WRONG_DEVICE', `signed by key ${header.kid === undefined ? '(none)' : toHex(header.kid)}, not by this device's key ${toHex(deviceKey.kid)}`);
  }
  if (!(claims instanceof Map)) throw malformed('the payload must be a claims map');
  const c = readClaims(claims);
  if (!bytesEqual(c.ueid, ueidOf(deviceKey))) throw new AttestError('ATTEST_WRONG_DEVICE', `ueid ${toHex(c.ueid)} is not this device's`);
  const composite = toHex(compositeDigest(c.records));
  if (composite !== toHex(c.composite)) {
    throw new AttestError('ATTEST_MEASUREMENT_TAMPERED', `the measurements reproduce composite ${composite}, the evidence claims ${toHex(c.composite)}`);
  }
  try {
    verifySign1Signature(message, header.alg, deviceKey, { externalAad: contextAad(c.iss, EVIDENCE_TOPIC) });
  } catch (err) {
    if (err instanceof EnvelopeError) throw new AttestError('ATTEST_BAD_SIGNATURE', `the evidence signature does not verify with the device key [${err.code}]`);
    throw err;
  }
  if (!bytesEqual(c.nonce, options.nonce)) {
    throw new AttestError('ATTEST_NONCE_MISMATCH', `the evidence answers nonce ${toHex(c.nonce)}, not ${toHex(options.nonce)} (stale or replayed evidence)`);
  }
  const maxAgeMs = options.maxAgeMs ?? DEFAULT_MAX_AGE_MS;
  if (c.iatMs < options.now - maxAgeMs || c.iatMs > options.now + CLOCK_SKEW_MS) {
    throw new AttestError('ATTEST_EXPIRED', `issued at ${new Date(c.iatMs).toISOString()}, outside ${maxAgeMs / 1000}s of ${new Date(options.now).toISOString()}`);
  }
  let tpm: VerifiedEvidence['tpm'];
  if (c.tpm === undefined) {
    if (options.ak !== undefined) throw new AttestError('ATTEST_NO_QUOTE', 'an attestation key is pinned but the evidence is software-only (no TPM quote)');
  } else {
    const ak = options.ak ?? c.tpm.ak;
    if (!bytesEqual(ak.raw, c.tpm.ak.raw)) throw new AttestError('ATTEST_AK_MISMATCH', 'the evidence names another attestation key than the pinned one');
    const info = verifyQuote({ quote: c.tpm.quote, ak, nonce: options.nonce, log: c.tpm.log });
    const last = c.tpm.log.at(-1);
    if (last === undefined || !bytesEqual(last, c.composite)) {
      throw new AttestError('ATTEST_LOG_MISMATCH', 'the last composite extended into the PCR is not the composite of these measurements');
    }
    tpm = { pcr: c.tpm.quote.pcr, ak, logLength: c.tpm.log.length, quoteClock: info.clock };
  }
  let assessment: Assessment | undefined;
  if (options.references !== undefined) {
    const references = referencesFor(options.references, c.profile);
    if (references === null) throw new AttestError('ATTEST_REFERENCE_MISMATCH', `the references hold no values for profile ${JSON.stringify(c.profile)}`);
    // A verifier without the profile treats every referenced and every measured path as critical.
    const paths = new Set([...references.files.map((f) => f.path), ...c.records.map((r) => r.path)]);
    const patterns = [...paths].flatMap((p) => {
      const parsed = parseDevicePath(p);
      return typeof parsed === 'string' ? [] : [{ path: parsed, critical: true }];
    });
    assessment = assess(c.records, patterns, references);
    if (assessment.mismatches.length > 0 || assessment.compositeMatches === false) {
      const list = assessment.mismatches.map((m) => `${m.path} (${m.reason})`).join(', ');
      throw new AttestError('ATTEST_REFERENCE_MISMATCH', `measurements differ from the references: ${list || 'composite'}`);
    }
  }
  return {
    deviceId: c.iss,
    iatMs: c.iatMs,
    profile: c.profile,
    records: c.records,
    composite,
    measuredAtMs: c.measuredAtMs,
    posture: c.posture,
    mismatches: c.mismatches,
    bundle: c.bundle,
    agentVersion: c.agentVersion,
    rootOfTrust: c.tpm === undefined ? 'software-only' : 'tpm2',
    ...(tpm === undefined ? {} : { tpm }),
    ...(assessment === undefined ? {} : { assessment }),
  };
}

interface Claims {
  iss: string;
  iatMs: number;
  nonce: Uint8Array;
  ueid: Uint8Array;
  agentVersion: string;
  profile: string;
  records: MeasurementRecord[];
  composite: Uint8Array;
  measuredAtMs: number;
  posture: Posture;
  mismatches: string[];
  bundle: { revision: number; digest: string } | null;
  tpm?: { quote: TpmQuote; log: Uint8Array[]; ak: PublicKey };
}

const KNOWN_CLAIMS = new Set<CborMapKey>([...Object.values(EAT), 'profile', 'measurements', 'composite', 'measuredAt', 'posture', 'mismatches', 'bundle', 'rot', 'tpm']);

function readClaims(map: CborMap): Claims {
  for (const key of map.keys()) if (!KNOWN_CLAIMS.has(key)) throw malformed(`unknown claim ${String(key)}`);
  const text = (key: CborMapKey, name: string): string => {
    const v = map.get(key);
    if (typeof v !== 'string' || v.length === 0 || v.length > 1024) throw malformed(`${name} must be text`);
    return v;
  };
  const bytes = (v: CborValue | undefined, name: string, min: number, max: number): Uint8Array => {
    if (!(v instanceof Uint8Array) || v.length < min || v.length > max) throw malformed(`${name} must be ${min === max ? min : `${min}-${max}`} bytes`);
    return v;
  };
  const time = (v: CborValue | undefined, name: string): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < 0 || v > 253_402_300_799) throw malformed(`${name} must be a NumericDate`);
    return v * 1000;
  };
  const swversion = map.get(EAT.swversion);
  if (!Array.isArray(swversion) || typeof swversion[0] !== 'string') throw malformed('swversion must be [version]');
  const measurements = map.get('measurements');
  if (!Array.isArray(measurements) || measurements.length > 4096) throw malformed('measurements must be a list of at most 4096 records');
  const records = measurements.map((m) => {
    const record = recordFromCbor(m);
    if (typeof record === 'string') throw malformed(record);
    return record;
  });
  const posture = map.get('posture');
  if (posture !== 'trusted' && posture !== 'degraded' && posture !== 'untrusted') throw malformed('posture must be trusted, degraded or untrusted');
  const mismatches = map.get('mismatches');
  if (!Array.isArray(mismatches) || mismatches.some((m) => typeof m !== 'string')) throw malformed('mismatches must be a list of paths');
  const bundleValue = map.get('bundle');
  let bundle: Claims['bundle'] = null;
  if (bundleValue instanceof Map) {
    onlyKeys(bundleValue, 'bundle', ['revision', 'digest']);
    const revision = bundleValue.get('revision');
    if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 1) throw malformed('bundle.revision must be a positive integer');
    bundle = { revision, digest: toHex(bytes(bundleValue.get('digest'), 'bundle.digest', 32, 32)) };
  } else if (bundleValue !== null) throw malformed('bundle must be a map or null');
  const rot = map.get('rot');
  if (rot !== 'tpm2' && rot !== 'software-only') throw malformed('rot must be tpm2 or software-only');
  const tpmValue = map.get('tpm');
  if ((rot === 'tpm2') !== (tpmValue !== undefined)) throw malformed('rot and the tpm claim disagree');
  const claims: Claims = {
    iss: text(EAT.iss, 'iss'),
    iatMs: time(map.get(EAT.iat), 'iat'),
    nonce: bytes(map.get(EAT.nonce), 'eat_nonce', NONCE_MIN_BYTES, NONCE_MAX_BYTES),
    ueid: bytes(map.get(EAT.ueid), 'ueid', 1 + KID_LENGTH, 1 + KID_LENGTH),
    agentVersion: swversion[0],
    profile: text('profile', 'profile'),
    records,
    composite: bytes(map.get('composite'), 'composite', 32, 32),
    measuredAtMs: time(map.get('measuredAt'), 'measuredAt'),
    posture,
    mismatches: mismatches as string[],
    bundle,
  };
  if (tpmValue !== undefined) {
    if (!(tpmValue instanceof Map)) throw malformed('tpm must be a map');
    onlyKeys(tpmValue, 'tpm', ['pcr', 'quote', 'signature', 'log', 'ak']);
    const pcr = tpmValue.get('pcr');
    if (typeof pcr !== 'number' || !Number.isInteger(pcr) || pcr < 0 || pcr > 23) throw malformed('tpm.pcr must be 0-23');
    const log = tpmValue.get('log');
    if (!Array.isArray(log) || log.length > 1024) throw malformed('tpm.log must be a list of at most 1024 digests');
    let ak: PublicKey;
    try {
      ak = publicKeyFromRaw('p256', bytes(tpmValue.get('ak'), 'tpm.ak', 33, 65));
    } catch (err) {
      if (err instanceof AttestError) throw err;
      throw malformed('tpm.ak is not a P-256 public key');
    }
    claims.tpm = {
      quote: { pcr, attest: bytes(tpmValue.get('quote'), 'tpm.quote', 1, 4096), signature: bytes(tpmValue.get('signature'), 'tpm.signature', 1, 1024) },
      log: log.map((entry, i) => bytes(entry, `tpm.log[${i}]`, 32, 32)),
      ak,
    };
  }
  return claims;
}

function onlyKeys(map: CborMap, name: string, keys: readonly string[]): void {
  for (const key of map.keys()) if (typeof key !== 'string' || !keys.includes(key)) throw malformed(`${name} has an unknown key ${String(key)}`);
}

function malformed(message: string): AttestError {
  return new AttestError('ATTEST_MALFORMED', message);
}
