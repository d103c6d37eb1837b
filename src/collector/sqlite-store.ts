// The collector's embedded store: one SQLite file (WAL, synchronous=FULL: a batch acknowledged
// as stored survives kill -9 and power loss). Records are keyed (device number, seq) in a
// clustered table, so a device's log is read and appended in order.
import type { Database, Statement } from 'better-sqlite3';
import { migrate, openStateDb } from '../store/state-db.js';
import { CompactRange } from '../audit/merkle.js';
import { type DeviceRow, type RecordRow, stateParams, toRecord, toState } from './rows.js';
import { type CollectorStore, CollectorStoreError, type DeviceState, type IngestCommit, MAX_REPORTS_PER_DEVICE, type StoredRecord, type SyncReport } from './store.js';

const SCHEMA = `
CREATE TABLE devices (
  id INTEGER PRIMARY KEY,
  device TEXT NOT NULL UNIQUE,
  last_seq INTEGER NOT NULL,
  last_hash BLOB NOT NULL,
  frontier BLOB NOT NULL,
  origin TEXT,
  cp_seq INTEGER,
  cp_size INTEGER,
  cp_root BLOB,
  cp_time_ms INTEGER,
  head_seq INTEGER NOT NULL,
  first_seen_ms INTEGER NOT NULL,
  last_seen_ms INTEGER NOT NULL
) STRICT;
CREATE TABLE records (
  device_id INTEGER NOT NULL REFERENCES devices (id),
  seq INTEGER NOT NULL,
  time_ms INTEGER NOT NULL,
  kind TEXT NOT NULL,
  body BLOB NOT NULL,
  hash BLOB NOT NULL,
  PRIMARY KEY (device_id, seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX records_checkpoints ON records (device_id, seq) WHERE kind = 'checkpoint';
CREATE TRIGGER records_no_update BEFORE UPDATE ON records BEGIN SELECT RAISE(ABORT, 'collected audit records are immutable'); END;
CREATE TRIGGER records_no_delete BEFORE DELETE ON records BEGIN SELECT RAISE(ABORT, 'collected audit records are never deleted'); END;
CREATE TABLE batches (
  device_id INTEGER NOT NULL REFERENCES devices (id),
  last_seq INTEGER NOT NULL,
  first_seq INTEGER NOT NULL,
  frontier BLOB NOT NULL,
  digest BLOB NOT NULL,
  received_ms INTEGER NOT NULL,
  PRIMARY KEY (device_id, last_seq)
) STRICT;
CREATE TABLE reports (
  id INTEGER PRIMARY KEY,
  device TEXT NOT NULL,
  seq INTEGER NOT NULL,
  code TEXT NOT NULL,
  message TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  batch BLOB NOT NULL
) STRICT;
CREATE INDEX reports_by_device ON reports (device, id);
`;

const ROWS_PER_INSERT = 50;

export class SqliteCollectorStore implements CollectorStore {
  readonly kind = 'sqlite';
  private readonly db: Database;
  private readonly ids = new Map<string, number>();
  private readonly s: Record<string, Statement>;

  constructor(path: string) {
    try {
      this.db = openStateDb(path);
      migrate(this.db, 'collector', [SCHEMA]);
    } catch (err) {
      throw new CollectorStoreError('COLLECTOR_DB_OPEN', `cannot open the collector database ${path}: ${(err as Error).message}`, { cause: err });
    }
    const db = this.db;
    this.s = {
      device: db.prepare('SELECT * FROM devices WHERE device = ?'),
      devices: db.prepare('SELECT * FROM devices ORDER BY device'),
      records: db.prepare('SELECT r.seq, r.time_ms, r.kind, r.body, r.hash FROM records r JOIN devices d ON d.id = r.device_id WHERE d.device = ? AND r.seq BETWEEN ? AND ? ORDER BY r.seq LIMIT ?'),
      frontier: db.prepare('SELECT b.last_seq, b.frontier FROM batches b JOIN devices d ON d.id = b.device_id WHERE d.device = ? AND b.last_seq <= ? ORDER BY b.last_seq DESC LIMIT 1'),
      cpBefore: db.prepare(
        "SELECT r.seq, r.time_ms, r.kind, r.body, r.hash FROM records r JOIN devices d ON d.id = r.device_id WHERE d.device = ? AND r.kind = 'checkpoint' AND r.seq <= ? ORDER BY r.seq DESC LIMIT 1",
      ),
      cpAfter: db.prepare(
        "SELECT r.seq, r.time_ms, r.kind, r.body, r.hash FROM records r JOIN devices d ON d.id = r.device_id WHERE d.device = ? AND r.kind = 'checkpoint' AND r.seq > ? ORDER BY r.seq LIMIT 1",
      ),
      insertDevice: db.prepare(
        `INSERT INTO devices (device, last_seq, last_hash, frontier, origin, cp_seq, cp_size, cp_root, cp_time_ms, head_seq, first_seen_ms, last_seen_ms)
         VALUES (@device, @last_seq, @last_hash, @frontier, @origin, @cp_seq, @cp_size, @cp_root, @cp_time_ms, @head_seq, @first_seen_ms, @last_seen_ms)
         ON CONFLICT (device) DO NOTHING`,
      ),
      updateDevice: db.prepare(
        `UPDATE devices SET last_seq = @last_seq, last_hash = @last_hash, frontier = @frontier, origin = @origin, cp_seq = @cp_seq, cp_size = @cp_size,
           cp_root = @cp_root, cp_time_ms = @cp_time_ms, head_seq = @head_seq, last_seen_ms = @last_seen_ms
         WHERE device = @device AND last_seq = @expected_seq`,
      ),
      insertRecord: db.prepare('INSERT INTO records (device_id, seq, time_ms, kind, body, hash) VALUES (?, ?, ?, ?, ?, ?)'),
      // Many rows per statement: better-sqlite3's cost is per statement run, and a batch is thousands of rows.
      insertRecords: db.prepare(`INSERT INTO records (device_id, seq, time_ms, kind, body, hash) VALUES ${Array.from({ length: ROWS_PER_INSERT }, () => '(?, ?, ?, ?, ?, ?)').join(', ')}`),
      insertBatch: db.prepare('INSERT INTO batches (device_id, last_seq, first_seq, frontier, digest, received_ms) VALUES (?, ?, ?, ?, ?, ?)'),
      insertReport: db.prepare('INSERT INTO reports (device, seq, code, message, time_ms, batch) VALUES (?, ?, ?, ?, ?, ?)'),
      trimReports: db.prepare('DELETE FROM reports WHERE device = ? AND id <= (SELECT id FROM reports WHERE device = ? ORDER BY id DESC LIMIT 1 OFFSET ?)'),
      reportsOf: db.prepare('SELECT * FROM reports WHERE device = ? ORDER BY id DESC LIMIT ?'),
      reportsAll: db.prepare('SELECT * FROM reports ORDER BY id DESC LIMIT ?'),
    };
  }

  async device(device: string): Promise<DeviceState | undefined> {
    const row = this.s.device!.get(device) as DeviceRow | undefined;
    return row === undefined ? undefined : toState(row);
  }

  async devices(): Promise<DeviceState[]> {
    return (this.s.devices!.all() as DeviceRow[]).map(toState);
  }

  async records(device: string, from: number, to: number, limit: number): Promise<StoredRecord[]> {
    return (this.s.records!.all(device, from, to, limit) as RecordRow[]).map(toRecord);
  }

  async frontierAtOrBefore(device: string, seq: number): Promise<CompactRange | undefined> {
    const row = this.s.frontier!.get(device, seq) as { last_seq: number; frontier: Buffer } | undefined;
    return row === undefined ? undefined : CompactRange.decode(row.last_seq, new Uint8Array(row.frontier));
  }

  async checkpointAtOrBefore(device: string, seq: number): Promise<StoredRecord | undefined> {
    const row = this.s.cpBefore!.get(device, seq) as RecordRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  async checkpointAfter(device: string, seq: number): Promise<StoredRecord | undefined> {
    const row = this.s.cpAfter!.get(device, seq) as RecordRow | undefined;
    return row === undefined ? undefined : toRecord(row);
  }

  async commit(c: IngestCommit): Promise<boolean> {
    const run = this.db.transaction((): boolean => {
      const params = stateParams(c.state);
      if (c.expected === null) {
        if (this.s.insertDevice!.run(params).changes !== 1) return false;
      } else if (this.s.updateDevice!.run({ ...params, expected_seq: c.expected.lastSeq }).changes !== 1) return false;
      const id = this.idOf(c.state.device);
      const { records } = c;
      let i = 0;
      for (; i + ROWS_PER_INSERT <= records.length; i += ROWS_PER_INSERT) {
        const values: unknown[] = [];
        for (let j = i; j < i + ROWS_PER_INSERT; j++) {
          const r = records[j]!;
          values.push(id, r.seq, r.timeMs, r.kind, r.body, r.hash);
        }
        this.s.insertRecords!.run(values);
      }
      for (; i < records.length; i++) {
        const r = records[i]!;
        this.s.insertRecord!.run(id, r.seq, r.timeMs, r.kind, r.body, r.hash);
      }
      if (c.records.length > 0) this.s.insertBatch!.run(id, c.state.lastSeq, c.batch.first, c.state.frontier.encode(), c.batch.digest, c.batch.receivedMs);
      return true;
    });
    return run.immediate();
  }

  async report(r: SyncReport): Promise<void> {
    this.db.transaction(() => {
      this.s.insertReport!.run(r.device, r.seq, r.code, r.message, r.timeMs, r.batch);
      this.s.trimReports!.run(r.device, r.device, MAX_REPORTS_PER_DEVICE);
    })();
  }

  async reports(device: string | undefined, limit: number): Promise<SyncReport[]> {
    const rows = (device === undefined ? this.s.reportsAll!.all(limit) : this.s.reportsOf!.all(device, limit)) as Array<{
      device: string;
      seq: number;
      code: string;
      message: string;
      time_ms: number;
      batch: Buffer;
    }>;
    return rows.map((r) => ({ device: r.device, seq: r.seq, code: r.code, message: r.message, timeMs: r.time_ms, batch: new Uint8Array(r.batch) }));
  }

  async close(): Promise<void> {
    if (this.db.open) this.db.close();
  }

  private idOf(device: string): number {
    let id = this.ids.get(device);
    if (id === undefined) {
      id = (this.s.device!.get(device) as DeviceRow).id;
      this.ids.set(device, id);
    }
    return id;
  }
}
