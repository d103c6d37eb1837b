// The embedded-addon loader with better-sqlite3's real addon: written once to a private,
// content-addressed file; loaded only when its bytes match the built-in digest; a different file
// there refused (never handed to dlopen) and moved aside, so the next load writes a genuine copy.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { type AddonBase, type EmbeddedAddon, NativeAddonError, addonBase, addonPath, loadEmbeddedAddon } from '../../src/cli/native-addon.js';

const require = createRequire(import.meta.url);
const SQLITE_ADDON = require.resolve('better-sqlite3/build/Release/better_sqlite3.node');
const FOREIGN_ADDON = require.resolve('better-sqlite3/build/Release/test_extension.node');
const bytes = fs.readFileSync(SQLITE_ADDON);
const sha256 = (data: Uint8Array) => createHash('sha256').update(data).digest('hex');
const uid = process.getuid!();

const addon: EmbeddedAddon = { name: 'better_sqlite3.node', sha256: sha256(bytes), bytes: () => bytes };

const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function stateDir(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-addon-'));
  dirs.push(dir);
  return dir;
}

/** dlopen that records what it was asked to load and loads nothing. */
function recordingDlopen() {
  const calls: Array<{ target: string; sha256: string }> = [];
  return {
    calls,
    dlopen: (target: string) => {
      calls.push({ target, sha256: sha256(fs.readFileSync(target)) });
      return { recorded: true };
    },
  };
}

function refusal(fn: () => unknown): NativeAddonError {
  try {
    fn();
  } catch (err) {
    if (err instanceof NativeAddonError) return err;
    throw err;
  }
  throw new Error('expected a NativeAddonError');
}

describe('embedded native addon', () => {
  it('writes the addon once (0700 dirs, 0500 file) and loads the real one into a working database', () => {
    const base: AddonBase = { parent: stateDir(), owned: ['native'] };
    const loaded = loadEmbeddedAddon(addon, base, { uid });
    const file = addonPath(base, addon);
    expect(file).toBe(path.join(base.parent, 'native', addon.sha256, 'better_sqlite3.node'));
    expect(fs.statSync(file).mode & 0o7777).toBe(0o500);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(base.parent, 'native')).mode & 0o777).toBe(0o700);
    expect(sha256(fs.readFileSync(file))).toBe(addon.sha256);

    const db = openStateDb(path.join(base.parent, 'state.db'), { nativeBinding: loaded });
    db.exec('CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (42)');
    expect(db.prepare('SELECT x FROM t').get()).toEqual({ x: 42 });
    db.close();
  });

  it('loads the very file it hashed (through /proc/self/fd) and does not rewrite a good copy', () => {
    const base: AddonBase = { parent: stateDir(), owned: ['native'] };
    const first = recordingDlopen();
    loadEmbeddedAddon(addon, base, { uid, dlopen: first.dlopen });
    const inode = fs.statSync(addonPath(base, addon)).ino;
    const second = recordingDlopen();
    loadEmbeddedAddon(addon, base, { uid, dlopen: second.dlopen });
    expect(fs.statSync(addonPath(base, addon)).ino).toBe(inode);
    for (const { calls } of [first, second]) {
      expect(calls).toHaveLength(1);
      expect(calls[0]!.target).toMatch(/^\/proc\/self\/fd\/\d+$/);
      expect(calls[0]!.sha256).toBe(addon.sha256);
    }
  });

  it('refuses a different file at the path without loading it, moves it aside, and writes a fresh copy next time', () => {
    const base: AddonBase = { parent: stateDir(), owned: ['native'] };
    loadEmbeddedAddon(addon, base, { uid, dlopen: () => ({}) });
    const file = addonPath(base, addon);
    fs.rmSync(file);
    fs.copyFileSync(FOREIGN_ADDON, file);

    const attempt = recordingDlopen();
    const err = refusal(() => loadEmbeddedAddon(addon, base, { uid, dlopen: attempt.dlopen }));
    expect(err.code).toBe('NATIVE_ADDON_REFUSED');
    expect(err.message).toContain(`found SHA-256 ${sha256(fs.readFileSync(FOREIGN_ADDON))}`);
    expect(err.message).toContain(`carries SHA-256 ${addon.sha256}`);
    expect(attempt.calls).toEqual([]);
    expect(fs.existsSync(file)).toBe(false);
    expect(sha256(fs.readFileSync(`${file}.rejected`))).toBe(sha256(fs.readFileSync(FOREIGN_ADDON)));

    const next = recordingDlopen();
    loadEmbeddedAddon(addon, base, { uid, dlopen: next.dlopen });
    expect(next.calls.map((c) => c.sha256)).toEqual([addon.sha256]);
    expect(sha256(fs.readFileSync(file))).toBe(addon.sha256);
  });

  it('refuses a symlink or a directory in place of the file', () => {
    const base: AddonBase = { parent: stateDir(), owned: ['native'] };
    loadEmbeddedAddon(addon, base, { uid, dlopen: () => ({}) });
    const file = addonPath(base, addon);
    // A link to a genuine copy is still refused: the file itself must be the private copy.
    fs.rmSync(file);
    fs.symlinkSync(SQLITE_ADDON, file);
    expect(refusal(() => loadEmbeddedAddon(addon, base, { uid, dlopen: () => ({}) })).message).toContain('found a symbolic link');
    fs.rmSync(`${file}.rejected`);
    fs.mkdirSync(file);
    expect(refusal(() => loadEmbeddedAddon(addon, base, { uid, dlopen: () => ({}) })).message).toContain('found not a regular file');
    const next = recordingDlopen();
    loadEmbeddedAddon(addon, base, { uid, dlopen: next.dlopen });
    expect(next.calls.map((c) => c.sha256)).toEqual([addon.sha256]);
  });

  it('tightens a loosened directory or file of its own, and refuses a directory that is a symlink or not its own', () => {
    const base: AddonBase = { parent: stateDir(), owned: ['native'] };
    loadEmbeddedAddon(addon, base, { uid, dlopen: () => ({}) });
    const file = addonPath(base, addon);
    fs.chmodSync(path.dirname(file), 0o777);
    fs.chmodSync(file, 0o755);
    loadEmbeddedAddon(addon, base, { uid, dlopen: () => ({}) });
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
    expect(fs.statSync(file).mode & 0o7777).toBe(0o500);

    const elsewhere = stateDir();
    const linked: AddonBase = { parent: stateDir(), owned: ['native'] };
    fs.symlinkSync(elsewhere, path.join(linked.parent, 'native'));
    const err = refusal(() => loadEmbeddedAddon(addon, linked, { uid, dlopen: () => ({}) }));
    expect(err.code).toBe('NATIVE_ADDON_UNSAFE_DIR');
    expect(fs.readdirSync(elsewhere)).toEqual([]);

    // Another uid's directory: this process pretends to be uid + 1.
    const err2 = refusal(() => loadEmbeddedAddon(addon, base, { uid: uid + 1, dlopen: () => ({}) }));
    expect(err2.code).toBe('NATIVE_ADDON_UNSAFE_DIR');
    expect(err2.message).toContain(`belongs to uid ${uid}`);
  });

  it('refuses to write an embedded copy that does not match its built-in digest (a damaged binary)', () => {
    const base: AddonBase = { parent: stateDir(), owned: ['native'] };
    const damaged: EmbeddedAddon = { ...addon, bytes: () => fs.readFileSync(FOREIGN_ADDON) };
    expect(refusal(() => loadEmbeddedAddon(damaged, base, { uid, dlopen: () => ({}) })).code).toBe('NATIVE_ADDON_DAMAGED');
    expect(fs.readdirSync(path.join(base.parent, 'native', addon.sha256))).toEqual([]);
  });

  it('removes copies written by other builds once its own is loaded', () => {
    const base: AddonBase = { parent: stateDir(), owned: ['native'] };
    const old = path.join(base.parent, 'native', 'ab'.repeat(32));
    fs.mkdirSync(old, { recursive: true });
    fs.writeFileSync(path.join(old, 'better_sqlite3.node'), 'an older build');
    fs.writeFileSync(path.join(base.parent, 'native', 'notes.txt'), 'not ours to remove');
    loadEmbeddedAddon(addon, base, { uid, dlopen: () => ({}) });
    expect(fs.readdirSync(path.join(base.parent, 'native')).sort()).toEqual([addon.sha256, 'notes.txt'].sort());
  });

  it('chooses the state directory, else $XDG_RUNTIME_DIR, else a per-user directory in tmp', () => {
    const runtime = stateDir();
    expect(addonBase({ stateDir: '/var/lib/ztedge', env: { XDG_RUNTIME_DIR: runtime }, tmpdir: '/tmp', uid: 7 })).toEqual({ parent: '/var/lib/ztedge', owned: ['native'] });
    expect(addonBase({ env: { XDG_RUNTIME_DIR: runtime }, tmpdir: '/tmp', uid: 7 })).toEqual({ parent: runtime, owned: ['ztedge', 'native'] });
    expect(addonBase({ env: { XDG_RUNTIME_DIR: path.join(runtime, 'missing') }, tmpdir: '/tmp', uid: 7 })).toEqual({ parent: '/tmp', owned: ['ztedge-7', 'native'] });
    expect(addonBase({ env: { XDG_RUNTIME_DIR: 'relative' }, tmpdir: '/tmp', uid: 7 })).toEqual({ parent: '/tmp', owned: ['ztedge-7', 'native'] });
  });
});
