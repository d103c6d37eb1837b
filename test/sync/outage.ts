// The outage test, for each store and transport: the collector is down while the agent records
// `records` records; then it comes back, and during the drain the agent and the collector are
// killed (SIGKILL) and restarted at random points. In the end the collector holds every record
// exactly once, in order, with the chain and every checkpoint verified against the device key,
// and the agent's watermark is at its head. Seeded randomness: the seed is printed.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { expect } from 'vitest';
import { AuditReader, openReadOnly } from '../../src/audit/reader.js';
import { LogVerifier } from '../../src/audit/verify.js';
import { openCollectorStore } from '../../src/collector/open-store.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../../src/crypto/key-files.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { REPO_ROOT } from '../e2e/support.js';
import { seededRandom } from '../support/seeded-random.js';
import { sleep } from '../support/wait.js';
import { freePort } from '../support/free-port.js';

export interface OutageOptions {
  records: number;
  kills: number;
  /** SQLite file (default) or a PostgreSQL URL. */
  db?: string;
  mqtt?: { url: string };
  batchRecords?: number;
  timeoutMs?: number;
}

export interface OutageResult {
  records: number;
  checkpoints: number;
  /** How often each side was killed, and how many kills came while records were still unsynced. */
  kills: { agent: number; collector: number; midDrain: number };
  seed: number;
}

const DEVICE = 'arm-7';
const PREFIX = `ztedge/site-1/${DEVICE}/`;

interface Proc {
  child: ChildProcess;
  out: string;
  exited: Promise<void>;
}

function start(args: string[]): Proc {
  const child = spawn(process.execPath, args, { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: os.tmpdir() } });
  const proc: Proc = { child, out: '', exited: new Promise((resolve) => child.once('exit', () => resolve())) };
  child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (proc.out += chunk));
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (proc.out += chunk));
  return proc;
}

async function kill(proc: Proc): Promise<void> {
  proc.child.kill('SIGKILL');
  await proc.exited;
}

function agentProgress(dbPath: string): { head: number; synced: number } {
  const db = openReadOnly(dbPath);
  try {
    const reader = new AuditReader(db);
    return { head: reader.lastSeq(), synced: reader.meta().syncedSeq };
  } finally {
    db.close();
  }
}

export async function runOutage(opts: OutageOptions): Promise<OutageResult> {
  const seed = Number(process.env.SYNC_OUTAGE_SEED ?? Date.now() % 1_000_000);
  const random = seededRandom(seed);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-outage-'));
  const procs = new Set<Proc>();
  try {
    const deviceKey = generatePrivateKey('ed25519');
    const collectorKey = generatePrivateKey('ed25519');
    writePrivateKeyFile(path.join(dir, 'device.key'), deviceKey);
    writePrivateKeyFile(path.join(dir, 'collector.key'), collectorKey);
    writePublicKeyFile(path.join(dir, 'collector.pub'), collectorKey.publicKey);
    fs.mkdirSync(path.join(dir, 'devices'));
    writePublicKeyFile(path.join(dir, 'devices', `${DEVICE}.pub`), deviceKey.publicKey);
    const stateDir = path.join(dir, 'state');
    fs.mkdirSync(stateDir);
    const port = await freePort();
    const db = opts.db ?? path.join(dir, 'collector.db');

    const agentArgs = [
      '--import',
      'tsx',
      path.join(REPO_ROOT, 'test/sync/fixtures/sync-agent.ts'),
      JSON.stringify({
        stateDir,
        deviceKey: path.join(dir, 'device.key'),
        collectorKey: path.join(dir, 'collector.pub'),
        device: DEVICE,
        records: opts.records,
        batchRecords: opts.batchRecords ?? 2000,
        ...(opts.mqtt === undefined ? { url: `http://127.0.0.1:${port}` } : { mqtt: { url: opts.mqtt.url, prefix: PREFIX } }),
      }),
    ];
    const collectorArgs = [
      path.join(REPO_ROOT, 'src/cli/bin.mjs'),
      'collector',
      '--listen',
      `127.0.0.1:${port}`,
      '--db',
      db,
      '--key',
      path.join(dir, 'collector.key'),
      '--devices',
      path.join(dir, 'devices'),
      ...(opts.mqtt === undefined ? [] : ['--mqtt', opts.mqtt.url, '--mqtt-client-id', `collector-${port}`]),
    ];
    const spawnTracked = (args: string[]) => {
      const p = start(args);
      procs.add(p);
      void p.exited.then(() => procs.delete(p));
      return p;
    };
    const waitFor = async (p: Proc, text: string, what: string, ms = 120_000) => {
      const deadline = Date.now() + ms;
      while (!p.out.includes(text)) {
        if (p.child.exitCode !== null) throw new Error(`${what} exited: ${p.out.slice(-2000)}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}: ${p.out.slice(-2000)}`);
        await sleep(20);
      }
    };

    // The outage: the agent records with no collector to take its log.
    let agent = spawnTracked(agentArgs);
    await waitFor(agent, 'syncing', 'the agent to record');
    await sleep(300);
    const dbPath = path.join(stateDir, 'state.db');
    expect(agentProgress(dbPath)).toMatchObject({ synced: 0 });
    expect(agentProgress(dbPath).head).toBeGreaterThanOrEqual(opts.records);

    // The collector returns; both are killed at random points during the drain.
    let collector = spawnTracked(collectorArgs);
    await waitFor(agent, 'synced', 'the drain to start');
    const kills = { agent: 0, collector: 0, midDrain: 0 };
    for (let i = 0; i < opts.kills; i++) {
      // The first kill lands as soon as the first batch is acknowledged, so at least one comes
      // mid-drain however fast the drain runs; the others at random points after it.
      if (i > 0) await sleep(Math.floor(random() * 600));
      const progress = agentProgress(dbPath);
      if (progress.synced < progress.head) kills.midDrain++;
      const pick = random();
      const killAgent = pick < 0.4 || pick >= 0.8;
      const killCollector = pick >= 0.4;
      if (killAgent) {
        await kill(agent);
        kills.agent++;
      }
      if (killCollector) {
        await kill(collector);
        kills.collector++;
      }
      if (killCollector) collector = spawnTracked(collectorArgs);
      if (killAgent) agent = spawnTracked(agentArgs);
    }
    const deadline = Date.now() + (opts.timeoutMs ?? 120_000);
    for (;;) {
      const { head, synced } = agentProgress(dbPath);
      if (synced === head && head >= opts.records) break;
      if (Date.now() > deadline) throw new Error(`drain incomplete: synced ${synced} of ${head} (seed ${seed})\nagent: ${agent.out.slice(-1500)}\ncollector: ${collector.out.slice(-1500)}`);
      await sleep(100);
    }
    await kill(agent);
    collector.child.kill('SIGTERM');
    await collector.exited;

    // Exactly once, in order, verified: the collector's log is the agent's, record for record.
    const { head } = agentProgress(dbPath);
    const store = await openCollectorStore(db);
    const agentDb = openReadOnly(dbPath);
    try {
      const reader = new AuditReader(agentDb);
      const verifier = new LogVerifier({ keys: [deviceKey.publicKey], device: DEVICE });
      let prev: Uint8Array = new Uint8Array(32);
      let count = 0;
      for (let from = 1; from <= head; from += 10_000) {
        const stored = await store.records(DEVICE, from, from + 9_999, 10_000);
        const own = reader.read(from, 10_000, from + 9_999);
        expect(stored.length).toBe(own.length);
        for (const [i, r] of stored.entries()) {
          expect(r.seq).toBe(from + i);
          expect(Buffer.compare(r.hash, own[i]!.hash)).toBe(0);
          const failure = verifier.push({ ...r, prevHash: prev });
          if (failure !== undefined) throw new Error(`collector log does not verify: ${failure.code} at ${failure.seq}`);
          prev = r.hash;
          count++;
        }
      }
      expect(count).toBe(head);
      expect(await store.records(DEVICE, head + 1, Number.MAX_SAFE_INTEGER, 10)).toEqual([]);
      expect((await store.device(DEVICE))!.lastSeq).toBe(head);
      return { records: count, checkpoints: verifier.checkpoints, kills, seed };
    } finally {
      agentDb.close();
      await store.close();
    }
  } finally {
    for (const p of [...procs]) await kill(p);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
