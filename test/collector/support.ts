// Shared pieces of the sync and collector tests: a device with a real audit log on disk (device
// key, checkpoints), a collector on a given store with that device registered, a transport that
// hands batches straight to the collector (and can be cut), and a check of a device's stored log
// against its own.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { type AuditLogOptions, SqliteAuditLog } from '../../src/audit/log.js';
import { AuditSync, type AuditSyncOptions, type SyncTransport } from '../../src/audit/sync.js';
import { LogVerifier } from '../../src/audit/verify.js';
import type { AuditRecord } from '../../src/audit/chain.js';
import { Collector, type CollectorOptions } from '../../src/collector/server.js';
import type { CollectorStore } from '../../src/collector/store.js';
import { DeviceKeyDirectory } from '../../src/collector/registry.js';
import { writePublicKeyFile } from '../../src/crypto/key-files.js';
import { type PrivateKey, generatePrivateKey } from '../../src/crypto/keys.js';
import { openStateDb } from '../../src/store/state-db.js';

export const T0 = 1_760_000_000_000;
export const body = (s: string) => new TextEncoder().encode(s);

export interface TestDevice {
  id: string;
  key: PrivateKey;
  dir: string;
  dbPath: string;
  clock: { ms: number };
  log: SqliteAuditLog;
  /** Appends `n` command records (bodies `${tag}-${i}`), returns the head seq. */
  append(n: number, tag?: string): Promise<number>;
  /** Reopens the log on the same file (a restart), or on another file (a restored copy). */
  reopen(dbPath?: string): void;
  /** Copies the database as it is now (a backup an attacker might restore). */
  snapshot(): string;
  close(): void;
}

export function makeDevice(id: string, opts: { everyRecords?: number; log?: Partial<AuditLogOptions>; key?: PrivateKey } = {}): TestDevice {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), `ztedge-dev-${id}-`));
  const key = opts.key ?? generatePrivateKey('ed25519');
  const clock = { ms: T0 };
  let dbPath = path.join(dir, 'state.db');
  let db = openStateDb(dbPath);
  const make = () =>
    new SqliteAuditLog(db, {
      now: () => clock.ms,
      checkpoints: { key, device: id, origin: `ztedge/site-1/${id}`, everyRecords: opts.everyRecords ?? 100, everyMs: 3_600_000 },
      ...opts.log,
    });
  let log = make();
  let snapshots = 0;
  const device: TestDevice = {
    id,
    key,
    dir,
    get dbPath() {
      return dbPath;
    },
    clock,
    get log() {
      return log;
    },
    async append(n, tag = 'r') {
      const pending: Array<Promise<unknown>> = [];
      for (let i = 0; i < n; i++) {
        clock.ms++;
        pending.push(log.append('command', body(`${tag}-${i}-${'x'.repeat(i % 40)}`)));
      }
      await Promise.all(pending);
      return log.head().seq;
    },
    reopen(other) {
      db.close();
      if (other !== undefined) dbPath = other;
      db = openStateDb(dbPath);
      log = make();
    },
    snapshot() {
      const file = path.join(dir, `snapshot-${snapshots++}.db`);
      db.exec(`VACUUM INTO '${file}'`);
      return file;
    },
    close() {
      if (db.open) db.close();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  } as TestDevice;
  return device;
}

export interface TestCollector {
  collector: Collector;
  store: CollectorStore;
  keysDir: string;
  signingKey: PrivateKey;
  register(device: { id: string; key: PrivateKey }): void;
  /** Batches go straight to collector.receive(); `up = false` cuts the link. */
  transport: SyncTransport & { up: boolean; sent: number };
  close(): Promise<void>;
}

export function makeCollector(store: CollectorStore, opts: Partial<CollectorOptions> = {}): TestCollector {
  const keysDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-collector-keys-'));
  const signingKey = generatePrivateKey('ed25519');
  const collector = new Collector({ store, keys: new DeviceKeyDirectory(keysDir, { recheckMs: 0 }), signingKey, reorderWaitMs: 50, ...opts });
  const transport = {
    name: 'direct',
    up: true,
    sent: 0,
    ready: () => true,
    async send(bytes: Uint8Array): Promise<Uint8Array> {
      if (!transport.up) throw Object.assign(new Error('collector unreachable'), { code: 'SYNC_UNREACHABLE' });
      transport.sent++;
      const answer = await collector.receive(bytes);
      if (answer.kind === 'error') throw Object.assign(new Error(answer.message), { code: answer.code });
      return answer.ack;
    },
  };
  return {
    collector,
    store,
    keysDir,
    signingKey,
    register(device) {
      writePublicKeyFile(path.join(keysDir, `${device.id}.pub`), device.key.publicKey);
    },
    transport,
    async close() {
      await store.close();
      fs.rmSync(keysDir, { recursive: true, force: true });
    },
  };
}

export function makeSync(device: TestDevice, collector: TestCollector, opts: Partial<AuditSyncOptions> = {}): AuditSync {
  return new AuditSync({
    log: device.log,
    transport: collector.transport,
    device: device.id,
    deviceKey: device.key,
    collectorKey: collector.signingKey.publicKey,
    maxRecords: 250,
    intervalMs: 20,
    backoff: { initialMs: 10, maxMs: 50 },
    now: () => device.clock.ms,
    ...opts,
  });
}

/** Every record the collector holds for `device`, in seq order. */
export async function storedLog(store: CollectorStore, device: string): Promise<AuditRecord[]> {
  const out: AuditRecord[] = [];
  let prev: Uint8Array = new Uint8Array(32);
  for (let from = 1; ; ) {
    const page = await store.records(device, from, Number.MAX_SAFE_INTEGER, 5000);
    for (const r of page) {
      out.push({ ...r, prevHash: prev as Uint8Array });
      prev = r.hash;
    }
    if (page.length < 5000) return out;
    from = page[page.length - 1]!.seq + 1;
  }
}

/**
 * The collector holds exactly the device's records 1 … upTo: same seqs (once each, in order),
 * same hashes, and the stored log verifies from genesis (chain and every checkpoint).
 */
export async function expectSameLog(store: CollectorStore, device: TestDevice, upTo: number): Promise<{ records: number; checkpoints: number }> {
  const stored = await storedLog(store, device.id);
  if (stored.length !== upTo) throw new Error(`collector holds ${stored.length} records of ${device.id}, expected ${upTo}`);
  const verifier = new LogVerifier({ keys: [device.key.publicKey], device: device.id });
  for (const [i, r] of stored.entries()) {
    if (r.seq !== i + 1) throw new Error(`collector record ${i + 1} has seq ${r.seq}`);
    const failure = verifier.push(r);
    if (failure !== undefined) throw new Error(`collector log does not verify: ${failure.code} at ${failure.seq}: ${failure.message}`);
  }
  const own = device.log.read(1, upTo);
  for (const [i, r] of own.entries()) {
    if (Buffer.compare(r.hash, stored[i]!.hash) !== 0) throw new Error(`record ${r.seq} differs between device and collector`);
  }
  return { records: stored.length, checkpoints: verifier.checkpoints };
}
