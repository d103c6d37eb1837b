// Bundles from files: air-gapped sites drop a signed bundle on a USB stick or a shared
// directory. Reading never trusts the size a file claims: it stops as soon as more than the cap
// has arrived ("endless data"), so a device file, a file still growing, or a hostile stream
// cannot make the agent buffer more than the cap.
import { constants } from 'node:fs';
import { type FileHandle, open, stat } from 'node:fs/promises';
import type { ActivationResult, BundleManager } from './activation.js';
import { BundleError } from './errors.js';

/**
 * Collects `chunks` up to `maxBytes`; BUNDLE_TOO_LARGE as soon as one more byte arrives. The
 * source is released (its iterator's `return()`) when reading stops early.
 */
export async function readBounded(chunks: AsyncIterable<Uint8Array>, maxBytes: number): Promise<Uint8Array> {
  const parts: Uint8Array[] = [];
  let total = 0;
  for await (const chunk of chunks) {
    total += chunk.length;
    if (total > maxBytes) throw new BundleError('BUNDLE_TOO_LARGE', `more than ${maxBytes} bytes; stopped reading`);
    parts.push(chunk);
  }
  return Buffer.concat(parts, total);
}

const READ_CHUNK_BYTES = 64 * 1024;

/** Reads a regular file of at most `maxBytes`; BUNDLE_TOO_LARGE / BUNDLE_UNREADABLE otherwise. */
export async function readBundleFile(path: string, maxBytes: number): Promise<Uint8Array> {
  let handle: FileHandle;
  try {
    // O_NONBLOCK: opening a FIFO must not wait for a writer; O_NOFOLLOW: no symlink games.
    handle = await open(path, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK);
  } catch (err) {
    throw new BundleError('BUNDLE_UNREADABLE', `cannot open ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  try {
    const info = await handle.stat();
    if (!info.isFile()) throw new BundleError('BUNDLE_UNREADABLE', `${path} is not a regular file`);
    if (info.size > maxBytes) throw new BundleError('BUNDLE_TOO_LARGE', `${path} is ${info.size} bytes, the limit is ${maxBytes}`);
    return await readBounded(chunksOf(handle), maxBytes);
  } finally {
    await handle.close();
  }
}

/** The file's content in chunks, read on demand (so a consumer that stops, stops the reads). */
async function* chunksOf(handle: FileHandle): AsyncGenerator<Uint8Array> {
  for (;;) {
    const buffer = Buffer.allocUnsafe(READ_CHUNK_BYTES);
    const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
    if (bytesRead === 0) return;
    yield buffer.subarray(0, bytesRead);
  }
}

export type FileCheckResult =
  | { readonly status: 'absent' }
  /** The file has not changed since the last check. */
  | { readonly status: 'same-file' }
  | ActivationResult
  | { readonly status: 'refused'; readonly error: BundleError };

export interface WatchOptions {
  /** How often the file is looked at (default 2000 ms). */
  readonly intervalMs?: number;
  /** Told the outcome of every check that read the file. */
  readonly onResult?: (result: FileCheckResult) => void;
  /** Told failures that are not refusals (e.g. the store could not write) of interval checks. */
  readonly onError?: (err: unknown) => void;
}

export interface BundleFileWatcher {
  /** Looks at the file now (also what each interval does); checks never overlap. */
  check(): Promise<FileCheckResult>;
  stop(): Promise<void>;
}

/**
 * Watches `path` and activates the bundle found there whenever the file changes. Polling (not
 * inotify) because removable and network filesystems often report no change events; a file
 * is read only when its identity, size or modification time changed.
 */
export function watchBundleFile(path: string, manager: BundleManager, options: WatchOptions = {}): BundleFileWatcher {
  const intervalMs = options.intervalMs ?? 2000;
  let lastSeen: string | null = null;
  let running: Promise<FileCheckResult> = Promise.resolve({ status: 'absent' });

  const checkOnce = async (): Promise<FileCheckResult> => {
    let signature: string;
    try {
      const info = await stat(path, { bigint: true });
      signature = `${info.dev}:${info.ino}:${info.size}:${info.mtimeNs}:${info.ctimeNs}`;
    } catch {
      lastSeen = null;
      return { status: 'absent' };
    }
    if (signature === lastSeen) return { status: 'same-file' };
    lastSeen = signature;
    let result: FileCheckResult;
    try {
      result = manager.activate(await readBundleFile(path, manager.maxBytes));
    } catch (err) {
      if (!(err instanceof BundleError)) throw err;
      // Refusals after reading are recorded by the manager; these never reached it.
      if (err.code === 'BUNDLE_TOO_LARGE' || err.code === 'BUNDLE_UNREADABLE') manager.recordRefusal(err, null);
      result = { status: 'refused', error: err };
    }
    options.onResult?.(result);
    return result;
  };

  const check = (): Promise<FileCheckResult> => {
    running = running.then(checkOnce, checkOnce);
    return running;
  };
  const timer = setInterval(() => {
    check().catch((err: unknown) => options.onError?.(err));
  }, intervalMs);
  timer.unref();

  return {
    check,
    stop: async () => {
      clearInterval(timer);
      await running.catch(() => undefined);
    },
  };
}
