// `npm run build`: the `ztedge` program in dist/ (which stays out of git).
//   dist/ztedge.cjs  every command of the CLI bundled into one CommonJS file (src/cli/entry.ts),
//                    run by plain Node: package.json's `bin`, needing only production dependencies
//   dist/ztedge      a Node single executable application: Node itself, that file as its main
//                    script and better-sqlite3's addon as an asset (nothing else to install)
// `--js-only` stops after dist/ztedge.cjs; `--out-dir DIR` writes to DIR instead of dist/ (tests).
// The executable carries the Node that runs this script.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { build, type Metafile, type Plugin } from 'esbuild';
import { AGENT_VERSION } from '../src/agent/runtime.js';
import { VERSION } from '../src/cli/main.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
/** The asset name src/cli/entry.ts reads the addon from. */
const SQLITE_ADDON_ASSET = 'better_sqlite3.node';
/** The fuse Node's single-executable support looks for (Node's documentation). */
const SEA_FUSE = 'NODE_SEA_FUSE_fce680ab2cc467b6e072b8b5df1996b2';

/**
 * Optional packages that dependencies try to `require` and do without: left out of the build on
 * purpose, each one a module that throws "not found" (what those dependencies expect when absent).
 */
const LEFT_OUT: Record<string, string> = {
  bufferutil: 'native speed-up for ws (MQTT over WebSocket), which falls back to JavaScript',
  'utf-8-validate': 'native UTF-8 check for ws, which falls back to JavaScript',
  'supports-color': 'terminal colours for debug, which the agent never enables',
};

const { values: options } = parseArgs({
  options: { 'js-only': { type: 'boolean', default: false }, 'out-dir': { type: 'string' } },
  strict: true,
  allowPositionals: false,
});
const DIST = path.resolve(options['out-dir'] ?? path.join(ROOT, 'dist'));
const SCRIPT = path.join(DIST, 'ztedge.cjs');
const EXECUTABLE = path.join(DIST, 'ztedge');
const require = createRequire(import.meta.url);
const started = performance.now();

const pkg = JSON.parse(fs.readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as { version: string };
if (VERSION !== pkg.version || AGENT_VERSION !== pkg.version) {
  throw new Error(`version mismatch: package.json ${pkg.version}, src/cli/main.ts VERSION ${VERSION}, src/agent/runtime.ts AGENT_VERSION ${AGENT_VERSION}`);
}

const addonFile = require.resolve('better-sqlite3/build/Release/better_sqlite3.node');
const addonSha256 = sha256(fs.readFileSync(addonFile));

fs.mkdirSync(DIST, { recursive: true });
const result = await build({
  entryPoints: [path.join(ROOT, 'src/cli/entry.ts')],
  outfile: SCRIPT,
  bundle: true,
  platform: 'node',
  target: 'node20',
  // Node 20's single executable runs its main script as CommonJS.
  format: 'cjs',
  banner: { js: '#!/usr/bin/env node' },
  define: { ZTEDGE_SQLITE_ADDON_SHA256: JSON.stringify(addonSha256) },
  plugins: [sqliteBindings(), leftOut()],
  minify: true,
  metafile: true,
  logLevel: 'warning',
});
fs.chmodSync(SCRIPT, 0o755);
checkImports(result.metafile);
console.log(`${path.relative(ROOT, SCRIPT)}: ${mb(fs.statSync(SCRIPT).size)} MB, ztedge ${VERSION}`);

if (!options['js-only']) {
  const work = fs.mkdtempSync(path.join(DIST, '.sea-'));
  try {
    buildExecutable(work);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
console.log(`built in ${((performance.now() - started) / 1000).toFixed(1)} s`);

function buildExecutable(work: string): void {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  if (major < 20 || (major === 20 && minor < 12)) throw new Error(`Node ${process.version} cannot build a single executable with assets (20.12 or later)`);
  const blob = path.join(work, 'sea.blob');
  const config = path.join(work, 'sea-config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      main: SCRIPT,
      output: blob,
      disableExperimentalSEAWarning: true,
      // Measured: V8's code cache made start-up no faster for this script (see README).
      useCodeCache: false,
      assets: { [SQLITE_ADDON_ASSET]: addonFile },
    }),
  );
  run(process.execPath, ['--experimental-sea-config', config]);

  const target = path.join(work, 'ztedge');
  fs.copyFileSync(process.execPath, target);
  fs.chmodSync(target, 0o755);
  // Node's own binary keeps its symbol tables; they are of no use on a gateway and weigh ~12 MB.
  if (hasCommand('strip')) run('strip', [target]);
  else console.log('strip not found: the executable keeps Node\'s symbol tables (~12 MB more)');
  run(process.execPath, [require.resolve('postject/dist/cli.js'), target, 'NODE_SEA_BLOB', blob, '--sentinel-fuse', SEA_FUSE]);

  const version = run(target, ['--version']).trim();
  if (version !== VERSION) throw new Error(`the executable says '${version}' to --version, expected '${VERSION}'`);
  fs.renameSync(target, EXECUTABLE);
  console.log(`${path.relative(ROOT, EXECUTABLE)}: ${mb(fs.statSync(EXECUTABLE).size)} MB, Node ${process.version}`);
  console.log(`  sha256 ${sha256(fs.readFileSync(EXECUTABLE))}`);
  console.log(`  better_sqlite3.node sha256 ${addonSha256}`);
}

/**
 * better-sqlite3 finds its addon through the `bindings` package, which searches next to the calling
 * file: wrong inside one bundled file. Its `bindings('better_sqlite3.node')` returns the addon the
 * entry registered instead (the same one openStateDb passes as nativeBinding).
 */
function sqliteBindings(): Plugin {
  const stateDb = path.join(ROOT, 'src/agent/state-db.ts');
  return {
    name: 'sqlite-bindings',
    setup(b) {
      b.onResolve({ filter: /^bindings$/ }, (args) =>
        args.importer.includes(`${path.sep}better-sqlite3${path.sep}`) ? { path: 'bindings', namespace: 'sqlite-bindings' } : undefined,
      );
      b.onLoad({ filter: /.*/, namespace: 'sqlite-bindings' }, () => ({
        resolveDir: ROOT,
        loader: 'js',
        contents: `const { resolveDefaultNativeBinding } = require(${JSON.stringify(stateDb)});
module.exports = function bindings(name) {
  const addon = resolveDefaultNativeBinding();
  if (addon === undefined) throw new Error('no SQLite addon is registered for ' + name);
  return addon;
};`,
      }));
    },
  };
}

function leftOut(): Plugin {
  const filter = new RegExp(`^(${Object.keys(LEFT_OUT).map((n) => n.replace(/[-/\\^$*+?.()|[\]{}]/g, '\\$&')).join('|')})$`);
  return {
    name: 'left-out',
    setup(b) {
      b.onResolve({ filter }, (args) => ({ path: args.path, namespace: 'left-out' }));
      b.onLoad({ filter: /.*/, namespace: 'left-out' }, (args) => ({
        loader: 'js',
        contents: `throw Object.assign(new Error(${JSON.stringify(`Cannot find module '${args.path}' (left out of the ztedge build)`)}), { code: 'MODULE_NOT_FOUND' });`,
      }));
    },
  };
}

/** Inside the executable only Node's built-in modules can be required: anything else fails the build. */
function checkImports(metafile: Metafile): void {
  const builtins = new Set(builtinModules.flatMap((m) => [m, `node:${m}`]));
  builtins.add('node:sea');
  const strays = new Set<string>();
  for (const output of Object.values(metafile.outputs)) {
    for (const imported of output.imports) if (imported.external && !builtins.has(imported.path)) strays.add(imported.path);
  }
  if (strays.size > 0) throw new Error(`the bundle requires modules that are not built into Node: ${[...strays].join(', ')}`);
  const natives = Object.keys(metafile.inputs).filter((file) => file.endsWith('.node'));
  if (natives.length > 0) throw new Error(`the bundle includes native files: ${natives.join(', ')}`);
}

function run(command: string, args: string[]): string {
  return execFileSync(command, args, { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

function hasCommand(command: string): boolean {
  try {
    execFileSync(command, ['--version'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}
