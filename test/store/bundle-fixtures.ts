// Bundle-like byte strings for store tests: the store treats bundles as opaque bytes.
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import type { BundleStore } from '../../src/bundle/store.js';

export interface TestBundle {
  bytes: Uint8Array;
  revision: number;
  digest: string;
}

export function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

export function makeBundle(revision: number, size = 2048): TestBundle {
  const bytes = Buffer.concat([Buffer.from(`bundle revision ${revision}\n`), randomBytes(size)]);
  return { bytes, revision, digest: sha256Hex(bytes) };
}

export function activate(store: BundleStore, bundle: TestBundle): void {
  store.activate(bundle.bytes, bundle.revision, bundle.digest);
}

/** Names of files left in the store directory and its blob directory. */
export function listStore(dir: string): { top: string[]; blobs: string[] } {
  return {
    top: fs.readdirSync(dir).sort(),
    blobs: fs.readdirSync(path.join(dir, 'blobs')).sort(),
  };
}
