// Command throughput and latency of the whole agent, and of its pipeline alone.
//
//   npm run bench:pipeline [-- --seconds N --window N --senders N --agent-node-args="FLAGS"]
//
// 1. The raw Ed25519 verify ceiling: node:crypto verifications of a real command's
//    Sig_structure on this machine, one core, nothing else.
// 2. The pipeline in process, no broker: CommandPipeline on a real state database (WAL, one
//    group commit shared by the replay guard, audit log and rate limiter, durable at the WAL
//    fdatasync), an executor that answers at once; `--window` × senders commands in flight.
// 3. End to end through a private Mosquitto: the agent as its own process (`ztedge run`), the
//    simulated arm (scripts/sim-arm.ts, no motion delay) as the MQTT executor, and senders
//    with their own connection and issuer key that publish signed commands (MQTT 5 response
//    topic + correlation data) and time each signed result from publish to arrival:
//      1 sender and N senders, each keeping `--window` commands outstanding (throughput);
//      500 commands/s paced over N senders (latency at a steady rate).
//    Resident memory of the agent process is sampled throughout, and the CPU time of the agent,
//    the broker and this process (senders and arm) per command at full load is printed with the
//    throughput those figures allow on this machine's cores. The agent's node runs with
//    AGENT_NODE_FLAGS (bench/pipeline-load.ts) unless --agent-node-args gives others (e.g. to
//    add --cpu-prof).
// Ends with exactly `end-to-end: <N> commands/s` (N senders) and `p99 at 500/s: <N> ms`.
import { verify } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { GroupCommit } from '../src/store/group-commit.js';
import { Metrics } from '../src/agent/metrics.js';
import { CommandPipeline } from '../src/agent/pipeline.js';
import { openStateDb } from '../src/store/state-db.js';
import { SqliteAuditLog } from '../src/audit/log.js';
import { verifyBundle } from '../src/bundle/verify.js';
import { GrantStore } from '../src/store/grants.js';
import { PendingApprovals } from '../src/store/pending-approvals.js';
import { RateLimiter } from '../src/store/rate-limiter.js';
import { publicKeyToKeyObject } from '../src/crypto/keys.js';
import { encodeCbor } from '../src/envelope/cbor.js';
import { contextAad } from '../src/envelope/claims.js';
import { decodeSign1 } from '../src/envelope/cose.js';
import { ReplayGuard } from '../src/store/replay-guard.js';
import { TrustedClock } from '../src/store/trusted-clock.js';
import { startSimArm } from '../scripts/sim-arm.js';
import { startBroker } from '../test/support/broker.js';
import { AGENT_NODE_FLAGS, AgentProcess, type BenchSite, bundleAgent, cpuSeconds, DEVICE, Load, makeBenchSite, type PhaseResult, PREFIX, signBenchCommand, SITE } from './pipeline-load.js';

const { values } = parseArgs({
  options: {
    seconds: { type: 'string', default: '10' },
    window: { type: 'string', default: '16' },
    senders: { type: 'string', default: '16' },
    'agent-node-args': { type: 'string', default: AGENT_NODE_FLAGS.join(' ') },
  },
});
const seconds = Number(values.seconds);
const window = Number(values.window);
const senderCount = Number(values.senders);
const WARMUP_MS = 2000;
const PACED_RATE = 500;

const int = (n: number) => Math.round(n).toLocaleString('en-US');
const ms = (n: number) => n.toFixed(1);
const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(0);

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

/** The pipeline as the agent wires it, minus MQTT; returns commands/s, latency and commits. */
async function inProcess(site: BenchSite, inFlight: number, total: number) {
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
    executor: () => ({ execute: async () => ({ status: 'ok' as const }) }),
    metrics: new Metrics(),
    limits: { envelopeMaxBytes: 64 * 1024, clockSkewMs: 30_000, maxLifetimeMs: 3_600_000 },
  });
  const now = Date.now();
  const envelopes = Array.from({ length: total }, (_, i) => signBenchCommand(site.issuers[i % site.issuers.length]!, i, now, 600_000));
  const latencies: number[] = [];
  let executed = 0;
  let next = 0;
  const start = performance.now();
  const before = commits.stats();
  const worker = async () => {
    while (next < total) {
      const bytes = envelopes[next++]!;
      const t0 = performance.now();
      const outcome = await pipeline.handleCommand({ bytes, source: 'mqtt' });
      latencies.push(performance.now() - t0);
      if (outcome.outcome === 'executed') executed++;
    }
  };
  await Promise.all(Array.from({ length: inFlight }, worker));
  const elapsed = performance.now() - start;
  const after = commits.stats();
  db.close();
  latencies.sort((a, b) => a - b);
  return {
    rate: (total / elapsed) * 1000,
    p50: latencies[Math.floor(total * 0.5)]!,
    p99: latencies[Math.floor(total * 0.99)]!,
    executed,
    commits: after.batches - before.batches,
  };
}

interface Usage {
  rssPeak: number;
  /** CPU used over the phase, in cores (1 = one core busy all the time). */
  agentCores: number;
  loadCores: number;
  brokerCores: number;
}

function report(label: string, r: PhaseResult, usage: Usage): void {
  const other = [...r.other].map(([k, n]) => `${k}×${n}`).join(', ');
  console.log(
    `${label.padEnd(34)} ${int(r.commandsPerSecond).padStart(6)} commands/s   p50 ${ms(r.p50Ms).padStart(6)} ms   p99 ${ms(r.p99Ms).padStart(6)} ms` +
      `   agent RSS peak ${mib(usage.rssPeak)} MiB, CPU ${usage.agentCores.toFixed(2)} cores (broker ${usage.brokerCores.toFixed(2)}, load side ${usage.loadCores.toFixed(2)})` +
      `${other ? `   not executed: ${other}` : ''}${r.unanswered ? `   unanswered: ${r.unanswered}` : ''}`,
  );
}

/** Runs `phase` while sampling the agent's RSS every 250 ms and both sides' CPU time. */
async function measured<T>(agent: AgentProcess, brokerPid: number | undefined, phase: () => Promise<T>): Promise<[T, Usage]> {
  let rssPeak = agent.rss();
  const timer = setInterval(() => (rssPeak = Math.max(rssPeak, agent.rss())), 250);
  const brokerSeconds = () => (brokerPid === undefined ? 0 : cpuSeconds(brokerPid));
  const agentCpu = agent.cpuSeconds();
  const brokerCpu = brokerSeconds();
  const loadCpu = process.cpuUsage();
  const start = performance.now();
  try {
    const result = await phase();
    const seconds = (performance.now() - start) / 1000;
    const load = process.cpuUsage(loadCpu);
    return [
      result,
      {
        rssPeak,
        agentCores: (agent.cpuSeconds() - agentCpu) / seconds,
        loadCores: (load.user + load.system) / 1e6 / seconds,
        brokerCores: (brokerSeconds() - brokerCpu) / seconds,
      },
    ];
  } finally {
    clearInterval(timer);
  }
}

const site = makeBenchSite(null, senderCount);
const cleanups: Array<() => Promise<unknown> | unknown> = [() => site.remove()];
try {
  console.log(`pipeline bench: ${seconds} s per phase after ${WARMUP_MS / 1000} s warm-up, window ${window} per sender, node ${process.version}`);
  const ceiling = rawVerifyCeiling(site);
  console.log(`${'raw Ed25519 verify ceiling'.padEnd(34)} ${int(ceiling).padStart(6)} verifies/s (node:crypto, one core)`);

  const local = await inProcess(site, window * senderCount, Math.max(5000, Math.round(seconds * 3000)));
  console.log(
    `${'pipeline in process (no broker)'.padEnd(34)} ${int(local.rate).padStart(6)} commands/s   p50 ${ms(local.p50).padStart(6)} ms   p99 ${ms(local.p99).padStart(6)} ms` +
      `   ${local.executed} executed, ${(local.executed / local.commits).toFixed(1)} commands per commit`,
  );

  const broker = await startBroker({ kind: 'mosquitto' });
  cleanups.unshift(() => broker.stop());
  const e2eSite = makeBenchSite(broker.url, senderCount);
  cleanups.unshift(() => e2eSite.remove());
  const entry = await bundleAgent(e2eSite.dir);
  const agent = await AgentProcess.start(entry, e2eSite.configFile, broker.url, values['agent-node-args'].split(' ').filter(Boolean));
  cleanups.unshift(() => agent.stop());
  const arm = await startSimArm({ url: broker.url, prefix: PREFIX, motionMs: 0 });
  cleanups.unshift(() => arm.stop());
  const load = await Load.connect(broker.url, e2eSite.issuers);
  cleanups.unshift(() => load.close());
  console.log(`agent process (pid ${agent.pid}, node ${values['agent-node-args'] || 'without flags'}) online; RSS at rest ${mib(agent.rss())} MiB`);

  const single = await Load.connect(broker.url, e2eSite.issuers.slice(0, 1));
  cleanups.unshift(() => single.close());
  const phaseMs = WARMUP_MS + seconds * 1000;
  single.prepare(3000, phaseMs);
  const [one, oneUsage] = await measured(agent, broker.pid, () => single.closedLoop(window, WARMUP_MS, seconds * 1000));
  report(`end to end, 1 sender`, one, oneUsage);
  load.prepare(4000, phaseMs);
  const [many, manyUsage] = await measured(agent, broker.pid, () => load.closedLoop(window, WARMUP_MS, seconds * 1000));
  report(`end to end, ${senderCount} senders`, many, manyUsage);
  // Where the machine's CPU goes per command at full load: what caps end-to-end throughput on
  // this machine is the sum over agent, broker and load side (senders and the simulated arm).
  const perCommand = (cores: number) => (cores / many.commandsPerSecond) * 1e6;
  const total = perCommand(manyUsage.agentCores) + perCommand(manyUsage.brokerCores) + perCommand(manyUsage.loadCores);
  console.log(
    `${'CPU per command at full load'.padEnd(34)} agent ${int(perCommand(manyUsage.agentCores))} µs + broker ${int(perCommand(manyUsage.brokerCores))} µs` +
      ` + load side ${int(perCommand(manyUsage.loadCores))} µs = ${int(total)} µs → at most ${int((os.cpus().length * 1e6) / total)} commands/s on ${os.cpus().length} cores`,
  );
  load.prepare(PACED_RATE, phaseMs);
  const [paced, pacedUsage] = await measured(agent, broker.pid, () => load.paced(PACED_RATE, WARMUP_MS, seconds * 1000));
  report(`end to end, paced ${PACED_RATE}/s`, paced, pacedUsage);
  console.log(
    `arm executed ${int(arm.executed.length)} (${arm.duplicates} repeated exec deliveries); agent logged ${agent.warnings} warnings; ` +
      `state database ${mib(fs.statSync(path.join(e2eSite.stateDir, 'state.db')).size)} MiB`,
  );
  if (agent.warnings > 0) console.log(`agent log tail:\n${agent.logTail.slice(-5).join('\n')}`);

  console.log(`end-to-end: ${Math.round(many.commandsPerSecond)} commands/s`);
  console.log(`p99 at 500/s: ${paced.p99Ms.toFixed(1)} ms`);
} finally {
  for (const cleanup of cleanups) await cleanup();
}
