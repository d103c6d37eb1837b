// Load through a real broker for bench/pipeline.bench.ts and scripts/soak.ts: a site on disk
// (keys, a signed bundle, the agent's configuration), the agent as its own process (`ztedge
// run` from an esbuild bundle of the sources, as shipped, so neither tsx nor the load counts in
// its resident memory), the baseline relays (bench/pipeline-relay.ts) as processes bundled the
// same way, with their configuration, and senders — one MQTT connection and one issuer key each,
// aimed at one device's topics — that publish signed commands with an MQTT 5 response topic and
// correlation data, and time each result from publish to arrival.
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import mqtt, { type MqttClient } from 'mqtt';
import { buildRequest } from '../src/agent/request-context.js';
import { buildBundle } from '../src/bundle/build.js';
import { DEFAULT_SETTINGS } from '../src/bundle/format.js';
import { signBundle } from '../src/bundle/sign.js';
import { verifyBundle } from '../src/bundle/verify.js';
import { COSE_ALG } from '../src/crypto/algorithms.js';
import { toHex } from '../src/crypto/bytes.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../src/crypto/key-files.js';
import { generatePrivateKey, type PrivateKey, privateKeyToPem, publicKeyToPem } from '../src/crypto/keys.js';
import { encodeCbor } from '../src/envelope/cbor.js';
import { contextAad } from '../src/envelope/claims.js';
import { signCommand } from '../src/envelope/command.js';
import { decodeSign1 } from '../src/envelope/cose.js';
import { RESULT_TOPIC, readUnverifiedResult, signResult } from '../src/envelope/result.js';
import { EntityUid, enforce } from '../src/policy/index.js';
import { PLACEHOLDER_CTI, PLACEHOLDER_DIGEST, type RelayConfig } from './pipeline-relay.js';

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
      entities: JSON.stringify(benchEntities(issuers.map((i) => i.name))),
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

/** The bundle's entities (Cedar JSON) for issuers named `issuerNames`. */
export function benchEntities(issuerNames: string[]): Array<{ uid: { type: string; id: string }; attrs: Record<string, never>; parents: Array<{ type: string; id: string }> }> {
  return [
    { uid: { type: 'Role', id: 'operator' }, attrs: {}, parents: [] },
    ...issuerNames.map((name) => ({ uid: { type: 'Agent', id: name }, attrs: {}, parents: [{ type: 'Role', id: 'operator' }] })),
    { uid: { type: 'Cell', id: 'cell-1' }, attrs: {}, parents: [] },
    // The arm is hosted on the device the agent runs on (commands' resources must be).
    { uid: { type: 'Device', id: DEVICE }, attrs: {}, parents: [] },
    { uid: { type: 'Arm', id: DEVICE }, attrs: {}, parents: [{ type: 'Cell', id: 'cell-1' }, { type: 'Device', id: DEVICE }] },
  ];
}

/** The i-th command of a sender's stream: moves across the workspace, grips and releases in turn. */
export function benchCommand(i: number): { action: 'move' | 'grip' | 'release'; resource: string; args: Record<string, number> } {
  const step = i % 3;
  return {
    action: step === 0 ? 'move' : step === 1 ? 'grip' : 'release',
    resource: ARM,
    args: step === 0 ? { x: (i % 4000) - 2000, y: 100, z: 50, speed: 80 } : {},
  };
}

/** The i-th command of a stream, signed by `issuer` for `device` (default: the agent's). */
export function signBenchCommand(issuer: Issuer, i: number, nowMs: number, lifetimeMs: number, device = DEVICE): Uint8Array {
  return signCommand({ key: issuer.key, issuer: `Agent::"${issuer.name}"`, deviceId: device, topic: 'cmd', ...benchCommand(i), now: nowMs, lifetimeMs });
}

/**
 * CPU time (user + system) a process has used, in seconds, from /proc (Linux, 100 ticks/s); with
 * `thread`, that thread's alone (a process's main thread has the process's id).
 */
export function cpuSeconds(pid: number, thread?: number): number {
  const stat = fs.readFileSync(thread === undefined ? `/proc/${pid}/stat` : `/proc/${pid}/task/${thread}/stat`, 'utf8');
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
export function bundleAgent(dir: string): Promise<string> {
  return bundleEntry(dir, 'ztedge.cjs', "import { main } from './src/cli/main.ts'; main(process.argv.slice(2)).then((code) => { process.exitCode = code; });");
}

/** The baseline relay (bench/pipeline-relay.ts), bundled the same way: `node relay.cjs CONFIG`. */
export function bundleRelay(dir: string): Promise<string> {
  return bundleEntry(dir, 'relay.cjs', "import { relayMain } from './bench/pipeline-relay.ts'; void relayMain(process.argv.slice(2));");
}

async function bundleEntry(dir: string, name: string, contents: string): Promise<string> {
  const outfile = path.join(dir, name);
  await build({
    stdin: { contents, resolveDir: REPO_ROOT, loader: 'ts' },
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

  /** CPU time of its main thread (the event loop and the GC pauses on it), in seconds. */
  mainThreadSeconds(): number {
    return cpuSeconds(this.pid, this.pid);
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

/**
 * The policies the agent names in an executed command's result, per action: the determining
 * policies of the site bundle's decision on that action's bench command.
 */
function determiningPolicies(site: BenchSite): Record<string, string[]> {
  const bundle = verifyBundle(site.bundle, { roots: [{ publicKey: site.rootKey.publicKey }], threshold: 1, device: DEVICE, site: SITE, agentVersion: '0.1.0', now: Date.now() });
  const byAction: Record<string, string[]> = {};
  for (let i = 0; i < 3; i++) {
    const command = benchCommand(i);
    const facts = { nowMs: Date.now(), posture: 'trusted' as const, online: true, bundle: { revision: 1, stale: false }, source: 'mqtt' as const };
    const decision = enforce(bundle.policies, bundle.entities, buildRequest(new EntityUid('Agent', site.issuers[0]!.name), command.action, command.resource, command.args, facts));
    if (decision.decision !== 'allow') throw new Error(`the bench bundle denies ${command.action}`);
    byAction[command.action] = decision.determining.map((d) => d.id);
  }
  return byAction;
}

/**
 * Writes the configuration of a baseline relay (bench/pipeline-relay.ts) for `target`: the
 * site's issuer keys and device key, and per action a result envelope as the agent would send it
 * (its encoder, its claims) with placeholders for the command's digest and cti.
 */
export function writeRelayConfig(site: BenchSite, target: Target, brokerUrl: string, crypto: RelayConfig['crypto'], cryptoOn: RelayConfig['cryptoOn']): string {
  const resultTemplates: RelayConfig['resultTemplates'] = {};
  for (const [action, policies] of Object.entries(determiningPolicies(site))) {
    const message = signResult({
      key: site.deviceKey,
      deviceId: target.device,
      topic: RESULT_TOPIC,
      commandDigest: PLACEHOLDER_DIGEST,
      decision: 'allow',
      policies,
      reasons: ['PERMITTED'],
      outcome: 'executed',
      now: Date.now(),
      cti: PLACEHOLDER_CTI,
    });
    const { protectedBytes, payload } = decodeSign1(message);
    const toBeSigned = encodeCbor(['Signature1', protectedBytes, contextAad(target.device, RESULT_TOPIC), payload]);
    resultTemplates[action] = { messageHex: toHex(message), toBeSignedHex: toHex(toBeSigned) };
  }
  const config: RelayConfig = {
    url: brokerUrl,
    clientId: `bench-relay-${target.device}-${randomBytes(3).toString('hex')}`,
    prefix: target.prefix,
    crypto,
    cryptoOn,
    commandAadHex: toHex(contextAad(target.device, 'cmd')),
    devicePrivateKeyPem: privateKeyToPem(site.deviceKey),
    issuers: site.issuers.map((i) => ({ kidHex: toHex(i.key.publicKey.kid), publicKeyPem: publicKeyToPem(i.key.publicKey), principal: `Agent::"${i.name}"` })),
    resultTemplates,
  };
  const file = path.join(site.dir, `relay-${target.device}.json`);
  fs.writeFileSync(file, JSON.stringify(config), { mode: 0o600 });
  return file;
}

/** A baseline relay as its own process: `node FLAGS relay.cjs CONFIG`. */
export class RelayProcess {
  private output = '';

  private constructor(private readonly child: ChildProcess) {
    child.stdout!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
    child.stderr!.on('data', (chunk: Buffer) => (this.output += chunk.toString()));
  }

  static async start(entry: string, configFile: string, nodeArgs: string[]): Promise<RelayProcess> {
    const child = spawn(process.execPath, [...nodeArgs, entry, configFile], {
      env: { ...process.env, NODE_PATH: path.join(REPO_ROOT, 'node_modules') },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const relay = new RelayProcess(child);
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`relay not ready within 30 s:\n${relay.output}`)), 30_000);
      child.once('exit', (code) => reject(new Error(`relay exited (${code}):\n${relay.output}`)));
      const poll = setInterval(() => {
        if (!relay.output.includes('ready\n')) return;
        clearInterval(poll);
        clearTimeout(timer);
        resolve();
      }, 20);
    });
    return relay;
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

  /** CPU time of its main thread (the event loop and the GC pauses on it), in seconds. */
  mainThreadSeconds(): number {
    return cpuSeconds(this.pid, this.pid);
  }

  /** Stops it; returns what it counted (commands, refused, results, in flight). */
  async stop(): Promise<Record<string, number>> {
    if (this.child.exitCode !== null) return {};
    const exited = new Promise<void>((resolve) => this.child.once('exit', () => resolve()));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 10_000);
    await exited;
    clearTimeout(timer);
    const last = this.output.trim().split('\n').at(-1) ?? '{}';
    try {
      return JSON.parse(last) as Record<string, number>;
    } catch {
      return {};
    }
  }
}

/** Where a load's commands go: a device id (signed into each command) and its topic prefix. */
export interface Target {
  device: string;
  prefix: string;
}

export const AGENT_TARGET: Target = { device: DEVICE, prefix: PREFIX };

/** Another device on the same broker, with ids and topics as long as the agent's. */
export function relayTarget(n: number): Target {
  const device = `arm-${String(n).padStart(2, '0')}`;
  if (device.length !== DEVICE.length) throw new Error(`relay device ${device} must be as long as ${DEVICE}`);
  return { device, prefix: `ztedge/${SITE}/${device}/` };
}

/** A result's verdict as the senders read it (unverified: the senders hold no device key). */
function executedResult(result: Uint8Array): string | null {
  const claims = readUnverifiedResult(result);
  return claims.decision === 'allow' && claims.outcome === 'executed' ? null : `${claims.outcome}:${claims.reasons[0] ?? ''}`;
}

/**
 * One measurement window. Throughput counts results that arrive while it is open; latency and
 * outcomes are those of the commands sent while it is open (answered before the drain ends).
 */
export class Tally {
  /** Latency of each answered command sent in the window. */
  readonly latenciesMs: number[] = [];
  /** Commands sent in the window. */
  sent = 0;
  /** Results (to any command) that arrived in the window. */
  answered = 0;
  answeredBytes = 0;
  executed = 0;
  /** Results of commands sent in the window that were not `allow`/`executed`, by outcome and first reason. */
  readonly other = new Map<string, number>();
  open = false;

  record(latencyMs: number, outcome: string | null): void {
    this.latenciesMs.push(latencyMs);
    if (outcome === null) this.executed++;
    else this.other.set(outcome, (this.other.get(outcome) ?? 0) + 1);
  }

  percentile(p: number): number {
    if (this.latenciesMs.length === 0) return Number.NaN;
    const sorted = [...this.latenciesMs].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  }
}

interface Sent {
  at: number;
  /** The window it was sent in, if one was open. */
  tally: Tally | null;
}

/** One MQTT connection publishing one issuer's commands and collecting their results. */
export class Sender {
  private readonly sentAt = new Map<string, Sent>();
  private next = 0;
  /** Signed ahead of time, so signing is not on the measured path; used from the end. */
  private pool: Uint8Array[] = [];
  /** Commands signed when sent because the pool ran out (signing then counts as load). */
  signedLate = 0;

  private constructor(
    private readonly client: MqttClient,
    private readonly issuer: Issuer,
    private readonly target: Target,
    private readonly replyTopic: string,
    private readonly load: Load,
  ) {
    client.on('message', (_topic, payload, packet) => {
      const correlation = packet.properties?.correlationData;
      if (correlation === undefined) return;
      const id = correlation.toString('hex');
      const sent = this.sentAt.get(id);
      if (sent === undefined) return; // a repeated delivery
      this.sentAt.delete(id);
      load.settle(sent.tally, performance.now() - sent.at, payload);
    });
  }

  static async connect(url: string, issuer: Issuer, index: number, target: Target, load: Load): Promise<Sender> {
    const client = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: `bench-sender-${index}-${randomBytes(3).toString('hex')}`, reconnectPeriod: 1000 });
    // Small packets go out at once (no Nagle delay waiting for the broker's TCP ack).
    const noDelay = () => (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
    noDelay();
    client.on('connect', noDelay);
    const replyTopic = `${target.prefix}cmd/result/${issuer.name}`;
    await client.subscribeAsync(replyTopic, { qos: 1 });
    return new Sender(client, issuer, target, replyTopic, load);
  }

  /** Commands sent and not yet answered. */
  get outstanding(): number {
    return this.sentAt.size;
  }

  /** Signs `count` commands valid for `lifetimeMs` from now, in place of any left from before. */
  prepare(count: number, lifetimeMs: number): void {
    const now = Date.now();
    this.pool = Array.from({ length: count }, (_, i) => signBenchCommand(this.issuer, this.next + i, now, lifetimeMs, this.target.device)).reverse();
    this.next += count;
  }

  send(window: Tally | null): void {
    let envelope = this.pool.pop();
    if (envelope === undefined) {
      envelope = signBenchCommand(this.issuer, this.next++, Date.now(), 60_000, this.target.device);
      if (window !== null) this.signedLate++;
    }
    const correlation = randomBytes(8);
    this.sentAt.set(toHex(correlation), { at: performance.now(), tally: window });
    if (window !== null) window.sent++;
    this.client.publish(`${this.target.prefix}cmd`, Buffer.from(envelope), { qos: 1, properties: { responseTopic: this.replyTopic, correlationData: correlation } });
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
  /** Results that arrived in the window, per second. */
  commandsPerSecond: number;
  /** Commands sent in the window, per second. */
  offeredPerSecond: number;
  windowMs: number;
  p50Ms: number;
  p99Ms: number;
  /** Latencies of the commands sent in the window (for pooling rounds). */
  latenciesMs: number[];
  answered: number;
  executed: number;
  other: Map<string, number>;
  /** Commands sent in the window still unanswered when the drain gave up. */
  unanswered: number;
  /** Mean size of the results that arrived in the window, in bytes. */
  resultBytes: number;
  /** Commands the senders had to sign while the window was open. */
  signedLate: number;
}

/** Called when a measurement window opens and closes (to read CPU counters at the same moments). */
export interface WindowProbe {
  open(): void;
  close(): void;
}

const noProbe: WindowProbe = { open: () => {}, close: () => {} };

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Senders sharing one window; each send is a new command. */
export class Load {
  /** The window open now (or the last one). */
  private tally = new Tally();
  private onSettled: () => void = () => {};
  /** Over the load's whole life, windows or not. */
  readonly totals = { sent: 0, answered: 0, executed: 0, other: 0 };
  /** Results other than executed over the load's whole life, by outcome and first reason. */
  readonly otherOutcomes = new Map<string, number>();

  private constructor(readonly senders: Sender[]) {}

  static async connect(url: string, issuers: Issuer[], target: Target = AGENT_TARGET): Promise<Load> {
    const load = new Load([]);
    for (const [i, issuer] of issuers.entries()) load.senders.push(await Sender.connect(url, issuer, i, target, load));
    return load;
  }

  /** A sender's result arrived, `latencyMs` after its command was sent in window `sentIn`. */
  settle(sentIn: Tally | null, latencyMs: number, result: Uint8Array): void {
    const outcome = executedResult(result);
    this.totals.answered++;
    if (outcome === null) this.totals.executed++;
    else {
      this.totals.other++;
      this.otherOutcomes.set(outcome, (this.otherOutcomes.get(outcome) ?? 0) + 1);
    }
    if (this.tally.open) {
      this.tally.answered++;
      this.tally.answeredBytes += result.length;
    }
    sentIn?.record(latencyMs, outcome);
    this.onSettled();
  }

  private send(sender: Sender): void {
    this.totals.sent++;
    sender.send(this.tally.open ? this.tally : null);
  }

  /**
   * Signs ahead what `rate` commands/s over `ms` need, so signing is not part of what is
   * measured (a sender that runs out signs as it goes, and the phase says so).
   */
  prepare(rate: number, ms: number): void {
    const perSender = Math.ceil((rate * ms) / 1000 / this.senders.length) + 1;
    for (const s of this.senders) s.prepare(perSender, ms + 120_000);
  }

  private openWindow(probe: WindowProbe): { tally: Tally; start: number; signedLate: number } {
    this.tally = new Tally();
    this.tally.open = true;
    probe.open();
    return { tally: this.tally, start: performance.now(), signedLate: this.signedLate() };
  }

  private closeWindow(probe: WindowProbe, window: { tally: Tally; start: number }): number {
    window.tally.open = false;
    probe.close();
    return performance.now() - window.start;
  }

  private signedLate(): number {
    return this.senders.reduce((n, s) => n + s.signedLate, 0);
  }

  /**
   * Each sender keeps `window` commands outstanding, sending the next as soon as a result comes
   * back; the first `warmupMs` are not measured.
   */
  async closedLoop(window: number, warmupMs: number, measureMs: number, probe: WindowProbe = noProbe): Promise<PhaseResult> {
    let running = true;
    const refill = () => {
      if (!running) return;
      for (const s of this.senders) while (s.outstanding < window) this.send(s);
    };
    this.tally = new Tally();
    this.onSettled = refill;
    refill();
    await sleep(warmupMs);
    const w = this.openWindow(probe);
    await sleep(measureMs);
    const windowMs = this.closeWindow(probe, w);
    running = false;
    this.onSettled = () => {};
    await this.drain();
    return this.summarize(w, windowMs);
  }

  /**
   * Sends `rate` commands per second in total, round-robin over the senders, whatever comes back.
   * The window is the sending time after `warmupMs`; then the results of its commands are
   * awaited (at most 10 s).
   */
  async paced(rate: number, warmupMs: number, measureMs: number, probe: WindowProbe = noProbe): Promise<PhaseResult> {
    this.tally = new Tally();
    this.onSettled = () => {};
    const begin = performance.now();
    let sent = 0;
    let w: { tally: Tally; start: number; signedLate: number } | null = null;
    for (;;) {
      const elapsed = performance.now() - begin;
      if (w === null && elapsed >= warmupMs) w = this.openWindow(probe);
      if (elapsed >= warmupMs + measureMs) break;
      const due = Math.floor((elapsed / 1000) * rate);
      for (; sent < due; sent++) this.send(this.senders[sent % this.senders.length]!);
      await sleep(1);
    }
    const windowMs = this.closeWindow(probe, w!);
    await this.drain();
    return this.summarize(w!, windowMs);
  }

  private summarize(w: { tally: Tally; signedLate: number }, windowMs: number): PhaseResult {
    const { tally } = w;
    return {
      commandsPerSecond: (tally.answered / windowMs) * 1000,
      offeredPerSecond: (tally.sent / windowMs) * 1000,
      windowMs,
      p50Ms: tally.percentile(50),
      p99Ms: tally.percentile(99),
      latenciesMs: tally.latenciesMs,
      answered: tally.answered,
      executed: tally.executed,
      other: tally.other,
      unanswered: tally.sent - tally.latenciesMs.length,
      resultBytes: tally.answered === 0 ? 0 : tally.answeredBytes / tally.answered,
      signedLate: this.signedLate() - w.signedLate,
    };
  }

  /**
   * Keeps up the load for `intervals` × `intervalMs` — closed loop with `window` outstanding per
   * sender, or paced at `rate` commands/s — reporting each interval as it ends (its latencies
   * are those of its commands answered by then). Commands are signed as they go (one minute of
   * lifetime), so any length of run works.
   */
  async sustain(load: { window: number } | { rate: number }, intervalMs: number, intervals: number, report: (index: number, result: PhaseResult) => void): Promise<void> {
    let running = true;
    let pacing: Promise<void> = Promise.resolve();
    let w = this.openWindow(noProbe);
    if ('window' in load) {
      const refill = () => {
        if (!running) return;
        for (const s of this.senders) while (s.outstanding < load.window) this.send(s);
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
          for (; sent < due; sent++) this.send(this.senders[sent % this.senders.length]!);
          await sleep(1);
        }
      })();
    }
    for (let i = 0; i < intervals; i++) {
      await sleep(intervalMs);
      const windowMs = this.closeWindow(noProbe, w);
      const finished = w;
      w = this.openWindow(noProbe);
      report(i, this.summarize(finished, windowMs));
    }
    running = false;
    await pacing;
    this.closeWindow(noProbe, w);
    this.onSettled = () => {};
  }

  /** Waits (bounded) for outstanding results, then forgets the rest; returns how many were forgotten. */
  async drain(maxMs = 10_000): Promise<number> {
    const deadline = Date.now() + maxMs;
    while (this.senders.some((s) => s.outstanding > 0) && Date.now() < deadline) await sleep(10);
    return this.senders.reduce((n, s) => n + s.forgetOutstanding(), 0);
  }

  async close(): Promise<void> {
    await Promise.all(this.senders.map((s) => s.close()));
  }
}
