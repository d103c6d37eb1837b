// Building a bundle payload from a source directory on the operator's machine. Everything a
// device would check is checked here first (the same code compiles the policies and runs the
// embedded tests), so a failing bundle is caught before anyone signs it.
//
// Source directory:
//   *.cedar           policies, in file-name order; ids policy0.. continue across files
//   entities.json     Cedar entity JSON (default [])
//   issuers.json      [{ principal, publicKey, alg?, kid?, notBefore?, notAfter?, roles? }]
//                     principal `Type::"id"` or {type, id}; publicKey PEM text or the path of a
//                     .pub file (relative to the directory); alg EdDSA|Ed25519|ES256|ESP256
//                     (default by key type); kid hex (default derived); times ISO 8601
//   attestation.json  { "<profile>": { files: [{ path, sha256 }], composite } }
//   settings.json     { cacheTtl?, replayWindow?, clockSkew?, audit?: { maxUnsynced?,
//                     checkpointEvery?, checkpointInterval? } }, durations as "30s", "5m", ...
//   tests.json        [{ name, principal, action, resource, context?, decision, reasons?, errors? }]
//                     reasons: the determining policies, errors: the policies whose evaluation
//                     errors, each by @id (or policy id); compared as sets when given
// Any other *.json file is refused (a misspelt settings file must not be silently ignored).
import fs from 'node:fs';
import path from 'node:path';
import { parseDurationMs } from '../duration.js';
import { COSE_ALG, type CoseAlgorithm, algorithmInfo, defaultAlgorithm } from '../crypto/algorithms.js';
import { fromHex } from '../crypto/bytes.js';
import { CryptoError } from '../crypto/errors.js';
import { readPublicKeyFile } from '../crypto/key-files.js';
import { type PublicKey, publicKeyFromPem } from '../crypto/keys.js';
import { EntityUid, JsonError, type JsonValue, parseJson } from '../policy/index.js';
import { type TestOutcome, compileEntities, compileIssuers, compilePolicies, requireTestsPass, runBundleTests } from './content.js';
import { type BundleProblem, BundleError } from './errors.js';
import {
  BUNDLE_LIMITS,
  type AttestationReference,
  type AuditSettings,
  type BundleManifest,
  type BundlePayload,
  type BundleSettings,
  type BundleTest,
  DEFAULT_SETTINGS,
  type IssuerEntry,
  type PolicyFile,
  SETTINGS_BOUNDS,
  encodeBundlePayload,
} from './format.js';
import { jsonText } from './json-text.js';

/** Everything in a bundle but its manifest, as read from a source directory. */
export interface BundleSource {
  readonly policies: readonly PolicyFile[];
  readonly entities: string;
  readonly issuers: readonly IssuerEntry[];
  readonly attestation: readonly AttestationReference[];
  readonly settings: BundleSettings;
  readonly tests: readonly BundleTest[];
}

export interface BuiltBundle {
  readonly payload: BundlePayload;
  /** The unsigned payload bytes; `ztedge bundle sign` wraps them in a COSE_Sign. */
  readonly bytes: Uint8Array;
  readonly policyCount: number;
  readonly testOutcomes: readonly TestOutcome[];
}

const SOURCE_FILES = new Set(['entities.json', 'issuers.json', 'attestation.json', 'settings.json', 'tests.json']);
const MAX_JSON_FILE_BYTES = 16 * 1024 * 1024;
const ALG_NAMES: Readonly<Record<string, CoseAlgorithm>> = COSE_ALG;

/** Compiles and tests `source` under `manifest`; returns the payload bytes to sign. */
export function buildBundle(source: BundleSource, manifest: BundleManifest): BuiltBundle {
  const payload: BundlePayload = { manifest, ...source };
  const bytes = encodeBundlePayload(payload);
  compileIssuers(payload.issuers);
  const entities = compileEntities(payload.entities);
  const policies = compilePolicies(payload.policies);
  const testOutcomes = runBundleTests(policies, entities, payload.tests);
  requireTestsPass(testOutcomes);
  return { payload, bytes, policyCount: policies.size, testOutcomes };
}

/** Reads a source directory; BUNDLE_SOURCE_INVALID lists every problem found. */
export function readBundleSource(dir: string): BundleSource {
  const problems: BundleProblem[] = [];
  let names: string[];
  try {
    names = fs.readdirSync(dir).sort();
  } catch (err) {
    throw new BundleError('BUNDLE_SOURCE_INVALID', `cannot read source directory ${dir}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  for (const name of names) {
    if (name.endsWith('.json') && !SOURCE_FILES.has(name)) {
      problems.push({ code: 'SOURCE_UNKNOWN_FILE', message: `${name}: not a bundle source file (expected one of ${[...SOURCE_FILES].join(', ')})` });
    }
  }
  const policies = names
    .filter((name) => name.endsWith('.cedar'))
    .map((name) => ({ file: name, text: readText(dir, name, BUNDLE_LIMITS.maxPolicyTextLength, problems) ?? '' }));
  if (policies.length === 0) problems.push({ code: 'SOURCE_NO_POLICIES', message: `${dir}: no *.cedar files` });

  const json = (name: string): JsonValue | undefined => {
    if (!names.includes(name)) return undefined;
    const text = readText(dir, name, MAX_JSON_FILE_BYTES, problems);
    if (text === undefined) return undefined;
    try {
      return parseJson(text);
    } catch (err) {
      if (!(err instanceof JsonError)) throw err;
      problems.push({ code: err.code, message: `${name}: ${err.message}` });
      return undefined;
    }
  };
  const entitiesText = names.includes('entities.json') ? readText(dir, 'entities.json', BUNDLE_LIMITS.maxEntitiesLength, problems) : '[]';
  const source: BundleSource = {
    policies,
    entities: entitiesText ?? '[]',
    issuers: readIssuers(json('issuers.json'), dir, new Reporter('issuers.json', problems)),
    attestation: readAttestation(json('attestation.json'), new Reporter('attestation.json', problems)),
    settings: readSettings(json('settings.json'), new Reporter('settings.json', problems)),
    tests: readTests(json('tests.json'), new Reporter('tests.json', problems)),
  };
  if (problems.length > 0) {
    const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
    throw new BundleError('BUNDLE_SOURCE_INVALID', `${problems[0]!.message}${more}`, { problems });
  }
  return source;
}

const ISO_TIME = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2})$/;

/** An ISO 8601 time with a zone (`2025-06-01T00:00:00Z`) in seconds since the epoch. */
export function isoToSeconds(text: string): number | undefined {
  const ms = ISO_TIME.test(text) ? Date.parse(text) : Number.NaN;
  return Number.isFinite(ms) ? Math.floor(ms / 1000) : undefined;
}

function readText(dir: string, name: string, maxBytes: number, problems: BundleProblem[]): string | undefined {
  const file = path.join(dir, name);
  try {
    const size = fs.statSync(file).size;
    if (size > maxBytes) {
      problems.push({ code: 'SOURCE_TOO_LARGE', message: `${name}: ${size} bytes, at most ${maxBytes} allowed` });
      return undefined;
    }
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    problems.push({ code: 'SOURCE_UNREADABLE', message: `${name}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` });
    return undefined;
  }
}

/** Collects problems for one source file, each located by a JSON path. */
class Reporter {
  constructor(
    private readonly file: string,
    private readonly problems: BundleProblem[],
  ) {}

  problem(at: string, message: string): undefined {
    this.problems.push({ code: 'SOURCE_INVALID', message: `${this.file}: ${at}: ${message}` });
    return undefined;
  }

  object(value: JsonValue | undefined, at: string, allowed: readonly string[]): Map<string, JsonValue> | undefined {
    if (!(value instanceof Map)) return this.problem(at, 'must be an object');
    for (const key of value.keys()) if (!allowed.includes(key)) this.problem(at, `unknown key ${JSON.stringify(key)}`);
    return value;
  }

  array(value: JsonValue | undefined, at: string): JsonValue[] | undefined {
    return Array.isArray(value) ? value : this.problem(at, 'must be an array');
  }

  string(value: JsonValue | undefined, at: string): string | undefined {
    return typeof value === 'string' ? value : this.problem(at, 'must be a string');
  }

  strings(value: JsonValue | undefined, at: string): string[] | undefined {
    const items = this.array(value, at);
    if (items === undefined) return undefined;
    const strings = items.map((item, i) => this.string(item, `${at}[${i}]`));
    return strings.every((s) => s !== undefined) ? (strings as string[]) : undefined;
  }

  time(value: JsonValue | undefined, at: string): number | undefined {
    const text = this.string(value, at);
    if (text === undefined) return undefined;
    return isoToSeconds(text) ?? this.problem(at, `${JSON.stringify(text)} is not an ISO 8601 time with a zone`);
  }

  /** A JSON integer or a duration ("30s"), in milliseconds, within bounds. */
  durationMs(value: JsonValue | undefined, at: string, [min, max]: readonly [number, number]): number | undefined {
    const ms = typeof value === 'string' ? parseDurationMs(value) : undefined;
    if (ms === undefined) return this.problem(at, 'must be a duration such as "500ms", "30s", "5m", "2h", "1d"');
    return ms >= min && ms <= max ? ms : this.problem(at, `must be between ${min} ms and ${max} ms`);
  }

  integer(value: JsonValue | undefined, at: string, [min, max]: readonly [number, number]): number | undefined {
    if (typeof value !== 'bigint' || value < BigInt(min) || value > BigInt(max)) return this.problem(at, `must be an integer in ${min}..${max}`);
    return Number(value);
  }

  /** An entity uid as `Type::"id"` text or {type, id}; returned in the `Type::"id"` form. */
  uid(value: JsonValue | undefined, at: string): string | undefined {
    if (typeof value === 'string') return value;
    const uid = this.object(value, at, ['type', 'id']);
    if (uid === undefined) return undefined;
    const type = this.string(uid.get('type'), `${at}.type`);
    const id = this.string(uid.get('id'), `${at}.id`);
    return type === undefined || id === undefined ? undefined : new EntityUid(type, id).key;
  }
}

function readIssuers(value: JsonValue | undefined, dir: string, r: Reporter): IssuerEntry[] {
  if (value === undefined) return [];
  const items = r.array(value, '$') ?? [];
  const issuers: IssuerEntry[] = [];
  items.forEach((item, i) => {
    const at = `$[${i}]`;
    const o = r.object(item, at, ['principal', 'publicKey', 'alg', 'kid', 'notBefore', 'notAfter', 'roles']);
    if (o === undefined) return;
    const principal = r.uid(o.get('principal'), `${at}.principal`);
    const key = readIssuerKey(o.get('publicKey'), dir, `${at}.publicKey`, r);
    if (principal === undefined || key === undefined) return;
    let alg = defaultAlgorithm(key.keyType);
    if (o.has('alg')) {
      const name = r.string(o.get('alg'), `${at}.alg`);
      const id = name === undefined ? undefined : ALG_NAMES[name];
      if (id === undefined || algorithmInfo(id)?.keyType !== key.keyType) {
        r.problem(`${at}.alg`, `must be an algorithm for a ${key.keyType} key (${Object.keys(ALG_NAMES).join(', ')})`);
        return;
      }
      alg = id;
    }
    let kid = key.kid;
    if (o.has('kid')) {
      const hex = r.string(o.get('kid'), `${at}.kid`);
      const bytes = hex === undefined ? undefined : fromHex(hex);
      if (bytes === undefined || bytes.length === 0) {
        r.problem(`${at}.kid`, 'must be non-empty hex');
        return;
      }
      kid = bytes;
    }
    const notBefore = o.has('notBefore') ? r.time(o.get('notBefore'), `${at}.notBefore`) : undefined;
    const notAfter = o.has('notAfter') ? r.time(o.get('notAfter'), `${at}.notAfter`) : undefined;
    const roles = o.has('roles') ? r.strings(o.get('roles'), `${at}.roles`) : undefined;
    issuers.push({
      kid,
      alg,
      publicKey: key.raw,
      principal,
      ...(notBefore === undefined ? {} : { notBefore }),
      ...(notAfter === undefined ? {} : { notAfter }),
      ...(roles === undefined ? {} : { roles }),
    });
  });
  return issuers;
}

function readIssuerKey(value: JsonValue | undefined, dir: string, at: string, r: Reporter): PublicKey | undefined {
  const text = r.string(value, at);
  if (text === undefined) return undefined;
  try {
    return text.trimStart().startsWith('-----BEGIN') ? publicKeyFromPem(text) : readPublicKeyFile(path.resolve(dir, text));
  } catch (err) {
    if (!(err instanceof CryptoError)) throw err;
    return r.problem(at, `${err.message} [${err.code}]`);
  }
}

function readAttestation(value: JsonValue | undefined, r: Reporter): AttestationReference[] {
  if (value === undefined) return [];
  if (!(value instanceof Map)) return r.problem('$', 'must be an object of firmware profiles') ?? [];
  const references: AttestationReference[] = [];
  for (const [profile, item] of value) {
    const at = `$[${JSON.stringify(profile)}]`;
    const o = r.object(item, at, ['files', 'composite']);
    if (o === undefined) continue;
    const files = (r.array(o.get('files'), `${at}.files`) ?? []).map((file, i) => {
      const f = r.object(file, `${at}.files[${i}]`, ['path', 'sha256']);
      const filePath = r.string(f?.get('path'), `${at}.files[${i}].path`);
      const sha256 = r.string(f?.get('sha256'), `${at}.files[${i}].sha256`);
      return { path: filePath ?? '', sha256: sha256?.toLowerCase() ?? '' };
    });
    const composite = r.string(o.get('composite'), `${at}.composite`);
    references.push({ profile, files, composite: composite?.toLowerCase() ?? '' });
  }
  return references;
}

function readSettings(value: JsonValue | undefined, r: Reporter): BundleSettings {
  if (value === undefined) return DEFAULT_SETTINGS;
  const o = r.object(value, '$', ['cacheTtl', 'replayWindow', 'clockSkew', 'audit']);
  if (o === undefined) return DEFAULT_SETTINGS;
  const duration = (key: string, bounds: readonly [number, number], fallback: number) =>
    o.has(key) ? (r.durationMs(o.get(key), `$.${key}`, bounds) ?? fallback) : fallback;
  let audit: AuditSettings = DEFAULT_SETTINGS.audit;
  if (o.has('audit')) {
    const a = r.object(o.get('audit'), '$.audit', ['maxUnsynced', 'checkpointEvery', 'checkpointInterval']);
    if (a !== undefined) {
      const defaults = DEFAULT_SETTINGS.audit;
      audit = {
        maxUnsynced: a.has('maxUnsynced') ? (r.integer(a.get('maxUnsynced'), '$.audit.maxUnsynced', SETTINGS_BOUNDS.maxUnsynced) ?? 0) : defaults.maxUnsynced,
        checkpointEvery: a.has('checkpointEvery')
          ? (r.integer(a.get('checkpointEvery'), '$.audit.checkpointEvery', SETTINGS_BOUNDS.checkpointEvery) ?? 0)
          : defaults.checkpointEvery,
        checkpointIntervalMs: a.has('checkpointInterval')
          ? (r.durationMs(a.get('checkpointInterval'), '$.audit.checkpointInterval', SETTINGS_BOUNDS.checkpointIntervalMs) ?? 0)
          : defaults.checkpointIntervalMs,
      };
    }
  }
  return {
    cacheTtlMs: duration('cacheTtl', SETTINGS_BOUNDS.cacheTtlMs, DEFAULT_SETTINGS.cacheTtlMs),
    replayWindowMs: duration('replayWindow', SETTINGS_BOUNDS.replayWindowMs, DEFAULT_SETTINGS.replayWindowMs),
    clockSkewMs: duration('clockSkew', SETTINGS_BOUNDS.clockSkewMs, DEFAULT_SETTINGS.clockSkewMs),
    audit,
  };
}

function readTests(value: JsonValue | undefined, r: Reporter): BundleTest[] {
  if (value === undefined) return [];
  const tests: BundleTest[] = [];
  (r.array(value, '$') ?? []).forEach((item, i) => {
    const at = `$[${i}]`;
    const o = r.object(item, at, ['name', 'principal', 'action', 'resource', 'context', 'decision', 'reasons', 'errors']);
    if (o === undefined) return;
    const name = r.string(o.get('name'), `${at}.name`);
    const principal = r.uid(o.get('principal'), `${at}.principal`);
    const action = r.uid(o.get('action'), `${at}.action`);
    const resource = r.uid(o.get('resource'), `${at}.resource`);
    const context = o.has('context') ? o.get('context')! : new Map<string, JsonValue>();
    if (!(context instanceof Map)) r.problem(`${at}.context`, 'must be an object');
    const decision = o.get('decision');
    if (decision !== 'allow' && decision !== 'deny') r.problem(`${at}.decision`, 'must be "allow" or "deny"');
    const reasons = o.has('reasons') ? r.strings(o.get('reasons'), `${at}.reasons`) : undefined;
    const errors = o.has('errors') ? r.strings(o.get('errors'), `${at}.errors`) : undefined;
    if (name === undefined || principal === undefined || action === undefined || resource === undefined) return;
    if (!(context instanceof Map) || (decision !== 'allow' && decision !== 'deny')) return;
    tests.push({
      name,
      principal,
      action,
      resource,
      context: jsonText(context),
      decision,
      ...(reasons === undefined ? {} : { reasons }),
      ...(errors === undefined ? {} : { errors }),
    });
  });
  return tests;
}
