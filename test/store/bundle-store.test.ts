import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import type { FileSystem } from '../../src/bundle/atomic-file.js';
import { BundleStore, BundleStoreError } from '../../src/bundle/store.js';
import { activate, listStore, makeBundle, sha256Hex } from './bundle-fixtures.js';

let tmp: string;
let dir: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-bundles-'));
  dir = path.join(tmp, 'bundles');
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function errorCode(run: () => unknown): string | undefined {
  try {
    run();
  } catch (err) {
    if (err instanceof BundleStoreError) return err.code;
    throw err;
  }
  return undefined;
}

function opened(options = {}): BundleStore {
  const store = new BundleStore(dir, options);
  store.open();
  return store;
}

function codes(store: BundleStore): string[] {
  return store.open().actions.map((a) => a.code);
}

const r1 = makeBundle(1);
const r2 = makeBundle(2);
const r3 = makeBundle(3);

describe('BundleStore activation', () => {
  it('starts empty, creating a private directory', () => {
    const store = new BundleStore(dir);
    const report = store.open();
    expect(report.actions).toEqual([]);
    expect(report.status).toEqual({ active: null, lkg: null, floor: 0, rejections: [] });
    expect(store.readActive()).toBeNull();
    expect(listStore(dir)).toEqual({ top: ['blobs', 'revision-floor'], blobs: [] });
    expect(new BundleStore(dir).open().actions).toEqual([]);
    expect(fs.statSync(dir).mode & 0o777).toBe(0o700);
    expect(fs.statSync(path.join(dir, 'blobs')).mode & 0o777).toBe(0o700);
  });

  it('activates, keeps the previous bundle as last-known-good, and drops older ones', () => {
    const store = opened();
    activate(store, r1);
    expect(store.status()).toMatchObject({ active: { revision: 1, digest: r1.digest }, lkg: null, floor: 1 });
    activate(store, r2);
    activate(store, r3);
    expect(store.status()).toMatchObject({
      active: { revision: 3, digest: r3.digest },
      lkg: { revision: 2, digest: r2.digest },
      floor: 3,
    });
    expect(Buffer.from(store.readActive()!.bytes).equals(Buffer.from(r3.bytes))).toBe(true);
    expect(listStore(dir)).toEqual({ top: ['blobs', 'revision-floor', 'state.json'], blobs: [r2.digest, r3.digest].sort() });
    for (const file of ['state.json', 'revision-floor', `blobs/${r3.digest}`]) {
      expect(fs.statSync(path.join(dir, file)).mode & 0o777).toBe(0o600);
    }
  });

  it('finds the same state after a restart, with nothing to repair', () => {
    const store = opened();
    activate(store, r1);
    activate(store, r2);
    const reopened = new BundleStore(dir);
    const report = reopened.open();
    expect(report.actions).toEqual([]);
    expect(report.status).toEqual(store.status());
    expect(reopened.readActive()!.digest).toBe(r2.digest);
  });

  it('refuses a revision that is not above every revision activated before', () => {
    const store = opened();
    activate(store, r2);
    expect(errorCode(() => activate(store, r1))).toBe('BUNDLE_STORE_REVISION_NOT_NEWER');
    expect(errorCode(() => activate(store, makeBundle(2)))).toBe('BUNDLE_STORE_REVISION_NOT_NEWER');
    expect(store.status().active?.revision).toBe(2);
  });

  it('refuses bad input without touching the disk', () => {
    const store = opened({ maxBundleBytes: 4096 });
    activate(store, r1);
    const before = listStore(dir);
    expect(errorCode(() => store.activate(r2.bytes, 2, r1.digest))).toBe('BUNDLE_STORE_DIGEST_MISMATCH');
    expect(errorCode(() => store.activate(r2.bytes, 2, r2.digest.toUpperCase()))).toBe('BUNDLE_STORE_BAD_INPUT');
    expect(errorCode(() => store.activate(r2.bytes, 2.5, r2.digest))).toBe('BUNDLE_STORE_BAD_INPUT');
    expect(errorCode(() => store.activate(new Uint8Array(0), 2, sha256Hex(new Uint8Array(0))))).toBe(
      'BUNDLE_STORE_BAD_INPUT',
    );
    const big = makeBundle(2, 5000);
    expect(errorCode(() => activate(store, big))).toBe('BUNDLE_STORE_TOO_LARGE');
    expect(listStore(dir)).toEqual(before);
    expect(store.status().active?.revision).toBe(1);
  });

  it('requires open() before use', () => {
    const store = new BundleStore(dir);
    expect(errorCode(() => store.status())).toBe('BUNDLE_STORE_NOT_OPEN');
    expect(errorCode(() => activate(store, r1))).toBe('BUNDLE_STORE_NOT_OPEN');
  });
});

describe('BundleStore rollback', () => {
  it('makes the last-known-good bundle active and keeps the floor', () => {
    const store = opened();
    activate(store, r1);
    activate(store, r2);
    expect(sha256Hex(store.readLkg()!.bytes)).toBe(r1.digest);
    const back = store.rollback();
    expect(back.revision).toBe(1);
    expect(sha256Hex(back.bytes)).toBe(r1.digest);
    expect(store.status()).toMatchObject({ active: { revision: 1 }, lkg: null, floor: 2 });
    expect(store.readLkg()).toBeNull();
    expect(listStore(dir).blobs).toEqual([r1.digest]);
    // The bundle rolled back from cannot come back; a newer one can.
    expect(errorCode(() => activate(store, r2))).toBe('BUNDLE_STORE_REVISION_NOT_NEWER');
    activate(store, r3);
    expect(store.status()).toMatchObject({ active: { revision: 3 }, lkg: { revision: 1 } });
    expect(new BundleStore(dir).open().status.floor).toBe(3);
  });

  it('needs a last-known-good bundle', () => {
    const store = opened();
    expect(errorCode(() => store.rollback())).toBe('BUNDLE_STORE_NO_LKG');
    activate(store, r1);
    expect(errorCode(() => store.rollback())).toBe('BUNDLE_STORE_NO_LKG');
  });

  it('refuses to roll back to a corrupted last-known-good blob', () => {
    const store = opened();
    activate(store, r1);
    activate(store, r2);
    fs.writeFileSync(path.join(dir, 'blobs', r1.digest), 'tampered');
    expect(errorCode(() => store.readLkg())).toBe('BUNDLE_STORE_BLOB_INVALID');
    expect(errorCode(() => store.rollback())).toBe('BUNDLE_STORE_BLOB_INVALID');
    expect(store.status().active?.revision).toBe(2);
  });
});

describe('BundleStore recovery', () => {
  function twoActivated(): void {
    const store = opened();
    activate(store, r1);
    activate(store, r2);
  }

  it('falls back to the last-known-good bundle when the active blob is corrupt', () => {
    twoActivated();
    fs.writeFileSync(path.join(dir, 'blobs', r2.digest), 'bit rot');
    const store = new BundleStore(dir);
    const report = store.open();
    expect(report.actions.map((a) => a.code)).toEqual(['ACTIVE_INVALID', 'FELL_BACK_TO_LKG', 'UNREFERENCED_BLOB_REMOVED']);
    expect(report.status).toMatchObject({ active: { revision: 1, digest: r1.digest }, lkg: null, floor: 2 });
    expect(store.readActive()!.digest).toBe(r1.digest);
    expect(listStore(dir).blobs).toEqual([r1.digest]);
    expect(codes(new BundleStore(dir))).toEqual([]);
  });

  it('has no active bundle when the active blob is missing and there is no fallback', () => {
    const store = opened();
    activate(store, r1);
    fs.unlinkSync(path.join(dir, 'blobs', r1.digest));
    const report = new BundleStore(dir).open();
    expect(report.actions.map((a) => a.code)).toEqual(['ACTIVE_INVALID']);
    expect(report.status).toMatchObject({ active: null, lkg: null, floor: 1 });
  });

  it('drops a corrupt last-known-good bundle and keeps the active one', () => {
    twoActivated();
    fs.appendFileSync(path.join(dir, 'blobs', r1.digest), 'x');
    const report = new BundleStore(dir).open();
    expect(report.actions.map((a) => a.code)).toEqual(['LKG_INVALID', 'UNREFERENCED_BLOB_REMOVED']);
    expect(report.status).toMatchObject({ active: { revision: 2 }, lkg: null });
  });

  it('removes temporary files and blobs nothing refers to', () => {
    twoActivated();
    fs.writeFileSync(path.join(dir, '.tmp-state.json-1-abc'), '{"partial');
    fs.writeFileSync(path.join(dir, 'blobs', '.tmp-' + r3.digest + '-1-abc'), r3.bytes.subarray(0, 10));
    fs.writeFileSync(path.join(dir, 'blobs', r3.digest), r3.bytes);
    const report = new BundleStore(dir).open();
    expect(report.actions.map((a) => a.code)).toEqual([
      'TEMP_FILE_REMOVED',
      'TEMP_FILE_REMOVED',
      'UNREFERENCED_BLOB_REMOVED',
    ]);
    expect(report.status.active?.revision).toBe(2);
    expect(listStore(dir)).toEqual({ top: ['blobs', 'revision-floor', 'state.json'], blobs: [r1.digest, r2.digest].sort() });
  });

  it('keeps the revision floor when the state file is deleted', () => {
    twoActivated();
    fs.unlinkSync(path.join(dir, 'state.json'));
    const store = new BundleStore(dir);
    const report = store.open();
    expect(report.actions.map((a) => a.code)).toEqual([
      'STATE_MISSING',
      'UNREFERENCED_BLOB_REMOVED',
      'UNREFERENCED_BLOB_REMOVED',
    ]);
    expect(report.status).toMatchObject({ active: null, lkg: null, floor: 2 });
    expect(errorCode(() => activate(store, r1))).toBe('BUNDLE_STORE_REVISION_NOT_NEWER');
    expect(errorCode(() => activate(store, r2))).toBe('BUNDLE_STORE_REVISION_NOT_NEWER');
    activate(store, r3);
    expect(codes(new BundleStore(dir))).toEqual([]);
  });

  it('keeps the revision floor when an older state file is restored', () => {
    const store = opened();
    activate(store, r1);
    const older = fs.readFileSync(path.join(dir, 'state.json'));
    activate(store, r2);
    fs.writeFileSync(path.join(dir, 'state.json'), older);
    const restored = new BundleStore(dir);
    expect(restored.open().status).toMatchObject({ active: { revision: 1 }, lkg: null, floor: 2 });
    expect(errorCode(() => activate(restored, r2))).toBe('BUNDLE_STORE_REVISION_NOT_NEWER');
  });

  it('treats an unreadable state file as no active bundle', () => {
    twoActivated();
    for (const garbage of ['{"format":1,', '{"format":1,"active":null,"lkg":null,"rejections":[],"extra":1}', 'null']) {
      fs.writeFileSync(path.join(dir, 'state.json'), garbage);
      const report = new BundleStore(dir).open();
      expect(report.actions[0]?.code).toBe('STATE_UNREADABLE');
      expect(report.status).toMatchObject({ active: null, lkg: null, floor: 2 });
    }
  });

  it('rebuilds a deleted floor from the state', () => {
    twoActivated();
    fs.unlinkSync(path.join(dir, 'revision-floor'));
    const report = new BundleStore(dir).open();
    expect(report.actions.map((a) => a.code)).toEqual(['FLOOR_MISSING', 'FLOOR_RAISED']);
    expect(report.status.floor).toBe(2);
    expect(fs.readFileSync(path.join(dir, 'revision-floor'), 'utf8')).toBe('2\n');
  });

  it('rebuilds a deleted floor once, even when the state is unreadable too', () => {
    twoActivated();
    fs.unlinkSync(path.join(dir, 'revision-floor'));
    fs.writeFileSync(path.join(dir, 'state.json'), '{');
    expect(codes(new BundleStore(dir))).toEqual([
      'STATE_UNREADABLE',
      'FLOOR_MISSING',
      'UNREFERENCED_BLOB_REMOVED',
      'UNREFERENCED_BLOB_REMOVED',
    ]);
    expect(codes(new BundleStore(dir))).toEqual([]);
  });

  it('refuses to open with a damaged floor rather than guess it', () => {
    twoActivated();
    for (const damaged of ['', 'two\n', '-1\n', '1e3\n', '99999999999999999\n']) {
      fs.writeFileSync(path.join(dir, 'revision-floor'), damaged);
      expect(errorCode(() => new BundleStore(dir).open())).toBe('BUNDLE_STORE_FLOOR_CORRUPT');
    }
  });
});

describe('BundleStore rejections', () => {
  it('records rejections across restarts, keeping the newest', () => {
    const store = opened({ maxRejections: 2 });
    store.recordRejection({ revision: 5, digest: r1.digest, code: 'BUNDLE_EXPIRED', atMs: 1000 });
    store.recordRejection({ revision: null, digest: null, code: 'BUNDLE_MALFORMED', atMs: 2000 });
    store.recordRejection({ revision: 6, digest: null, code: 'BUNDLE_SIGNATURES', atMs: 3000 });
    const reopened = new BundleStore(dir, { maxRejections: 2 });
    expect(reopened.open().status.rejections).toEqual([
      { revision: null, digest: null, code: 'BUNDLE_MALFORMED', atMs: 2000 },
      { revision: 6, digest: null, code: 'BUNDLE_SIGNATURES', atMs: 3000 },
    ]);
  });

  it('refuses malformed rejection records', () => {
    const store = opened();
    expect(errorCode(() => store.recordRejection({ revision: null, digest: null, code: 'not upper', atMs: 1 }))).toBe(
      'BUNDLE_STORE_BAD_INPUT',
    );
    expect(errorCode(() => store.recordRejection({ revision: -1, digest: null, code: 'X', atMs: 1 }))).toBe(
      'BUNDLE_STORE_BAD_INPUT',
    );
    expect(errorCode(() => store.recordRejection({ revision: 1, digest: 'zz', code: 'X', atMs: 1 }))).toBe(
      'BUNDLE_STORE_BAD_INPUT',
    );
    expect(store.status().rejections).toEqual([]);
  });
});

/**
 * A file system that, once armed, fails at the n-th call that changes the disk, which leaves the
 * disk exactly as a crash at that point would (closing a descriptor changes nothing on disk).
 */
function failingAt(n: number): { fs: FileSystem; arm: () => void; calls: () => number } {
  let armed = false;
  let count = 0;
  const tick = () => {
    if (armed && count++ === n) throw Object.assign(new Error(`injected failure at step ${n}`), { code: 'EIO' });
  };
  const mutating = new Set(['writeSync', 'fsyncSync', 'renameSync', 'unlinkSync', 'mkdirSync']);
  const wrapped = new Proxy(fs, {
    get(target, key: string) {
      const real = (target as unknown as Record<string, unknown>)[key];
      if (typeof real !== 'function') return real;
      return (...args: unknown[]) => {
        if (mutating.has(key) || (key === 'openSync' && typeof args[1] === 'number' && (args[1] & fs.constants.O_CREAT) !== 0)) {
          tick();
        }
        return (real as (...a: unknown[]) => unknown).apply(target, args);
      };
    },
  }) as FileSystem;
  return { fs: wrapped, arm: () => (armed = true), calls: () => count };
}

describe('BundleStore interrupted at every step', () => {
  /**
   * Checks the store after an interrupted operation; `outcomes` maps each acceptable active
   * revision (null: none active) to the last-known-good revision that must go with it.
   */
  function checkInvariant(outcomes: Map<number | null, number | null>): number | null {
    const store = new BundleStore(dir);
    const { status, actions } = store.open();
    for (const action of actions) {
      expect(['TEMP_FILE_REMOVED', 'UNREFERENCED_BLOB_REMOVED', 'FLOOR_RAISED']).toContain(action.code);
    }
    const revision = status.active?.revision ?? null;
    expect([...outcomes.keys()]).toContain(revision);
    expect(status.lkg?.revision ?? null).toBe(outcomes.get(revision));
    const active = store.readActive();
    if (active !== null) {
      expect(sha256Hex(active.bytes)).toBe(active.digest);
      expect(status.floor).toBeGreaterThanOrEqual(active.revision);
    }
    const left = listStore(dir);
    expect(left.top.filter((n) => n.startsWith('.tmp-'))).toEqual([]);
    expect(left.blobs.sort()).toEqual([status.active?.digest, status.lkg?.digest].filter((d) => d !== undefined).sort());
    return revision;
  }

  it('a first activation leaves no bundle or the new one active', () => {
    const outcomes = new Set<number | null>();
    for (let n = 0; ; n++) {
      fs.rmSync(dir, { recursive: true, force: true });
      const failing = failingAt(n);
      const store = new BundleStore(dir, { fs: failing.fs });
      store.open();
      failing.arm();
      if (errorCode(() => activate(store, r1)) === undefined) {
        expect(checkInvariant(new Map([[1, null]]))).toBe(1);
        break;
      }
      outcomes.add(checkInvariant(new Map([[null, null], [1, null]])));
    }
    expect([...outcomes]).toEqual([null, 1]);
  });

  it('activation leaves the old or the new bundle active, complete', () => {
    const outcomes = new Set<number | null>();
    for (let n = 0; ; n++) {
      fs.rmSync(dir, { recursive: true, force: true });
      const setup = opened();
      activate(setup, r1);
      activate(setup, r2);
      const failing = failingAt(n);
      const store = new BundleStore(dir, { fs: failing.fs });
      store.open();
      failing.arm();
      const failed = errorCode(() => activate(store, r3));
      if (failed === undefined) {
        expect(failing.calls()).toBeGreaterThan(6);
        expect(checkInvariant(new Map([[3, 2]]))).toBe(3);
        break;
      }
      expect(failed).toBe('BUNDLE_STORE_IO');
      expect(errorCode(() => store.status())).toBe('BUNDLE_STORE_NOT_OPEN');
      outcomes.add(checkInvariant(new Map([[2, 1], [3, 2]])));
    }
    expect([...outcomes].sort()).toEqual([2, 3]);
  });

  it('rollback leaves the old or the rolled-back bundle active, complete', () => {
    const outcomes = new Set<number | null>();
    for (let n = 0; ; n++) {
      fs.rmSync(dir, { recursive: true, force: true });
      const setup = opened();
      activate(setup, r1);
      activate(setup, r2);
      const failing = failingAt(n);
      const store = new BundleStore(dir, { fs: failing.fs });
      store.open();
      failing.arm();
      if (errorCode(() => store.rollback()) === undefined) {
        expect(checkInvariant(new Map([[1, null]]))).toBe(1);
        break;
      }
      outcomes.add(checkInvariant(new Map([[1, null], [2, 1]])));
    }
    expect([...outcomes].sort()).toEqual([1, 2]);
  });
});
