// Drain rate of an audit backlog to the collector on this machine: the agent's sync (in this
// process, over HTTP on loopback) and `ztedge collector` (its own process), first with the
// collector's SQLite store, then with PostgreSQL (a private server). Beside each, in the same run:
// the store's ceiling — the same rows committed straight into a fresh store of the same kind, in
// the same batches (store.commit(), what the collector calls once a batch is verified), with no
// network, compression, signatures or verification.
// Run: npm run bench:sync [-- --records N] [-- --sqlite-only]
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { GENESIS_HASH } from '../src/audit/chain.js';
import { SqliteAuditLog, recordBytes } from '../src/audit/log.js';
import { CompactRange, leafHash } from '../src/audit/merkle.js';
import { AuditSync } from '../src/audit/sync.js';
import { openCollectorStore } from '../src/collector/open-store.js';
import type { CollectorStore, DeviceState } from '../src/collector/store.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../src/crypto/key-files.js';
import { generatePrivateKey } from '../src/crypto/keys.js';
import { GroupCommit } from '../src/store/group-commit.js';
import { openStateDb } from '../src/store/state-db.js';
import { HttpsSyncTransport } from '../src/transport/audit-https.js';
import { startPostgres } from '../test/support/postgres.js';
import { freePort } from '../test/support/free-port.js';

const { values } = parseArgs({ options: { records: { type: 'string', default: '200000' }, 'sqlite-only': { type: 'boolean', default: false } } });
const RECORDS = Number(values.records);
const BATCH = 5000;
const DEVICE = 'arm-1';
const ROOT = path.resolve(import.meta.dirname, '..');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-bench-sync-'));
const children = new Set<ChildProcess>();

const fmt = (n: number) => Math.round(n).toLocaleString('en-US');


const deviceKey = generatePrivateKey('ed25519');
const collectorKey = generatePrivateKey('ed25519');
writePrivateKeyFile(path.join(tmp, 'collector.key'), collectorKey);
fs.mkdirSync(path.join(tmp, 'devices'));
writePublicKeyFile(path.join(tmp, 'devices', `${DEVICE}.pub`), deviceKey.publicKey);

/** The backlog: RECORDS command records (typical decision-record bodies) with checkpoints every 1000. */
async function makeBacklog(file: string): Promise<{ head: number; bytes: number }> {
  const db = openStateDb(file);
  const log = new SqliteAuditLog(db, { now: Date.now, commits: new GroupCommit(db), checkpoints: { key: deviceKey, device: DEVICE, everyRecords: 1000 } });
  for (let done = 0; done < RECORDS; ) {
    const n = Math.min(5000, RECORDS - done);
    await Promise.all(
      Array.from({ length: n }, (_, i) => {
        const k = done + i;
        const body = new TextEncoder().encode(
          JSON.stringify({ cmd: k.toString(16).padStart(64, '0'), iss: 'planner', principal: 'Agent::"planner"', action: 'move', resource: 'Arm::"arm-1"', args: { speed: k % 250, zone: 'A' }, decision: 'allow', policies: ['operators-move'], reasons: ['PERMITTED'] }),
        );
        return log.append('decision', body);
      }),
    );
    done += n;
  }
  const head = log.head().seq;
  const bytes = log.capacity().unsyncedBytes;
  db.close();
  return { head, bytes };
}

async function drain(stateFile: string, dbUrl: string, head: number, bytes: number): Promise<{ recordsPerS: number; mbPerS: number; wireMbPerS: number; ms: number }> {
  const port = await freePort();
  const child = spawn(process.execPath, [path.join(ROOT, 'src/cli/bin.mjs'), 'collector', '--listen', `127.0.0.1:${port}`, '--db', dbUrl, '--key', path.join(tmp, 'collector.key'), '--devices', path.join(tmp, 'devices')], {
    cwd: ROOT,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.add(child);
  let out = '';
  child.stdout!.setEncoding('utf8').on('data', (c: string) => (out += c));
  while (!out.includes('collector listening')) {
    if (child.exitCode !== null) throw new Error(`collector exited: ${out}`);
    await new Promise((r) => setTimeout(r, 20));
  }
  const db = openStateDb(stateFile);
  const log = new SqliteAuditLog(db, { now: Date.now, commits: new GroupCommit(db), checkpoints: { key: deviceKey, device: DEVICE, everyRecords: 1000 } });
  const transport = new HttpsSyncTransport({ url: `http://127.0.0.1:${port}` });
  const sync = new AuditSync({ log, transport, device: DEVICE, deviceKey, collectorKey: collectorKey.publicKey, maxRecords: BATCH, intervalMs: 1000, now: Date.now, prune: false });
  let failures = 0;
  sync.on('problem', (e) => {
    failures++;
    console.log(`  sync problem: ${e.code} ${e.message}`);
  });
  const start = performance.now();
  const done = new Promise<void>((resolve) => sync.on('stored', (e) => e.syncedSeq >= head && resolve()));
  sync.start();
  await done;
  const ms = performance.now() - start;
  const wire = sync.status().bytesSent;
  await sync.stop();
  transport.close();
  db.close();
  child.kill('SIGTERM');
  await new Promise((r) => child.once('exit', r));
  children.delete(child);
  if (failures > 0) console.log(`  (${failures} failed exchanges during the drain)`);
  return { recordsPerS: (head / ms) * 1000, mbPerS: bytes / 1e6 / (ms / 1000), wireMbPerS: wire / 1e6 / (ms / 1000), ms };
}

/** The same rows committed straight into a fresh store, BATCH at a time. */
async function ceiling(stateFile: string, store: CollectorStore, bytes: number): Promise<{ recordsPerS: number; mbPerS: number; ms: number }> {
  const db = openStateDb(stateFile);
  const log = new SqliteAuditLog(db, { now: Date.now });
  const head = log.head().seq;
  const batches = [];
  for (let from = 1; from <= head; from += BATCH) batches.push(log.read(from, BATCH).map((r) => ({ seq: r.seq, timeMs: r.timeMs, kind: r.kind, body: r.body, hash: r.hash })));
  db.close();
  // Device states computed beforehand: the ceiling is the store's work only.
  let tree = CompactRange.EMPTY;
  let previous: DeviceState | null = null;
  const states: DeviceState[] = [];
  for (const rows of batches) {
    for (const r of rows) tree = tree.append(leafHash(r.hash)).range;
    const last = rows[rows.length - 1]!;
    states.push({ device: DEVICE, lastSeq: last.seq, lastHash: last.hash ?? GENESIS_HASH, frontier: tree, origin: null, checkpoint: null, headSeq: head, firstSeenMs: 0, lastSeenMs: 0 });
  }
  const start = performance.now();
  for (const [i, rows] of batches.entries()) {
    const ok = await store.commit({ expected: previous, state: states[i]!, records: rows, batch: { first: rows[0]!.seq, last: rows[rows.length - 1]!.seq, digest: new Uint8Array(32), receivedMs: 0 } });
    if (!ok) throw new Error('ceiling commit refused');
    previous = states[i]!;
  }
  const ms = performance.now() - start;
  await store.close();
  return { recordsPerS: (head / ms) * 1000, mbPerS: bytes / 1e6 / (ms / 1000), ms };
}

try {
  const backlog = path.join(tmp, 'backlog.db');
  let t = performance.now();
  const { head, bytes } = await makeBacklog(backlog);
  console.log(`backlog: ${fmt(head)} records (${fmt(RECORDS)} decisions + checkpoints), ${(bytes / 1e6).toFixed(1)} MB as the cap counts them, written in ${((performance.now() - t) / 1000).toFixed(1)} s`);
  console.log(`batches of ${BATCH} records, gzip, 2 in flight, HTTP on loopback; the collector is its own process (ztedge collector)`);
  console.log(`machine: ${os.cpus().length} cores, load average ${os.loadavg().map((l) => l.toFixed(1)).join(' ')} (other work on the machine slows every figure alike)`);

  const copy = (name: string) => {
    const file = path.join(tmp, `${name}.db`);
    const db = openStateDb(backlog);
    db.exec(`VACUUM INTO '${file}'`);
    db.close();
    return file;
  };

  const results: Record<string, { drain: Awaited<ReturnType<typeof drain>>; ceiling: Awaited<ReturnType<typeof ceiling>> }> = {};
  const stores: Array<[string, () => Promise<{ url: string; stop?: () => Promise<void>; fresh: () => Promise<string> }>]> = [
    ['sqlite', async () => ({ url: path.join(tmp, 'collector.db'), fresh: async () => path.join(tmp, 'ceiling.db') })],
  ];
  if (!values['sqlite-only']) {
    stores.push([
      'postgres',
      async () => {
        const server = await startPostgres();
        return { url: await server.createDatabase(), stop: () => server.stop(), fresh: () => server.createDatabase() };
      },
    ]);
  }
  for (const [name, open] of stores) {
    const target = await open();
    try {
      t = performance.now();
      const d = await drain(copy(`agent-${name}`), target.url, head, bytes);
      const c = await ceiling(backlog, await openCollectorStore(await target.fresh()), bytes);
      results[name] = { drain: d, ceiling: c };
      console.log(
        `${name.padEnd(8)} drain:   ${fmt(d.recordsPerS)} records/s, ${d.mbPerS.toFixed(1)} MB/s of records (${d.wireMbPerS.toFixed(1)} MB/s on the wire), ${(d.ms / 1000).toFixed(2)} s`,
      );
      console.log(`${name.padEnd(8)} ceiling: ${fmt(c.recordsPerS)} records/s, ${c.mbPerS.toFixed(1)} MB/s (bare commits of the same rows, same batches), ${(c.ms / 1000).toFixed(2)} s`);
      console.log(`${name.padEnd(8)} drain vs store ceiling: ${Math.round((d.recordsPerS / c.recordsPerS) * 100)}%`);
    } finally {
      await target.stop?.();
    }
  }
  const sqlite = results.sqlite!;
  console.log(`drain: ${fmt(sqlite.drain.recordsPerS).replace(/,/g, '')} records/s`);
  console.log(`drain vs store ceiling: ${Math.round((sqlite.drain.recordsPerS / sqlite.ceiling.recordsPerS) * 100)}%`);
} finally {
  for (const child of children) child.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
}
