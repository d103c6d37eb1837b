// Comparing measurements with reference values, and the posture that follows. Pure.
//
// References come from the active bundle, one entry per firmware profile: for each path the
// digests that are acceptable (several during a rolling update) or the target a symbolic link
// must have, and optionally the composite of a reference device (which then also pins mode and
// owner, since records carry them).
//
// Posture:
//   trusted    every measured path matches its reference (and the composite, when pinned)
//   degraded   no references for this profile yet, or only non-critical mismatches
//   untrusted  a critical path mismatches: changed, missing, unreadable, not a regular file,
//              world-writable, without a reference, or changing faster than it can be read
import { toHex } from '../crypto/bytes.js';
import { type DevicePath, matchesDevicePath } from './glob.js';
import { type MeasurementRecord, compositeDigest, isWorldWritable, sortRecords } from './record.js';

export type Posture = 'trusted' | 'degraded' | 'untrusted';

export interface ReferenceFile {
  readonly path: string;
  /** One acceptable digest, or several (rolling updates); lowercase hex. */
  readonly sha256?: string | readonly string[];
  /** For a symbolic link: the target it must have. */
  readonly symlink?: string;
}

export interface ReferenceValues {
  readonly profile: string;
  readonly files: readonly ReferenceFile[];
  /** Composite of a reference device; when present it must match too. */
  readonly composite?: string;
}

export type MismatchReason =
  | 'digest'
  | 'symlink-target'
  | 'missing'
  | 'unreadable'
  | 'not-regular'
  | 'unstable'
  | 'world-writable'
  | 'unreferenced'
  | 'unmeasured';

export interface Mismatch {
  readonly path: string;
  readonly reason: MismatchReason;
  readonly critical: boolean;
  /** Acceptable values as `sha256:<hex>` or `symlink:<target>`; empty when there is no reference. */
  readonly expected: readonly string[];
  /** What was found: `sha256:<hex>`, `symlink:<target>`, or the state (`missing`, `unreadable:EACCES`...). */
  readonly found: string | null;
}

export interface Assessment {
  readonly posture: Posture;
  /** Sorted by path. */
  readonly mismatches: readonly Mismatch[];
  /** Lowercase hex composite of the records. */
  readonly composite: string;
  /** Whether references for this profile were available. */
  readonly referenced: boolean;
  /** Null when the references pin no composite. */
  readonly compositeMatches: boolean | null;
}

/** What a profile entry contributes to the comparison: its pattern and criticality. */
export interface MeasuredPattern {
  readonly path: DevicePath;
  readonly critical: boolean;
}

/** Whether any pattern matching `path` is critical (a path can match several globs). */
export function isCritical(patterns: readonly MeasuredPattern[], path: string): boolean {
  return patterns.some((p) => p.critical && matchesDevicePath(p.path, path));
}

/** Compares `records` (one per measured path) with `references` (null: none yet). */
export function assess(records: readonly MeasurementRecord[], patterns: readonly MeasuredPattern[], references: ReferenceValues | null): Assessment {
  const composite = toHex(compositeDigest(records));
  const mismatches: Mismatch[] = [];
  if (references === null) {
    // Without references nothing can be called changed, but what cannot be read or is open to
    // anyone is still worth knowing: report it, at most degraded.
    for (const record of sortRecords(records)) {
      const problem = stateProblem(record);
      if (problem !== undefined) mismatches.push({ path: record.path, reason: problem, critical: isCritical(patterns, record.path), expected: [], found: found(record) });
    }
    return { posture: 'degraded', mismatches, composite, referenced: false, compositeMatches: null };
  }
  const byPath = new Map(references.files.map((f) => [f.path, f]));
  const measured = new Set<string>();
  for (const record of sortRecords(records)) {
    measured.add(record.path);
    const critical = isCritical(patterns, record.path);
    const reference = byPath.get(record.path);
    const reason = reference === undefined ? 'unreferenced' : mismatchReason(record, reference);
    if (reason !== undefined) mismatches.push({ path: record.path, reason, critical, expected: reference === undefined ? [] : expectedValues(reference), found: found(record) });
  }
  for (const reference of references.files) {
    if (measured.has(reference.path)) continue;
    // A referenced path under one of the profile's globs that no longer exists is missing; one
    // that no pattern covers is not measured on this device at all.
    const covered = patterns.some((p) => matchesDevicePath(p.path, reference.path));
    mismatches.push({
      path: reference.path,
      reason: covered ? 'missing' : 'unmeasured',
      critical: covered && isCritical(patterns, reference.path),
      expected: expectedValues(reference),
      found: covered ? 'missing' : null,
    });
  }
  mismatches.sort((a, b) => (a.path < b.path ? -1 : a.path > b.path ? 1 : 0));
  const compositeMatches = references.composite === undefined ? null : references.composite === composite;
  let posture: Posture = 'trusted';
  if (mismatches.some((m) => m.critical)) posture = 'untrusted';
  else if (mismatches.length > 0 || compositeMatches === false) posture = 'degraded';
  return { posture, mismatches, composite, referenced: true, compositeMatches };
}

/** The reference values of `profile` among a bundle's entries, or null. */
export function referencesFor(entries: readonly ReferenceValues[] | undefined, profile: string): ReferenceValues | null {
  return entries?.find((e) => e.profile === profile) ?? null;
}

function stateProblem(record: MeasurementRecord): MismatchReason | undefined {
  switch (record.state) {
    case 'missing':
    case 'unreadable':
    case 'not-regular':
    case 'unstable':
      return record.state;
    default:
      return isWorldWritable(record) ? 'world-writable' : undefined;
  }
}

function mismatchReason(record: MeasurementRecord, reference: ReferenceFile): MismatchReason | undefined {
  if (reference.symlink !== undefined) {
    if (record.state === 'symlink') return record.target === reference.symlink ? undefined : 'symlink-target';
    return record.state === 'missing' || record.state === 'unreadable' || record.state === 'unstable' ? record.state : 'symlink-target';
  }
  if (record.state === 'symlink') return 'not-regular';
  const problem = stateProblem(record);
  if (record.state !== 'file') return problem;
  if (!digestsOf(reference).includes(record.sha256!)) return 'digest';
  return problem;
}

function digestsOf(reference: ReferenceFile): readonly string[] {
  const { sha256 } = reference;
  return sha256 === undefined ? [] : typeof sha256 === 'string' ? [sha256] : sha256;
}

function expectedValues(reference: ReferenceFile): string[] {
  if (reference.symlink !== undefined) return [`symlink:${reference.symlink}`];
  return digestsOf(reference).map((d) => `sha256:${d}`);
}

/** How a record shows in a mismatch's `found`. */
export function found(record: MeasurementRecord): string {
  switch (record.state) {
    case 'file':
      return `sha256:${record.sha256}`;
    case 'symlink':
      return `symlink:${record.target}`;
    case 'unreadable':
      return `unreadable:${record.error ?? 'unknown'}`;
    case 'not-regular':
      return `not-regular:${record.kind ?? 'unknown'}`;
    default:
      return record.state;
  }
}
