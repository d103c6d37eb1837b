// Crash-safe file primitives: a file is replaced by writing a temporary sibling, fsyncing it,
// renaming it over the target and fsyncing the directory, so a reader after a crash or power loss
// sees the old content or the new, never a mix. Reads are bounded in size.
import { randomBytes } from 'node:crypto';
import type * as nodeFs from 'node:fs';
import { constants } from 'node:fs';
import path from 'node:path';

/** The synchronous node:fs functions the store uses; injectable to simulate failures. */
export type FileSystem = Pick<
  typeof nodeFs,
  | 'openSync'
  | 'writeSync'
  | 'readSync'
  | 'fstatSync'
  | 'fsyncSync'
  | 'closeSync'
  | 'renameSync'
  | 'unlinkSync'
  | 'readdirSync'
  | 'mkdirSync'
>;

/** Prefix of temporary files; anything carrying it is debris of an interrupted write. */
export const TEMP_PREFIX = '.tmp-';

export const FILE_MODE = 0o600;
export const DIR_MODE = 0o700;

/** Durably replaces `dir/name` with `data` (mode 0600). */
export function writeFileAtomic(fs: FileSystem, dir: string, name: string, data: Uint8Array): void {
  const tempPath = path.join(dir, `${TEMP_PREFIX}${name}-${process.pid}-${randomBytes(6).toString('hex')}`);
  const fd = fs.openSync(tempPath, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL, FILE_MODE);
  try {
    let offset = 0;
    while (offset < data.length) offset += fs.writeSync(fd, data, offset, data.length - offset);
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
  fs.renameSync(tempPath, path.join(dir, name));
  fsyncDirectory(fs, dir);
}

/** Makes renames, creations and deletions in `dir` durable. */
export function fsyncDirectory(fs: FileSystem, dir: string): void {
  const fd = fs.openSync(dir, constants.O_RDONLY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/** Creates `dir` (and missing parents) with mode 0700 and makes the new entries durable. */
export function ensureDirectory(fs: FileSystem, dir: string): void {
  const firstCreated = fs.mkdirSync(dir, { recursive: true, mode: DIR_MODE });
  if (firstCreated === undefined) return;
  for (let created = path.resolve(dir); ; created = path.dirname(created)) {
    fsyncDirectory(fs, path.dirname(created));
    if (created === path.resolve(firstCreated)) return;
  }
}

export type BoundedRead =
  | { status: 'ok'; bytes: Buffer }
  | { status: 'missing' }
  | { status: 'too-large'; size: number };

/** Reads a whole regular file unless it is larger than `maxBytes`. */
export function readFileBounded(fs: FileSystem, file: string, maxBytes: number): BoundedRead {
  let fd: number;
  try {
    fd = fs.openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return { status: 'missing' };
    throw err;
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) throw Object.assign(new Error(`${file} is not a regular file`), { code: 'EISDIR' });
    if (stat.size > maxBytes) return { status: 'too-large', size: stat.size };
    const buffer = Buffer.alloc(stat.size);
    let length = 0;
    while (length < buffer.length) {
      const n = fs.readSync(fd, buffer, length, buffer.length - length, null);
      if (n === 0) break;
      length += n;
    }
    return { status: 'ok', bytes: buffer.subarray(0, length) };
  } finally {
    fs.closeSync(fd);
  }
}
