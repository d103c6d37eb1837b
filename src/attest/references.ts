// Reference files: the `attestation.json` of a bundle source — { "<profile>": { "files":
// [{ "path", "sha256" | ["sha256", ...] | "symlink" }], "composite"? } } — read for
// `attest verify --references` and written by `attest references` from a known-good device.
import { type JsonValue, JsonError, parseJson } from '../policy/index.js';
import type { ReferenceFile, ReferenceValues } from './compare.js';
import { AttestError } from './errors.js';
import { parseDevicePath } from './glob.js';
import { PROFILE_NAME } from './profile.js';
import type { MeasurementRecord } from './record.js';

const HEX = /^[0-9a-f]{64}$/;
const MAX_REFERENCE_BYTES = 16 * 1024 * 1024;

/** Parses a reference file; REFERENCES_INVALID naming the first problem's JSON path. */
export function parseReferences(text: string, source = 'references'): ReferenceValues[] {
  let json: JsonValue;
  try {
    json = parseJson(text, { maxLength: MAX_REFERENCE_BYTES });
  } catch (err) {
    if (!(err instanceof JsonError)) throw err;
    throw invalid(source, err.message);
  }
  if (!(json instanceof Map)) throw invalid(source, '$ must be an object of firmware profiles');
  const out: ReferenceValues[] = [];
  for (const [profile, entry] of json) {
    const at = `$[${JSON.stringify(profile)}]`;
    if (!PROFILE_NAME.test(profile)) throw invalid(source, `${at}: not a profile name`);
    if (!(entry instanceof Map)) throw invalid(source, `${at} must be an object`);
    for (const key of entry.keys()) if (key !== 'files' && key !== 'composite') throw invalid(source, `${at}: unknown key ${JSON.stringify(key)}`);
    const files = entry.get('files');
    if (!Array.isArray(files)) throw invalid(source, `${at}.files must be an array`);
    const composite = entry.get('composite');
    if (composite !== undefined && (typeof composite !== 'string' || !HEX.test(composite))) throw invalid(source, `${at}.composite must be 64 lowercase hex digits`);
    out.push({
      profile,
      files: files.map((file, i) => readFile(file, `${at}.files[${i}]`, source)),
      ...(typeof composite === 'string' ? { composite } : {}),
    });
  }
  return out;
}

function readFile(value: JsonValue, at: string, source: string): ReferenceFile {
  if (!(value instanceof Map)) throw invalid(source, `${at} must be an object`);
  for (const key of value.keys()) if (!['path', 'sha256', 'symlink'].includes(key)) throw invalid(source, `${at}: unknown key ${JSON.stringify(key)}`);
  const path = value.get('path');
  const parsed = typeof path === 'string' ? parseDevicePath(path) : 'must be a string';
  if (typeof parsed === 'string' || parsed.isGlob) throw invalid(source, `${at}.path ${typeof parsed === 'string' ? parsed : 'must not be a glob'}`);
  const digests = value.get('sha256');
  const symlink = value.get('symlink');
  if ((digests === undefined) === (symlink === undefined)) throw invalid(source, `${at} needs exactly one of sha256 and symlink`);
  if (symlink !== undefined) {
    if (typeof symlink !== 'string' || symlink === '') throw invalid(source, `${at}.symlink must be a non-empty string`);
    return { path: parsed.text, symlink };
  }
  const list = Array.isArray(digests) ? digests : [digests];
  if (list.length === 0 || list.some((d) => typeof d !== 'string' || !HEX.test(d))) throw invalid(source, `${at}.sha256 must be 64 lowercase hex digits (or a list of them)`);
  return { path: parsed.text, sha256: Array.isArray(digests) ? (list as string[]) : (digests as string) };
}

/**
 * The reference values a known-good device's records stand for. Refuses records that cannot be
 * references: a missing, unreadable, non-regular, unstable or world-writable file.
 */
export function referencesFromRecords(profile: string, records: readonly MeasurementRecord[]): ReferenceValues {
  const bad = records.filter((r) => (r.state !== 'file' && r.state !== 'symlink') || (r.state === 'file' && ((r.mode ?? 0) & 0o002) !== 0));
  if (bad.length > 0) {
    const list = bad.map((r) => `${r.path} (${r.state === 'file' ? 'world-writable' : r.state})`).join(', ');
    throw new AttestError('REFERENCES_INVALID', `a known-good device has no such files; fix these first: ${list}`);
  }
  return {
    profile,
    files: records.map((r) => (r.state === 'symlink' ? { path: r.path, symlink: r.target! } : { path: r.path, sha256: r.sha256! })),
  };
}

/** The reference file text (stable key order, two-space indent). */
export function formatReferences(values: readonly ReferenceValues[]): string {
  const doc: Record<string, unknown> = {};
  for (const v of values) {
    doc[v.profile] = {
      files: v.files.map((f) => (f.symlink !== undefined ? { path: f.path, symlink: f.symlink } : { path: f.path, sha256: f.sha256 })),
      ...(v.composite === undefined ? {} : { composite: v.composite }),
    };
  }
  return `${JSON.stringify(doc, null, 2)}\n`;
}

function invalid(source: string, message: string): AttestError {
  return new AttestError('REFERENCES_INVALID', `${source}: ${message}`);
}
