// `npm run build`: the `ztedge` program in dist/ (which stays out of git).
//   dist/ztedge.cjs  every command of the CLI bundled into one CommonJS file (src/cli/entry.ts),
//                    run by plain Node: package.json's `bin`, needing only production dependencies
//   dist/ztedge      a Node single executable application: Node itself, a small main script
//                    (src/cli/sea-main.ts) and as assets that file with a V8 code cache for it,
//                    better-sqlite3's addon and cedar-wasm's WebAssembly (brotli-compressed);
//                    the firmware profiles are inside the JavaScript
//                    (nothing else to install, no file read from beside the program)
// `--js-only` stops after dist/ztedge.cjs; `--out-dir DIR` writes to DIR instead of dist/ (tests).
// The executable carries the Node that runs this script.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { builtinModules, createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { brotliCompressSync, constants as zlib } from 'node:zlib';
import { build, type Metafile, type Plugin } from 'esbuild';
import { AGENT_VERSION } from '../src/agent/runtime.js';
import { loadShippedProfile, shippedProfileNames } from '../src/attest/profile.js';
import { shippedProfileTexts } from '../src/attest/shipped-profiles.js';
import { CEDAR_WASM_ASSET } from '../src/cli/cedar-wasm.js';
import { PROGRAM_ASSET, PROGRAM_CODE_CACHE_ASSET, SEA_MAIN_ASSET, wrapProgram } from '../src/cli/program-asset.js';
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
  'pg-native': 'libpq binding for pg, used only when NODE_PG_FORCE_NATIVE is set; pg speaks the protocol in JavaScript',
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
const cedarWasmFile = path.join(path.dirname(require.resolve('@cedar-policy/cedar-wasm/nodejs')), 'cedar_wasm_bg.wasm');
const cedarWasm = fs.readFileSync(cedarWasmFile);
// A shipped profile that does not validate would fail every agent using it: fail the build instead.
for (const name of shippedProfileNames()) loadShippedProfile(name);

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
  define: { ZTEDGE_SQLITE_ADDON_SHA256: JSON.stringify(addonSha256), ZTEDGE_CEDAR_WASM_SHA256: JSON.stringify(sha256(cedarWasm)) },
  plugins: [sqliteBindings(), cedarWasmFromMemory(), embeddedProfiles(), leftOut()],
  minify: true,
  metafile: true,
  logLevel: 'warning',
  // import.meta.url is how sources find files beside them, which a CommonJS bundle leaves empty:
  // such a read must get its own arrangement here (as the firmware profiles have), not fail at run time.
  logOverride: { 'empty-import-meta': 'error' },
});
fs.chmodSync(SCRIPT, 0o755);
checkImports(result.metafile);
console.log(`${path.relative(ROOT, SCRIPT)}: ${mb(fs.statSync(SCRIPT).size)} MB, ztedge ${VERSION}`);

if (!options['js-only']) {
  const work = fs.mkdtempSync(path.join(DIST, '.sea-'));
  try {
    await buildExecutable(work);
  } finally {
    fs.rmSync(work, { recursive: true, force: true });
  }
}
console.log(`built in ${((performance.now() - started) / 1000).toFixed(1)} s`);

async function buildExecutable(work: string): Promise<void> {
  const [major, minor] = process.versions.node.split('.').map(Number) as [number, number];
  if (major < 20 || (major === 20 && minor < 12)) throw new Error(`Node ${process.version} cannot build a single executable with assets (20.12 or later)`);
  const blob = path.join(work, 'sea.blob');
  // The main script compiles the program from an asset with a V8 code cache made here (sea-main.ts).
  const seaMain = path.join(work, SEA_MAIN_ASSET);
  await build({ entryPoints: [path.join(ROOT, 'src/cli/sea-main.ts')], outfile: seaMain, bundle: true, platform: 'node', target: 'node20', format: 'cjs', minify: true, logLevel: 'warning' });
  const programText = fs.readFileSync(SCRIPT, 'utf8').replace(/^#!.*\n/, '');
  const program = path.join(work, PROGRAM_ASSET);
  fs.writeFileSync(program, programText);
  const codeCache = path.join(work, PROGRAM_CODE_CACHE_ASSET);
  makeCodeCache(work, wrapProgram(programText), codeCache);
  // Quality 9: 1.1 MB in ~0.6 s; 11 saves 0.15 MB more and takes ~15 s. Unpacking takes ~20 ms.
  const compressedWasm = path.join(work, CEDAR_WASM_ASSET);
  fs.writeFileSync(compressedWasm, brotliCompressSync(cedarWasm, { params: { [zlib.BROTLI_PARAM_QUALITY]: 9, [zlib.BROTLI_PARAM_SIZE_HINT]: cedarWasm.length } }));
  const config = path.join(work, 'sea-config.json');
  fs.writeFileSync(
    config,
    JSON.stringify({
      main: seaMain,
      output: blob,
      disableExperimentalSEAWarning: true,
      // The main script is small; the program's code cache is an asset of its own (sea-main.ts).
      useCodeCache: false,
      assets: { [SQLITE_ADDON_ASSET]: addonFile, [CEDAR_WASM_ASSET]: compressedWasm, [PROGRAM_ASSET]: program, [PROGRAM_CODE_CACHE_ASSET]: codeCache, [SEA_MAIN_ASSET]: seaMain },
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
  console.log(`  program ${mb(programText.length)} MB, its V8 code cache ${mb(fs.statSync(codeCache).size)} MB`);
  console.log(`  cedar_wasm_bg.wasm ${mb(cedarWasm.length)} MB, ${mb(fs.statSync(compressedWasm).size)} MB compressed, sha256 ${sha256(cedarWasm)}`);
}

/**
 * V8's code cache for the program, made by the Node the executable carries with no V8 flags (V8
 * refuses a cache from any other V8 or other flags), after the program has done what a start does
 * (scripts/warm-code-cache.cjs): the cache then holds that code compiled, not only the outer level.
 */
function makeCodeCache(work: string, wrapped: string, out: string): void {
  const wrappedFile = path.join(work, 'program.wrapped.js');
  fs.writeFileSync(wrappedFile, wrapped);
  const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ZTEDGE_') && k !== 'NODE_OPTIONS'));
  execFileSync(process.execPath, [path.join(ROOT, 'scripts/warm-code-cache.cjs'), wrappedFile, work, out], { cwd: work, stdio: ['ignore', 'ignore', 'pipe'], env });
  if (!fs.existsSync(out)) throw new Error('no code cache was made for the program');
}

/**
 * better-sqlite3 finds its addon through the `bindings` package, which searches next to the calling
 * file: wrong inside one bundled file. Its `bindings('better_sqlite3.node')` returns the addon the
 * entry registered instead (the same one openStateDb passes as nativeBinding).
 */
function sqliteBindings(): Plugin {
  const stateDb = path.join(ROOT, 'src/store/state-db.ts');
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

/**
 * cedar-wasm's Node build reads cedar_wasm_bg.wasm from beside its JavaScript; in the bundle that
 * read becomes src/cli/cedar-wasm.ts's cedarWasmBytes() (the asset inside the executable, the
 * installed file under Node). The build fails if the package reads its module some other way.
 */
function cedarWasmFromMemory(): Plugin {
  const loader = path.join(ROOT, 'src/cli/cedar-wasm.ts');
  const read = /^const wasmPath = `\$\{__dirname\}\/cedar_wasm_bg\.wasm`;\r?\nconst wasmBytes = require\('fs'\)\.readFileSync\(wasmPath\);$/m;
  return {
    name: 'cedar-wasm-from-memory',
    setup(b) {
      b.onLoad({ filter: /[\\/]@cedar-policy[\\/]cedar-wasm[\\/]nodejs[\\/]cedar_wasm\.js$/ }, async (args) => {
        const text = await fs.promises.readFile(args.path, 'utf8');
        const contents = text.replace(read, `const wasmBytes = require(${JSON.stringify(loader)}).cedarWasmBytes();`);
        if (contents === text || contents.includes('__dirname')) {
          throw new Error(`${args.path} no longer reads its WebAssembly as scripts/build.ts expects: adapt the cedar-wasm-from-memory plugin`);
        }
        return { contents, loader: 'js', resolveDir: path.dirname(args.path) };
      });
    },
  };
}

/**
 * src/attest/shipped-profiles.ts reads firmware-profiles/ beside the sources; the bundle gets a
 * module with the texts that function returns, so the built program reads no file for them.
 */
function embeddedProfiles(): Plugin {
  const source = path.join(ROOT, 'src/attest/shipped-profiles.ts');
  return {
    name: 'embedded-profiles',
    setup(b) {
      b.onLoad({ filter: /[\\/]shipped-profiles\.ts$/ }, (args) =>
        args.path === source
          ? { loader: 'js', contents: `export function shippedProfileTexts() {\n  return new Map(${JSON.stringify([...shippedProfileTexts()])});\n}\n` }
          : undefined,
      );
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
