// Load through a real broker for bench/pipeline.bench.ts and scripts/soak.ts: a site on disk
// (keys, a signed bundle, the agent's configuration), the agent as its own process (`ztedge
// run` from an esbuild bundle of the sources, as shipped, so neither tsx nor the load counts in
// its resident memory), the simulated arm as the executor, and senders — one MQTT connection
// and one issuer key each — that publish signed commands with an MQTT 5 response topic and
// correlation data, and time each result from publish to arrival.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import mqtt, { type MqttClient } from 'mqtt';
import { buildBundle } from '../src/bundle/build.js';
import { DEFAULT_SETTINGS } from '../src/bundle/format.js';
import { signBundle } from '../src/bundle/sign.js';
import { COSE_ALG } from '../src/crypto/algorithms.js';
import { toHex } from '../src/crypto/bytes.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../src/crypto/key-files.js';
import { generatePrivateKey, type PrivateKey } from '../src/crypto/keys.js';
import { signCommand } from '../src/envelope/command.js';
import { readUnverifiedResult } from '../src/envelope/result.js';

export const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
export const SITE = 'bench';
export const DEVICE = 'arm-01';
export const PREFIX = `ztedge/${SITE}/${DEVICE}/`;
const ARM = 'Arm::"arm-01"';

/**
 * A robot cell's hot path: moves within the workspace (rate-limited per principal, with a
 * posture condition), grip and release, under a forbid that caps speed.
 */
export const BENCH_POLICIES = `
@id("operators-move")
@rate("1000000/60s")
permit (principal in Role::"operator", action == Action::"move", resource in Cell::"cell-1")
when { context.args.x <= 2000 && context.args.x >= -2000 && context.posture != "untrusted" };

@id("operators-grip")
permit (principal in Role::"operator", action in [Action::"grip", Action::"release"], resource in Cell::"cell-1");

@id("speed-cap")
forbid (principal, action, resource) when { context.args has speed && context.args.speed > 250 };
`;

export interface Issuer {
  key: PrivateKey;
  /** The `iss` claim. */
  name: string;
}

export interface BenchSite {
  dir: string;
  configFile: string;
  /** The state database and bundles of the agent. */
  stateDir: string;
  issuers: Issuer[];
  deviceKey: PrivateKey;
  /** A bundle for the in-process pipeline (same policies and issuers). */
  bundle: Uint8Array;
  rootKey: PrivateKey;
  remove(): void;
}

/** Keys for the device, the root and `issuers` senders, a signed bundle, and a config file. */
export function makeBenchSite(brokerUrl: string | null, issuerCount: number): BenchSite {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-bench-pipeline-'));
  const rootKey = generatePrivateKey('ed25519');
  const deviceKey = generatePrivateKey('ed25519');
  const issuers = Array.from({ length: issuerCount }, (_, i) => ({ key: generatePrivateKey('ed25519'), name: `planner-${i}` }));
  writePrivateKeyFile(path.join(dir, 'device.key'), deviceKey);
  writePublicKeyFile(path.join(dir, 'root.pub'), rootKey.publicKey);

  const now = Math.floor(Date.now() / 1000);
  const built = buildBundle(
    {
      policies: [{ file: 'cell.cedar', text: BENCH_POLICIES }],
      entities: JSON.stringify([
        { uid: { type: 'Role', id: 'operator' }, attrs: {}, parents: [] },
        ...issuers.map((i) => ({ uid: { type: 'Agent', id: i.name }, attrs: {}, parents: [{ type: 'Role', id: 'operator' }] })),
        { uid: { type: 'Cell', id: 'cell-1' }, attrs: {}, parents: [] },
        { uid: { type: 'Device', id: DEVICE }, attrs: {}, parents: [] },
        { uid: { type: 'Arm', id: DEVICE }, attrs: {}, parents: [{ type: 'Cell', id: 'cell-1' }, { type: 'Device', id: DEVICE }] },
      ]),
      issuers: issuers.map((i) => ({ kid: i.key.publicKey.kid, alg: COSE_ALG.EdDSA, publicKey: i.key.publicKey.raw, principal: `Agent::"${i.name}"` })),
      attestation: [],
      settings: DEFAULT_SETTINGS,
      tests: [],
    },
    {
      id: 'bench-cell',
      revision: 1,
      created: now - 60,
      expires: now + 7 * 86_400,
      scope: { sites: [SITE], devices: [DEVICE], profiles: [] },
      minAgentVersion: '0.1.0',
    },
  );
  const bundle = signBundle(built.bytes, rootKey);
  fs.writeFileSync(path.join(dir, 'bundle.cbor'), bundle);

  const stateDir = path.join(dir, 'state');
  const configFile = path.join(dir, 'agent.json');
  fs.writeFileSync(
    configFile,
    JSON.stringify({
      device: { id: DEVICE, site: SITE },
      stateDir,
      deviceKey: 'device.key',
      roots: { keys: ['root.pub'], threshold: 1 },
      broker: { url: brokerUrl, clientId: `ztedge-bench-${randomBytes(3).toString('hex')}` },
      http: { enabled: false },
      posture: 'trusted',
      bundleFile: 'bundle.cbor',
      executors: Object.fromEntries(['move', 'grip', 'release'].map((a) => [a, { kind: 'mqtt', timeout: '10s' }])),
    }),
  );
  return { dir, configFile, stateDir, issuers, deviceKey, bundle, rootKey, remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

/** The i-th command of a stream: moves across the workspace, grips and releases in turn. */
export function signBenchCommand(issuer: Issuer, i: number, nowMs: number, lifetimeMs: number): Uint8Array {
  const step = i % 3;
  return signCommand({
    key: issuer.key,
    issuer: `Agent::"${issuer.name}"`,
    deviceId: DEVICE,
    topic: 'cmd',
    action: step === 0 ? 'move' : step === 1 ? 'grip' : 'release',
    resource: ARM,
    args: step === 0 ? { x: (i % 4000) - 2000, y: 100, z: 50, speed: 80 } : {},
    now: nowMs,
    lifetimeMs,
  });
}

/** CPU time (user + system) a process has used, in seconds, from /proc (Linux, 100 ticks/s). */
export function cpuSeconds(pid: number): number {
  const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  // Fields after the command name (which may hold spaces) start after the last ')'.
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100;
}

/** Resident set size of a process, from /proc (Linux). */
export function rssBytes(pid: number): number {
  const status = fs.readFileSync(`/proc/${pid}/status`, 'utf8');
  const kib = /^VmRSS:\s+(\d+) kB/m.exec(status);
  if (kib === null) throw new Error(`no VmRSS for pid ${pid}`);
  return Number(kib[1]) * 1024;
}

/**
 * Bundles the `ztedge` command (src/cli/main.ts) into one CommonJS file in `dir`; packages stay
 * external and load from the repository's node_modules (NODE_PATH), the SQLite addon included.
 */
export async function bundleAgent(dir: string): Promise<string> {
  const outfile = path.join(dir, 'ztedge.cjs');
  await build({
    stdin: {
      contents: "import { main } from './src/cli/main.ts'; main(process.argv.slice(2)).then((code) => { process.exitCode = code; });",
      resolveDir: REPO_ROOT,
      loader: 'ts',
    },
    bundle: true,
    platform: 'node',
    format: 'cjs',
    target: 'node20',
    packages: 'external',
    outfile,
    logLevel: 'error',
  });
  return outfile;
}

/**
 * Node flags the agent runs with, as deployed: V8 otherwise sizes its heap for the machine (a
 * 4 GiB limit here, with a growing factor to match) and lets garbage pile up to several times the
 * live set. A 256 MiB old-space limit makes it collect at about twice the live set (~25 MiB
 * under this load), and 2 MiB semi-spaces keep the young generation small.
 */
export const AGENT_NODE_FLAGS = ['--max-old-space-size=256', '--max-semi-space-size=2'];

/** The agent as a separate process: `ztedge run --config FILE`. */
export class AgentProcess {
  /** The last lines it logged (warnings say what went wrong under load). */
  readonly logTail: string[] = [];
  warnings = 0;

  private constructor(private readonly child: ChildProcess) {
    let partial = '';
    child.stdout!.on('data', (chunk: Buffer) => {
      const lines = (partial + chunk.toString()).split('\n');
      partial = lines.pop()!;
      for (const line of lines) {
        if (line.includes('"level":"warn"')) this.warnings++;
        this.logTail.push(line);
        if (this.logTail.length > 50) this.logTail.shift();
      }
    });
    child.stderr!.on('data', (chunk: Buffer) => this.logTail.push(chunk.toString().trimEnd()));
  }

  /** `nodeArgs`: flags for its node (AGENT_NODE_FLAGS, plus e.g. `--cpu-prof`). */
  static async start(entry: string, configFile: string, brokerUrl: string, nodeArgs: string[] = AGENT_NODE_FLAGS): Promise<AgentProcess> {
    const child = spawn(process.execPath, [...nodeArgs, entry, 'run', '--config', configFile], {
      cwd: path.dirname(configFile),
      // Configured by the file alone: ZTEDGE_* variables of this shell would override it.
      env: { ...Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ZTEDGE_'))), NODE_PATH: path.join(REPO_ROOT, 'node_modules') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const agent = new AgentProcess(child);
    // Online once its retained status says so (after the bundle is loaded and it subscribed).
    const watcher = await mqtt.connectAsync(brokerUrl, { protocolVersion: 5, reconnectPeriod: 0 });
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`agent not online within 30 s:\n${agent.logTail.join('\n')}`)), 30_000);
        child.once('exit', (code) => reject(new Error(`agent exited (${code}):\n${agent.logTail.join('\n')}`)));
        watcher.on('message', (_topic, payload) => {
          const status = JSON.parse(payload.toString()) as { state?: string; online?: boolean; bundle?: unknown };
          if (status.state === 'online' && status.online === true && status.bundle !== null) {
            clearTimeout(timer);
            resolve();
          }
        });
        void watcher.subscribeAsync(`${PREFIX}status`, { qos: 1 });
      });
    } finally {
      await watcher.endAsync(true);
    }
    return agent;
  }

  get pid(): number {
    return this.child.pid!;
  }

  rss(): number {
    return rssBytes(this.pid);
  }

  cpuSeconds(): number {
    return cpuSeconds(this.pid);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode !== null) return;
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20_000);
    await exited;
    clearTimeout(timer);
  }
}

/** What a run of commands came to. */
export class Tally {
  readonly latenciesMs: number[] = [];
  executed = 0;
  /** Results that were not `allow`/`executed`, by outcome and first reason. */
  readonly other = new Map<string, number>();
  measuring = false;

  record(latencyMs: number, result: Uint8Array): void {
    if (!this.measuring) return;
    this.latenciesMs.push(latencyMs);
    const claims = readUnverifiedResult(result);
    if (claims.decision === 'allow' && claims.outcome === 'executed') this.executed++;
    else {
      const key = `${claims.outcome}:${claims.reasons[0] ?? ''}`;
      this.other.set(key, (this.other.get(key) ?? 0) + 1);
    }
  }

  percentile(p: number): number {
    if (this.latenciesMs.length === 0) return Number.NaN;
    const sorted = [...this.latenciesMs].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  }
}

/** One MQTT connection publishing one issuer's commands and collecting their results. */
export class Sender {
  private readonly sentAt = new Map<string, number>();
  private next = 0;
  /** Signed ahead of time, so signing is not on the measured path. */
  private pool: Uint8Array[] = [];

  private constructor(
    private readonly client: MqttClient,
    private readonly issuer: Issuer,
    private readonly replyTopic: string,
    private readonly tally: () => Tally,
    private readonly onSettled: () => void,
  ) {
    client.on('message', (_topic, payload, packet) => {
      const correlation = packet.properties?.correlationData;
      if (correlation === undefined) return;
      const id = correlation.toString('hex');
      const sent = this.sentAt.get(id);
      if (sent === undefined) return; // a repeated delivery
      this.sentAt.delete(id);
      this.tally().record(performance.now() - sent, payload);
      this.onSettled();
    });
  }

  static async connect(url: string, issuer: Issuer, index: number, tally: () => Tally, onSettled: () => void): Promise<Sender> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: `bench-sender-${index}-${randomBytes(3).toString('hex')}`, reconnectPeriod: 1000 });
    // Small packets go out at once (no Nagle delay waiting for the broker's TCP ack).
    const noDelay = () => (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    noDelay();
    client.on('connect', noDelay);
    const replyTopic = `${PREFIX}cmd/result/${issuer.name}`;
    await client.subscribeAsync(replyTopic, { qos: 1 });
    return new Sender(client, issuer, replyTopic, tally, onSettled);
  }

  /** Commands sent and not yet answered. */
  get outstanding(): number {
    return this.sentAt.size;
  }

  /** Signs `count` commands valid for `lifetimeMs` from now. */
  prepare(count: number, lifetimeMs: number): void {
    const now = Date.now();
    const fresh = Array.from({ length: count }, (_, i) => signBenchCommand(this.issuer, this.next + i, now, lifetimeMs));
    this.next += count;
    this.pool = this.pool.concat(fresh);
  }

  get prepared(): number {
    return this.pool.length;
  }

  send(): void {
    const envelope = this.pool.pop() ?? signBenchCommand(this.issuer, this.next++, Date.now(), 60_000);
    const correlation = randomBytes(8);
    this.sentAt.set(toHex(correlation), performance.now());
    this.client.publish(`${PREFIX}cmd`, Buffer.from(envelope), { qos: 1, properties: { responseTopic: this.replyTopic, correlationData: correlation } });
  }

  /** Forgets commands still unanswered (their results, if they come, are not counted). */
  forgetOutstanding(): number {
    const n = this.sentAt.size;
    this.sentAt.clear();
    return n;
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}

export interface PhaseResult {
  commandsPerSecond: number;
  p50Ms: number;
  p99Ms: number;
  executed: number;
  other: Map<string, number>;
  unanswered: number;
}

function summarize(tally: Tally, measuredMs: number, unanswered: number): PhaseResult {
  return {
    commandsPerSecond: (tally.latenciesMs.length / measuredMs) * 1000,
    p50Ms: tally.percentile(50),
    p99Ms: tally.percentile(99),
    executed: tally.executed,
    other: tally.other,
    unanswered,
  };
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Senders sharing one tally; each send is a new command. */
export class Load {
  tally = new Tally();
  private onSettled: () => void = () => {};

  private constructor(readonly senders: Sender[]) {}

  static async connect(url: string, issuers: Issuer[]): Promise<Load> {
    const load = new Load([]);
    for (const [i, issuer] of issuers.entries()) {
      load.senders.push(await Sender.connect(url, issuer, i, () => load.tally, () => load.onSettled()));
    }
    return load;
  }

  /**
   * Signs ahead what `rate` commands/s over `ms` need, so signing is not part of what is
   * measured (a sender that runs out signs as it goes).
   */
  prepare(rate: number, ms: number): void {
    const perSender = Math.ceil((rate * ms) / 1000 / this.senders.length) + 1;
    for (const s of this.senders) s.prepare(perSender, ms + 120_000);
  }

  /**
   * Each sender keeps `window` commands outstanding, sending the next as soon as a result comes
   * back; the first `warmupMs` are not measured.
   */
  async closedLoop(window: number, warmupMs: number, measureMs: number): Promise<PhaseResult> {
    let running = true;
    const refill = () => {
      if (!running) return;
      for (const s of this.senders) while (s.outstanding < window) s.send();
    };
    this.tally = new Tally();
    this.onSettled = refill;
    refill();
    await sleep(warmupMs);
    this.tally.measuring = true;
    const start = performance.now();
    await sleep(measureMs);
    const measured = performance.now() - start;
    this.tally.measuring = false;
    running = false;
    return summarize(this.tally, measured, await this.drain());
  }

  /** Sends `rate` commands per second in total, round-robin over the senders, whatever comes back. */
  async paced(rate: number, warmupMs: number, measureMs: number): Promise<PhaseResult> {
    const total = Math.ceil((rate * (warmupMs + measureMs)) / 1000);
    this.tally = new Tally();
    this.onSettled = () => {};
    const begin = performance.now();
    let sent = 0;
    let start = 0;
    while (sent < total) {
      const elapsed = performance.now() - begin;
      if (!this.tally.measuring && elapsed >= warmupMs) {
        this.tally.measuring = true;
        start = performance.now();
      }
      const due = Math.min(total, Math.floor((elapsed / 1000) * rate));
      for (; sent < due; sent++) this.senders[sent % this.senders.length]!.send();
      await sleep(1);
    }
    await this.quiesce(5_000);
    const measured = performance.now() - start;
    this.tally.measuring = false;
    return summarize(this.tally, Math.min(measured, measureMs), await this.drain());
  }

  /**
   * Keeps up the load for `intervals` × `intervalMs` — closed loop with `window` outstanding per
   * sender, or paced at `rate` commands/s — reporting each interval as it ends. Commands are
   * signed as they go (one minute of lifetime), so any length of run works.
   */
  async sustain(load: { window: number } | { rate: number }, intervalMs: number, intervals: number, report: (index: number, result: PhaseResult) => void): Promise<void> {
    let running = true;
    this.tally = new Tally();
    this.tally.measuring = true;
    let pacing: Promise<void> = Promise.resolve();
    if ('window' in load) {
      const refill = () => {
        if (!running) return;
        for (const s of this.senders) while (s.outstanding < load.window) s.send();
      };
      this.onSettled = refill;
      refill();
    } else {
      this.onSettled = () => {};
      pacing = (async () => {
        const begin = performance.now();
        let sent = 0;
        while (running) {
          const due = Math.floor(((performance.now() - begin) / 1000) * load.rate);
          for (; sent < due; sent++) this.senders[sent % this.senders.length]!.send();
          await sleep(1);
        }
      })();
    }
    for (let i = 0; i < intervals; i++) {
      const start = performance.now();
      await sleep(intervalMs);
      const finished = this.tally;
      this.tally = new Tally();
      this.tally.measuring = true;
      report(i, summarize(finished, performance.now() - start, 0));
    }
    running = false;
    await pacing;
    this.tally.measuring = false;
    await this.drain();
  }

  /** Waits (bounded) for outstanding results, then forgets the rest. */
  async drain(): Promise<number> {
    await this.quiesce(10_000);
    return this.senders.reduce((n, s) => n + s.forgetOutstanding(), 0);
  }

  private async quiesce(maxMs: number): Promise<void> {
    const deadline = Date.now() + maxMs;
    while (this.senders.some((s) => s.outstanding > 0) && Date.now() < deadline) await sleep(10);
  }

  async close(): Promise<void> {
    await Promise.all(this.senders.map((s) => s.close()));
  }
}
