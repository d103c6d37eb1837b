// Soak: the agent under sustained command load for minutes, its resident memory sampled all along.
//
//   npm run soak [-- --minutes N --senders N --window N --rate N --interval N --agent-node-args="FLAGS"]
//   SOAK_MINUTES=1 npm run soak          (the same knob from the environment)
//   npm run soak:1m                      (one minute: a cheap check)
//
// Same setup as bench/pipeline.bench.ts: a private Mosquitto (quiet log), the agent as its own
// process (`ztedge run` from a bundle of the sources), the simulated arm as executor, and
// `--senders` connections with their own issuer keys. By default each sender keeps `--window`
// commands outstanding (as fast as the agent answers); `--rate N` paces N commands/s in total
// instead. Prints, every `--interval` seconds, the agent's RSS (at the end of the interval and
// its peak within it) with the throughput, executions and latency of that interval, then a
// summary. Exits 1 when any of these fails:
//   memory    the RSS peak exceeds --max-rss-mib (default 150), or keeps growing: after the first
//             quarter of the intervals (warm-up), the highest per-interval peak of the last half
//             of what remains exceeds the highest of its first half by more than 5 %;
//   work      an interval in which results or executions stopped (fewer than a tenth of the
//             median interval's), a result other than executed (every command sent is allowed),
//             a command left unanswered after the final drain, or the arm's executions not
//             matching the executed results one for one (each command executed exactly once).
// An agent that stalls or denies everything fails, however little memory it uses.
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
const count = (name: string, text: string) => {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer, not ${JSON.stringify(text)}`);
  return n;
};
const senderCount = count('senders', values.senders);
const load = values.rate === undefined ? { window: count('window', values.window) } : { rate: count('rate', values.rate) };

const mib = (bytes: number) => (bytes / 1024 / 1024).toFixed(1);
const cleanups: Array<() => unknown> = [];
let failed = false;
try {
  const broker = await startBroker({ kind: 'mosquitto', log: 'quiet' });
  cleanups.unshift(() => broker.stop());
  const site = makeBenchSite(broker.url, senderCount);
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
  let peak = atRest;
  let intervalPeak = atRest;
  const sampler = setInterval(() => {
    const rss = agent.rss();
    peak = Math.max(peak, rss);
    intervalPeak = Math.max(intervalPeak, rss);
  }, 250);
  cleanups.unshift(() => clearInterval(sampler));
  const peaks: number[] = [];
  const answeredPer: number[] = [];
  const executedPer: number[] = [];
  let executions = 0;
  let lastRss = atRest;
  let cpu = agent.cpuSeconds();
  await senders.sustain(load, intervalMs, intervals, (i, r) => {
    const cpuNow = agent.cpuSeconds();
    const cores = (cpuNow - cpu) / (r.windowMs / 1000);
    cpu = cpuNow;
    // The arm lists every execution; counted and dropped, so the load side stays small too.
    const executedNow = arm.executed.splice(0).length;
    executions += executedNow;
    lastRss = agent.rss();
    peaks.push(Math.max(intervalPeak, lastRss));
    intervalPeak = lastRss;
    answeredPer.push(r.answered);
    executedPer.push(executedNow);
    const other = [...r.other].map(([k, n]) => `${k}×${n}`).join(', ');
    console.log(
      `t=${String(((i + 1) * intervalMs) / 1000).padStart(4)}s  agent RSS ${mib(lastRss).padStart(6)} MiB (interval peak ${mib(peaks.at(-1)!)})  ` +
        `${Math.round(r.commandsPerSecond).toString().padStart(5)} answered/s  ${Math.round((executedNow * 1000) / r.windowMs).toString().padStart(5)} executed/s  ` +
        `p50 ${r.p50Ms.toFixed(1)} ms  p99 ${r.p99Ms.toFixed(1)} ms  CPU ${cores.toFixed(2)} cores` +
        `${other ? `  NOT EXECUTED: ${other}` : ''}`,
    );
  });
  const unanswered = await senders.drain(30_000);
  executions += arm.executed.splice(0).length;

  const settled = peaks.slice(Math.floor(peaks.length / 4));
  const half = Math.floor(settled.length / 2);
  const earlierPeak = Math.max(...settled.slice(0, half));
  const laterPeak = Math.max(...settled.slice(half));
  const growing = laterPeak > earlierPeak * 1.05;
  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const stalled = (per: number[]) => per.flatMap((n, i) => (n < median(per) / 10 || n === 0 ? [i + 1] : []));
  const { totals } = senders;
  const problems = [
    ...(peak > maxRss ? [`RSS peak ${mib(peak)} MiB above ${mib(maxRss)} MiB`] : []),
    ...(growing ? ['RSS still growing after warm-up'] : []),
    ...(stalled(answeredPer).length > 0 ? [`results stopped in interval(s) ${stalled(answeredPer).join(', ')}`] : []),
    ...(stalled(executedPer).length > 0 ? [`executions stopped in interval(s) ${stalled(executedPer).join(', ')}`] : []),
    ...(totals.other > 0 ? [`${totals.other} results other than executed (${[...senders.otherOutcomes].map(([k, n]) => `${k}×${n}`).join(', ')})`] : []),
    ...(unanswered > 0 || totals.answered !== totals.sent ? [`${totals.sent - totals.answered} of ${totals.sent} commands unanswered`] : []),
    ...(executions !== totals.executed || arm.duplicates > 0
      ? [`the arm executed ${executions} commands (${arm.duplicates} repeated deliveries) for ${totals.executed} executed results`]
      : []),
  ];
  failed = problems.length > 0;
  console.log(
    `rss: at rest ${mib(atRest)} MiB, peak ${mib(peak)} MiB, last ${mib(lastRss)} MiB; ` +
      `after warm-up, highest interval peak: ${mib(earlierPeak)} MiB, then ${mib(laterPeak)} MiB`,
  );
  console.log(
    `commands: ${totals.sent} sent, ${totals.answered} answered, ${totals.executed} executed results; arm executed ${executions} ` +
      `(${arm.duplicates} repeated exec deliveries); agent logged ${agent.warnings} warnings`,
  );
  console.log(
    `verdict: ${failed ? `FAIL (${problems.join('; ')})` : 'ok'} (peak ${peak > maxRss ? 'above' : 'within'} ${mib(maxRss)} MiB, ${growing ? 'still growing' : 'stable'} after warm-up; ` +
      `every command answered and executed once: ${problems.some((p) => !p.startsWith('RSS')) ? 'no' : 'yes'})`,
  );
} finally {
  for (const cleanup of cleanups) await cleanup();
}
process.exitCode = failed ? 1 : 0;
