// Entry of the built program (scripts/build.ts): `dist/ztedge.cjs` run by Node, and the program
// the single executable `dist/ztedge` compiles from its assets (sea-main.ts). A long-running
// command runs in a worker thread with bounded heap (heap.ts; in the executable sea-main.ts
// starts that worker, before it loads the program). Every SQLite database gets the
// right addon — inside the executable the embedded one, checked against the digest built in
// (native-addon.ts); under Node the one installed with better-sqlite3 — and the CLI runs.
// Inside the executable `require` loads only Node's built-in modules: everything else is bundled.
import { createRequire } from 'node:module';
import os from 'node:os';
import { getRawAsset, isSea } from 'node:sea';
import { isMainThread, workerData } from 'node:worker_threads';
import { type BoundedWorkerData, describeBounds, heapBoundsFor, receiveSignals, startBoundedWorker } from './heap.js';
import type { EmbeddedAddon } from './native-addon.js';
import { setProcessStart } from './start-timing.js';

/** SHA-256 of better-sqlite3's addon, put in by the build. */
declare const ZTEDGE_SQLITE_ADDON_SHA256: string;
/** The SEA asset name the build stores the addon under. */
const SQLITE_ADDON_ASSET = 'better_sqlite3.node';
/** Set by sea-main.ts: whether V8 took the code cache built for this program. */
declare const __ztedgeCodeCache: 'used' | 'rejected' | undefined;

async function start(): Promise<void> {
  performance.mark('ztedge:program-started');
  const inExecutable = isSea();
  const args = process.argv.slice(2);
  // A long-running command goes to a worker with bounded heap (heap.ts); in the executable
  // sea-main.ts has done this before loading the program.
  const workerBounds = heapBoundsFor(args);
  if (workerBounds !== null) return startBoundedWorker(__filename, args, workerBounds);
  const data = isMainThread ? null : (workerData as Partial<BoundedWorkerData> | null);
  const bounds = data?.ztedgeHeapBounds ?? null;
  if (data?.ztedgeProcessStart !== undefined) setProcessStart(data.ztedgeProcessStart);
  if (!isMainThread) receiveSignals();
  // Loaded only here: a main thread that hands the command to a worker evaluates none of it.
  const [{ setDefaultNativeBinding }, { main }, { addonBase, loadEmbeddedAddon, preferredStateDirForAddons }, { setProgram }] = await Promise.all([
    import('../store/state-db.js'),
    import('./main.js'),
    import('./native-addon.js'),
    import('./program.js'),
  ]);

  performance.mark('ztedge:cli-loaded');
  let addon: object | undefined;
  if (inExecutable) {
    const sqlite: EmbeddedAddon = {
      name: SQLITE_ADDON_ASSET,
      sha256: ZTEDGE_SQLITE_ADDON_SHA256,
      bytes: () => new Uint8Array(getRawAsset(SQLITE_ADDON_ASSET) as ArrayBuffer),
    };
    const uid = process.getuid?.();
    setDefaultNativeBinding(() => {
      const base = addonBase({ stateDir: preferredStateDirForAddons(), env: process.env, tmpdir: os.tmpdir(), uid: uid ?? 0 });
      return (addon ??= loadEmbeddedAddon(sqlite, base, { uid }));
    });
  } else {
    // Bundled, better-sqlite3 cannot find its addon next to itself: load the installed one.
    setDefaultNativeBinding(() => (addon ??= createRequire(__filename)('better-sqlite3/build/Release/better_sqlite3.node') as object));
  }
  const given = [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ').trim();
  setProgram({
    kind: inExecutable ? 'single executable' : 'script',
    file: inExecutable ? process.execPath : __filename,
    ...(inExecutable ? { sqliteAddonSha256: ZTEDGE_SQLITE_ADDON_SHA256 } : {}),
    ...(typeof __ztedgeCodeCache === 'string' ? { codeCache: __ztedgeCodeCache } : {}),
    nodeOptions: bounds === null ? given : `${describeBounds(bounds)} (worker thread's heap)${given === '' ? '' : `; process: ${given}`}`,
  });

  process.exitCode = await main(args);
}

start().catch((err: unknown) => {
  const code = (err as { code?: unknown } | null)?.code;
  const label = typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : 'ERROR';
  process.stderr.write(`ztedge: ${label}: ${(err as Error)?.message ?? String(err)}\n`);
  process.exitCode = 1;
});
