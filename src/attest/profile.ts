// Firmware profiles: one JSON file per device class (firmware-profiles/<name>.json) naming the
// files to measure, which of them are critical, how often to re-measure, and the executor
// defaults of that class. Validated on load: an unknown key, a relative path or a bad glob is
// an error naming its JSON path — a typo must never quietly measure less.
//
//   {
//     "profile": "robot-arm",                       the file's own name, without .json
//     "description": "...",                         optional
//     "measure": [
//       { "path": "/etc/robot/controller.conf", "critical": true },
//       { "path": "/etc/robot/zones/*.conf", "critical": true, "limit": 64 }
//     ],                                            a glob matches at most `limit` files
//     "interval": "5m",                             re-measure at least this often
//     "executors": { "<action>": { "kind": "mqtt" | "http" | "exec" | "none", ... } }
//   }
import fs from 'node:fs';
import path from 'node:path';
import { type JsonValue, JsonError, JsonNumber, parseJson } from '../policy/index.js';
import { AttestError } from './errors.js';
import { type DevicePath, parseDevicePath } from './glob.js';
import { shippedProfileTexts } from './shipped-profiles.js';

export const PROFILE_NAME = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ACTION_ID = /^[A-Za-z0-9_.:-]{1,128}$/;
const MAX_PROFILE_BYTES = 256 * 1024;
export const MAX_MEASURE_ENTRIES = 256;
/** Files one measurement may cover in all (the bundle format's limit on references per profile). */
export const MAX_MEASURED_FILES = 4096;
export const DEFAULT_GLOB_LIMIT = 100;
const MIN_INTERVAL_MS = 1000;
const MAX_INTERVAL_MS = 86_400_000;

export interface MeasureEntry {
  readonly path: DevicePath;
  readonly critical: boolean;
  /** Most files a glob may match (1 for a plain path). */
  readonly limit: number;
}

export type ProfileExecutor =
  | { readonly kind: 'mqtt'; readonly timeoutMs: number }
  | { readonly kind: 'http'; readonly url: string; readonly timeoutMs: number }
  | { readonly kind: 'exec'; readonly command: readonly string[]; readonly timeoutMs: number }
  | { readonly kind: 'none' };

export interface FirmwareProfile {
  readonly name: string;
  readonly description?: string;
  readonly measure: readonly MeasureEntry[];
  readonly intervalMs: number;
  readonly executors: Readonly<Record<string, ProfileExecutor>>;
}

/** Parses a profile's JSON text; PROFILE_INVALID lists every problem found. */
export function parseProfile(text: string, source = 'profile'): FirmwareProfile {
  let json: JsonValue;
  try {
    json = parseJson(text, { maxLength: MAX_PROFILE_BYTES });
  } catch (err) {
    if (!(err instanceof JsonError)) throw err;
    throw new AttestError('PROFILE_INVALID', `${source}: ${err.message}`);
  }
  const r = new Problems(source);
  const top = r.object(json, '$', ['profile', 'description', 'measure', 'interval', 'executors']);
  const name = r.string(top?.get('profile'), '$.profile');
  if (name !== undefined && !PROFILE_NAME.test(name)) r.add('$.profile', 'must be 1-64 letters, digits and . _ - (starting with a letter or digit)');
  const description = top?.has('description') ? r.string(top.get('description'), '$.description') : undefined;
  const measure: MeasureEntry[] = [];
  const entries = r.array(top?.get('measure'), '$.measure') ?? [];
  if (top !== undefined && entries.length === 0) r.add('$.measure', 'must list at least one file');
  if (entries.length > MAX_MEASURE_ENTRIES) r.add('$.measure', `has ${entries.length} entries, at most ${MAX_MEASURE_ENTRIES} allowed`);
  const seen = new Set<string>();
  entries.slice(0, MAX_MEASURE_ENTRIES).forEach((item, i) => {
    const at = `$.measure[${i}]`;
    const o = r.object(item, at, ['path', 'critical', 'limit']);
    if (o === undefined) return;
    const text = r.string(o.get('path'), `${at}.path`);
    const critical = o.get('critical');
    if (typeof critical !== 'boolean') r.add(`${at}.critical`, 'must be true or false');
    const parsed = text === undefined ? undefined : parseDevicePath(text);
    if (typeof parsed === 'string') r.add(`${at}.path`, `${JSON.stringify(text)} ${parsed}`);
    let limit = 1;
    if (o.has('limit')) {
      const value = r.integer(o.get('limit'), `${at}.limit`, 1, MAX_MEASURED_FILES);
      if (typeof parsed === 'object' && !parsed.isGlob) r.add(`${at}.limit`, 'applies to globs only (this path has no * or ?)');
      limit = value ?? limit;
    } else if (typeof parsed === 'object' && parsed.isGlob) limit = DEFAULT_GLOB_LIMIT;
    if (typeof parsed !== 'object' || typeof critical !== 'boolean') return;
    if (seen.has(parsed.text)) r.add(`${at}.path`, `${JSON.stringify(parsed.text)} is listed twice`);
    seen.add(parsed.text);
    measure.push({ path: parsed, critical, limit });
  });
  const intervalText = r.string(top?.get('interval'), '$.interval');
  const intervalMs = intervalText === undefined ? undefined : parseDuration(intervalText);
  if (intervalText !== undefined && (intervalMs === undefined || intervalMs < MIN_INTERVAL_MS || intervalMs > MAX_INTERVAL_MS)) {
    r.add('$.interval', `must be a duration from 1s to 1d, such as "30s", "5m" or "1h", not ${JSON.stringify(intervalText)}`);
  }
  const executors = top?.has('executors') ? readExecutors(r, top.get('executors')) : {};
  r.throwIfAny();
  return {
    name: name!,
    ...(description === undefined ? {} : { description }),
    measure,
    intervalMs: intervalMs!,
    executors,
  };
}

/**
 * Reads `<dir>/<name>.json`. PROFILE_NOT_FOUND when there is no such file, PROFILE_INVALID
 * when it does not validate or names another profile than its file.
 */
export function loadProfile(dir: string, name: string): FirmwareProfile {
  if (!PROFILE_NAME.test(name)) throw new AttestError('PROFILE_NOT_FOUND', `${JSON.stringify(name)} is not a firmware profile name`);
  const file = path.join(dir, `${name}.json`);
  let text: string;
  try {
    const size = fs.statSync(file).size;
    if (size > MAX_PROFILE_BYTES) throw new AttestError('PROFILE_INVALID', `${file}: ${size} bytes, at most ${MAX_PROFILE_BYTES} allowed`);
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    if (err instanceof AttestError) throw err;
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') throw new AttestError('PROFILE_NOT_FOUND', `no firmware profile ${JSON.stringify(name)} (looked for ${file})`);
    throw new AttestError('PROFILE_INVALID', `${file}: cannot read (${code ?? String(err)})`);
  }
  const profile = parseProfile(text, file);
  if (profile.name !== name) throw new AttestError('PROFILE_INVALID', `${file}: $.profile is ${JSON.stringify(profile.name)}, but the file is named for ${JSON.stringify(name)}`);
  return profile;
}

let shipped: ReadonlyMap<string, string> | undefined;

/** The names of the profiles shipped with ztedge, sorted. */
export function shippedProfileNames(): string[] {
  shipped ??= shippedProfileTexts();
  return [...shipped.keys()].filter((name) => PROFILE_NAME.test(name)).sort();
}

/**
 * A profile shipped with ztedge (firmware-profiles/<name>.json, carried inside the built program):
 * PROFILE_NOT_FOUND naming the shipped ones when there is none by that name.
 */
export function loadShippedProfile(name: string): FirmwareProfile {
  shipped ??= shippedProfileTexts();
  const text = PROFILE_NAME.test(name) ? shipped.get(name) : undefined;
  if (text === undefined) {
    throw new AttestError('PROFILE_NOT_FOUND', `no firmware profile ${JSON.stringify(name)} ships with ztedge (shipped: ${shippedProfileNames().join(', ')}); give a profile file's path instead`);
  }
  const source = `firmware-profiles/${name}.json`;
  const profile = parseProfile(text, source);
  if (profile.name !== name) throw new AttestError('PROFILE_INVALID', `${source}: $.profile is ${JSON.stringify(profile.name)}, but the file is named for ${JSON.stringify(name)}`);
  return profile;
}

/** The profile names available in `dir` (files `<name>.json`), sorted. */
export function listProfiles(dir: string): string[] {
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.json') && PROFILE_NAME.test(f.slice(0, -5)))
    .map((f) => f.slice(0, -5))
    .sort();
}

const DURATION_UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** "500ms", "30s", "5m", "2h", "1d" in milliseconds. */
export function parseDuration(text: string): number | undefined {
  const m = /^(\d{1,9})(ms|s|m|h|d)$/.exec(text);
  return m === null ? undefined : Number(m[1]) * DURATION_UNITS[m[2]!]!;
}

function readExecutors(r: Problems, value: JsonValue | undefined): Record<string, ProfileExecutor> {
  const out: Record<string, ProfileExecutor> = {};
  const o = r.object(value, '$.executors', null);
  for (const [action, spec] of o ?? []) {
    const at = `$.executors[${JSON.stringify(action)}]`;
    if (!ACTION_ID.test(action)) {
      r.add(at, 'action ids hold letters, digits and _ . : - only');
      continue;
    }
    const s = r.object(spec, at, ['kind', 'url', 'command', 'timeout']);
    if (s === undefined) continue;
    const kind = r.string(s.get('kind'), `${at}.kind`);
    const allowed: Record<string, readonly string[]> = { mqtt: ['timeout'], http: ['url', 'timeout'], exec: ['command', 'timeout'], none: [] };
    if (kind === undefined) continue;
    if (allowed[kind] === undefined) {
      r.add(`${at}.kind`, 'must be mqtt, http, exec or none');
      continue;
    }
    for (const key of s.keys()) if (key !== 'kind' && !allowed[kind]!.includes(key)) r.add(`${at}.${key}`, `does not apply to a ${kind} executor`);
    let timeoutMs = 5000;
    if (s.has('timeout')) {
      const text = r.string(s.get('timeout'), `${at}.timeout`);
      const ms = text === undefined ? undefined : parseDuration(text);
      if (text !== undefined && (ms === undefined || ms > 600_000)) r.add(`${at}.timeout`, 'must be a duration up to 10m, such as "500ms" or "5s"');
      timeoutMs = ms ?? timeoutMs;
    }
    if (kind === 'mqtt') out[action] = { kind, timeoutMs };
    else if (kind === 'none') out[action] = { kind };
    else if (kind === 'http') {
      const url = r.string(s.get('url'), `${at}.url`);
      if (url !== undefined && !/^https?:\/\/\S+$/.test(url)) r.add(`${at}.url`, 'must be an http:// or https:// URL');
      out[action] = { kind, url: url ?? '', timeoutMs };
    } else {
      const items = r.array(s.get('command'), `${at}.command`) ?? [];
      const command = items.map((item, i) => r.string(item, `${at}.command[${i}]`) ?? '');
      if (command.length === 0 || command.some((c) => c === '')) r.add(`${at}.command`, 'must be a non-empty argv list of non-empty strings (no shell)');
      out[action] = { kind: 'exec', command, timeoutMs };
    }
  }
  return out;
}

/** Collects every problem with its JSON path, then throws them together. */
class Problems {
  readonly list: string[] = [];
  constructor(private readonly source: string) {}

  add(at: string, message: string): undefined {
    this.list.push(`${at}: ${message}`);
    return undefined;
  }

  object(value: JsonValue | undefined, at: string, known: readonly string[] | null): Map<string, JsonValue> | undefined {
    if (!(value instanceof Map)) return this.add(at, value === undefined ? 'is required' : 'must be an object');
    if (known !== null) for (const key of value.keys()) if (!known.includes(key)) this.add(`${at}`, `unknown key ${JSON.stringify(key)}`);
    return value;
  }

  array(value: JsonValue | undefined, at: string): JsonValue[] | undefined {
    if (Array.isArray(value)) return value;
    return this.add(at, value === undefined ? 'is required' : 'must be an array');
  }

  string(value: JsonValue | undefined, at: string): string | undefined {
    if (typeof value === 'string') return value;
    return this.add(at, value === undefined ? 'is required' : 'must be a string');
  }

  integer(value: JsonValue | undefined, at: string, min: number, max: number): number | undefined {
    if (typeof value === 'bigint' && value >= BigInt(min) && value <= BigInt(max)) return Number(value);
    const shown = value instanceof JsonNumber ? value.text : JSON.stringify(typeof value === 'bigint' ? String(value) : value);
    return this.add(at, `must be an integer from ${min} to ${max}, not ${shown}`);
  }

  throwIfAny(): void {
    if (this.list.length === 0) return;
    const head = `${this.source}: ${this.list.length} problem${this.list.length === 1 ? '' : 's'}`;
    throw new AttestError('PROFILE_INVALID', `${head}:\n  ${this.list.join('\n  ')}`);
  }
}
