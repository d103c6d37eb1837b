// Makes the V8 code cache the single executable compiles its program with (scripts/build.ts,
// src/cli/sea-main.ts). V8 puts in a cache the code of every function compiled so far, so the
// program first does here what a start does: `keygen`, `bundle build` and `bundle sign` of a
// one-policy bundle, then an agent (`run`, local API on a free port, no broker) that activates that
// bundle from its bundleFile, answers GET /readyz and stops on SIGTERM, then `--help`, which loads
// every command's modules. A start with the cache then compiles none of that code.
// Run by the Node the executable carries, with no V8 flags (V8 takes a cache only from the same
// V8 with the same flags):  node scripts/warm-code-cache.cjs WRAPPED WORKDIR OUT
// The program runs as the file dist/ztedge.cjs of this checkout would (it finds the installed
// better-sqlite3 from there), wherever the build writes it.
'use strict';
const fs = require('node:fs');
const path = require('node:path');
const vm = require('node:vm');
const { createRequire } = require('node:module');

const [wrappedFile, work, out] = process.argv.slice(2);
const programFile = path.join(__dirname, '..', 'dist', 'ztedge.cjs');
const script = new vm.Script(fs.readFileSync(wrappedFile, 'utf8'), { filename: programFile });
const program = script.runInThisContext();

/** What the program printed on standard output during the current step. */
let printed = '';
process.stdout.write = (chunk) => {
  printed += String(chunk);
  onOutput();
  return true;
};
let onOutput = () => {};

/** Runs the program once with `args` (the whole program, as a start does). */
function runProgram(args) {
  printed = '';
  process.argv = [process.execPath, programFile, ...args];
  const module = { exports: {} };
  program(module.exports, createRequire(programFile), module, programFile, path.dirname(programFile), 'used');
}

const site = path.join(work, 'warm-up');
fs.mkdirSync(site, { recursive: true });
const config = path.join(site, 'agent.json');
fs.mkdirSync(path.join(site, 'policies'), { recursive: true });
fs.writeFileSync(path.join(site, 'policies', 'warm-up.cedar'), 'permit(principal, action, resource);\n');
const steps = [
  () => runProgram(['keygen', '--alg', 'ed25519', '--out', path.join(site, 'device')]),
  () => runProgram(['keygen', '--alg', 'ed25519', '--out', path.join(site, 'root')]),
  () => runProgram(['bundle', 'build', path.join(site, 'policies'), '--revision', '1', '--expires', '1d', '--out', path.join(site, 'bundle.cbor')]),
  () => runProgram(['bundle', 'sign', path.join(site, 'bundle.cbor'), '--key', path.join(site, 'root.key')]),
  () => {
    fs.writeFileSync(
      config,
      JSON.stringify({
        device: { id: 'warm-up', site: 'build' },
        stateDir: 'state',
        deviceKey: 'device.key',
        roots: { keys: ['root.pub'], threshold: 1 },
        http: { host: '127.0.0.1', port: 0 },
        bundleFile: 'bundle.cbor',
      }),
    );
    // Both heap bounds given: the agent runs on this thread, not in a bounded worker (heap.ts).
    // Only the variable changes: V8's flags, which the cache must match, stay as they are.
    process.env.NODE_OPTIONS = '--max-old-space-size=256 --max-semi-space-size=2';
    onOutput = () => {
      const started = printed.split('\n').find((line) => line.includes('"agent started"'));
      if (started === undefined) return;
      onOutput = () => {};
      const { http } = JSON.parse(started);
      fetch(`http://${http}/readyz`)
        .then((response) => response.arrayBuffer())
        .then(() => process.emit('SIGTERM', 'SIGTERM'));
    };
    runProgram(['run', '--config', config]);
  },
  () => {
    if (!printed.includes('"agent stopped"') || !printed.includes('"agent ready"')) throw new Error(`the warm-up agent did not get ready:\n${printed}`);
    delete process.env.NODE_OPTIONS;
    runProgram(['--help']);
  },
];

// Each step runs once the previous one has left nothing to do.
process.on('beforeExit', () => {
  if (process.exitCode !== undefined && process.exitCode !== 0) {
    throw new Error(`a warm-up step failed (exit code ${process.exitCode}):\n${printed}`);
  }
  const step = steps.shift();
  if (step !== undefined) {
    step();
    // A step that needs no I/O would leave the loop empty: this brings the next beforeExit.
    setImmediate(() => {});
    return;
  }
  if (!fs.existsSync(out)) fs.writeFileSync(out, script.createCachedData());
  process.exitCode = 0;
});
