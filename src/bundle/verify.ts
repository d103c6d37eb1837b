// Verification of a signed policy bundle: pure, with the time, the trusted root keys and the
// device's identity passed in. Defends against TUF's threats applied to policy: arbitrary
// payloads (k-of-n root signatures), rollback (revision above the active one and the floor),
// freeze (expiry), mix-and-match (scope), endless data (size cap first), one compromised key
// (threshold over distinct keys).
//
// Order: cheap checks first, and nothing that parses policy text before the signatures hold —
// untrusted Cedar is never compiled.
//   1. size cap                                   BUNDLE_TOO_LARGE
//   2. COSE_Sign structure                        BUNDLE_MALFORMED / _TRUNCATED / _UNSIGNED
//   3. k distinct root signatures                 BUNDLE_THRESHOLD / _UNKNOWN_SIGNER / _BAD_SIGNATURE
//   4. content type and payload shape             BUNDLE_MALFORMED / _TRUNCATED
//   5. manifest against the device                BUNDLE_ROLLBACK / _EXPIRED / _NOT_YET_VALID /
//                                                 _SCOPE / _AGENT_VERSION
//      attestation references for this profile    BUNDLE_ATTESTATION_PROFILE
//   6. issuers, entities, policies, tests         BUNDLE_ISSUERS_INVALID / _ENTITIES_INVALID /
//                                                 _POLICY_INVALID / _TEST_FAILED
import type { CoseAlgorithm } from '../crypto/algorithms.js';
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import type { PublicKey } from '../crypto/keys.js';
import type { SignatureVerifier } from '../crypto/verifier.js';
import { type CborValue, CborTagged, decodeCbor } from '../envelope/cbor.js';
import { COSE_SIGN_TAG, HEADER, type SignerCheck, verifySign } from '../envelope/cose.js';
import type { ResolvedKey } from '../envelope/signed-claims.js';
import type { Entities, PolicySet } from '../policy/index.js';
import { type BundleIssuer, compileEntities, compileIssuers, compilePolicies, requireTestsPass, runBundleTests } from './content.js';
import { BundleError } from './errors.js';
import { type ObligationTable, obligationTable } from './obligations.js';
import {
  type AttestationReference,
  BUNDLE_CONTENT_TYPE,
  BUNDLE_LIMITS,
  type BundleManifest,
  DEFAULT_BUNDLE_MAX_BYTES,
  type BundleSettings,
  type BundleTest,
  compareVersions,
  decodeBundlePayload,
  fromCborError,
  isVersion,
} from './format.js';

export interface RootKey {
  readonly publicKey: PublicKey;
  /** Default: the key's derived kid. */
  readonly kid?: Uint8Array;
  /** When set, only signatures with exactly this algorithm count for this key. */
  readonly alg?: CoseAlgorithm;
}

/** What a device trusts and is: fixed by its configuration. */
export interface TrustOptions {
  readonly roots: readonly RootKey[];
  /** k of k-of-n: distinct root keys whose signatures must verify. */
  readonly threshold: number;
  /** This device. An absent value fails any non-empty scope list (fail closed). */
  readonly device?: string;
  readonly site?: string;
  readonly profile?: string;
  /** This agent's version, `major.minor.patch`. */
  readonly agentVersion: string;
  readonly maxBytes?: number;
  /** Default: node:crypto. */
  readonly verifier?: SignatureVerifier;
}

export interface VerifyOptions extends TrustOptions {
  /** Trusted time, milliseconds since the epoch. */
  readonly now: number;
  /** The revision must exceed both (default 0: no constraint). */
  readonly activeRevision?: number;
  readonly revisionFloor?: number;
  /**
   * Accept a bundle past its `expires` (re-verifying the bundle that is already enforced: it
   * stays in force, marked stale, until a newer one arrives). Never for a new bundle.
   */
  readonly allowExpired?: boolean;
}

export interface BundleSigner {
  readonly kid: Uint8Array;
  readonly alg: number;
}

export interface VerifiedBundle {
  readonly bytes: Uint8Array;
  /** SHA-256 of `bytes`, lowercase hex. */
  readonly digest: string;
  readonly manifest: BundleManifest;
  /** Root keys whose signatures verified (distinct keys, message order). */
  readonly signers: readonly BundleSigner[];
  readonly policies: PolicySet;
  /** What each policy's annotations oblige the agent to do (approvals, rates, safety, grants), by policy id. */
  readonly obligations: ObligationTable;
  readonly entities: Entities;
  readonly issuers: readonly BundleIssuer[];
  /** Issuers by kid (lowercase hex). */
  readonly issuersByKid: ReadonlyMap<string, BundleIssuer>;
  readonly attestation: readonly AttestationReference[];
  readonly settings: BundleSettings;
  readonly tests: readonly BundleTest[];
  /** Past `expires` at verification time (possible only with `allowExpired`). */
  readonly expired: boolean;
}

export function verifyBundle(bytes: Uint8Array, options: VerifyOptions): VerifiedBundle {
  const maxBytes = options.maxBytes ?? DEFAULT_BUNDLE_MAX_BYTES;
  const roots = indexRoots(options);
  checkAgentVersionSyntax(options.agentVersion);
  if (bytes.length > maxBytes) {
    throw new BundleError('BUNDLE_TOO_LARGE', `bundle is ${bytes.length} bytes, the limit is ${maxBytes}`);
  }
  const checked = verifyRootSigned(bytes, options, roots, maxBytes, BUNDLE_CONTENT_TYPE, 'bundle');
  const signers = checked.signers;
  const payload = decodeBundlePayload(checked.payload);
  const { manifest } = payload;
  try {
    const expired = checkManifest(manifest, options);
    checkAttestationProfiles(payload.attestation, options.profile);
    const issuers = compileIssuers(payload.issuers);
    const entities = compileEntities(payload.entities);
    const policies = compilePolicies(payload.policies);
    requireTestsPass(runBundleTests(policies, entities, payload.tests));
    return {
      bytes,
      digest: toHex(sha256(bytes)),
      manifest,
      signers,
      policies,
      obligations: obligationTable(policies.policies.map((p) => p.determining)),
      entities,
      issuers,
      issuersByKid: new Map(issuers.map((issuer) => [issuer.kidHex, issuer])),
      attestation: payload.attestation,
      settings: payload.settings,
      tests: payload.tests,
      expired,
    };
  } catch (err) {
    throw err instanceof BundleError ? err.withRevision(manifest.revision) : err;
  }
}

/**
 * The root-signature part of verification, shared by bundles and rollback instructions: k
 * distinct root keys signed, and the signed content type is `contentType`. Returns the payload
 * bytes (not yet decoded) and the counted signers.
 */
export function verifyRootSigned(
  bytes: Uint8Array,
  options: Pick<TrustOptions, 'threshold' | 'verifier'>,
  roots: RootIndex,
  maxBytes: number,
  contentType: string,
  what: string,
): { payload: Uint8Array; signers: BundleSigner[] } {
  // A structural pass first (cheap: the payload is one byte string) so that an unsigned message
  // is named as such, not as a malformed COSE_Sign.
  requireSignatures(bytes, maxBytes, what);
  let checked;
  try {
    checked = verifySign(bytes, {
      maxBytes,
      maxDepth: BUNDLE_LIMITS.coseMaxDepth,
      keys: (kid) => roots.byKid.get(toHex(kid))?.publicKey,
      ...(options.verifier === undefined ? {} : { verifier: options.verifier }),
    });
  } catch (err) {
    throw fromCborError(err, 'COSE_Sign');
  }
  const signers = countSignatures(checked.signers, roots, options.threshold);
  const signedType = checked.protectedHeader.get(HEADER.contentType);
  if (signedType !== contentType) {
    throw new BundleError('BUNDLE_MALFORMED', `signed content type is ${JSON.stringify(signedType ?? null)}, not ${contentType}`);
  }
  return { payload: checked.payload, signers };
}

export interface RootIndex {
  readonly byKid: ReadonlyMap<string, RootKey>;
  /** Number of distinct root public keys. */
  readonly distinct: number;
}

export function indexRoots({ roots, threshold }: Pick<TrustOptions, 'roots' | 'threshold'>): RootIndex {
  const byKid = new Map<string, RootKey>();
  const keys = new Set<string>();
  for (const root of roots) {
    const kid = toHex(root.kid ?? root.publicKey.kid);
    const earlier = byKid.get(kid);
    if (earlier !== undefined && toHex(earlier.publicKey.raw) !== toHex(root.publicKey.raw)) {
      throw configError(`two different root keys share kid ${kid}`);
    }
    byKid.set(kid, root);
    keys.add(toHex(root.publicKey.raw));
  }
  if (!Number.isSafeInteger(threshold) || threshold < 1 || threshold > keys.size) {
    throw configError(`threshold ${threshold} must be between 1 and the ${keys.size} distinct root keys`);
  }
  return { byKid, distinct: keys.size };
}

/** BUNDLE_UNSIGNED for a bare payload or a COSE_Sign without signatures; shape errors otherwise. */
function requireSignatures(bytes: Uint8Array, maxBytes: number, what: string): void {
  let root: CborValue;
  try {
    root = decodeCbor(bytes, { maxBytes, maxDepth: BUNDLE_LIMITS.coseMaxDepth, allowRootTag: true });
  } catch (err) {
    throw fromCborError(err, what);
  }
  if (root instanceof Map) throw new BundleError('BUNDLE_UNSIGNED', `the ${what} is an unsigned payload (sign it with \`ztedge bundle sign\`)`);
  if (!(root instanceof CborTagged) || root.tag !== COSE_SIGN_TAG) {
    throw new BundleError('BUNDLE_MALFORMED', `a ${what} must be a COSE_Sign message (CBOR tag ${COSE_SIGN_TAG})`);
  }
  const signatures = Array.isArray(root.value) ? root.value[3] : undefined;
  if (Array.isArray(signatures) && signatures.length === 0) throw new BundleError('BUNDLE_UNSIGNED', `the ${what} carries no signatures`);
}

const UNKNOWN_KEY_CODES = new Set(['ENVELOPE_KID_UNKNOWN', 'ENVELOPE_KID_MISSING']);

/**
 * Applies the k-of-n rule over distinct root keys. The refusal names the most telling reason:
 * a root-key signature that failed (BAD_SIGNATURE) over too few valid ones (THRESHOLD); and
 * UNKNOWN_SIGNER only when no signature came from a root key at all.
 */
function countSignatures(checks: readonly SignerCheck[], roots: RootIndex, threshold: number): BundleSigner[] {
  const counted = new Map<string, BundleSigner>();
  let failed: string | undefined;
  let unknown = 0;
  for (const check of checks) {
    if (check.error === undefined) {
      const root = roots.byKid.get(toHex(check.kid!))!;
      if (root.alg !== undefined && root.alg !== check.alg) {
        failed ??= `root key ${toHex(check.kid!)} signed with algorithm ${check.alg}, but only ${root.alg} is trusted for it`;
        continue;
      }
      const key = toHex(root.publicKey.raw);
      if (!counted.has(key)) counted.set(key, { kid: check.kid!, alg: check.alg! });
    } else if (UNKNOWN_KEY_CODES.has(check.error.code)) {
      unknown++;
    } else {
      failed ??= `${check.kid === undefined ? 'a signature' : `the signature of ${toHex(check.kid)}`}: ${check.error.message} [${check.error.code}]`;
    }
  }
  if (counted.size >= threshold) return [...counted.values()];
  if (failed !== undefined) throw new BundleError('BUNDLE_BAD_SIGNATURE', failed);
  if (counted.size === 0 && unknown > 0) {
    throw new BundleError('BUNDLE_UNKNOWN_SIGNER', `none of the ${unknown} signature${unknown === 1 ? '' : 's'} is by a trusted root key`);
  }
  throw new BundleError(
    'BUNDLE_THRESHOLD',
    `${counted.size} distinct root key${counted.size === 1 ? '' : 's'} signed; ${threshold} of ${roots.distinct} are required`,
  );
}

/** The manifest against this device and time; returns whether the bundle has expired. */
function checkManifest(manifest: BundleManifest, options: VerifyOptions): boolean {
  const active = options.activeRevision ?? 0;
  const floor = options.revisionFloor ?? 0;
  if (manifest.revision <= active || manifest.revision <= floor) {
    throw new BundleError(
      'BUNDLE_ROLLBACK',
      `revision ${manifest.revision} is not newer than the active revision ${active} and the highest revision ever activated ${floor}`,
    );
  }
  const nowSeconds = Math.floor(options.now / 1000);
  const expired = nowSeconds >= manifest.expires;
  if (expired && options.allowExpired !== true) {
    throw new BundleError('BUNDLE_EXPIRED', `bundle expired at ${iso(manifest.expires)}; trusted time is ${iso(nowSeconds)}`);
  }
  if (manifest.notBefore !== undefined && nowSeconds < manifest.notBefore) {
    throw new BundleError('BUNDLE_NOT_YET_VALID', `bundle is valid from ${iso(manifest.notBefore)}; trusted time is ${iso(nowSeconds)}`);
  }
  checkScope('device', manifest.scope.devices, options.device);
  checkScope('site', manifest.scope.sites, options.site);
  checkScope('profile', manifest.scope.profiles, options.profile);
  if (compareVersions(options.agentVersion, manifest.minAgentVersion) < 0) {
    throw new BundleError('BUNDLE_AGENT_VERSION', `bundle needs agent ${manifest.minAgentVersion} or later; this is ${options.agentVersion}`);
  }
  return expired;
}

/**
 * Reference values that name no profile of this device are a bundle built for another device
 * class (or a misspelt profile): enforcing its policies with posture judged against nothing
 * would be wrong, so it is refused. A bundle without references is fine (posture: degraded).
 */
function checkAttestationProfiles(references: readonly AttestationReference[], profile: string | undefined): void {
  if (references.length === 0 || references.some((r) => r.profile === profile)) return;
  throw new BundleError(
    'BUNDLE_ATTESTATION_PROFILE',
    `attestation references name the firmware profile${references.length === 1 ? '' : 's'} ${references.map((r) => r.profile).join(', ')}; this device's profile is ${profile ?? 'not configured'}`,
  );
}

function checkScope(what: string, allowed: readonly string[], mine: string | undefined): void {
  if (allowed.length === 0 || (mine !== undefined && allowed.includes(mine))) return;
  throw new BundleError(
    'BUNDLE_SCOPE',
    `bundle is scoped to ${what}${allowed.length === 1 ? '' : 's'} ${allowed.join(', ')}; this ${what} is ${mine ?? 'not configured'}`,
  );
}

function checkAgentVersionSyntax(version: string): void {
  if (!isVersion(version)) throw configError(`agent version ${JSON.stringify(version)} is not major.minor.patch`);
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}

function configError(message: string): BundleError {
  return new BundleError('BUNDLE_VERIFIER_CONFIG', message);
}

/**
 * A key is trusted only while its issuer entry is inside its validity window, and only for its
 * principal: an envelope's iss must be that principal (or absent).
 */
export function issuerKey(bundle: VerifiedBundle, kid: Uint8Array, now: number): ResolvedKey | undefined {
  const issuer = bundle.issuersByKid.get(toHex(kid));
  if (issuer === undefined) return undefined;
  if (issuer.notBeforeMs !== undefined && now < issuer.notBeforeMs) return undefined;
  if (issuer.notAfterMs !== undefined && now >= issuer.notAfterMs) return undefined;
  return { key: issuer.key, issuer: issuer.principal.key };
}
