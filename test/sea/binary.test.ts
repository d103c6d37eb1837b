// The single executable as an operator gets it: built once (scripts/build.ts), copied into an
// empty directory with no node_modules anywhere above it, run with a PATH holding nothing but
// itself. It generates keys, builds, signs and verifies a bundle, evaluates a policy, and as an
// agent on a private broker executes one signed command and answers it. Its embedded SQLite addon
// is refused when replaced, and written afresh by the next start. The built JavaScript also runs
// under plain Node with production dependencies only (what `npm install --omit=dev` installs).
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import { createRequire } from 'node:module';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type SimArm, startSimArm } from '../../scripts/sim-arm.js';
import { type TestBroker, startBroker } from '../support/broker.js';
import { waitUntil } from '../support/wait.js';

const REPO = fileURLToPath(new URL('../..', import.meta.url));
const require = createRequire(import.meta.url);
const FOREIGN_ADDON = require.resolve('better-sqlite3/build/Release/test_extension.node');
const SITE = 'site-1';
const DEVICE = 'arm-1';
const VERSION = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

let tmp: string;
let dist: string;
/** The operator's directory: the binary in bin/, keys, bundle source, config, state. */
let site: string;
let binary: string;
let broker: TestBroker;
let arm: SimArm;
const executed: Array<{ action: string; args: unknown }> = [];
const children = new Set<ChildProcess>();

/** Only the binary's own directory on PATH: no node, no tsx, no npm. */
function operatorEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: path.dirname(binary), HOME: path.join(site, 'home'), ...extra };
}

interface Exit {
  code: number | null;
  stdout: string;
  stderr: string;
}

function exec(file: string, args: string[], env: Record<string, string>, cwd = site): Promise<Exit> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Runs `ztedge ARGS` and expects exit 0. */
async function ztedge(args: string[], extraEnv: Record<string, string> = {}): Promise<string> {
  const exit = await exec(binary, args, operatorEnv(extraEnv));
  if (exit.code !== 0) throw new Error(`ztedge ${args.join(' ')} exited ${exit.code}:\n${exit.stderr}${exit.stdout}`);
  return exit.stdout;
}

interface Agent {
  child: ChildProcess;
  lines: () => Array<Record<string, unknown>>;
  stdout: () => string;
  stderr: () => string;
  exited: Promise<number | null>;
}

function startAgent(): Agent {
  const child = spawn(binary, ['run', '--config', 'agent.yaml'], { cwd: site, env: operatorEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  children.add(child);
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const lines = () =>
    out
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  return { child, lines, stdout: () => out, stderr: () => err, exited };
}

async function readyAgent(): Promise<{ agent: Agent; http: string }> {
  const agent = startAgent();
  let exitCode: number | null | undefined;
  void agent.exited.then((code) => (exitCode = code));
  await waitUntil(
    () => exitCode !== undefined || agent.lines().some((l) => l.message === 'agent started'),
    'the agent to start',
    30_000,
  ).catch((err: Error) => {
    throw new Error(`${err.message}\n${agent.stderr()}${agent.stdout()}`);
  });
  if (exitCode !== undefined) throw new Error(`the agent exited ${exitCode}:\n${agent.stderr()}${agent.stdout()}`);
  const http = String(agent.lines().find((l) => l.message === 'agent started')!.http);
  const ready = await fetch(`http://${http}/readyz`);
  expect(ready.status).toBe(200);
  return { agent, http };
}

async function stopAgent(agent: Agent): Promise<number | null> {
  agent.child.kill('SIGTERM');
  return agent.exited;
}

function addonFile(): string {
  const native = path.join(site, 'state', 'native');
  const [digest] = fs.readdirSync(native);
  return path.join(native, digest!, 'better_sqlite3.node');
}

beforeAll(async () => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-sea-'));
  dist = path.join(tmp, 'dist');
  execFileSync(process.execPath, ['--import', 'tsx', 'scripts/build.ts', '--out-dir', dist], { cwd: REPO, stdio: 'pipe' });

  site = path.join(tmp, 'site');
  fs.mkdirSync(path.join(site, 'bin'), { recursive: true });
  fs.mkdirSync(path.join(site, 'home'));
  binary = path.join(site, 'bin', 'ztedge');
  fs.copyFileSync(path.join(dist, 'ztedge'), binary);
  fs.chmodSync(binary, 0o755);
  for (let dir = site; dir !== path.dirname(dir); dir = path.dirname(dir)) {
    expect(fs.existsSync(path.join(dir, 'node_modules')), `node_modules visible at ${dir}`).toBe(false);
  }

  broker = await startBroker();
  arm = await startSimArm({ url: broker.url, prefix: `ztedge/${SITE}/${DEVICE}/`, onExecuted: (request) => executed.push({ action: request.action, args: request.args }) });
}, 240_000);

afterAll(async () => {
  for (const child of children) if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
  await arm?.stop();
  await broker?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the single executable, alone in an empty directory', () => {
  it('says its version, its own digest and its heap bounds (which NODE_OPTIONS overrides)', async () => {
    expect(await ztedge(['--version'])).toBe(`${VERSION}\n`);
    const verbose = await ztedge(['--version', '--verbose']);
    expect(verbose).toContain(`program: ${binary} (single executable)`);
    expect(verbose).toContain(`sha256: ${sha256(fs.readFileSync(binary))}`);
    const heapLimit = (text: string) => Number(/heap limit: (\d+) MiB/.exec(text)?.[1]);
    // V8's limit is old space plus the young generation: 256 + 3 × 2 MiB.
    expect(heapLimit(verbose)).toBeGreaterThanOrEqual(256);
    expect(heapLimit(verbose)).toBeLessThan(300);
    const overridden = await ztedge(['--version', '--verbose'], { NODE_OPTIONS: '--max-old-space-size=512' });
    expect(heapLimit(overridden)).toBeGreaterThanOrEqual(512);
    expect(heapLimit(overridden)).toBeLessThan(600);
    expect((await exec(binary, ['--version', '--verbos'], operatorEnv())).code).toBe(2);
  });

  it('makes keys, builds, signs and verifies a bundle, and evaluates a policy', async () => {
    for (const name of ['root', 'device', 'planner']) await ztedge(['keygen', '--alg', 'ed25519', '--out', name]);
    expect(fs.statSync(path.join(site, 'root.key')).mode & 0o777).toBe(0o600);

    // The robot-cell example, with this run's key for the motion agent planner-7.
    fs.cpSync(path.join(REPO, 'policies/robot-cell'), path.join(site, 'cell'), { recursive: true });
    const issuersFile = path.join(site, 'cell', 'issuers.json');
    const issuers = JSON.parse(fs.readFileSync(issuersFile, 'utf8')) as Array<{ principal: { id: string }; publicKey: string }>;
    issuers.find((i) => i.principal.id === 'planner-7')!.publicKey = fs.readFileSync(path.join(site, 'planner.pub'), 'utf8');
    fs.writeFileSync(issuersFile, JSON.stringify(issuers, null, 2));

    expect(await ztedge(['bundle', 'build', 'cell', '--revision', '1', '--expires', '1d', '--site', SITE, '--out', 'bundle.cbor'])).toMatch(/tests passed/);
    await ztedge(['bundle', 'sign', 'bundle.cbor', '--key', 'root.key']);
    const manifest = JSON.parse(await ztedge(['bundle', 'verify', 'bundle.cbor', '--root', 'root.pub', '--threshold', '1', '--site', SITE, '--device', DEVICE])) as Record<string, unknown>;
    expect(manifest).toMatchObject({ revision: 1 });
    const wrongRoot = await exec(binary, ['bundle', 'verify', 'bundle.cbor', '--root', 'device.pub', '--threshold', '1'], operatorEnv());
    expect(wrongRoot.code).toBe(1);

    const request = (speed: number) => ({
      principal: { type: 'Agent', id: 'planner-7' },
      action: { type: 'Action', id: 'move' },
      resource: { type: 'Arm', id: DEVICE },
      context: { args: { speed, zone: 'B' }, now: { __extn: { fn: 'datetime', arg: '2025-03-14T10:15:00Z' } }, posture: 'trusted', online: true, bundle: { revision: 1, stale: false }, source: 'mqtt' },
    });
    fs.writeFileSync(path.join(site, 'within.json'), JSON.stringify(request(500)));
    fs.writeFileSync(path.join(site, 'too-fast.json'), JSON.stringify(request(700)));
    const evalArgs = ['policy', 'eval', '--policies', 'cell', '--entities', 'cell/entities.json', '--request'];
    expect(JSON.parse(await ztedge([...evalArgs, 'within.json']))).toMatchObject({ decision: 'allow', determining: [expect.objectContaining({ name: 'agent-motion', effect: 'permit' })] });
    expect(JSON.parse(await ztedge([...evalArgs, 'too-fast.json']))).toMatchObject({ decision: 'deny' });
  });

  it('runs as the agent on a private broker: executes one signed command and answers it', async () => {
    fs.writeFileSync(
      path.join(site, 'agent.yaml'),
      [
        `device: { id: ${DEVICE}, site: ${SITE}, profile: robot-arm }`,
        'stateDir: state',
        'deviceKey: device.key',
        'roots: { keys: [root.pub], threshold: 1 }',
        `broker: { url: "${broker.url}", clientId: ztedge-sea-test }`,
        'http: { port: 0 }',
        'posture: trusted',
        'bundleFile: bundle.cbor',
        'executors: { move: { kind: mqtt, timeout: 10s } }',
      ].join('\n'),
    );
    const { agent } = await readyAgent();
    const answer = JSON.parse(
      await ztedge([
        'cmd', 'send', '--mqtt', broker.url, '--site', SITE, '--device', DEVICE, '--key', 'planner.key',
        '--act', 'move', '--res', `Arm::"${DEVICE}"`, '--args', '{"speed":300,"zone":"A"}', '--device-key', 'device.pub', '--timeout', '20s',
      ]),
    ) as Record<string, unknown>;
    expect(answer).toMatchObject({ decision: 'allow', outcome: 'executed', device: DEVICE, verified: true });
    expect(executed).toEqual([{ action: 'move', args: { speed: 300, zone: 'A' } }]);

    expect(await stopAgent(agent)).toBe(0);
    expect(agent.lines().at(-1)).toMatchObject({ message: 'agent stopped' });
    expect(agent.stderr()).toBe('');

    // The addon it used: a private, content-addressed copy of the one the binary carries.
    const file = addonFile();
    const carried = /sqlite addon sha256: ([0-9a-f]{64})/.exec(await ztedge(['--version', '--verbose']))![1]!;
    expect(path.basename(path.dirname(file))).toBe(carried);
    expect(sha256(fs.readFileSync(file))).toBe(carried);
    expect(fs.statSync(file).mode & 0o7777).toBe(0o500);
    expect(fs.statSync(path.dirname(file)).mode & 0o777).toBe(0o700);
  });

  it('refuses a replaced SQLite addon, then restores it by itself on the next start', async () => {
    const file = addonFile();
    const genuine = sha256(fs.readFileSync(file));
    fs.rmSync(file);
    fs.copyFileSync(FOREIGN_ADDON, file);

    const refused = startAgent();
    expect(await refused.exited).toBe(1);
    expect(refused.stderr()).toMatch(new RegExp(`^NATIVE_ADDON_REFUSED: native addon ${file} refused, not loaded: found SHA-256 ${sha256(fs.readFileSync(FOREIGN_ADDON))}`));
    expect(refused.lines().some((l) => l.message === 'agent started')).toBe(false);
    expect(sha256(fs.readFileSync(`${file}.rejected`))).toBe(sha256(fs.readFileSync(FOREIGN_ADDON)));

    const { agent, http } = await readyAgent();
    expect(sha256(fs.readFileSync(file))).toBe(genuine);
    expect(((await (await fetch(`http://${http}/v1/status`)).json()) as { bundle: { revision: number } }).bundle.revision).toBe(1);
    expect(await stopAgent(agent)).toBe(0);
  });

  it('stops the agent cleanly when its launcher is killed outright', async () => {
    const { agent } = await readyAgent();
    const launcher = agent.child.pid!;
    const [relaunched] = fs.readFileSync(`/proc/${launcher}/task/${launcher}/children`, 'utf8').trim().split(/\s+/).map(Number);
    expect(relaunched).toBeGreaterThan(0);
    agent.child.kill('SIGKILL');
    await waitUntil(() => !fs.existsSync(`/proc/${relaunched}`), 'the relaunched agent to exit', 20_000);
    expect(agent.lines().at(-1)).toMatchObject({ message: 'agent stopped' });
  });

  it('gives commands other than run the same addon, under $XDG_RUNTIME_DIR', async () => {
    const runtime = path.join(site, 'xdg');
    fs.mkdirSync(runtime, { mode: 0o700 });
    await ztedge(['cmd', 'sign', '--key', 'planner.key', '--iss', 'Agent::"planner-7"', '--aud', DEVICE, '--act', 'move', '--res', `Arm::"${DEVICE}"`, '--out', 'cmd.cose']);
    const verify = ['envelope', 'verify', 'cmd.cose', '--key', 'planner.pub', '--device', DEVICE, '--replay-db', 'replay.db'];
    await ztedge(verify, { XDG_RUNTIME_DIR: runtime });
    const replayed = await exec(binary, verify, operatorEnv({ XDG_RUNTIME_DIR: runtime }));
    expect(replayed.code).toBe(1);
    expect(replayed.stderr).toMatch(/REPLAY/);
    const [digest] = fs.readdirSync(path.join(runtime, 'ztedge', 'native'));
    expect(sha256(fs.readFileSync(path.join(runtime, 'ztedge', 'native', digest!, 'better_sqlite3.node')))).toBe(digest);
  });
});

describe('the built JavaScript with production dependencies only', () => {
  it('runs under plain Node as package.json bin, SQLite included', async () => {
    const pkg = path.join(tmp, 'pkg');
    const manifest = JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { bin: { ztedge: string } };
    fs.mkdirSync(path.join(pkg, 'dist'), { recursive: true });
    fs.copyFileSync(path.join(REPO, 'package.json'), path.join(pkg, 'package.json'));
    fs.copyFileSync(path.join(dist, 'ztedge.cjs'), path.join(pkg, manifest.bin.ztedge));
    // What `npm install --omit=dev` puts in node_modules, taken from this checkout's install.
    const production = execFileSync('npm', ['ls', '--omit=dev', '--all', '--parseable'], { cwd: REPO, encoding: 'utf8' }).trim().split('\n').slice(1);
    for (const dir of production) {
      const relative = path.relative(REPO, dir);
      if (!fs.existsSync(path.join(pkg, relative))) fs.cpSync(dir, path.join(pkg, relative), { recursive: true });
    }
    for (const devOnly of ['tsx', 'esbuild', 'vitest', 'typescript', 'postject']) expect(fs.existsSync(path.join(pkg, 'node_modules', devOnly))).toBe(false);

    const bin = path.join(pkg, manifest.bin.ztedge);
    expect(fs.readFileSync(bin, 'utf8').startsWith('#!/usr/bin/env node\n')).toBe(true);
    const env = { PATH: path.dirname(process.execPath), HOME: path.join(site, 'home') };
    const run = async (args: string[]) => exec(bin, args, env, site);
    expect((await run(['--version'])).stdout).toBe(`${VERSION}\n`);
    expect((await run(['--version', '--verbose'])).stdout).toContain(`program: ${bin} (script)`);
    await run(['cmd', 'sign', '--key', 'planner.key', '--iss', 'Agent::"planner-7"', '--aud', DEVICE, '--act', 'move', '--res', `Arm::"${DEVICE}"`, '--out', 'cmd-node.cose']);
    const verify = ['envelope', 'verify', 'cmd-node.cose', '--key', 'planner.pub', '--device', DEVICE, '--replay-db', 'replay-node.db'];
    expect(await run(verify)).toMatchObject({ code: 0 });
    const replayed = await run(verify);
    expect(replayed.code).toBe(1);
    expect(replayed.stderr).toMatch(/REPLAY/);
  });
});
