// The single executable as an operator gets it: built once (scripts/build.ts), copied into an
// empty directory with no node_modules anywhere above it, run with a PATH holding nothing but
// itself. Every command works from what the binary carries: it measures a device tree with a
// shipped firmware profile (the binary itself among the files), generates keys, builds (schema
// validation by cedar-wasm inside), signs and verifies a bundle, evaluates a policy, prints and
// checks a configuration, runs as an attesting agent on a private broker that executes one signed
// command and answers it, verifies that agent's audit log, and serves as the audit collector on
// SQLite and on PostgreSQL. Its embedded SQLite addon is refused when replaced, and written afresh
// by the next start. The built JavaScript also runs under plain Node with production dependencies
// only (what `npm install --omit=dev` installs), and refuses an installed cedar-wasm whose
// WebAssembly is not the one it was built with.
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
import { type TestPostgres, startPostgres } from '../support/postgres.js';
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
let postgres: TestPostgres | undefined;
let arm: SimArm;
const executed: Array<{ action: string; args: unknown }> = [];
const children = new Set<ChildProcess>();

/** Only the binary's own directory on PATH: no node, no tsx, no npm; temporary files stay in the site. */
function operatorEnv(extra: Record<string, string> = {}): Record<string, string> {
  return { PATH: path.dirname(binary), HOME: path.join(site, 'home'), TMPDIR: path.join(site, 'tmp'), ...extra };
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
  if (ready.status !== 200) {
    await stopAgent(agent); // the next start would find the state directory locked
    throw new Error(`the agent is not ready: ${ready.status} ${await ready.text()}`);
  }
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
  fs.mkdirSync(path.join(site, 'tmp'));
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
  await postgres?.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

describe('the single executable, alone in an empty directory', () => {
  it('says its version, its own digest and its heap bounds (which NODE_OPTIONS overrides)', async () => {
    expect(await ztedge(['--version'])).toBe(`${VERSION}\n`);
    const verbose = await ztedge(['--version', '--verbose']);
    expect(verbose).toContain(`program: ${binary} (single executable)`);
    expect(verbose).toContain(`sha256: ${sha256(fs.readFileSync(binary))}`);
    // The program was compiled with the V8 code cache built for it (sea-main.ts).
    expect(verbose).toContain('code cache: used');
    const heapLimit = (text: string) => Number(/heap limit: (\d+) MiB/.exec(text)?.[1]);
    // V8's limit is old space plus the young generation: 256 + 3 × 2 MiB.
    expect(heapLimit(verbose)).toBeGreaterThanOrEqual(256);
    expect(heapLimit(verbose)).toBeLessThan(300);
    const overridden = await ztedge(['--version', '--verbose'], { NODE_OPTIONS: '--max-old-space-size=512' });
    expect(heapLimit(overridden)).toBeGreaterThanOrEqual(512);
    expect(heapLimit(overridden)).toBeLessThan(600);
    expect((await exec(binary, ['--version', '--verbos'], operatorEnv())).code).toBe(2);
  });

  it('measures a device tree with a shipped firmware profile, the binary itself among its files', async () => {
    // The robot-arm profile's files, below a root: this binary installed as /usr/local/bin/ztedge.
    const files: Record<string, string> = {
      'etc/ztedge/agent.yaml': 'device: { id: arm-1 }\n',
      'etc/robot/controller.conf': 'gain=3\n',
      'etc/robot/safety-zones.conf': 'zone A: 0..800\n',
      'etc/robot/tools/gripper.json': '{"force":40}\n',
    };
    for (const [file, text] of Object.entries(files)) {
      fs.mkdirSync(path.dirname(path.join(site, 'device', file)), { recursive: true });
      fs.writeFileSync(path.join(site, 'device', file), text);
    }
    fs.mkdirSync(path.join(site, 'device/usr/local/bin'), { recursive: true });
    fs.linkSync(binary, path.join(site, 'device/usr/local/bin/ztedge'));

    const measured = JSON.parse(await ztedge(['attest', 'measure', '--profile', 'robot-arm', '--root', 'device', '--json'])) as { records: Array<{ path: string; state: string; sha256?: string }> };
    const digests = Object.fromEntries(measured.records.map((r) => [r.path, r.sha256 ?? r.state]));
    expect(digests).toEqual({
      ...Object.fromEntries(Object.entries(files).map(([file, text]) => [`/${file}`, sha256(Buffer.from(text))])),
      '/usr/local/bin/ztedge': /^sha256: ([0-9a-f]{64})$/m.exec(await ztedge(['--version', '--verbose']))![1],
    });
    expect(digests['/usr/local/bin/ztedge']).toBe(sha256(fs.readFileSync(binary)));
    fs.writeFileSync(path.join(site, 'references.json'), await ztedge(['attest', 'references', '--profile', 'robot-arm', '--root', 'device']));
    const unknown = await exec(binary, ['attest', 'measure', '--profile', 'robot-armm', '--root', 'device'], operatorEnv());
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/^PROFILE_NOT_FOUND: no firmware profile "robot-armm" ships with ztedge \(shipped: edge-gateway, plc-gateway, robot-arm\)/);
  });

  it('makes keys, builds (with schema validation), signs and verifies a bundle, and evaluates a policy', async () => {
    for (const name of ['root', 'device', 'planner']) await ztedge(['keygen', '--alg', 'ed25519', '--out', name]);
    expect(fs.statSync(path.join(site, 'root.key')).mode & 0o777).toBe(0o600);

    // The robot-cell example, with this run's key for the motion agent planner-7.
    fs.cpSync(path.join(REPO, 'policies/robot-cell'), path.join(site, 'cell'), { recursive: true });
    const issuersFile = path.join(site, 'cell', 'issuers.json');
    const issuers = JSON.parse(fs.readFileSync(issuersFile, 'utf8')) as Array<{ principal: { id: string }; publicKey: string }>;
    issuers.find((i) => i.principal.id === 'planner-7')!.publicKey = fs.readFileSync(path.join(site, 'planner.pub'), 'utf8');
    fs.writeFileSync(issuersFile, JSON.stringify(issuers, null, 2));
    // The reference values of the device measured above.
    fs.copyFileSync(path.join(site, 'references.json'), path.join(site, 'cell', 'attestation.json'));

    // cedar-wasm validates against the schema inside the binary: a mistyped action is refused.
    fs.cpSync(path.join(site, 'cell'), path.join(site, 'mistyped'), { recursive: true });
    const operators = path.join(site, 'mistyped', '10-operators.cedar');
    fs.writeFileSync(operators, fs.readFileSync(operators, 'utf8').replace('Action::"start"', 'Action::"strat"'));
    const mistyped = await exec(binary, ['bundle', 'build', 'mistyped', '--revision', '1', '--expires', '1d', '--out', 'mistyped.cbor'], operatorEnv());
    expect(mistyped.code).toBe(1);
    expect(mistyped.stderr).toMatch(/^BUNDLE_VALIDATION_FAILED: does not validate against schema\.cedarschema: 10-operators\.cedar:\d+:\d+: error: .*unrecognized action `Action::"strat"`/);

    expect(await ztedge(['bundle', 'build', 'cell', '--revision', '1', '--expires', '1d', '--site', SITE, '--out', 'bundle.cbor'])).toMatch(/tests passed, validated against schema\.cedarschema, /);
    await ztedge(['bundle', 'sign', 'bundle.cbor', '--key', 'root.key']);
    const verifyArgs = ['bundle', 'verify', 'bundle.cbor', '--root', 'root.pub', '--threshold', '1', '--site', SITE, '--device', DEVICE, '--profile', 'robot-arm'];
    const manifest = JSON.parse(await ztedge(verifyArgs)) as Record<string, unknown>;
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

  it('prints an example configuration, and checks one as run would', async () => {
    const example = await ztedge(['config', 'example']);
    for (const option of ['device:', 'roots:', 'broker:', 'attestation:', 'audit:']) expect(example).toMatch(new RegExp(`^#? ?${option}`, 'm'));
    fs.writeFileSync(
      path.join(site, 'agent.yaml'),
      [
        `device: { id: ${DEVICE}, site: ${SITE}, profile: robot-arm }`,
        'stateDir: state',
        'deviceKey: device.key',
        'roots: { keys: [root.pub], threshold: 1 }',
        `broker: { url: "${broker.url}", clientId: ztedge-sea-test }`,
        'http: { port: 0 }',
        // Posture measured with the shipped robot-arm profile, against the bundle's references.
        'attestation: { measureRoot: device }',
        'bundleFile: bundle.cbor',
        'executors: { move: { kind: mqtt, timeout: 10s } }',
      ].join('\n'),
    );
    await ztedge(['config', 'check', 'agent.yaml']);
    fs.writeFileSync(path.join(site, 'typo.yaml'), fs.readFileSync(path.join(site, 'agent.yaml'), 'utf8').replace('measureRoot', 'measureRot'));
    const typo = await exec(binary, ['config', 'check', 'typo.yaml'], operatorEnv());
    expect(typo.code).not.toBe(0);
    expect(typo.stderr).toMatch(/^CONFIG_INVALID: .*\n.*attestation\.measureRot/);
  });

  it('runs as the attesting agent on a private broker: executes one signed command and answers it', async () => {
    const { agent, http } = await readyAgent();
    const status = (await (await fetch(`http://${http}/v1/status`)).json()) as Record<string, unknown>;
    expect(status).toMatchObject({ posture: 'trusted', attestation: { posture: 'trusted', profile: 'robot-arm', referenced: true, mismatches: [] } });
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

  it("verifies the agent's audit log, signed by the device key, read-only", async () => {
    const verified = JSON.parse(await ztedge(['audit', 'verify', '--state-dir', 'state', '--device-key', 'device.pub', '--json'])) as Record<string, unknown>;
    expect(verified).toMatchObject({ ok: true, firstSeq: 1, keys: 'pinned with --device-key' });
    expect(verified.records).toBeGreaterThan(3); // start, bundle, attestation, command, decision, stop
    expect(verified.checkpoints).toBeGreaterThan(0);
    const otherKey = await exec(binary, ['audit', 'verify', '--state-dir', 'state', '--device-key', 'root.pub'], operatorEnv());
    expect(otherKey.stderr).toMatch(/^AUDIT_CHECKPOINT_KEY at seq \d+: /);
    expect(otherKey.code).toBe(15);
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

  it('runs the agent in one process (its heap bounded in a worker thread) and stops it on SIGINT', async () => {
    const { agent } = await readyAgent();
    const pid = agent.child.pid!;
    const threads = fs.readdirSync(`/proc/${pid}/task`);
    expect(threads.map((t) => fs.readFileSync(`/proc/${pid}/task/${t}/children`, 'utf8').trim()).join('')).toBe('');
    agent.child.kill('SIGINT');
    expect(await agent.exited).toBe(0);
    expect(agent.lines().at(-1)).toMatchObject({ message: 'agent stopped' });
    expect(agent.stderr()).toBe('');
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

describe('the single executable as the audit collector', () => {
  /** Starts `ztedge collector` on a free loopback port; resolves with its port once it listens. */
  async function startCollector(db: string): Promise<{ url: string; stop: () => Promise<{ code: number | null; stdout: string; stderr: string }> }> {
    const child = spawn(binary, ['collector', '--key', 'collector.key', '--devices', 'devices', '--listen', '127.0.0.1:0', '--read-token-file', 'read.token', '--db', db], {
      cwd: site,
      env: operatorEnv(),
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    children.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
    let exitCode: number | null | undefined;
    void exited.then((code) => (exitCode = code));
    const listening = () => stdout.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.message === 'collector listening');
    await waitUntil(() => exitCode !== undefined || listening() !== undefined, 'the collector to listen', 30_000);
    if (exitCode !== undefined) throw new Error(`the collector exited ${exitCode}:\n${stderr}${stdout}`);
    return {
      url: `http://127.0.0.1:${Number(listening()!.port)}`,
      stop: async () => {
        child.kill('SIGTERM');
        return { code: await exited, stdout, stderr };
      },
    };
  }

  beforeAll(async () => {
    await ztedge(['keygen', '--alg', 'ed25519', '--out', 'collector']);
    fs.mkdirSync(path.join(site, 'devices'));
    fs.copyFileSync(path.join(site, 'device.pub'), path.join(site, 'devices', `${DEVICE}.pub`));
    fs.writeFileSync(path.join(site, 'read.token'), 'read-token-for-the-test\n', { mode: 0o600 });
  });

  it('says how to use it', async () => {
    expect(await ztedge(['collector', '--help'])).toMatch(/^Usage: ztedge collector --key FILE --devices DIR/);
  });

  it.each([
    ['SQLite', async () => 'collector.db'],
    ['PostgreSQL', async () => (await (postgres ??= await startPostgres()).createDatabase())],
  ])('on %s: answers GET /v1/devices to the read token only, and stops on SIGTERM', async (store, db) => {
    const collector = await startCollector(await db());
    const devices = await fetch(`${collector.url}/v1/devices`, { headers: { authorization: 'Bearer read-token-for-the-test' } });
    expect(devices.status).toBe(200);
    expect(await devices.json()).toEqual({ devices: [] });
    expect((await fetch(`${collector.url}/v1/devices`)).status).toBe(401);
    expect((await fetch(`${collector.url}/v1/devices`, { headers: { authorization: 'Bearer another' } })).status).toBe(401);
    const stopped = await collector.stop();
    expect(stopped.code).toBe(0);
    expect(stopped.stderr).toBe('');
    const lines = stopped.stdout.trim().split('\n').map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(lines[0]).toMatchObject({ message: 'collector listening', store: store === 'SQLite' ? 'sqlite' : 'postgres' });
    expect(lines.at(-1)).toMatchObject({ message: 'collector stopped', signal: 'SIGTERM' });
  }, 60_000);
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

    // Schema validation with the installed cedar-wasm, whose WebAssembly must be the one built with.
    const build = ['bundle', 'build', 'cell', '--revision', '2', '--expires', '1d', '--out', 'bundle-node.cbor'];
    expect(await run(build)).toMatchObject({ code: 0, stdout: expect.stringMatching(/validated against schema\.cedarschema/) });
    const wasm = path.join(pkg, 'node_modules/@cedar-policy/cedar-wasm/nodejs/cedar_wasm_bg.wasm');
    fs.appendFileSync(wasm, Buffer.from([0]));
    const mismatched = await run(build);
    expect(mismatched.code).toBe(1);
    expect(mismatched.stderr).toMatch(/^CEDAR_WASM_MISMATCH: .*cedar_wasm_bg\.wasm hashes to [0-9a-f]{64}, not to the built-in [0-9a-f]{64}: the installed @cedar-policy\/cedar-wasm is not the one ztedge was built with/);
  });
});
