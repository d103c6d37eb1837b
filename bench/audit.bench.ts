// Durable audit appends on this machine's disk, all in one run:
//   1. one transaction per record: each append awaited before the next, so each is its own
//      commit and its own fdatasync (what a logger without group commit does);
//   2. group commit: the same log with many appends in flight (the agent under load), batches
//      sharing one transaction and one fdatasync;
//   3. the cost of signed checkpoints: group commit with a checkpoint every 1,000 records vs
//      none.
// Each comparison alternates its two sides over --rounds runs on fresh databases and compares
// the medians.
// Every append resolves only when durable, in every phase. Ends with `group commit speedup: <N>x`
// and `checkpoint overhead: <N>%`.
// Run: npm run bench:audit [-- --dir DIR --records N --single N --rounds N --in-flight N]
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { GroupCommit } from '../src/store/group-commit.js';
import { openStateDb } from '../src/store/state-db.js';
import { SqliteAuditLog } from '../src/audit/log.js';
import { generatePrivateKey } from '../src/crypto/keys.js';
import { encodeCbor } from '../src/envelope/cbor.js';

const { values } = parseArgs({
  strict: true,
  options: {
    dir: { type: 'string', default: os.tmpdir() },
    records: { type: 'string', default: '15000' },
    single: { type: 'string', default: '200' },
    rounds: { type: 'string', default: '9' },
    'in-flight': { type: 'string', default: '256' },
  },
});
const positive = (name: string, text: string) => {
  const n = Number(text);
  if (!Number.isSafeInteger(n) || n < 1) throw new Error(`--${name} must be a positive integer`);
  return n;
};
const records = positive('records', values.records);
const single = positive('single', values.single);
const rounds = positive('rounds', values.rounds);
const inFlight = positive('in-flight', values['in-flight']);

const tmp = fs.mkdtempSync(path.join(values.dir, 'ztedge-bench-audit-'));
const key = generatePrivateKey('ed25519');
// A decision record of typical size (~200 bytes of CBOR).
const body = (i: number) =>
  encodeCbor({ cmd: new Uint8Array(32).fill(i & 255), principal: 'Agent::"planner-7"', action: 'move', resource: 'Arm::"arm-1"', decision: 'allow', policies: ['p-move-zone-a'], reasons: [], n: i });

let runs = 0;
function openLog(checkpointEvery: number | null) {
  const db = openStateDb(path.join(tmp, `run-${runs++}.db`));
  const commits = new GroupCommit(db);
  const log = new SqliteAuditLog(db, {
    now: Date.now,
    commits,
    ...(checkpointEvery === null ? {} : { checkpoints: { key, device: 'arm-1', everyRecords: checkpointEvery, everyMs: 3_600_000 } }),
  });
  return { db, commits, log };
}

/** Each append awaited before the next: one transaction and one fdatasync per record. */
async function oneByOne(count: number): Promise<number> {
  const { db, log } = openLog(null);
  const start = performance.now();
  for (let i = 0; i < count; i++) await log.append('decision', body(i));
  const ms = performance.now() - start;
  db.close();
  return ms;
}

/** `count` appends with `inFlight` outstanding at any time (a new one as each resolves). */
async function grouped(count: number, checkpointEvery: number | null): Promise<{ ms: number; cpuUs: number; batches: number; checkpoints: number }> {
  const { db, commits, log } = openLog(checkpointEvery);
  let started = 0;
  const cpu = process.cpuUsage();
  const start = performance.now();
  await new Promise<void>((resolve, reject) => {
    let done = 0;
    const next = () => {
      const i = started++;
      log.append('decision', body(i)).then(() => {
        if (++done === count) resolve();
        else if (started < count) next();
      }, reject);
    };
    for (let i = 0; i < Math.min(inFlight, count); i++) next();
  });
  const ms = performance.now() - start;
  const used = process.cpuUsage(cpu);
  const cpuUs = used.user + used.system;
  const checkpoints = (db.prepare("SELECT count(*) AS n FROM audit WHERE kind = 'checkpoint'").get() as { n: number }).n;
  const { batches } = commits.stats();
  await log.close();
  db.close();
  return { ms, cpuUs, batches, checkpoints };
}

const rate = (count: number, ms: number) => (count / ms) * 1000;
const fmt = (n: number) => Math.round(n).toLocaleString('en-US');
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;

try {
  console.log(`audit appends on ${tmp} (${os.cpus().length} cores); every append resolves only once durable (fdatasync)`);

  await grouped(Math.min(records, 5000), null); // warm-up: JIT, page cache
  // Alternating as well: fsync latency and the CPU share of this process drift on a shared machine.
  const singleRates: number[] = [];
  const groupRates: number[] = [];
  for (let r = 0; r < rounds; r++) {
    const singleMs = await oneByOne(single);
    singleRates.push(rate(single, singleMs));
    console.log(`one transaction per record: ${fmt(single)} appends in ${singleMs.toFixed(0)} ms → ${fmt(rate(single, singleMs))} appends/s (${((singleMs / single) * 1000).toFixed(0)} µs each)`);
    const group = await grouped(records, null);
    groupRates.push(rate(records, group.ms));
    console.log(
      `group commit (${inFlight} in flight): ${fmt(records)} appends in ${group.ms.toFixed(0)} ms → ${fmt(rate(records, group.ms))} appends/s (${group.batches} batches, ${(records / group.batches).toFixed(0)} records per batch, CPU ${(group.cpuUs / records).toFixed(1)} µs per append)`,
    );
  }
  console.log(`medians: one transaction per record ${fmt(median(singleRates))} appends/s, group commit ${fmt(median(groupRates))} appends/s`);

  const withCheckpoints: number[] = [];
  const without: number[] = [];
  const cpuWith: number[] = [];
  const cpuWithout: number[] = [];
  let checkpointsWritten = 0;
  for (let r = 0; r < rounds; r++) {
    // Alternating, so that drift of the machine (other load, page cache) hits both alike.
    const a = await grouped(records, null);
    without.push(rate(records, a.ms));
    cpuWithout.push(a.cpuUs / records);
    const b = await grouped(records, 1000);
    withCheckpoints.push(rate(records, b.ms));
    cpuWith.push(b.cpuUs / records);
    checkpointsWritten = b.checkpoints;
  }
  console.log(`no checkpoints: ${without.map(fmt).join(', ')} appends/s → median ${fmt(median(without))} (CPU ${median(cpuWithout).toFixed(1)} µs per append)`);
  console.log(
    `checkpoint every 1,000 records (${checkpointsWritten} signed per run): ${withCheckpoints.map(fmt).join(', ')} appends/s → median ${fmt(median(withCheckpoints))} (CPU ${median(cpuWith).toFixed(1)} µs per append)`,
  );
  const cpuOverhead = ((median(cpuWith) - median(cpuWithout)) / median(cpuWithout)) * 100;
  console.log(`checkpoint CPU per append: ${cpuOverhead >= 0 ? '+' : ''}${cpuOverhead.toFixed(1)}%`);

  // Each summary figure is the median of the per-round ratios: the two runs of a round are
  // back to back, so drift of the machine between rounds cancels out.
  const speedup = median(groupRates.map((g, i) => g / singleRates[i]!));
  const overhead = median(without.map((a, i) => ((a - withCheckpoints[i]!) / a) * 100));
  console.log(`group commit speedup: ${speedup.toFixed(1)}x`);
  console.log(`checkpoint overhead: ${overhead.toFixed(1)}%`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
