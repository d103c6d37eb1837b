// Native addons carried inside the single executable. Node can only load an addon from a file, so
// each one travels as an asset with its SHA-256 fixed at build time, is written once to a private,
// content-addressed file (<base>/<sha256>/<name>, directories 0700, file 0500) and is loaded only
// when that file's bytes hash to the built-in digest. The hash is taken over the open file that is
// then loaded (through /proc/self/fd), so nothing can be swapped in between check and load.
//
// A file with other bytes at that path is never loaded: the start fails with
// NATIVE_ADDON_REFUSED, and the file is moved aside (kept beside it for inspection) so that the
// next start writes a genuine copy. Failing first, rather than quietly rewriting the file and
// going on, makes someone notice that something with this user's rights (or root's) wrote into a
// private directory; a supervisor's restart then brings the agent back without anyone's help.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { ZtedgeError } from '../errors.js';

export type NativeAddonErrorCode =
  | 'NATIVE_ADDON_REFUSED'
  | 'NATIVE_ADDON_UNSAFE_DIR'
  | 'NATIVE_ADDON_DAMAGED'
  | 'NATIVE_ADDON_EXTRACT_FAILED'
  | 'NATIVE_ADDON_LOAD_FAILED';

export class NativeAddonError extends ZtedgeError<NativeAddonErrorCode> {}

export interface EmbeddedAddon {
  /** File name of the addon, e.g. `better_sqlite3.node`. */
  name: string;
  /** Lowercase hex SHA-256 of the addon, fixed when the binary was built. */
  sha256: string;
  /** The addon's bytes from inside the binary (read only when a copy must be written). */
  bytes(): Uint8Array;
}

/** Where addons are written: `parent` must exist; `owned` are the directories below it that this program creates and keeps private. */
export interface AddonBase {
  parent: string;
  owned: string[];
}

/**
 * The base directory for extracted addons: the agent's state directory when there is one
 * (`<stateDir>/native`, kept across reboots), else `$XDG_RUNTIME_DIR/ztedge/native` (a per-user
 * tmpfs), else `<tmpdir>/ztedge-<uid>/native` (checked to be this user's and private like the rest).
 */
export function addonBase(opts: { stateDir?: string; env: Record<string, string | undefined>; tmpdir: string; uid: number }): AddonBase {
  if (opts.stateDir !== undefined) return { parent: opts.stateDir, owned: ['native'] };
  const runtimeDir = opts.env.XDG_RUNTIME_DIR;
  if (runtimeDir !== undefined && path.isAbsolute(runtimeDir) && isDirectory(runtimeDir)) {
    return { parent: runtimeDir, owned: ['ztedge', 'native'] };
  }
  return { parent: opts.tmpdir, owned: [`ztedge-${opts.uid}`, 'native'] };
}

/** The content-addressed path of `addon` under `base`. */
export function addonPath(base: AddonBase, addon: Pick<EmbeddedAddon, 'name' | 'sha256'>): string {
  return path.join(base.parent, ...base.owned, addon.sha256, addon.name);
}

export interface LoadOptions {
  /** The process's uid (directories must be its own); undefined skips the owner check. */
  uid: number | undefined;
  /** Loads the file at `file` (a path or /proc/self/fd/N) as an addon; `process.dlopen` by default. */
  dlopen?: (file: string) => object;
}

/**
 * Returns `addon` loaded from its content-addressed file under `base`, writing the file first when
 * it is missing. Throws NativeAddonError when a file with other bytes is found there (after
 * moving it aside), when a directory on the way is not this user's, or when loading fails.
 */
export function loadEmbeddedAddon(addon: EmbeddedAddon, base: AddonBase, opts: LoadOptions): object {
  if (!/^[0-9a-f]{64}$/.test(addon.sha256)) {
    throw new NativeAddonError('NATIVE_ADDON_DAMAGED', `addon ${addon.name}: built-in digest is not a SHA-256 hex string`);
  }
  let dir = base.parent;
  for (const segment of [...base.owned, addon.sha256]) {
    dir = path.join(dir, segment);
    ensurePrivateDir(dir, opts.uid);
  }
  const file = path.join(dir, addon.name);
  let fd = openChecked(file, addon, opts.uid);
  if (fd === undefined) {
    writeCopy(dir, file, addon);
    fd = openChecked(file, addon, opts.uid);
    if (fd === undefined) throw new NativeAddonError('NATIVE_ADDON_EXTRACT_FAILED', `addon ${file} vanished right after it was written`);
  }
  let loaded: object;
  try {
    loaded = (opts.dlopen ?? dlopenAddon)(fs.existsSync(`/proc/self/fd/${fd}`) ? `/proc/self/fd/${fd}` : file);
  } catch (err) {
    throw new NativeAddonError('NATIVE_ADDON_LOAD_FAILED', `cannot load native addon ${file}: ${(err as Error).message}`, { cause: err });
  } finally {
    fs.closeSync(fd);
  }
  pruneOtherVersions(path.dirname(dir), addon.sha256);
  return loaded;
}

function dlopenAddon(file: string): object {
  const module = { exports: {} };
  process.dlopen(module, file);
  return module.exports;
}

/** Creates `dir` (0700) or checks the one there: a real directory, this user's, private (tightened when looser). */
function ensurePrivateDir(dir: string, uid: number | undefined): void {
  try {
    fs.mkdirSync(dir, { mode: 0o700 });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw new NativeAddonError('NATIVE_ADDON_EXTRACT_FAILED', `cannot create ${dir} for native addons: ${(err as Error).message}`, { cause: err });
    }
  }
  const stat = fs.lstatSync(dir);
  if (!stat.isDirectory()) {
    throw new NativeAddonError('NATIVE_ADDON_UNSAFE_DIR', `${dir} is not a directory (a symlink or a file is not accepted for native addons)`);
  }
  if (uid !== undefined && stat.uid !== uid) {
    throw new NativeAddonError('NATIVE_ADDON_UNSAFE_DIR', `${dir} belongs to uid ${stat.uid}, not to this process's uid ${uid}: native addons are not loaded from it`);
  }
  if ((stat.mode & 0o077) !== 0) fs.chmodSync(dir, 0o700);
}

/**
 * Opens the addon file and checks its bytes against the built-in digest: the open descriptor when
 * they match, undefined when there is no file. Anything else there is moved aside and refused.
 */
function openChecked(file: string, addon: EmbeddedAddon, uid: number | undefined): number | undefined {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return undefined;
    if (code === 'ELOOP') refuse(file, addon, 'a symbolic link');
    throw new NativeAddonError('NATIVE_ADDON_LOAD_FAILED', `cannot open native addon ${file}: ${(err as Error).message}`, { cause: err });
  }
  try {
    const stat = fs.fstatSync(fd);
    if (!stat.isFile()) refuse(file, addon, 'not a regular file');
    // Another user's file could be rewritten in place between the check and the load.
    if (uid !== undefined && stat.uid !== uid) refuse(file, addon, `a file of uid ${stat.uid}`);
    const digest = createHash('sha256').update(fs.readFileSync(fd)).digest('hex');
    if (digest !== addon.sha256) refuse(file, addon, `SHA-256 ${digest}`);
    if ((stat.mode & 0o7777) !== 0o500) fs.fchmodSync(fd, 0o500);
    return fd;
  } catch (err) {
    fs.closeSync(fd);
    throw err;
  }
}

function refuse(file: string, addon: EmbeddedAddon, found: string): never {
  const aside = `${file}.rejected`;
  let fate: string;
  try {
    fs.rmSync(aside, { recursive: true, force: true });
    fs.renameSync(file, aside);
    fate = `moved to ${aside}; the next start writes a fresh copy`;
  } catch (err) {
    fate = `it could not be moved aside (${(err as Error).message}): remove it, and the next start writes a fresh copy`;
  }
  throw new NativeAddonError(
    'NATIVE_ADDON_REFUSED',
    `native addon ${file} refused, not loaded: found ${found}, this binary carries SHA-256 ${addon.sha256}; ${fate}`,
  );
}

/** Writes the addon next to its final name, fsyncs, makes it 0500 and renames it into place. */
function writeCopy(dir: string, file: string, addon: EmbeddedAddon): void {
  const bytes = addon.bytes();
  const digest = createHash('sha256').update(bytes).digest('hex');
  if (digest !== addon.sha256) {
    throw new NativeAddonError(
      'NATIVE_ADDON_DAMAGED',
      `the ${addon.name} inside this binary hashes to ${digest}, not to its built-in ${addon.sha256}: the binary is damaged`,
    );
  }
  const temp = path.join(dir, `.${addon.name}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`);
  try {
    const fd = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL | fs.constants.O_NOFOLLOW, 0o600);
    try {
      for (let offset = 0; offset < bytes.length; ) offset += fs.writeSync(fd, bytes, offset);
      fs.fsyncSync(fd);
      fs.fchmodSync(fd, 0o500);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw new NativeAddonError('NATIVE_ADDON_EXTRACT_FAILED', `cannot write native addon ${file}: ${(err as Error).message}`, { cause: err });
  }
}

/** Removes copies written by other builds (a loaded copy stays usable by its process after removal). */
function pruneOtherVersions(versionsDir: string, keep: string): void {
  let entries: string[];
  try {
    entries = fs.readdirSync(versionsDir);
  } catch {
    return;
  }
  for (const entry of entries) {
    if (entry === keep || !/^[0-9a-f]{64}$/.test(entry)) continue;
    try {
      fs.rmSync(path.join(versionsDir, entry), { recursive: true, force: true });
    } catch {
      // Housekeeping only: a copy that cannot be removed costs disk space, nothing else.
    }
  }
}

function isDirectory(dir: string): boolean {
  try {
    return fs.statSync(dir).isDirectory();
  } catch {
    return false;
  }
}

let stateDirForAddons: string | undefined;

/** The agent's state directory, where addons are written when a command has one (`run`). */
export function preferStateDirForAddons(dir: string): void {
  stateDirForAddons = dir;
}

export function preferredStateDirForAddons(): string | undefined {
  return stateDirForAddons;
}
