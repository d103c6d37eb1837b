// Entry of the built program (scripts/build.ts): `dist/ztedge.cjs` run by Node, and the main
// script of the single executable `dist/ztedge`. It bounds the heap (heap.ts), gives every SQLite
// database the right addon — inside the executable the embedded one, checked against the digest
// built in (native-addon.ts); under Node the one installed with better-sqlite3 — and runs the CLI.
// Inside the executable `require` loads only Node's built-in modules: everything else is bundled.
import { createRequire } from 'node:module';
import os from 'node:os';
import { getRawAsset, isSea } from 'node:sea';
import { adoptRelaunch, boundedNodeOptions, relaunch } from './heap.js';
import type { EmbeddedAddon } from './native-addon.js';

/** SHA-256 of better-sqlite3's addon, put in by the build. */
declare const ZTEDGE_SQLITE_ADDON_SHA256: string;
/** The SEA asset name the build stores the addon under. */
const SQLITE_ADDON_ASSET = 'better_sqlite3.node';

async function start(): Promise<void> {
  const inExecutable = isSea();
  const args = process.argv.slice(2);
  const relaunchedWith = adoptRelaunch();
  const nodeOptions = relaunchedWith === null ? boundedNodeOptions(process.env.NODE_OPTIONS) : null;
  if (nodeOptions !== null) {
    const script = inExecutable ? [] : [...process.execArgv, __filename];
    relaunch(nodeOptions, { execPath: process.execPath, args: [...script, ...args] });
    return;
  }
  // Loaded only here, so that a launcher evaluates none of the program it relaunches.
  const [{ setDefaultNativeBinding }, { main }, { addonBase, loadEmbeddedAddon, preferredStateDirForAddons }, { setProgram }] = await Promise.all([
    import('../store/state-db.js'),
    import('./main.js'),
    import('./native-addon.js'),
    import('./program.js'),
  ]);

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
  setProgram({
    kind: inExecutable ? 'single executable' : 'script',
    file: inExecutable ? process.execPath : __filename,
    ...(inExecutable ? { sqliteAddonSha256: ZTEDGE_SQLITE_ADDON_SHA256 } : {}),
    nodeOptions: relaunchedWith ?? [...process.execArgv, process.env.NODE_OPTIONS ?? ''].join(' ').trim(),
  });

  process.exitCode = await main(args);
}

start().catch((err: unknown) => {
  const code = (err as { code?: unknown } | null)?.code;
  const label = typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : 'ERROR';
  process.stderr.write(`ztedge: ${label}: ${(err as Error)?.message ?? String(err)}\n`);
  process.exitCode = 1;
});
