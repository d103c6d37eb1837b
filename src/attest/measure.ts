// Measuring files on disk: the shell around record.ts. Every path named by the profile becomes
// one record; nothing is skipped.
//
// A file is hashed as a stream (bounded buffers, never the whole file in memory) from an open
// descriptor that refuses to follow a final symbolic link. A file changed while it is read must
// not yield a digest that mixes two versions, so a read counts only when
//   - the descriptor's identity, size, mtime and ctime are the same before and after reading,
//     and the bytes read equal the size;
//   - the path still names the same inode afterwards (not renamed over meanwhile);
//   - the file's ctime is further from the moment reading started than the kernel's timestamp
//     granularity: a write within the same clock tick as the previous one leaves the
//     timestamps unchanged (the "racy git" problem), so a file changed that recently is read
//     again a moment later.
// Otherwise it is read again; a file that never holds still is recorded as `unstable`.
//
// Symbolic links are recorded with their target and never followed: the target is measured only
// if the profile names it too.
import { constants, type BigIntStats } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { createHash } from 'node:crypto';
import { AttestError } from './errors.js';
import type { DevicePath } from './glob.js';
import { type FileKind, type MeasurementRecord, comparePaths } from './record.js';
import { MAX_MEASURED_FILES } from './profile.js';

/** The file operations measuring uses; node:fs/promises by default, replaceable in tests. */
export interface MeasureFs {
  lstat(file: string): Promise<BigIntStats>;
  readlink(file: string): Promise<string>;
  open(file: string, flags: number): Promise<MeasureHandle>;
  readdir(dir: string): Promise<string[]>;
}

export interface MeasureHandle {
  stat(): Promise<BigIntStats>;
  read(buffer: Uint8Array, offset: number, length: number, position: number): Promise<{ bytesRead: number }>;
  close(): Promise<void>;
}

export const nodeMeasureFs: MeasureFs = {
  lstat: (file) => fsp.lstat(file, { bigint: true }),
  readlink: (file) => fsp.readlink(file),
  open: async (file, flags) => {
    const handle = await fsp.open(file, flags);
    return {
      stat: () => handle.stat({ bigint: true }),
      read: (buffer, offset, length, position) => handle.read(buffer, offset, length, position),
      close: () => handle.close(),
    };
  },
  readdir: (dir) => fsp.readdir(dir),
};

export interface MeasureOptions {
  /** Prefix under which device paths are found ("/" on the device itself). */
  readonly root: string;
  readonly fs?: MeasureFs;
  /** Wall clock in nanoseconds (file timestamps use the same clock). */
  readonly nowNs?: () => bigint;
  readonly sleep?: (ms: number) => Promise<void>;
  /** Reads of one file before it is recorded as `unstable`. Default 8. */
  readonly maxAttempts?: number;
  /** Read size; two buffers of it are in use per file. Default 256 KiB. */
  readonly chunkBytes?: number;
  /** Files hashed at the same time. Default 4. */
  readonly concurrency?: number;
  /**
   * Digests of unchanged files (same inode, size, mtime, ctime, mode, owner) are taken from
   * here instead of reading the file again, for at most `cacheMaxAgeMs`.
   */
  readonly cache?: DigestCache;
  readonly cacheMaxAgeMs?: number;
  /** Called after each file is read (tests use it to change a file mid-measurement). */
  readonly onRead?: (devicePath: string, attempt: number) => void | Promise<void>;
}

export interface CachedDigest {
  readonly identity: string;
  readonly sha256: string;
  readonly atMs: number;
}

export type DigestCache = Map<string, CachedDigest>;

/**
 * Timestamps advance in clock ticks (1-10 ms on Linux): a file whose ctime is this close to the
 * start of reading might change again without its timestamps moving.
 */
export const RACY_WINDOW_NS = 20_000_000n;
const RACY_WAIT_MS = 25;
const DEFAULT_CHUNK_BYTES = 256 * 1024;
const OPEN_FLAGS = constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK;

/** What a profile entry contributes to measuring: a path or a bounded glob. */
export interface MeasureTarget {
  readonly path: DevicePath;
  /** Most files a glob may match. */
  readonly limit: number;
}

/** Host path of a device path under `root`. */
export function hostPath(root: string, devicePath: string): string {
  return path.join(root, devicePath);
}

/**
 * The device paths the targets name now: plain paths as they are (present or not), globs
 * expanded under the root. ATTEST_GLOB_LIMIT when a glob matches more than its limit or all of
 * them together more than MAX_MEASURED_FILES.
 */
export async function expandTargets(targets: readonly MeasureTarget[], options: MeasureOptions): Promise<string[]> {
  const fs = options.fs ?? nodeMeasureFs;
  const paths = new Set<string>();
  for (const target of targets) {
    if (!target.path.isGlob) {
      paths.add(target.path.text);
      continue;
    }
    const matched = await expandGlob(target, options.root, fs);
    for (const p of matched) paths.add(p);
  }
  if (paths.size > MAX_MEASURED_FILES) {
    throw new AttestError('ATTEST_GLOB_LIMIT', `the profile names ${paths.size} files, at most ${MAX_MEASURED_FILES} are measured`);
  }
  return [...paths].sort(comparePaths);
}

async function expandGlob(target: MeasureTarget, root: string, fs: MeasureFs): Promise<string[]> {
  let prefixes = [''];
  for (const segment of target.path.segments) {
    const next: string[] = [];
    for (const prefix of prefixes) {
      if ('literal' in segment) {
        next.push(`${prefix}/${segment.literal}`);
        continue;
      }
      let names: string[];
      try {
        names = await fs.readdir(hostPath(root, prefix === '' ? '/' : prefix));
      } catch {
        continue; // a directory that is not there (or not a directory) matches nothing
      }
      for (const name of names.sort()) {
        if (!segment.pattern.test(name)) continue;
        next.push(`${prefix}/${name}`);
        if (next.length > target.limit) {
          throw new AttestError(
            'ATTEST_GLOB_LIMIT',
            `glob ${target.path.text} matches more than ${target.limit} entries (its limit); raise "limit" in the profile or narrow the glob`,
          );
        }
      }
    }
    prefixes = next;
  }
  return prefixes;
}

/** Measures every path the targets name, `concurrency` files at a time; records in path order. */
export async function measureTargets(targets: readonly MeasureTarget[], options: MeasureOptions): Promise<MeasurementRecord[]> {
  const paths = await expandTargets(targets, options);
  return measurePaths(paths, options);
}

export async function measurePaths(paths: readonly string[], options: MeasureOptions): Promise<MeasurementRecord[]> {
  const records: MeasurementRecord[] = new Array(paths.length);
  let next = 0;
  const worker = async () => {
    while (next < paths.length) {
      const i = next++;
      records[i] = await measureFile(paths[i]!, options);
    }
  };
  await Promise.all(Array.from({ length: Math.min(options.concurrency ?? 4, paths.length) }, worker));
  return records;
}

/** Measures one device path; never throws for the file's own sake (its state is recorded). */
export async function measureFile(devicePath: string, options: MeasureOptions): Promise<MeasurementRecord> {
  const fs = options.fs ?? nodeMeasureFs;
  const nowNs = options.nowNs ?? (() => BigInt(Date.now()) * 1_000_000n);
  const sleep = options.sleep ?? ((ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms)));
  const file = hostPath(options.root, devicePath);
  const attempts = options.maxAttempts ?? 8;
  let last: BigIntStats | undefined;
  for (let attempt = 1; attempt <= attempts; attempt++) {
    const startNs = nowNs();
    let link: BigIntStats;
    try {
      link = await fs.lstat(file);
    } catch (err) {
      return absent(devicePath, err);
    }
    last = link;
    if (link.isSymbolicLink()) {
      let target: string;
      try {
        target = await fs.readlink(file);
      } catch (err) {
        if (retryable(err)) continue;
        return absent(devicePath, err);
      }
      return { path: devicePath, state: 'symlink', target, uid: Number(link.uid), gid: Number(link.gid) };
    }
    if (!link.isFile()) return { path: devicePath, state: 'not-regular', kind: kindOf(link), ...owner(link) };

    const identity = identityOf(link);
    const cached = options.cache?.get(devicePath);
    if (cached !== undefined && cached.identity === identity && !isRacy(link, startNs) && Date.now() - cached.atMs <= (options.cacheMaxAgeMs ?? 0)) {
      return fileRecord(devicePath, link, cached.sha256);
    }

    const read = await hashOnce(fs, file, options.chunkBytes ?? DEFAULT_CHUNK_BYTES);
    await options.onRead?.(devicePath, attempt);
    if (read.kind === 'retry') continue;
    if (read.kind === 'error') {
      if (retryable(read.error)) continue;
      return { ...absent(devicePath, read.error), ...(isMissing(read.error) ? {} : owner(link)) };
    }
    last = read.after;
    let now: BigIntStats;
    try {
      now = await fs.lstat(file);
    } catch {
      continue; // removed or replaced just now: look again
    }
    if (!sameFile(read.after, now) || !sameContent(read.after, now)) continue;
    if (isRacy(read.after, startNs)) {
      await sleep(RACY_WAIT_MS);
      continue;
    }
    options.cache?.set(devicePath, { identity: identityOf(read.after), sha256: read.sha256, atMs: Date.now() });
    return fileRecord(devicePath, read.after, read.sha256);
  }
  options.cache?.delete(devicePath);
  return { path: devicePath, state: 'unstable', ...(last === undefined ? {} : { size: Number(last.size), ...owner(last) }) };
}

type HashResult =
  | { kind: 'ok'; sha256: string; after: BigIntStats }
  | { kind: 'retry' }
  | { kind: 'error'; error: unknown };

/** One read of the whole file; `retry` when it changed underneath. */
async function hashOnce(fs: MeasureFs, file: string, chunkBytes: number): Promise<HashResult> {
  let handle: MeasureHandle;
  try {
    handle = await fs.open(file, OPEN_FLAGS);
  } catch (error) {
    return { kind: 'error', error };
  }
  try {
    const before = await handle.stat();
    if (!before.isFile()) return { kind: 'retry' };
    const hash = createHash('sha256');
    // Two buffers: the next read is under way while the last one is hashed.
    let current = Buffer.allocUnsafe(chunkBytes);
    let spare = Buffer.allocUnsafe(chunkBytes);
    let position = 0;
    let pending = handle.read(current, 0, chunkBytes, position);
    for (;;) {
      const { bytesRead } = await pending;
      if (bytesRead === 0) break;
      position += bytesRead;
      const full = current;
      current = spare;
      spare = full;
      pending = handle.read(current, 0, chunkBytes, position);
      hash.update(full.subarray(0, bytesRead));
    }
    const after = await handle.stat();
    if (!sameFile(before, after) || !sameContent(before, after) || BigInt(position) !== after.size) return { kind: 'retry' };
    return { kind: 'ok', sha256: hash.digest('hex'), after };
  } catch (error) {
    return { kind: 'error', error };
  } finally {
    await handle.close().catch(() => undefined);
  }
}

function fileRecord(devicePath: string, stats: BigIntStats, sha256: string): MeasurementRecord {
  return { path: devicePath, state: 'file', sha256, size: Number(stats.size), ...owner(stats) };
}

function owner(stats: BigIntStats): { mode: number; uid: number; gid: number } {
  return { mode: Number(stats.mode & 0o7777n), uid: Number(stats.uid), gid: Number(stats.gid) };
}

function identityOf(s: BigIntStats): string {
  return `${s.dev}:${s.ino}:${s.size}:${s.mtimeNs}:${s.ctimeNs}:${s.mode}:${s.uid}:${s.gid}`;
}

function sameFile(a: BigIntStats, b: BigIntStats): boolean {
  return a.dev === b.dev && a.ino === b.ino;
}

function sameContent(a: BigIntStats, b: BigIntStats): boolean {
  return a.size === b.size && a.mtimeNs === b.mtimeNs && a.ctimeNs === b.ctimeNs && a.mode === b.mode && a.uid === b.uid && a.gid === b.gid;
}

/**
 * Whether a write during the read could have left the ctime as it was: only when the ctime is
 * within a clock tick of now. (A ctime far from now — the clock was set back — is changed by any
 * write, so it needs no wait; ctime, unlike mtime, cannot be set by hand.)
 */
function isRacy(stats: BigIntStats, startNs: bigint): boolean {
  const distance = stats.ctimeNs > startNs ? stats.ctimeNs - startNs : startNs - stats.ctimeNs;
  return distance <= RACY_WINDOW_NS;
}

function kindOf(stats: BigIntStats): FileKind {
  if (stats.isDirectory()) return 'directory';
  if (stats.isFIFO()) return 'fifo';
  if (stats.isSocket()) return 'socket';
  if (stats.isCharacterDevice()) return 'character-device';
  if (stats.isBlockDevice()) return 'block-device';
  return 'unknown';
}

function errnoOf(err: unknown): string {
  return (err as NodeJS.ErrnoException | undefined)?.code ?? 'EIO';
}

function isMissing(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'ENOENT' || code === 'ENOTDIR';
}

/** The path changed kind between two calls (a link swapped in, a file removed): look again. */
function retryable(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'ELOOP' || code === 'ENOENT' || code === 'EINVAL';
}

function absent(devicePath: string, err: unknown): MeasurementRecord {
  if (isMissing(err)) return { path: devicePath, state: 'missing' };
  return { path: devicePath, state: 'unreadable', error: errnoOf(err) };
}
