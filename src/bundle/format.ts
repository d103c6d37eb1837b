// The policy bundle payload: the CBOR map that a COSE_Sign (tag 98) carries and the root keys
// sign. Pure: typed values in, deterministic bytes out; bytes in, strictly checked values out.
//
// Layout (text keys; every key listed is required unless marked optional, no other key is
// accepted at any level):
//
//   format       1
//   manifest     { id, revision, created, expires, notBefore?, scope, minAgentVersion }
//                times are seconds since the epoch (CWT NumericDate); scope lists are
//                { sites, devices, profiles }, an empty list meaning "any"
//   policies     [ { file, text } ]            Cedar text, in evaluation-id order
//   entities     text                          Cedar entity JSON, kept as text so integers
//                                              beyond 2^53 survive (CBOR → JS would round them)
//   issuers      [ { kid, alg, publicKey, principal, notBefore?, notAfter?, roles? } ]
//   attestation  [ { profile, files: [ { path, sha256 | symlink } ], composite? } ]
//                reference values per firmware profile: sha256 is one lowercase hex digest or
//                a list of acceptable ones (rolling updates), symlink the target a link must
//                have; composite (only with one digest per file) pins a reference device's
//                composite measurement too
//   settings     { cacheTtlMs, replayWindowMs, clockSkewMs,
//                  audit: { maxUnsynced, checkpointEvery, checkpointIntervalMs } }
//   tests        [ { name, principal, action, resource, context, decision, reasons?, errors? } ]
//                principal/action/resource as `Type::"id"`, context as JSON text
//
// Semantic checks that need the Cedar engine or key import (policy syntax, entity JSON, uids,
// public keys) belong to verification; this module checks shape and bounds only.
import { type CoseAlgorithm, algorithmInfo } from '../crypto/algorithms.js';
import { type CborMap, type CborValue, decodeCbor, encodeCbor } from '../envelope/cbor.js';
import { EnvelopeError } from '../envelope/errors.js';
import { BundleError } from './errors.js';

export const BUNDLE_FORMAT_VERSION = 1;

/** COSE content type (header 3) of a bundle; part of the signed body header. */
export const BUNDLE_CONTENT_TYPE = 'application/ztedge-bundle+cbor';

/** Default cap on a bundle's size, in bytes (the agent config's limits.bundleMaxBytes). */
export const DEFAULT_BUNDLE_MAX_BYTES = 16 * 1024 * 1024;

/** Upper bounds on every list and string, so a signed but absurd bundle still cannot exhaust memory. */
export const BUNDLE_LIMITS = {
  /** Deepest CBOR nesting a payload needs (attestation → profile → files → file) plus one. */
  maxDepth: 6,
  /** Nesting of the COSE_Sign around it: message → signatures → signature → header map, plus headroom. */
  coseMaxDepth: 8,
  maxNameLength: 256,
  maxPolicyFiles: 10_000,
  maxPolicyTextLength: 4 * 1024 * 1024,
  maxEntitiesLength: 16 * 1024 * 1024,
  maxIssuers: 1024,
  maxRolesPerIssuer: 64,
  maxScopeEntries: 1024,
  maxProfiles: 256,
  maxFilesPerProfile: 4096,
  maxDigestsPerFile: 16,
  maxPathLength: 1024,
  maxTests: 10_000,
  maxContextLength: 64 * 1024,
  maxReasons: 256,
  maxPublicKeyLength: 65,
  maxKidLength: 64,
} as const;

/** 9999-12-31T23:59:59Z, in seconds: later "times" are nonsense. */
export const MAX_TIME_SECONDS = 253_402_300_799;

export interface BundleScope {
  readonly sites: readonly string[];
  readonly devices: readonly string[];
  readonly profiles: readonly string[];
}

export interface BundleManifest {
  readonly id: string;
  readonly revision: number;
  /** Seconds since the epoch. */
  readonly created: number;
  readonly expires: number;
  readonly notBefore?: number;
  readonly scope: BundleScope;
  /** `major.minor.patch`; agents older than this refuse the bundle. */
  readonly minAgentVersion: string;
}

export interface PolicyFile {
  readonly file: string;
  readonly text: string;
}

export interface IssuerEntry {
  readonly kid: Uint8Array;
  readonly alg: CoseAlgorithm;
  /** Raw public key: 32 bytes Ed25519, 65 bytes uncompressed P-256. */
  readonly publicKey: Uint8Array;
  /** The Cedar principal the issuer's commands act as, `Type::"id"`. */
  readonly principal: string;
  /** Seconds since the epoch. */
  readonly notBefore?: number;
  readonly notAfter?: number;
  readonly roles?: readonly string[];
}

/** Exactly one of `sha256` and `symlink`. */
export interface ReferenceFile {
  /** An absolute device path. */
  readonly path: string;
  /** Lowercase hex SHA-256, or the acceptable ones during a rolling update. */
  readonly sha256?: string | readonly string[];
  /** The target a symbolic link at `path` must have. */
  readonly symlink?: string;
}

export interface AttestationReference {
  /** A firmware profile name (firmware-profiles/<profile>.json). */
  readonly profile: string;
  readonly files: readonly ReferenceFile[];
  /** Lowercase hex composite measurement of a reference device; requires one digest per file. */
  readonly composite?: string;
}

export interface AuditSettings {
  /** Unsynced records at which the agent fails closed. */
  readonly maxUnsynced: number;
  readonly checkpointEvery: number;
  readonly checkpointIntervalMs: number;
}

export interface BundleSettings {
  readonly cacheTtlMs: number;
  readonly replayWindowMs: number;
  readonly clockSkewMs: number;
  readonly audit: AuditSettings;
}

export type Decision = 'allow' | 'deny';

export interface BundleTest {
  readonly name: string;
  readonly principal: string;
  readonly action: string;
  readonly resource: string;
  /** Cedar context as JSON text (exact integers). */
  readonly context: string;
  readonly decision: Decision;
  /** Expected determining policies (`@id` or policy id), when the case pins them. */
  readonly reasons?: readonly string[];
  /** Expected policies whose evaluation errors, when the case pins them. */
  readonly errors?: readonly string[];
}

export interface BundlePayload {
  readonly manifest: BundleManifest;
  readonly policies: readonly PolicyFile[];
  readonly entities: string;
  readonly issuers: readonly IssuerEntry[];
  readonly attestation: readonly AttestationReference[];
  readonly settings: BundleSettings;
  readonly tests: readonly BundleTest[];
}

const SECOND = 1000;
const MINUTE = 60 * SECOND;
const HOUR = 60 * MINUTE;
const DAY = 24 * HOUR;

/** Bounds of each setting, inclusive, in its own unit. */
export const SETTINGS_BOUNDS = {
  cacheTtlMs: [0, DAY],
  replayWindowMs: [SECOND, 7 * DAY],
  clockSkewMs: [0, HOUR],
  maxUnsynced: [1, 1_000_000_000],
  checkpointEvery: [1, 1_000_000],
  checkpointIntervalMs: [SECOND, DAY],
} as const satisfies Record<string, readonly [number, number]>;

export const DEFAULT_SETTINGS: BundleSettings = {
  cacheTtlMs: 30 * SECOND,
  replayWindowMs: 5 * MINUTE,
  clockSkewMs: 30 * SECOND,
  audit: { maxUnsynced: 1_000_000, checkpointEvery: 1000, checkpointIntervalMs: MINUTE },
};

const NAME = /^[A-Za-z0-9][A-Za-z0-9._:@/-]*$/;
const VERSION = /^(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})\.(0|[1-9][0-9]{0,5})$/;

/** Whether `text` is a `major.minor.patch` version as manifests and agents use them. */
export function isVersion(text: string): boolean {
  return VERSION.test(text);
}

/** Compares two `major.minor.patch` versions numerically. */
export function compareVersions(a: string, b: string): number {
  const left = a.split('.').map(Number);
  const right = b.split('.').map(Number);
  for (let i = 0; i < 3; i++) if (left[i] !== right[i]) return left[i]! - right[i]!;
  return 0;
}

const SHA256_HEX = /^[0-9a-f]{64}$/;

// ---------------------------------------------------------------------------------------
// Encoding

/** The payload's deterministic CBOR bytes (what the root keys sign). Checks it first. */
export function encodeBundlePayload(payload: BundlePayload): Uint8Array {
  const bytes = encodeCbor({
    format: BUNDLE_FORMAT_VERSION,
    manifest: {
      id: payload.manifest.id,
      revision: payload.manifest.revision,
      created: payload.manifest.created,
      expires: payload.manifest.expires,
      ...(payload.manifest.notBefore === undefined ? {} : { notBefore: payload.manifest.notBefore }),
      scope: {
        sites: [...payload.manifest.scope.sites],
        devices: [...payload.manifest.scope.devices],
        profiles: [...payload.manifest.scope.profiles],
      },
      minAgentVersion: payload.manifest.minAgentVersion,
    },
    policies: payload.policies.map((p) => ({ file: p.file, text: p.text })),
    entities: payload.entities,
    issuers: payload.issuers.map((i) => ({
      kid: i.kid,
      alg: i.alg,
      publicKey: i.publicKey,
      principal: i.principal,
      ...(i.notBefore === undefined ? {} : { notBefore: i.notBefore }),
      ...(i.notAfter === undefined ? {} : { notAfter: i.notAfter }),
      ...(i.roles === undefined ? {} : { roles: [...i.roles] }),
    })),
    attestation: payload.attestation.map((a) => ({
      profile: a.profile,
      files: a.files.map((f) => ({
        path: f.path,
        ...(f.sha256 === undefined ? {} : { sha256: typeof f.sha256 === 'string' ? f.sha256 : [...f.sha256] }),
        ...(f.symlink === undefined ? {} : { symlink: f.symlink }),
      })),
      ...(a.composite === undefined ? {} : { composite: a.composite }),
    })),
    settings: {
      cacheTtlMs: payload.settings.cacheTtlMs,
      replayWindowMs: payload.settings.replayWindowMs,
      clockSkewMs: payload.settings.clockSkewMs,
      audit: { ...payload.settings.audit },
    },
    tests: payload.tests.map((t) => ({
      name: t.name,
      principal: t.principal,
      action: t.action,
      resource: t.resource,
      context: t.context,
      decision: t.decision,
      ...(t.reasons === undefined ? {} : { reasons: [...t.reasons] }),
      ...(t.errors === undefined ? {} : { errors: [...t.errors] }),
    })),
  });
  // Building runs the same checks a device runs, so a bundle that encodes also decodes.
  decodeBundlePayload(bytes);
  return bytes;
}

// ---------------------------------------------------------------------------------------
// Decoding

/** Decodes and shape-checks payload bytes; BUNDLE_MALFORMED / BUNDLE_TRUNCATED otherwise. */
export function decodeBundlePayload(bytes: Uint8Array): BundlePayload {
  let root: CborValue;
  try {
    root = decodeCbor(bytes, { maxBytes: bytes.length, maxDepth: BUNDLE_LIMITS.maxDepth });
  } catch (err) {
    throw fromCborError(err, 'payload');
  }
  const top = record(root, 'payload', ['format', 'manifest', 'policies', 'entities', 'issuers', 'attestation', 'settings', 'tests']);
  if (top.get('format') !== BUNDLE_FORMAT_VERSION) {
    throw malformed(`payload.format must be ${BUNDLE_FORMAT_VERSION}, got ${describe(top.get('format'))}`);
  }
  const manifest = readManifest(top.get('manifest'));
  const payload: BundlePayload = {
    manifest,
    policies: list(top.get('policies'), 'policies', BUNDLE_LIMITS.maxPolicyFiles, readPolicyFile),
    entities: text(top.get('entities'), 'entities', BUNDLE_LIMITS.maxEntitiesLength),
    issuers: list(top.get('issuers'), 'issuers', BUNDLE_LIMITS.maxIssuers, readIssuer),
    attestation: list(top.get('attestation'), 'attestation', BUNDLE_LIMITS.maxProfiles, readAttestation),
    settings: readSettings(top.get('settings')),
    tests: list(top.get('tests'), 'tests', BUNDLE_LIMITS.maxTests, readTest),
  };
  unique(payload.policies.map((p) => p.file), 'policies[].file');
  unique(payload.attestation.map((a) => a.profile), 'attestation[].profile');
  unique(payload.tests.map((t) => t.name), 'tests[].name');
  return payload;
}

/** Maps a strict-CBOR failure to the bundle's codes. */
export function fromCborError(err: unknown, what: string): BundleError {
  if (!(err instanceof EnvelopeError)) throw err;
  if (err.code === 'ENVELOPE_TRUNCATED') return new BundleError('BUNDLE_TRUNCATED', `${what}: ${err.message}`);
  if (err.code === 'ENVELOPE_TOO_LARGE') return new BundleError('BUNDLE_TOO_LARGE', `${what}: ${err.message}`);
  return new BundleError('BUNDLE_MALFORMED', `${what}: ${err.message}`);
}

function readManifest(value: CborValue | undefined): BundleManifest {
  const m = record(value, 'manifest', ['id', 'revision', 'created', 'expires', 'scope', 'minAgentVersion'], ['notBefore']);
  const revision = m.get('revision');
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 1) {
    throw malformed(`manifest.revision must be a positive integer, got ${describe(revision)}`);
  }
  const created = time(m.get('created'), 'manifest.created');
  const expires = time(m.get('expires'), 'manifest.expires');
  if (expires <= created) throw malformed('manifest.expires must be after manifest.created');
  const notBefore = optional(m, 'notBefore', (v) => time(v, 'manifest.notBefore'));
  if (notBefore !== undefined && notBefore >= expires) throw malformed('manifest.notBefore must be before manifest.expires');
  const scope = record(m.get('scope'), 'manifest.scope', ['sites', 'devices', 'profiles']);
  const scopeList = (key: string) => {
    const items = list(scope.get(key), `manifest.scope.${key}`, BUNDLE_LIMITS.maxScopeEntries, (v, at) => name(v, at));
    unique(items, `manifest.scope.${key}`);
    return items;
  };
  const minAgentVersion = text(m.get('minAgentVersion'), 'manifest.minAgentVersion', 32);
  if (!isVersion(minAgentVersion)) throw malformed(`manifest.minAgentVersion must be major.minor.patch, got ${JSON.stringify(minAgentVersion)}`);
  return {
    id: name(m.get('id'), 'manifest.id'),
    revision,
    created,
    expires,
    ...(notBefore === undefined ? {} : { notBefore }),
    scope: { sites: scopeList('sites'), devices: scopeList('devices'), profiles: scopeList('profiles') },
    minAgentVersion,
  };
}

function readPolicyFile(value: CborValue, at: string): PolicyFile {
  const p = record(value, at, ['file', 'text']);
  return { file: text(p.get('file'), `${at}.file`, BUNDLE_LIMITS.maxPathLength, 1), text: text(p.get('text'), `${at}.text`, BUNDLE_LIMITS.maxPolicyTextLength) };
}

function readIssuer(value: CborValue, at: string): IssuerEntry {
  const i = record(value, at, ['kid', 'alg', 'publicKey', 'principal'], ['notBefore', 'notAfter', 'roles']);
  const alg = i.get('alg');
  const info = algorithmInfo(alg);
  if (info === undefined) throw malformed(`${at}.alg ${describe(alg)} is not a supported COSE algorithm`);
  const notBefore = optional(i, 'notBefore', (v) => time(v, `${at}.notBefore`));
  const notAfter = optional(i, 'notAfter', (v) => time(v, `${at}.notAfter`));
  if (notBefore !== undefined && notAfter !== undefined && notAfter <= notBefore) {
    throw malformed(`${at}.notAfter must be after ${at}.notBefore`);
  }
  const roles = optional(i, 'roles', (v) => {
    const items = list(v, `${at}.roles`, BUNDLE_LIMITS.maxRolesPerIssuer, (r, where) => name(r, where));
    unique(items, `${at}.roles`);
    return items;
  });
  return {
    kid: bytes(i.get('kid'), `${at}.kid`, 1, BUNDLE_LIMITS.maxKidLength),
    alg: info.id,
    publicKey: bytes(i.get('publicKey'), `${at}.publicKey`, 32, BUNDLE_LIMITS.maxPublicKeyLength),
    principal: text(i.get('principal'), `${at}.principal`, BUNDLE_LIMITS.maxNameLength, 1),
    ...(notBefore === undefined ? {} : { notBefore }),
    ...(notAfter === undefined ? {} : { notAfter }),
    ...(roles === undefined ? {} : { roles }),
  };
}

function readAttestation(value: CborValue, at: string): AttestationReference {
  const a = record(value, at, ['profile', 'files'], ['composite']);
  const files = list(a.get('files'), `${at}.files`, BUNDLE_LIMITS.maxFilesPerProfile, (f, where): ReferenceFile => {
    const file = record(f, where, ['path'], ['sha256', 'symlink']);
    const path = devicePath(file.get('path'), `${where}.path`);
    if (file.has('sha256') === file.has('symlink')) throw malformed(`${where} must have exactly one of sha256 and symlink`);
    if (file.has('symlink')) return { path, symlink: text(file.get('symlink'), `${where}.symlink`, BUNDLE_LIMITS.maxPathLength, 1) };
    const digests = file.get('sha256');
    if (!Array.isArray(digests)) return { path, sha256: sha256Hex(digests, `${where}.sha256`) };
    const accepted = list(digests, `${where}.sha256`, BUNDLE_LIMITS.maxDigestsPerFile, (d, w) => sha256Hex(d, w));
    if (accepted.length === 0) throw malformed(`${where}.sha256 must list at least one digest`);
    unique(accepted, `${where}.sha256`);
    return { path, sha256: accepted };
  });
  unique(files.map((f) => f.path), `${at}.files[].path`);
  const composite = optional(a, 'composite', (v) => sha256Hex(v, `${at}.composite`));
  if (composite !== undefined && files.some((f) => f.symlink === undefined && typeof f.sha256 !== 'string')) {
    throw malformed(`${at}.composite pins one state, so every file needs exactly one sha256`);
  }
  return { profile: name(a.get('profile'), `${at}.profile`), files, ...(composite === undefined ? {} : { composite }) };
}

/** An absolute, normalized, concrete device path (no glob characters). */
function devicePath(value: CborValue | undefined, at: string): string {
  const s = text(value, at, BUNDLE_LIMITS.maxPathLength, 2);
  if (!s.startsWith('/') || s.endsWith('/') || /\/\/|\/\.\.?(\/|$)|[*?\u0000]/.test(s)) {
    throw malformed(`${at} ${JSON.stringify(s)} must be an absolute, normalized path without glob characters`);
  }
  return s;
}

function readSettings(value: CborValue | undefined): BundleSettings {
  const s = record(value, 'settings', ['cacheTtlMs', 'replayWindowMs', 'clockSkewMs', 'audit']);
  const audit = record(s.get('audit'), 'settings.audit', ['maxUnsynced', 'checkpointEvery', 'checkpointIntervalMs']);
  return {
    cacheTtlMs: bounded(s.get('cacheTtlMs'), 'settings.cacheTtlMs', SETTINGS_BOUNDS.cacheTtlMs),
    replayWindowMs: bounded(s.get('replayWindowMs'), 'settings.replayWindowMs', SETTINGS_BOUNDS.replayWindowMs),
    clockSkewMs: bounded(s.get('clockSkewMs'), 'settings.clockSkewMs', SETTINGS_BOUNDS.clockSkewMs),
    audit: {
      maxUnsynced: bounded(audit.get('maxUnsynced'), 'settings.audit.maxUnsynced', SETTINGS_BOUNDS.maxUnsynced),
      checkpointEvery: bounded(audit.get('checkpointEvery'), 'settings.audit.checkpointEvery', SETTINGS_BOUNDS.checkpointEvery),
      checkpointIntervalMs: bounded(audit.get('checkpointIntervalMs'), 'settings.audit.checkpointIntervalMs', SETTINGS_BOUNDS.checkpointIntervalMs),
    },
  };
}

function readTest(value: CborValue, at: string): BundleTest {
  const t = record(value, at, ['name', 'principal', 'action', 'resource', 'context', 'decision'], ['reasons', 'errors']);
  const decision = t.get('decision');
  if (decision !== 'allow' && decision !== 'deny') throw malformed(`${at}.decision must be "allow" or "deny", got ${describe(decision)}`);
  const policyNames = (key: string) =>
    optional(t, key, (v) => list(v, `${at}.${key}`, BUNDLE_LIMITS.maxReasons, (r, where) => text(r, where, BUNDLE_LIMITS.maxNameLength, 1)));
  const reasons = policyNames('reasons');
  const errors = policyNames('errors');
  return {
    name: text(t.get('name'), `${at}.name`, BUNDLE_LIMITS.maxNameLength, 1),
    principal: text(t.get('principal'), `${at}.principal`, BUNDLE_LIMITS.maxNameLength, 1),
    action: text(t.get('action'), `${at}.action`, BUNDLE_LIMITS.maxNameLength, 1),
    resource: text(t.get('resource'), `${at}.resource`, BUNDLE_LIMITS.maxNameLength, 1),
    context: text(t.get('context'), `${at}.context`, BUNDLE_LIMITS.maxContextLength, 2),
    decision,
    ...(reasons === undefined ? {} : { reasons }),
    ...(errors === undefined ? {} : { errors }),
  };
}

// ---------------------------------------------------------------------------------------
// Shape helpers: each names the offending field in its message.

function record(value: CborValue | undefined, at: string, required: readonly string[], optionalKeys: readonly string[] = []): CborMap {
  if (!(value instanceof Map)) throw malformed(`${at} must be a map`);
  for (const key of value.keys()) {
    if (typeof key !== 'string' || (!required.includes(key) && !optionalKeys.includes(key))) {
      throw malformed(`${at} has an unknown key ${describe(key)}`);
    }
  }
  for (const key of required) if (!value.has(key)) throw malformed(`${at}.${key} is missing`);
  return value;
}

function optional<T>(map: CborMap, key: string, read: (value: CborValue) => T): T | undefined {
  const value = map.get(key);
  return value === undefined ? undefined : read(value);
}

function list<T>(value: CborValue | undefined, at: string, max: number, read: (item: CborValue, at: string) => T): T[] {
  if (!Array.isArray(value)) throw malformed(`${at} must be an array`);
  if (value.length > max) throw malformed(`${at} has ${value.length} entries, at most ${max} allowed`);
  return value.map((item, i) => read(item, `${at}[${i}]`));
}

function text(value: CborValue | undefined, at: string, maxLength: number, minLength = 0): string {
  if (typeof value !== 'string') throw malformed(`${at} must be a text string`);
  if (value.length < minLength || value.length > maxLength) {
    throw malformed(`${at} must be ${minLength}..${maxLength} characters long, got ${value.length}`);
  }
  return value;
}

/** An identifier-like name: bundle id, site, device, profile, role. */
function name(value: CborValue | undefined, at: string): string {
  const s = text(value, at, BUNDLE_LIMITS.maxNameLength, 1);
  if (!NAME.test(s)) throw malformed(`${at} ${JSON.stringify(s)} must be letters, digits and . _ : @ / - (not starting with punctuation)`);
  return s;
}

function bytes(value: CborValue | undefined, at: string, minLength: number, maxLength: number): Uint8Array {
  if (!(value instanceof Uint8Array)) throw malformed(`${at} must be a byte string`);
  if (value.length < minLength || value.length > maxLength) throw malformed(`${at} must be ${minLength}..${maxLength} bytes, got ${value.length}`);
  return value;
}

function time(value: CborValue | undefined, at: string): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < 0 || value > MAX_TIME_SECONDS) {
    throw malformed(`${at} must be seconds since the epoch, got ${describe(value)}`);
  }
  return value;
}

function bounded(value: CborValue | undefined, at: string, [min, max]: readonly [number, number]): number {
  if (typeof value !== 'number' || !Number.isSafeInteger(value) || value < min || value > max) {
    throw malformed(`${at} must be an integer in ${min}..${max}, got ${describe(value)}`);
  }
  return value;
}

function sha256Hex(value: CborValue | undefined, at: string): string {
  if (typeof value !== 'string' || !SHA256_HEX.test(value)) throw malformed(`${at} must be 64 lowercase hex digits`);
  return value;
}

function unique(items: readonly string[], at: string): void {
  const seen = new Set<string>();
  for (const item of items) {
    if (seen.has(item)) throw malformed(`${at} lists ${JSON.stringify(item)} twice`);
    seen.add(item);
  }
}

function describe(value: unknown): string {
  if (value === undefined) return 'nothing';
  if (typeof value === 'string') return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'bigint' || typeof value === 'boolean' || value === null) return String(value);
  if (value instanceof Uint8Array) return 'a byte string';
  if (Array.isArray(value)) return 'an array';
  return 'a map';
}

function malformed(message: string): BundleError {
  return new BundleError('BUNDLE_MALFORMED', message);
}
