// Reading bundles from streams and files never buffers more than the cap ("endless data"), and
// the file watcher activates what is dropped next to the device.
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { BundleManager } from '../../src/bundle/activation.js';
import { BundleError } from '../../src/bundle/errors.js';
import { type BundleFileWatcher, readBounded, readBundleFile, watchBundleFile } from '../../src/bundle/file-source.js';
import { BundleStore } from '../../src/bundle/store.js';
import { waitUntil } from '../support/wait.js';
import { NOW_MS, type Roots, makeRoots, signedBundle, tempDir, trustOf } from './support.js';

let roots: Roots;
let dir: string;

beforeAll(() => {
  roots = makeRoots();
});

afterAll(() => {
  fs.rmSync(roots.dir, { recursive: true, force: true });
});

beforeEach(() => {
  dir = tempDir('file-source');
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

async function refusal(run: () => Promise<unknown>): Promise<BundleError> {
  try {
    await run();
  } catch (err) {
    if (err instanceof BundleError) return err;
    throw err;
  }
  throw new Error('expected a BundleError');
}

describe('readBounded', () => {
  it('stops pulling from an endless source just past the cap and releases it', async () => {
    const CHUNK = 1000;
    let produced = 0;
    let released = false;
    async function* endless(): AsyncGenerator<Uint8Array> {
      try {
        for (;;) {
          produced += CHUNK;
          yield new Uint8Array(CHUNK);
        }
      } finally {
        released = true;
      }
    }
    const err = await refusal(() => readBounded(endless(), 64 * 1024));
    expect(err.code).toBe('BUNDLE_TOO_LARGE');
    expect(produced).toBe(Math.ceil((64 * 1024 + 1) / CHUNK) * CHUNK);
    expect(released).toBe(true);
  });

  it('returns everything up to and including exactly the cap', async () => {
    async function* three(): AsyncGenerator<Uint8Array> {
      yield Uint8Array.of(1, 2);
      yield Uint8Array.of(3);
      yield Uint8Array.of(4, 5, 6);
    }
    expect([...(await readBounded(three(), 6))]).toEqual([1, 2, 3, 4, 5, 6]);
    expect((await refusal(() => readBounded(three(), 5))).code).toBe('BUNDLE_TOO_LARGE');
  });
});

describe('readBundleFile', () => {
  it('refuses a file larger than the cap without reading it', async () => {
    const file = path.join(dir, 'huge.bundle');
    fs.writeFileSync(file, '');
    fs.truncateSync(file, 4 * 1024 * 1024 * 1024); // sparse: 4 GiB claimed, nothing stored
    const err = await refusal(() => readBundleFile(file, 1024 * 1024));
    expect(err.code).toBe('BUNDLE_TOO_LARGE');
  });

  it('refuses devices, FIFOs and symlinks instead of blocking on them', async () => {
    expect((await refusal(() => readBundleFile('/dev/zero', 1024))).code).toBe('BUNDLE_UNREADABLE');
    const fifo = path.join(dir, 'pipe.bundle');
    execFileSync('mkfifo', [fifo]);
    expect((await refusal(() => readBundleFile(fifo, 1024))).code).toBe('BUNDLE_UNREADABLE');
    const link = path.join(dir, 'link.bundle');
    fs.writeFileSync(path.join(dir, 'target'), 'x');
    fs.symlinkSync(path.join(dir, 'target'), link);
    expect((await refusal(() => readBundleFile(link, 1024))).code).toBe('BUNDLE_UNREADABLE');
    expect((await refusal(() => readBundleFile(path.join(dir, 'missing'), 1024))).code).toBe('BUNDLE_UNREADABLE');
  });

  it('reads a bundle file whole', async () => {
    const bytes = signedBundle(roots);
    const file = path.join(dir, 'b.bundle');
    fs.writeFileSync(file, bytes);
    expect(Buffer.from(await readBundleFile(file, bytes.length)).equals(Buffer.from(bytes))).toBe(true);
    expect((await refusal(() => readBundleFile(file, bytes.length - 1))).code).toBe('BUNDLE_TOO_LARGE');
  });
});

describe('watchBundleFile', () => {
  let manager: BundleManager;
  let watcher: BundleFileWatcher | undefined;
  const file = () => path.join(dir, 'drop', 'policy.bundle');

  beforeEach(() => {
    fs.mkdirSync(path.join(dir, 'drop'));
    manager = new BundleManager({
      store: new BundleStore(path.join(dir, 'state')),
      trust: trustOf(roots, { maxBytes: 256 * 1024 }),
      clock: { now: () => NOW_MS },
    });
    manager.start();
  });

  afterEach(async () => {
    await watcher?.stop();
    watcher = undefined;
  });

  it('activates a dropped bundle once, refuses bad ones with a record, ignores absence', async () => {
    watcher = watchBundleFile(file(), manager, { intervalMs: 60_000 });
    expect(await watcher.check()).toEqual({ status: 'absent' });

    fs.writeFileSync(file(), signedBundle(roots, { revision: 3 }));
    expect((await watcher.check()).status).toBe('activated');
    expect(manager.current?.manifest.revision).toBe(3);
    expect(await watcher.check()).toEqual({ status: 'same-file' });

    // Same bytes rewritten: read again, but nothing to do.
    fs.writeFileSync(file(), fs.readFileSync(file()));
    fs.utimesSync(file(), new Date(), new Date(Date.now() + 5000));
    expect((await watcher.check()).status).toBe('unchanged');

    fs.writeFileSync(file(), signedBundle(roots, { revision: 2 }));
    const older = await watcher.check();
    expect(older.status === 'refused' && older.error.code).toBe('BUNDLE_ROLLBACK');

    fs.writeFileSync(file(), Buffer.alloc(300 * 1024));
    const oversize = await watcher.check();
    expect(oversize.status === 'refused' && oversize.error.code).toBe('BUNDLE_TOO_LARGE');
    expect(manager.status().lastRejection).toMatchObject({ code: 'BUNDLE_TOO_LARGE', digest: null });
    expect(manager.current?.manifest.revision).toBe(3);
  });

  it('notices a new file on its own', async () => {
    const results: string[] = [];
    watcher = watchBundleFile(file(), manager, { intervalMs: 20, onResult: (r) => results.push(r.status) });
    fs.writeFileSync(file(), signedBundle(roots, { revision: 4 }));
    await waitUntil(() => manager.current?.manifest.revision === 4, 'the watcher to activate revision 4');
    expect(results).toEqual(['activated']);
  });
});
