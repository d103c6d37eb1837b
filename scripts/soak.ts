// Soak: the agent under sustained command load for minutes, its resident memory sampled all along.
//
//   npm run soak [-- --minutes N --senders N --window N --rate N --interval N --agent-node-args="FLAGS"]
//   SOAK_MINUTES=1 npm run soak          (the same knob from the environment)
//   npm run soak:1m                      (one minute: a cheap check)
//
// Same setup as bench/pipeline.bench.ts: a private Mosquitto, the agent as its own process
// (`ztedge run` from a bundle of the sources), the simulated arm as executor, and `--senders`
// connections with their own issuer keys. By default each sender keeps `--window` commands
// outstanding (as fast as the agent answers); `--rate N` paces N commands/s in total instead.
// Prints, every `--interval` seconds, the agent's RSS with the throughput and latency of that
// interval, then a summary. Exits 1 if RSS ever exceeds --max-rss-mib (default 150) or keeps
// growing: after the first quarter of the run (warm-up), the peak of the last half of what
// remains must not exceed the peak of its first half by more than 5 %.
// The agent's node runs with AGENT_NODE_FLAGS (bench/pipeline-load.ts), the deployed heap
// settings, unless --agent-node-args gives others.
import { parseArgs } from 'node:util';
import { startSimArm } from './sim-arm.js';
import { startBroker } from '../test/support/broker.js';
import { AGENT_NODE_FLAGS, AgentProcess, bundleAgent, Load, makeBenchSite, PREFIX } from '../bench/pipeline-load.js';

const { values } = parseArgs({
  options: {
    minutes: { type: 'string', default: process.env.SOAK_MINUTES ?? '10' },
    senders: { type: 'string', default: '16' },
    window: { type: 'string', default: '16' },
    rate: { type: 'string' },
    interval: { type: 'string', default: '10' },
    'max-rss-mib': { type: 'string', default: '150' },
    'agent-node-args': { type: 'string', default: AGENT_NODE_FLAGS.join(' ') },
  },
});
const minutes = Number(values.minutes);
const intervalMs = Number(values.interval) * 1000;
const maxRss = Number(values['max-rss-mib']) * 1024 * 1024;
if (!(minutes > 0) || !(intervalMs >= 1000) || !(maxRss > 0)) throw new Error('--minutes, --interval (>= 1 s) and --max-rss-mib must be positive numbers');
const intervals = Math.max(4, Math.round((minutes * 60_000) / intervalMs));
const load = values.rate === undefined ? { window: Number(values.window) } : { rate: Number(values.rate) };

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const cleanups: Array<() => unknown> = [];
let failed = false;
try {
  const broker = await startBroker({ kind: 'mosquitto', log: 'quiet' });
  cleanups.unshift(() => broker.stop());
  const site = makeBenchSite(broker.url, Number(values.senders));
  cleanups.unshift(() => site.remove());
  const agent = await AgentProcess.start(await bundleAgent(site.dir), site.configFile, broker.url, values['agent-node-args'].split(' ').filter(Boolean));
  cleanups.unshift(() => agent.stop());
  const arm = await startSimArm({ url: broker.url, prefix: PREFIX, motionMs: 0 });
  cleanups.unshift(() => arm.stop());
  const senders = await Load.connect(broker.url, site.issuers);
  cleanups.unshift(() => senders.close());

  const atRest = agent.rss();
  console.log(
    `soak: ${minutes} min, ${site.issuers.length} senders, ${'window' in load ? `window ${load.window} each` : `${load.rate} commands/s`}; ` +
      `agent pid ${agent.pid} (node ${values['agent-node-args'] || 'without flags'}), RSS at rest ${mib(atRest)} MiB`,
  );
  const samples: number[] = [];
  let peak = atRest;
  const sampler = setInterval(() => (peak = Math.max(peak, agent.rss())), 250);
  cleanups.unshift(() => clearInterval(sampler));
  let commands = 0;
  let executed = 0;
  let cpu = agent.cpuSeconds();
  await senders.sustain(load, intervalMs, intervals, (i, r) => {
    const cpuNow = agent.cpuSeconds();
    const cores = (cpuNow - cpu) / (intervalMs / 1000);
    cpu = cpuNow;
    // The arm lists every execution; counted and dropped, so the load side stays small too.
    executed += arm.executed.splice(0).length;
    const rss = agent.rss();
    samples.push(rss);
    commands += Math.round((r.commandsPerSecond * intervalMs) / 1000);
    const other = [...r.other].map(([k, n]) => `${k}×${n}`).join(', ');
    console.log(
      `t=${String(((i + 1) * intervalMs) / 1000).padStart(4)}s  agent RSS ${mib(rss).padStart(6)} MiB (peak ${mib(peak)})  ` +
        `${Math.round(r.commandsPerSecond).toString().padStart(5)} commands/s  p50 ${r.p50Ms.toFixed(1)} ms  p99 ${r.p99Ms.toFixed(1)} ms  CPU ${cores.toFixed(2)} cores` +
        `${other ? `  not executed: ${other}` : ''}`,
    );
  });
  const settled = samples.slice(Math.floor(samples.length / 4));
  const half = Math.floor(settled.length / 2);
  const earlierPeak = Math.max(...settled.slice(0, half));
  const laterPeak = Math.max(...settled.slice(half));
  const growing = laterPeak > earlierPeak * 1.05;
  failed = peak > maxRss || growing;
  console.log(
    `rss: at rest ${mib(atRest)} MiB, peak ${mib(peak)} MiB, last ${mib(samples.at(-1)!)} MiB; ` +
      `after warm-up: peak ${mib(earlierPeak)} MiB, then ${mib(laterPeak)} MiB`,
  );
  console.log(`commands: ${commands} answered; arm executed ${executed + arm.executed.length}; agent logged ${agent.warnings} warnings`);
  console.log(`verdict: ${failed ? 'FAIL' : 'ok'} (peak ${peak > maxRss ? 'above' : 'within'} ${mib(maxRss)} MiB, ${growing ? 'still growing' : 'stable'} after warm-up)`);
} finally {
  for (const cleanup of cleanups) await cleanup();
}
process.exitCode = failed ? 1 : 0;
