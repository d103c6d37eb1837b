// Command throughput, CPU and latency of the whole agent, beside a baseline relay doing only the
// unavoidable work of the same command path, measured in the same run.
//
//   npm run bench:pipeline [-- --seconds N --rounds N --window N --senders N
//                              --agent-node-args="FLAGS" --relay-node-args="FLAGS" --relay-crypto-on sync|pool]
//
// 1. The raw Ed25519 verify ceiling: node:crypto verifications of a real command's
//    Sig_structure on this machine, one core, nothing else.
// 2. The agent's core in process, no broker: CommandPipeline on a real state database (WAL, one
//    group commit shared by the replay guard, audit log, rate limiter and outbox, durable at the
//    WAL fdatasync), an executor that answers at once, each result signed and queued on the
//    durable outbox as the agent does, the outbox's link acknowledging every publish at once;
//    `--window` × senders commands in flight, after a warm-up of the same work.
// 3. Through one private Mosquitto (quiet log), three systems, each its own process, each driven
//    by its own `--senders` connections (one issuer key each; signed commands with an MQTT 5
//    response topic and correlation data, each result timed from publish to arrival) and its
//    own simulated arm (scripts/sim-arm.ts, no motion delay) as the executor:
//      ztedge         the agent, `ztedge run` from an esbuild bundle (device arm-01);
//      crypto relay   bench/pipeline-relay.ts: the same topics, QoS, MQTT 5 properties and
//                     message sizes, one Ed25519 verify and one sign per command (node:crypto),
//                     nothing else (device arm-02);
//      bare relay     the same without the two signature operations (device arm-03).
//    Device ids and topics have the same length, so every message has the same size (checked
//    on a probe command of each action before measuring).
//    Closed loop (each sender keeps `--window` commands outstanding): `--rounds` rounds, the
//    order alternating (crypto relay, bare relay, ztedge; then ztedge, bare relay, crypto relay),
//    so the relay is measured before and after ztedge. Then paced at half the crypto relay's
//    measured rate, over all senders, ztedge and the crypto relay alternating the same way.
//    Rates count results that arrive in the measurement window; CPU time of the agent or relay
//    process (and of its main thread apart, the rest being its helper threads: V8's garbage
//    collector and compiler, libuv's pool), the broker and this process (senders and arms) is read
//    at the window's opening and closing, so CPU per command is over the same window as the rate;
//    latencies are those of the commands sent in the window, pooled over rounds. A paced run whose
//    achieved rate falls short of the offered rate (or leaves commands unanswered) is saturated:
//    it is said so loudly, and its latency is queueing, not a latency figure.
//    The agent and the relays run with AGENT_NODE_FLAGS (bench/pipeline-load.ts) unless
//    --agent-node-args / --relay-node-args give others (e.g. to add --cpu-prof).
// Ends with exactly:
//   vs crypto relay: <N>%                  ztedge's commands/s over the crypto relay's, closed loop
//   agent CPU per command: <N> µs          the agent process, closed loop
//   relay p99 at the same pace: <N> ms
//   p99 at half the relay's rate: <N> ms   ztedge, paced at half the crypto relay's rate
import { verify } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import mqtt from 'mqtt';
import { GroupCommit } from '../src/store/group-commit.js';
import { Metrics } from '../src/agent/metrics.js';
import { CommandPipeline } from '../src/agent/pipeline.js';
import { openStateDb } from '../src/store/state-db.js';
import { SqliteAuditLog } from '../src/audit/log.js';
import { verifyBundle } from '../src/bundle/verify.js';
import { GrantStore } from '../src/store/grants.js';
import { PendingApprovals } from '../src/store/pending-approvals.js';
import { UnsettledCommands } from '../src/store/unsettled-commands.js';
import { RateLimiter } from '../src/store/rate-limiter.js';
import { toHex } from '../src/crypto/bytes.js';
import { sha256 } from '../src/crypto/hash.js';
import { publicKeyToKeyObject } from '../src/crypto/keys.js';
import { encodeCbor } from '../src/envelope/cbor.js';
import { contextAad } from '../src/envelope/claims.js';
import { decodeSign1 } from '../src/envelope/cose.js';
import { ReplayGuard } from '../src/store/replay-guard.js';
import { RESULT_TOPIC, readUnverifiedResult, signResultAsync } from '../src/envelope/result.js';
import { TrustedClock } from '../src/store/trusted-clock.js';
import { Outbox } from '../src/transport/outbox.js';
import { type SimArm, startSimArm } from '../scripts/sim-arm.js';
import { startBroker } from '../test/support/broker.js';
import {
  AGENT_NODE_FLAGS,
  AGENT_TARGET,
  AgentProcess,
  type BenchSite,
  bundleAgent,
  bundleRelay,
  cpuSeconds,
  DEVICE,
  Load,
  makeBenchSite,
  type PhaseResult,
  RelayProcess,
  relayTarget,
  SITE,
  signBenchCommand,
  type Target,
  type WindowProbe,
  writeRelayConfig,
} from './pipeline-load.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    rounds: { type: 'string', default: '2' },
    window: { type: 'string', default: '16' },
    senders: { type: 'string', default: '16' },
    'agent-node-args': { type: 'string', default: AGENT_NODE_FLAGS.join(' ') },
    'relay-node-args': { type: 'string' },
    'relay-crypto-on': { type: 'string', default: 'sync' },
  },
});
function positive(name: string, text: string): number {
  const n = Number(text);
  if (!(n > 0) || !Number.isFinite(n)) throw new Error(`--${name} must be a positive number, not ${JSON.stringify(text)}`);
  return n;
}
const seconds = positive('seconds', values.seconds);
const rounds = Math.round(positive('rounds', values.rounds));
const window = Math.round(positive('window', values.window));
const senderCount = Math.round(positive('senders', values.senders));
const relayCryptoOn = values['relay-crypto-on'];
if (relayCryptoOn !== 'sync' && relayCryptoOn !== 'pool') throw new Error('--relay-crypto-on must be sync (on the event loop) or pool (libuv thread pool)');
const agentNodeArgs = values['agent-node-args'].split(' ').filter(Boolean);
const relayNodeArgs = (values['relay-node-args'] ?? values['agent-node-args']).split(' ').filter(Boolean);
const WARMUP_MS = 2000;
/** A paced run is saturated when fewer results than this share of the commands offered come back in its window. */
const SATURATED_BELOW = 0.95;

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => n.toFixed(1);
const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);
const cores = os.cpus().length;

function rawVerifyCeiling(site: BenchSite): number {
  const sample = signBenchCommand(site.issuers[0]!, 0, Date.now(), 60_000);
  const message = decodeSign1(sample);
  const toBeSigned = encodeCbor(['Signature1', message.protectedBytes, contextAad(DEVICE, 'cmd'), message.payload]);
  const keyObject = publicKeyToKeyObject(site.issuers[0]!.key.publicKey);
  let n = 0;
  const start = performance.now();
  while (performance.now() - start < 1000) {
    for (let i = 0; i < 100; i++) if (!verify(null, toBeSigned, keyObject, message.signature)) throw new Error('ceiling verify failed');
    n += 100;
  }
  return (n / (performance.now() - start)) * 1000;
}

/**
 * The agent's work per command without MQTT, wired as src/agent/runtime.ts wires it: the pipeline,
 * each result signed on the thread pool and queued on the durable outbox in the turn its
 * execution record is written; the outbox's link acknowledges each publish at once. Runs
 * `warmup` commands first, then times `total`.
 */
async function inProcess(site: BenchSite, inFlight: number, warmup: number, total: number) {
  const db = openStateDb(path.join(site.dir, 'in-process.db'));
  const commits = new GroupCommit(db);
  const clock = new TrustedClock(db, Date.now);
  const bundle = verifyBundle(site.bundle, {
    roots: [{ publicKey: site.rootKey.publicKey }],
    threshold: 1,
    device: DEVICE,
    site: SITE,
    agentVersion: '0.1.0',
    now: Date.now(),
  });
  let published = 0;
  const link = {
    online: true,
    publish: () => {
      published++;
      return Promise.resolve();
    },
    on: () => link,
    off: () => link,
  };
  const outbox = new Outbox(db, link, { maxMessages: 100_000, maxBytes: 256 * 1024 * 1024, commits });
  outbox.start();
  const pipeline = new CommandPipeline({
    deviceId: DEVICE,
    bundle: () => bundle,
    replay: new ReplayGuard(db, { clockSkewMs: 30_000, commits }),
    clock,
    posture: () => 'trusted',
    online: () => true,
    failClosed: () => ({ active: false }),
    audit: new SqliteAuditLog(db, { now: () => clock.now(), commits }),
    rate: new RateLimiter(db, { commits }),
    grants: new GrantStore(db),
    pending: new PendingApprovals(db, 1000),
    unsettled: new UnsettledCommands(db, { commits }),
    executor: () => ({ execute: async () => ({ status: 'ok' as const }) }),
    metrics: new Metrics(),
    limits: { envelopeMaxBytes: 64 * 1024, clockSkewMs: 30_000, maxLifetimeMs: 3_600_000 },
  });
  const replyTopic = `${AGENT_TARGET.prefix}cmd/result/planner-0`;
  const now = Date.now();
  const envelopes = Array.from({ length: warmup + total }, (_, i) => signBenchCommand(site.issuers[i % site.issuers.length]!, i, now, 600_000));
  const run = async (from: number, to: number) => {
    const latencies: number[] = [];
    let executed = 0;
    let next = from;
    const worker = async () => {
      while (next < to) {
        const bytes = envelopes[next++]!;
        const t0 = performance.now();
        const correlation = bytes.subarray(bytes.length - 8);
        toHex(sha256(bytes)); // the runtime's digest of what arrived (repeats get the first answer)
        const outcome = await pipeline.handleCommand({
          bytes,
          source: 'mqtt',
          reply: { topic: replyTopic },
          onOutcome: async (o) => {
            const result = await signResultAsync({
              key: site.deviceKey,
              deviceId: DEVICE,
              topic: RESULT_TOPIC,
              commandDigest: o.digest ?? new Uint8Array(32),
              decision: o.decision,
              policies: o.policies,
              reasons: o.reasons,
              outcome: o.outcome,
              now: clock.now(),
              ...(o.ctiHex === undefined ? {} : { cti: Buffer.from(o.ctiHex, 'hex') }),
            });
            outbox.enqueueGrouped({ topic: replyTopic, payload: result, qos: 1, critical: true, correlationData: correlation }).catch((err: unknown) => {
              throw new Error(`a result could not be queued: ${String(err)}`);
            });
          },
        });
        latencies.push(performance.now() - t0);
        if (outcome.outcome === 'executed') executed++;
      }
    };
    const before = commits.stats();
    const start = performance.now();
    await Promise.all(Array.from({ length: inFlight }, worker));
    const elapsed = performance.now() - start;
    latencies.sort((a, b) => a - b);
    const n = to - from;
    return { rate: (n / elapsed) * 1000, p50: latencies[Math.floor(n * 0.5)]!, p99: latencies[Math.floor(n * 0.99)]!, executed, commits: commits.stats().batches - before.batches };
  };
  await run(0, warmup);
  const measured = await run(warmup, warmup + total);
  await outbox.close();
  commits.flush();
  db.close();
  return { ...measured, published };
}

type SystemName = 'ztedge' | 'crypto relay' | 'bare relay';

interface MeasuredProcess {
  readonly pid: number;
  rss(): number;
  cpuSeconds(): number;
  mainThreadSeconds(): number;
}

interface System {
  name: SystemName;
  label: string;
  /** What its CPU is called in the tables. */
  role: 'agent' | 'relay';
  target: Target;
  process: MeasuredProcess;
  load: Load;
  arm: SimArm;
  /** Its highest closed-loop commands/s so far (how many commands to sign ahead). */
  peakRate: number;
}

/** One system's figures over any number of measured windows. */
class Pooled {
  windows = 0;
  windowMs = 0;
  answered = 0;
  executed = 0;
  unanswered = 0;
  sent = 0;
  signedLate = 0;
  resultBytes = 0;
  readonly other = new Map<string, number>();
  readonly latencies: number[] = [];
  readonly cpu = { process: 0, main: 0, broker: 0, load: 0 };
  rssPeak = 0;

  add(r: PhaseResult, cpu: Cpu, rssPeak: number): void {
    this.windows++;
    this.windowMs += r.windowMs;
    this.answered += r.answered;
    this.executed += r.executed;
    this.unanswered += r.unanswered;
    this.sent += (r.offeredPerSecond * r.windowMs) / 1000;
    this.signedLate += r.signedLate;
    this.resultBytes += r.resultBytes * r.answered;
    for (const [k, n] of r.other) this.other.set(k, (this.other.get(k) ?? 0) + n);
    this.latencies.push(...r.latenciesMs);
    this.cpu.process += cpu.process;
    this.cpu.main += cpu.main;
    this.cpu.broker += cpu.broker;
    this.cpu.load += cpu.load;
    this.rssPeak = Math.max(this.rssPeak, rssPeak);
  }

  get rate(): number {
    return (this.answered / this.windowMs) * 1000;
  }

  get offered(): number {
    return (this.sent / this.windowMs) * 1000;
  }

  /** CPU µs per command answered in the windows. */
  perCommand(seconds: number): number {
    return (seconds / this.answered) * 1e6;
  }

  get totalPerCommand(): number {
    return this.perCommand(this.cpu.process + this.cpu.broker + this.cpu.load);
  }

  percentile(p: number): number {
    if (this.latencies.length === 0) return Number.NaN;
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))]!;
  }

  get saturated(): boolean {
    return this.rate < this.offered * SATURATED_BELOW || this.unanswered > 0;
  }

  /** More results than commands offered in a paced window: it began with a backlog left from the warm-up. */
  get catchingUp(): boolean {
    return this.rate > this.offered * (2 - SATURATED_BELOW);
  }

  notes(): string {
    const other = [...this.other].map(([k, n]) => `${k}×${n}`).join(', ');
    return [
      other ? `NOT EXECUTED: ${other}` : '',
      this.unanswered > 0 ? `UNANSWERED: ${this.unanswered}` : '',
      this.signedLate > 0 ? `load side signed ${this.signedLate} commands in the window` : '',
    ]
      .filter(Boolean)
      .join('; ');
  }
}

interface Cpu {
  process: number;
  /** The process's main thread; the rest is its helper threads (V8's GC and compiler, libuv's pool). */
  main: number;
  broker: number;
  load: number;
}

const cleanups: Array<() => Promise<unknown> | unknown> = [];
let failed = false;
let brokerPid: number | undefined;
/** A result of each system, as the probe saw it. */
const sampleResults = new Map<SystemName, Uint8Array>();
try {
  const site = makeBenchSite(null, senderCount);
  cleanups.unshift(() => site.remove());
  console.log(
    `pipeline bench: ${seconds} s per window after ${WARMUP_MS / 1000} s warm-up, ${rounds} rounds, ${senderCount} senders × ${window} in flight, ` +
      `node ${process.version}, ${cores} cores, load average ${os.loadavg()[0]!.toFixed(1)}`,
  );
  const ceiling = rawVerifyCeiling(site);
  console.log(`${'raw Ed25519 verify ceiling'.padEnd(36)} ${int(ceiling).padStart(6)} verifies/s (node:crypto, one core)`);

  const local = await inProcess(site, window * senderCount, 3000, Math.max(5000, Math.round(seconds * 2000)));
  console.log(
    `${'agent core in process (no MQTT)'.padEnd(36)} ${int(local.rate).padStart(6)} commands/s   p50 ${ms(local.p50).padStart(6)} ms   p99 ${ms(local.p99).padStart(6)} ms` +
      `   ${local.executed} executed, ${(local.executed / local.commits).toFixed(1)} commands per commit, ${local.published} results published` +
      ` (pipeline + result signing + outbox, after a warm-up)`,
  );

  const broker = await startBroker({ kind: 'mosquitto', log: 'quiet' });
  cleanups.unshift(() => broker.stop());
  brokerPid = broker.pid;
  const e2e = makeBenchSite(broker.url, senderCount);
  cleanups.unshift(() => e2e.remove());

  const agent = await AgentProcess.start(await bundleAgent(e2e.dir), e2e.configFile, broker.url, agentNodeArgs);
  cleanups.unshift(() => agent.stop());
  const relayEntry = await bundleRelay(e2e.dir);
  const relays = new Map<SystemName, RelayProcess>();
  const systems: System[] = [];
  for (const [name, crypto, n] of [
    ['crypto relay', 'ed25519', 2],
    ['bare relay', 'none', 3],
  ] as const) {
    const target = relayTarget(n);
    const relay = await RelayProcess.start(relayEntry, writeRelayConfig(e2e, target, broker.url, crypto, relayCryptoOn), relayNodeArgs);
    relays.set(name, relay);
    cleanups.unshift(() => relay.stop());
    systems.push({ name, label: name === 'crypto relay' ? 'crypto relay (verify + sign)' : 'bare relay (no crypto)', role: 'relay', target, process: relay, load: null!, arm: null!, peakRate: 6000 });
  }
  systems.push({ name: 'ztedge', label: 'ztedge end to end', role: 'agent', target: AGENT_TARGET, process: agent, load: null!, arm: null!, peakRate: 3000 });
  for (const s of systems) {
    s.arm = await startSimArm({ url: broker.url, prefix: s.target.prefix, motionMs: 0 });
    cleanups.unshift(() => s.arm.stop());
    s.load = await Load.connect(broker.url, e2e.issuers, s.target);
    cleanups.unshift(() => s.load.close());
  }
  const system = (name: SystemName) => systems.find((s) => s.name === name)!;
  console.log(
    `agent pid ${agent.pid} (node ${agentNodeArgs.join(' ') || 'without flags'}), RSS at rest ${mib(agent.rss())} MiB; ` +
      `relays pids ${[...relays.values()].map((r) => r.pid).join(', ')} (node ${relayNodeArgs.join(' ') || 'without flags'}, signature work ${relayCryptoOn === 'sync' ? 'on the event loop' : 'on the thread pool'}); mosquitto pid ${broker.pid}`,
  );

  // The same messages on the wire: one command of each action through each system, its four
  // messages' sizes read off the broker.
  const sizes = await probeSizes(broker.url, systems);
  const reference = sizes.get('ztedge')!;
  console.log(`message sizes (bytes; move, grip, release): ${[...reference].map(([kind, bytes]) => `${kind} ${bytes}`).join(', ')}`);
  for (const s of systems) {
    const own = sizes.get(s.name)!;
    const differs = [...reference].filter(([kind, bytes]) => own.get(kind) !== bytes).map(([kind]) => `${kind} ${own.get(kind) ?? 'none'}`);
    if (differs.length > 0) {
      failed = true;
      console.log(`  ${s.name} DIFFERS: ${differs.join(', ')}`);
      for (const t of [system('ztedge'), s]) {
        const { iss, decision, policies, reasons, outcome } = readUnverifiedResult(sampleResults.get(t.name)!);
        console.log(`    ${t.name} result: ${JSON.stringify({ iss, decision, policies, reasons, outcome })}`);
      }
    }
  }
  if (!failed) console.log('  same for ztedge and both relays');

  // ztedge with one sender (its latency when nothing queues), once.
  const single = await Load.connect(broker.url, e2e.issuers.slice(0, 1));
  cleanups.unshift(() => single.close());
  const phaseMs = WARMUP_MS + seconds * 1000;
  single.prepare(3000, phaseMs);
  const one = new Pooled();
  one.add(...(await measure(system('ztedge'), (probe) => single.closedLoop(window, WARMUP_MS, seconds * 1000, probe))));
  row('ztedge end to end, 1 sender', one, 'agent');

  // Closed loop, alternating.
  const closed = new Map<SystemName, Pooled>(systems.map((s) => [s.name, new Pooled()]));
  const order: SystemName[] = ['crypto relay', 'bare relay', 'ztedge'];
  console.log(`closed loop, ${senderCount} senders × ${window} in flight:`);
  for (let round = 0; round < rounds; round++) {
    console.log(`  round ${round + 1} (load average ${os.loadavg()[0]!.toFixed(1)})`);
    for (const name of round % 2 === 0 ? order : [...order].reverse()) {
      const s = system(name);
      s.load.prepare(Math.max(2000, s.peakRate * 1.5), phaseMs);
      const [r, cpu, rss] = await measure(s, (probe) => s.load.closedLoop(window, WARMUP_MS, seconds * 1000, probe));
      s.peakRate = Math.max(s.peakRate, r.commandsPerSecond);
      const single = new Pooled();
      single.add(r, cpu, rss);
      closed.get(name)!.add(r, cpu, rss);
      row(`  round ${round + 1} ${s.name}`, single, s.role);
    }
  }
  console.log(`pooled over ${rounds} rounds:`);
  for (const s of systems) row(`  ${s.label}`, closed.get(s.name)!, s.role);
  const z = closed.get('ztedge')!;
  const c = closed.get('crypto relay')!;
  const b = closed.get('bare relay')!;
  const throughputShare = z.rate / c.rate;
  const agentCpu = z.perCommand(z.cpu.process);
  console.log(
    `ztedge vs crypto relay: ${(throughputShare * 100).toFixed(0)}% of its commands/s; agent ${int(agentCpu)} µs per command vs relay ${int(c.perCommand(c.cpu.process))} µs ` +
      `(+${int(agentCpu - c.perCommand(c.cpu.process))} µs); broker ${int(z.perCommand(z.cpu.broker))} vs ${int(c.perCommand(c.cpu.broker))} µs; ` +
      `load side ${int(z.perCommand(z.cpu.load))} vs ${int(c.perCommand(c.cpu.load))} µs; total ${(z.totalPerCommand / c.totalPerCommand).toFixed(2)}x`,
  );
  console.log(
    `main thread / helper threads (V8's GC and compiler, libuv's pool) per command: agent ${int(z.perCommand(z.cpu.main))} / ${int(z.perCommand(z.cpu.process - z.cpu.main))} µs, ` +
      `crypto relay ${int(c.perCommand(c.cpu.main))} / ${int(c.perCommand(c.cpu.process - c.cpu.main))} µs`,
  );
  console.log(`crypto relay vs bare relay: ${((c.rate / b.rate) * 100).toFixed(0)}% of its commands/s; the two signature operations cost the relay ${int(c.perCommand(c.cpu.process) - b.perCommand(b.cpu.process))} µs per command`);

  // Paced at half the crypto relay's rate, alternating.
  const pace = Math.round(c.rate / 2);
  const paced = new Map<SystemName, Pooled>([
    ['crypto relay', new Pooled()],
    ['ztedge', new Pooled()],
  ]);
  console.log(`paced at half the crypto relay's rate: ${int(pace)} commands/s offered over ${senderCount} senders:`);
  for (let round = 0; round < rounds; round++) {
    console.log(`  round ${round + 1} (load average ${os.loadavg()[0]!.toFixed(1)})`);
    for (const name of round % 2 === 0 ? (['crypto relay', 'ztedge'] as const) : (['ztedge', 'crypto relay'] as const)) {
      const s = system(name);
      s.load.prepare(pace * 1.1, phaseMs);
      const [r, cpu, rss] = await measure(s, (probe) => s.load.paced(pace, WARMUP_MS, seconds * 1000, probe));
      const single = new Pooled();
      single.add(r, cpu, rss);
      paced.get(name)!.add(r, cpu, rss);
      row(`  round ${round + 1} ${s.name}`, single, s.role, true);
    }
  }
  console.log(`pooled over ${rounds} rounds:`);
  for (const [name, p] of paced) row(`  ${system(name).label}`, p, system(name).role, true);
  const zp = paced.get('ztedge')!;
  const cp = paced.get('crypto relay')!;
  const saturation = (p: Pooled, who: string) =>
    p.saturated
      ? `${who} SATURATED at ${int(pace)}/s offered: ${int(p.rate)}/s achieved, ${p.unanswered} unanswered — its p99 is queueing, not a latency figure`
      : p.catchingUp
        ? `${who} NOT STEADY at ${int(pace)}/s offered: ${int(p.rate)}/s achieved, working off a backlog from the warm-up — its p99 includes that queueing`
        : '';
  for (const warning of [saturation(zp, 'ztedge'), saturation(cp, 'crypto relay')].filter(Boolean)) console.log(`!!! ${warning}`);
  if (zp.offered < pace * SATURATED_BELOW) console.log(`!!! the load side offered only ${int(zp.offered)}/s of ${int(pace)}/s to ztedge`);

  const relayCounts = await Promise.all([...relays].map(async ([name, r]) => [name, await r.stop()] as const));
  for (const [name, counts] of relayCounts) {
    if ((counts.refused ?? 0) > 0 || counts.commands === undefined) failed = true;
    console.log(`${name}: ${JSON.stringify(counts)}`);
  }
  console.log(
    `agent RSS peak ${mib(Math.max(z.rssPeak, zp.rssPeak, one.rssPeak))} MiB; arms executed ${systems.map((s) => `${s.name} ${int(s.arm.executed.length)} (${s.arm.duplicates} repeated exec deliveries)`).join(', ')}; ` +
      `agent logged ${agent.warnings} warnings; state database ${mib(fs.statSync(path.join(e2e.stateDir, 'state.db')).size)} MiB`,
  );
  if (agent.warnings > 0) console.log(`agent log tail:\n${agent.logTail.slice(-5).join('\n')}`);
  if (failed) console.log('!!! the baseline is not doing the same work (see above): its figures are not a baseline');

  console.log(`vs crypto relay: ${(throughputShare * 100).toFixed(0)}%`);
  console.log(`agent CPU per command: ${Math.round(agentCpu)} µs`);
  console.log(`relay p99 at the same pace: ${cp.percentile(99).toFixed(1)} ms${cp.saturated ? ' (SATURATED)' : cp.catchingUp ? ' (NOT STEADY)' : ''}`);
  console.log(
    `p99 at half the relay's rate: ${zp.percentile(99).toFixed(1)} ms` +
      (zp.saturated ? ` (SATURATED: ${int(zp.rate)}/s achieved of ${int(zp.offered)}/s offered — not a latency figure)` : zp.catchingUp ? ' (NOT STEADY: backlog from the warm-up)' : ''),
  );
} finally {
  for (const cleanup of cleanups) await cleanup();
}
process.exitCode = failed ? 1 : 0;

/** Runs a phase, reading CPU at its window's edges and sampling the system's RSS every 250 ms. */
async function measure(s: Pick<System, 'process'>, phase: (probe: WindowProbe) => Promise<PhaseResult>): Promise<[PhaseResult, Cpu, number]> {
  const cpu: Cpu = { process: 0, main: 0, broker: 0, load: 0 };
  let start = { process: 0, main: 0, broker: 0, load: process.cpuUsage() };
  const probe: WindowProbe = {
    open: () => (start = { process: s.process.cpuSeconds(), main: s.process.mainThreadSeconds(), broker: brokerSeconds(), load: process.cpuUsage() }),
    close: () => {
      const load = process.cpuUsage(start.load);
      cpu.process = s.process.cpuSeconds() - start.process;
      cpu.main = s.process.mainThreadSeconds() - start.main;
      cpu.broker = brokerSeconds() - start.broker;
      cpu.load = (load.user + load.system) / 1e6;
    },
  };
  let rssPeak = s.process.rss();
  const timer = setInterval(() => (rssPeak = Math.max(rssPeak, s.process.rss())), 250);
  try {
    return [await phase(probe), cpu, rssPeak];
  } finally {
    clearInterval(timer);
  }
}

/**
 * Sends one command of each action (move, grip, release) through each system, one at a time,
 * and reads the sizes of its four messages off the broker: system → kind → "move/grip/release".
 */
async function probeSizes(url: string, all: System[]): Promise<Map<SystemName, Map<string, string>>> {
  const client = await mqtt.connectAsync(url, { protocolVersion: 5, clientId: `bench-probe-${process.pid}` });
  const seen = new Map<string, number[]>();
  client.on('message', (topic, payload) => {
    const [, , device, first, second, third] = topic.split('/');
    const kind =
      first === 'cmd' ? (second === undefined ? 'command' : second === 'result' ? 'result' : null) : first === 'exec' ? (third === undefined ? 'exec' : third === 'ack' ? 'ack' : null) : null;
    if (kind === null) return;
    const owner = all.find((s) => s.target.device === device);
    if (kind === 'result' && owner !== undefined && !sampleResults.has(owner.name)) sampleResults.set(owner.name, payload);
    const key = `${device}|${kind}`;
    seen.set(key, [...(seen.get(key) ?? []), payload.length]);
  });
  await client.subscribeAsync(`ztedge/${SITE}/+/#`, { qos: 1 });
  for (const s of all) {
    for (let i = 0; i < 3; i++) {
      s.load.senders[0]!.send(null);
      if ((await s.load.drain(10_000)) > 0) throw new Error(`${s.name} did not answer a probe command`);
    }
  }
  await new Promise((resolve) => setTimeout(resolve, 300));
  await client.endAsync();
  return new Map(
    all.map((s) => [s.name, new Map(['command', 'exec', 'ack', 'result'].map((kind) => [kind, (seen.get(`${s.target.device}|${kind}`) ?? []).join('/')]))]),
  );
}

function brokerSeconds(): number {
  return brokerPid === undefined ? 0 : cpuSeconds(brokerPid);
}

function row(label: string, p: Pooled, role: 'agent' | 'relay', pacedRun = false): void {
  const per = (seconds: number) => int(p.perCommand(seconds)).padStart(5);
  const rate = pacedRun ? `${int(p.offered).padStart(6)} offered ${int(p.rate).padStart(6)} achieved/s` : `${int(p.rate).padStart(6)} commands/s`;
  const notes = [p.notes(), pacedRun && p.saturated ? 'SATURATED' : '', pacedRun && p.catchingUp ? 'NOT STEADY (backlog from the warm-up)' : ''].filter(Boolean).join('; ');
  console.log(
    `${label.padEnd(36)} ${rate}   p50 ${ms(p.percentile(50)).padStart(6)} ms   p99 ${ms(p.percentile(99)).padStart(6)} ms   ` +
      `CPU per command: ${role} ${per(p.cpu.process)} µs + broker ${per(p.cpu.broker)} µs + load side ${per(p.cpu.load)} µs = ${int(p.totalPerCommand).padStart(5)} µs` +
      (pacedRun ? '' : ` (at most ${int((cores * 1e6) / p.totalPerCommand)}/s on ${cores} cores)`) +
      `   result ${Math.round(p.resultBytes / Math.max(1, p.answered))} B${notes ? `   ${notes}` : ''}`,
  );
}
