// bench:binary — the single executable against the same agent under Node, in the same run.
// Builds dist/ (npm run build), then times `ztedge run` from spawn to GET /readyz answering 200
// (a signed bundle active, the state database open, the audit log written), on a private broker,
// in rounds that alternate which goes first:
//   binary       dist/ztedge, as shipped (the agent in a worker thread with its heap bounds)
//   binary, NODE_OPTIONS   dist/ztedge with both bounds in NODE_OPTIONS: the agent on the main
//                thread; V8 then refuses the code cache made without those flags (compiled from source)
//   node         node dist/ztedge.cjs (the built JavaScript, the bounds through NODE_OPTIONS)
// "first" starts on an empty state directory (database created, bundle activated, the binary's
// SQLite addon written out); "restart" starts again on that state, as after a reboot. The port is
// tried every 5 ms, then /readyz asked every millisecond (startToReady says why). Beside the
// wall-clock times,
// the CPU time the process used until ready, which a busy machine inflates less, Node's own start
// (`node -e 0`) as this machine's yardstick, and where the binary's restart went (its
// NODE_DEBUG=ztedge-start milestones, medians). Every agent started is killed before the bench ends.
//   npm run bench:binary -- --rounds 7 [--no-build: measure the dist/ already built]
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { startBroker } from '../test/support/broker.js';
import { HEAP_DEFAULTS } from '../src/cli/heap.js';
import { REPO_ROOT, cpuSeconds, makeBenchSite } from './pipeline-load.js';

const { values } = parseArgs({ options: { rounds: { type: 'string', default: '5' }, 'no-build': { type: 'boolean', default: false } }, strict: true });
const rounds = Number(values.rounds);
if (!Number.isInteger(rounds) || rounds < 1) throw new Error(`--rounds must be a positive integer, got ${values.rounds}`);

const DIST = path.join(REPO_ROOT, 'dist');
const BINARY = path.join(DIST, 'ztedge');
const SCRIPT = path.join(DIST, 'ztedge.cjs');

interface Variant {
  name: string;
  command: string;
  args: string[];
  env: Record<string, string>;
}

const bounds = HEAP_DEFAULTS.join(' ');
const baseEnv = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ZTEDGE_') && k !== 'NODE_OPTIONS')) as Record<string, string>;
const VARIANTS: Variant[] = [
  { name: 'binary', command: BINARY, args: [], env: { ...baseEnv, NODE_DEBUG: 'ztedge-start' } },
  { name: 'binary, NODE_OPTIONS', command: BINARY, args: [], env: { ...baseEnv, NODE_OPTIONS: bounds } },
  { name: 'node dist/ztedge.cjs', command: process.execPath, args: [SCRIPT], env: { ...baseEnv, NODE_OPTIONS: bounds } },
];

async function main(): Promise<void> {
  if (values['no-build']) {
    console.log(`measuring the dist/ built ${Math.round((Date.now() - fs.statSync(BINARY).mtimeMs) / 60_000)} min ago`);
  } else {
    console.log('building dist/ (npm run build)…');
    const buildStart = performance.now();
    execFileSync(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/build.ts')], { cwd: REPO_ROOT, stdio: 'inherit' });
    console.log(`build: ${((performance.now() - buildStart) / 1000).toFixed(1)} s`);
  }
  const size = fs.statSync(BINARY).size;
  const scriptSize = fs.statSync(SCRIPT).size;
  const nodeSize = fs.statSync(process.execPath).size;

  const broker = await startBroker();
  const site = makeBenchSite(broker.url, 1);
  const config = JSON.parse(fs.readFileSync(site.configFile, 'utf8')) as Record<string, unknown>;
  const times = new Map<string, { first: number[]; restart: number[]; cpu: number[] }>(VARIANTS.map((v) => [v.name, { first: [], restart: [], cpu: [] }]));
  const memory = new Map<string, number>();
  const milestones = new Map<string, number[]>();
  const bareNode: number[] = [];
  try {
    for (let round = 0; round < rounds; round++) {
      // Alternate the order so that neither always runs on a warmer machine.
      const order = round % 2 === 0 ? VARIANTS : [...VARIANTS].reverse();
      bareNode.push(await timeExit(process.execPath, ['-e', '0']));
      for (const variant of order) {
        const stateDir = path.join(site.dir, `state-${round}-${variant.name.replace(/\W+/g, '-')}`);
        const file = path.join(site.dir, `agent-${round}.json`);
        const port = await freePort();
        fs.writeFileSync(file, JSON.stringify({ ...config, stateDir, http: { port }, broker: { ...(config.broker as object), clientId: `bench-binary-${round}` } }));
        const first = await startToReady(variant, file, port);
        await stop(first.child);
        const restart = await startToReady(variant, file, port);
        if (round === 0) memory.set(variant.name, residentKiB(restart.child.pid!));
        await stop(restart.child);
        for (const { name, ms } of restart.milestones) milestones.set(name, [...(milestones.get(name) ?? []), ms]);
        times.get(variant.name)!.first.push(first.ms);
        times.get(variant.name)!.restart.push(restart.ms);
        times.get(variant.name)!.cpu.push(restart.cpuMs);
      }
    }
  } finally {
    site.remove();
    await broker.stop();
  }

  const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
  const range = (xs: number[]) => `${Math.round(Math.min(...xs))}–${Math.round(Math.max(...xs))}`;
  console.log(`\nbinary: ${mb(size)} MB (${(size / 2 ** 20).toFixed(1)} MiB); Node's own binary ${mb(nodeSize)} MB, unstripped; the bundled JavaScript ${mb(scriptSize)} MB`);
  console.log(`Node's own start on this machine (node -e 0): ${Math.round(median(bareNode))} ms`);
  console.log(`start to /readyz 200, median of ${rounds} (min–max):`);
  for (const variant of VARIANTS) {
    const t = times.get(variant.name)!;
    const rss = `, RSS ${mib(memory.get(variant.name)!)} MiB`;
    console.log(
      `  ${variant.name.padEnd(22)} first ${String(Math.round(median(t.first))).padStart(4)} ms (${range(t.first)})   restart ${String(Math.round(median(t.restart))).padStart(4)} ms (${range(t.restart)}), CPU ${Math.round(median(t.cpu))} ms${rss}`,
    );
  }
  const binary = median(times.get('binary')!.restart);
  const node = median(times.get('node dist/ztedge.cjs')!.restart);
  const cpu = (name: string) => median(times.get(name)!.cpu);
  console.log(`binary / node (restart): ${(binary / node).toFixed(2)}× wall, ${(cpu('binary') / cpu('node dist/ztedge.cjs')).toFixed(2)}× CPU`);
  console.log(`binary ready in ${(binary / median(bareNode)).toFixed(1)}× Node's own start (node -e 0), node dist/ztedge.cjs in ${(node / median(bareNode)).toFixed(1)}×`);
  // Medians of each milestone, ms since the process started (src/cli/start-timing.ts).
  const steps = [...milestones].map(([name, ms]) => ({ name, ms: median(ms) })).sort((a, b) => a.ms - b.ms);
  console.log(`binary restart, ms since the process started (medians; +ms since the milestone before):`);
  console.log(`  ${steps.map((step, i) => `${step.name} ${Math.round(step.ms)} (+${Math.round(step.ms - (steps[i - 1]?.ms ?? 0))})`).join(', ')}, /readyz 200 ${Math.round(binary)}`);
  console.log(`load average during the run: ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} on ${os.availableParallelism()} cores`);
  console.log(`binary size: ${mb(size)} MB`);
  console.log(`ready: ${Math.round(binary)} ms`);
}

/** Every process this bench started and has not seen exit: killed however the bench ends. */
const running = new Set<ChildProcess>();

function track(child: ChildProcess): ChildProcess {
  running.add(child);
  child.once('exit', () => running.delete(child));
  return child;
}

function killAll(): void {
  for (const child of running) {
    // Each agent leads its own process group: anything it started goes with it.
    try {
      process.kill(-child.pid!, 'SIGKILL');
    } catch {
      child.kill('SIGKILL');
    }
  }
  running.clear();
}
process.once('exit', killAll);
for (const signal of ['SIGINT', 'SIGTERM'] as const) {
  process.once(signal, () => {
    killAll();
    process.exit(130);
  });
}

/**
 * Spawns the agent, tries its port every 5 ms until it accepts a connection, then asks GET /readyz
 * every millisecond until it answers 200; ms from spawn, the CPU the process used until then, its
 * start-up milestones. A refused connect costs the bench ~0.25 ms of CPU (fetch or an HTTP request
 * about twice that), which on two cores comes out of the start measured: hence 5 ms, not 2.
 */
async function startToReady(
  variant: Variant,
  configFile: string,
  port: number,
): Promise<{ ms: number; cpuMs: number; child: ChildProcess; milestones: Array<{ name: string; ms: number }> }> {
  const started = performance.now();
  const child = track(
    spawn(variant.command, [...variant.args, 'run', '--config', configFile], { cwd: path.dirname(configFile), env: variant.env, stdio: ['ignore', 'ignore', 'pipe'], detached: true }),
  );
  let stderr = '';
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  const check = () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`${variant.name} exited ${child.exitCode ?? child.signalCode}: ${stderr}`);
    if (performance.now() - started > 30_000) throw new Error(`${variant.name} not ready within 30 s: ${stderr}`);
  };
  try {
    for (check(); !(await accepts(port)); check()) await new Promise((resolve) => setTimeout(resolve, 5));
    for (;;) {
      check();
      if ((await readyzStatus(port)) === 200) {
        const ms = performance.now() - started;
        return { ms, cpuMs: cpuSeconds(child.pid!) * 1000, child, milestones: await startMilestones(variant, () => stderr) };
      }
      await new Promise((resolve) => setTimeout(resolve, 1));
    }
  } catch (err) {
    child.kill('SIGKILL');
    throw err;
  }
}

/** Whether something listens on the port. */
function accepts(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(true);
    });
    socket.once('error', () => resolve(false));
  });
}

/** The status GET /readyz answers with, or 0 when nothing answers. */
function readyzStatus(port: number): Promise<number> {
  return new Promise((resolve) => {
    const request = http.get({ host: '127.0.0.1', port, path: '/readyz', agent: false }, (response) => {
      response.resume();
      response.once('end', () => resolve(response.statusCode ?? 0));
    });
    request.once('error', () => resolve(0));
  });
}

/** The NODE_DEBUG=ztedge-start line (printed right after "agent started"), when the variant has it. */
async function startMilestones(variant: Variant, stderr: () => string): Promise<Array<{ name: string; ms: number }>> {
  if (variant.env.NODE_DEBUG !== 'ztedge-start') return [];
  // The line may still be on its way through the pipe.
  for (let i = 0; i < 100 && !stderr().includes('ZTEDGE-START'); i++) await new Promise((resolve) => setTimeout(resolve, 2));
  const line = /ZTEDGE-START \d+: ms since the process started: (.*)/.exec(stderr())?.[1];
  if (line === undefined) return [];
  return line.split(', ').map((part) => {
    const [, name, ms] = /^(\S+) ([\d.]+)/.exec(part)!;
    return { name: name!, ms: Number(ms) };
  });
}

async function timeExit(command: string, args: string[]): Promise<number> {
  const started = performance.now();
  const child = track(spawn(command, args, { stdio: 'ignore' }));
  await new Promise((resolve) => child.once('exit', resolve));
  return performance.now() - started;
}

async function stop(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise((resolve) => child.once('exit', resolve));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 20_000);
  await exited;
  clearTimeout(timer);
}

/** Resident memory (KiB) of the agent's process. */
function residentKiB(pid: number): number {
  return Number(/^Rss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'))![1]);
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer().listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
    server.on('error', reject);
  });
}

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

function mib(kib: number): string {
  return (kib / 1024).toFixed(1);
}

main().then(
  () => process.exit(0),
  (err: unknown) => {
    console.error(err);
    process.exit(1);
  },
);
