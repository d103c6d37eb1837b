// Measuring throughput and the idle cost of attestation.
//
//   npm run bench:attest [-- --rounds N --idle-seconds N]
//
// 1. Throughput: 1,000 generated files totalling 256 MiB, measured by ztedge (the agent's
//    measuring code: streamed SHA-256 with the stable-read checks, 4 files at a time) and by
//    `sha256sum` over the same files, in alternating rounds after both have read everything once
//    (page cache warm for both). The best round of each is reported, in MB/s (10^6 bytes per
//    second), and the digests of both are compared file by file. Also the event loop's longest
//    delay while ztedge measured (what a command arriving meanwhile could wait; on a loaded
//    machine it includes time the process was not scheduled at all).
// 2. Idle cost: the AttestationService measuring the robot-arm example profile (its files laid
//    out under a temp root, the agent binary a copy of this node executable) every 10 s, file
//    watches on, for --idle-seconds: CPU time of this process over wall time, as a share of one
//    core — with the digest cache the agent uses (unchanged files are re-read hourly), and with
//    every file re-read on every interval.
import { spawn } from 'node:child_process';
import { randomFillSync } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { parseArgs } from 'node:util';
import { parseDevicePath, type DevicePath } from '../src/attest/glob.js';
import { measureTargets } from '../src/attest/measure.js';
import { loadProfile } from '../src/attest/profile.js';
import { AttestationService } from '../src/attest/service.js';
import { generatePrivateKey } from '../src/crypto/keys.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '3' },
    'idle-seconds': { type: 'string', default: '60' },
  },
  strict: true,
});
const ROUNDS = Number(values.rounds);
const IDLE_SECONDS = Number(values['idle-seconds']);
const FILES = 1000;
const TOTAL_BYTES = 256 * 1024 * 1024;
const REPO = path.resolve(import.meta.dirname, '..');

const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-bench-attest-'));
process.on('exit', () => fs.rmSync(work, { recursive: true, force: true }));

function mbps(bytes: number, ms: number): number {
  return bytes / 1e6 / (ms / 1000);
}

/** 1,000 files of varied sizes (a fixed spread, 4 KiB to ~1 MiB) summing to exactly 256 MiB. */
function generate(dir: string): string[] {
  fs.mkdirSync(dir, { recursive: true });
  const weights = Array.from({ length: FILES }, (_, i) => 1 + ((i * 7919) % 250));
  const sum = weights.reduce((a, b) => a + b, 0);
  const sizes = weights.map((w) => Math.floor((w / sum) * TOTAL_BYTES));
  sizes[0]! += TOTAL_BYTES - sizes.reduce((a, b) => a + b, 0);
  const buffer = Buffer.allocUnsafe(Math.max(...sizes));
  return sizes.map((size, i) => {
    const file = path.join(dir, `f${String(i).padStart(4, '0')}.bin`);
    randomFillSync(buffer, 0, size);
    fs.writeFileSync(file, buffer.subarray(0, size));
    return file;
  });
}

async function sha256sum(files: string[]): Promise<{ ms: number; digests: Map<string, string> }> {
  const started = performance.now();
  const child = spawn('sha256sum', ['--', ...files], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
  const ms = performance.now() - started;
  if (code !== 0) throw new Error(`sha256sum exited ${code}`);
  const digests = new Map(out.trim().split('\n').map((line) => [line.slice(66), line.slice(0, 64)] as [string, string]));
  return { ms, digests };
}

async function ztedge(root: string, target: { path: DevicePath; limit: number }) {
  const delay = monitorEventLoopDelay({ resolution: 1 });
  delay.enable();
  const started = performance.now();
  const records = await measureTargets([target], { root });
  const ms = performance.now() - started;
  delay.disable();
  return { ms, records, maxLagMs: delay.max / 1e6 };
}

async function throughput() {
  const root = path.join(work, 'throughput');
  const files = generate(path.join(root, 'data'));
  const target = { path: parseDevicePath('/data/*.bin') as DevicePath, limit: FILES };
  console.log(`throughput: ${FILES} files, ${TOTAL_BYTES / 1024 / 1024} MiB (${(TOTAL_BYTES / 1e6).toFixed(1)} MB), ${os.cpus().length} cores`);
  // Warm-up: both read everything once, so each timed round reads from the page cache.
  await sha256sum(files);
  const warm = await ztedge(root, target);
  const reference = (await sha256sum(files)).digests;
  const mismatched = warm.records.filter((r) => reference.get(path.join(root, r.path)) !== r.sha256);
  if (warm.records.length !== FILES || mismatched.length > 0) throw new Error(`ztedge and sha256sum disagree on ${mismatched.length} files`);
  console.log(`  digests: ztedge and sha256sum agree on all ${FILES} files`);
  let best = { ztedge: Infinity, sha256sum: Infinity, lag: 0 };
  for (let round = 1; round <= ROUNDS; round++) {
    const z = await ztedge(root, target);
    const s = await sha256sum(files);
    console.log(`  round ${round}: ztedge ${mbps(TOTAL_BYTES, z.ms).toFixed(0)} MB/s (event-loop delay ≤ ${z.maxLagMs.toFixed(1)} ms), sha256sum ${mbps(TOTAL_BYTES, s.ms).toFixed(0)} MB/s`);
    best = { ztedge: Math.min(best.ztedge, z.ms), sha256sum: Math.min(best.sha256sum, s.ms), lag: Math.max(best.lag, z.maxLagMs) };
  }
  fs.rmSync(root, { recursive: true, force: true });
  return { ztedge: mbps(TOTAL_BYTES, best.ztedge), sha256sum: mbps(TOTAL_BYTES, best.sha256sum), lag: best.lag };
}

/** The robot-arm profile's files under a temp root, the agent binary a copy of node. */
function exampleTree(root: string): number {
  const profile = loadProfile(path.join(REPO, 'firmware-profiles'), 'robot-arm');
  let bytes = 0;
  for (const entry of profile.measure) {
    const file = path.join(root, entry.path.isGlob ? entry.path.text.replace('*', 'gripper') : entry.path.text);
    fs.mkdirSync(path.dirname(file), { recursive: true });
    if (entry.path.text === '/usr/local/bin/ztedge') fs.copyFileSync(process.execPath, file);
    else fs.writeFileSync(file, `# ${entry.path.text}\n${'setting = value\n'.repeat(64)}`);
    bytes += fs.statSync(file).size;
  }
  return bytes;
}

async function idle(cacheMaxAgeMs: number | undefined): Promise<{ cpuPercent: number; measurements: number }> {
  const root = path.join(work, `idle-${cacheMaxAgeMs ?? 'cache'}`);
  const bytes = exampleTree(root);
  const service = new AttestationService({
    deviceId: 'arm-01',
    profile: loadProfile(path.join(REPO, 'firmware-profiles'), 'robot-arm'),
    root,
    key: generatePrivateKey('ed25519'),
    agentVersion: '0.1.0',
    intervalMs: 10_000,
    ...(cacheMaxAgeMs === undefined ? {} : { measure: { cacheMaxAgeMs } }),
  });
  await service.start();
  const firstSeq = service.state!.seq;
  const cpu = process.cpuUsage();
  const started = performance.now();
  await new Promise((resolve) => setTimeout(resolve, IDLE_SECONDS * 1000));
  const used = process.cpuUsage(cpu);
  const wall = performance.now() - started;
  const measurements = service.state!.seq - firstSeq;
  await service.stop();
  fs.rmSync(root, { recursive: true, force: true });
  const cpuPercent = ((used.user + used.system) / 1000 / wall) * 100;
  console.log(
    `  ${cacheMaxAgeMs === undefined ? 'digest cache (the agent default)' : 'every file re-read each time '}: ${measurements} re-measurements of ${(bytes / 1e6).toFixed(1)} MB in ${IDLE_SECONDS} s, CPU ${cpuPercent.toFixed(3)}% of a core`,
  );
  return { cpuPercent, measurements };
}

const t = await throughput();
console.log(`idle: robot-arm profile re-measured every 10 s for ${IDLE_SECONDS} s`);
const cached = await idle(undefined);
const full = await idle(0);
console.log('');
console.log(`ztedge: ${t.ztedge.toFixed(0)} MB/s`);
console.log(`sha256sum: ${t.sha256sum.toFixed(0)} MB/s`);
console.log(`event-loop delay while measuring: ${t.lag.toFixed(1)} ms at most`);
console.log(`idle re-measure CPU: ${cached.cpuPercent.toFixed(3)}% of a core (every file re-read: ${full.cpuPercent.toFixed(3)}%)`);
console.log(`vs sha256sum: ${Math.round((t.ztedge / t.sha256sum) * 100)}%`);
