import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommit, GroupCommitError } from '../../src/store/group-commit.js';
import { openStateDb, type Database } from '../../src/store/state-db.js';

let dir: string;
let dbPath: string;
const opened: Database[] = [];

function open(opts: { busyTimeoutMs?: number } = {}): Database {
  const db = openStateDb(dbPath, opts);
  opened.push(db);
  return db;
}

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-group-commit-'));
  dbPath = path.join(dir, 'state.db');
});

afterEach(() => {
  for (const db of opened.splice(0)) if (db.open) db.close();
  fs.rmSync(dir, { recursive: true, force: true });
});

function withTable(db: Database) {
  db.exec('CREATE TABLE IF NOT EXISTS item (n INTEGER PRIMARY KEY) STRICT');
  return db.prepare<[number]>('INSERT INTO item (n) VALUES (?)');
}

/** A WAL flusher the test completes by hand; flushNow() is counted. */
function manualFlush() {
  const calls: Array<{ done: () => void; fail: (err: Error) => void }> = [];
  let now = 0;
  const flusher = {
    flush: () => new Promise<void>((done, fail) => calls.push({ done, fail })),
    flushNow: () => void now++,
  };
  return { calls, flusher, flushedNow: () => now };
}

const turn = () => new Promise((resolve) => setImmediate(resolve));

describe('GroupCommit', () => {
  it('commits the writes of one turn in one transaction, and resolves each caller only after the WAL flush', async () => {
    const db = open();
    const insert = withTable(db);
    const flush = manualFlush();
    const commits = new GroupCommit(db, { flusher: flush.flusher });
    const reader = open();
    const countCommitted = () => (reader.prepare('SELECT count(*) AS n FROM item').get() as { n: number }).n;

    const resolved: number[] = [];
    const all = Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        commits
          .run(() => {
            insert.run(i);
            return i * 2;
          })
          .then((value) => {
            resolved.push(value);
            return value;
          }),
      ),
    );
    await turn();
    // Committed (another connection sees it) but not yet flushed: nobody may act on it yet.
    expect(countCommitted()).toBe(25);
    expect(resolved).toEqual([]);
    expect(flush.calls).toHaveLength(1);
    flush.calls[0]!.done();
    expect(await all).toEqual(Array.from({ length: 25 }, (_, i) => i * 2));
    expect(commits.stats()).toEqual({ batches: 1, writes: 25, failures: 0, largestBatch: 25, flushes: 1 });
    // The batch ran with synchronous = NORMAL; the connection is back to FULL for everyone else.
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
  });

  it('runs one flush at a time: batches committed meanwhile share the next one', async () => {
    const db = open();
    const insert = withTable(db);
    const flush = manualFlush();
    const commits = new GroupCommit(db, { flusher: flush.flusher });
    const order: string[] = [];
    const first = commits.run(() => insert.run(1)).then(() => order.push('first'));
    await turn();
    const second = commits.run(() => insert.run(2)).then(() => order.push('second'));
    await turn();
    const third = commits.run(() => insert.run(3)).then(() => order.push('third'));
    await turn();
    expect([commits.stats().batches, flush.calls.length]).toEqual([3, 1]);
    flush.calls[0]!.done();
    await first;
    expect(order).toEqual(['first']);
    expect(flush.calls).toHaveLength(2);
    flush.calls[1]!.done();
    await Promise.all([second, third]);
    expect(order).toEqual(['first', 'second', 'third']);
    expect(commits.stats().flushes).toBe(2);
  });

  it('rejects the callers a failed flush covered, and flushes on for later batches', async () => {
    const db = open();
    const insert = withTable(db);
    const flush = manualFlush();
    const commits = new GroupCommit(db, { flusher: flush.flusher });
    const lost = Promise.allSettled([commits.run(() => insert.run(1)), commits.run(() => insert.run(2))]);
    await turn();
    flush.calls[0]!.fail(new Error('EIO'));
    const outcomes = await lost;
    expect(outcomes.map((o) => o.status === 'rejected' && (o.reason as GroupCommitError).code)).toEqual(['STATE_COMMIT_FAILED', 'STATE_COMMIT_FAILED']);
    expect((outcomes[0] as PromiseRejectedResult).reason.message).toMatch(/flush failed: EIO/);
    const later = commits.run(() => insert.run(3));
    await turn();
    flush.calls[1]!.done();
    await expect(later).resolves.toBeDefined();
  });

  it('rolls back the whole batch when one write fails: every caller is rejected, and settled last to first', async () => {
    const db = open();
    const insert = withTable(db);
    const commits = new GroupCommit(db);
    const settled: Array<[number, boolean]> = [];
    const outcomes = await Promise.allSettled(
      [1, 2, 3, 2, 4].map((n, i) =>
        commits.run(
          () => insert.run(n), // the second 2 violates the primary key
          (committed) => settled.push([i, committed]),
        ),
      ),
    );
    expect(outcomes.map((o) => o.status)).toEqual(Array(5).fill('rejected'));
    const reason = (outcomes[0] as PromiseRejectedResult).reason as GroupCommitError;
    expect(reason).toBeInstanceOf(GroupCommitError);
    expect(reason.code).toBe('STATE_COMMIT_FAILED');
    expect(reason.message).toMatch(/5 write\(s\) failed: UNIQUE constraint/);
    expect(settled).toEqual([4, 3, 2, 1, 0].map((i) => [i, false]));
    expect(db.prepare('SELECT count(*) AS n FROM item').get()).toEqual({ n: 0 });
    expect(commits.stats()).toMatchObject({ batches: 1, failures: 1, flushes: 0 });

    // Nothing of the failed batch lingers in the next one.
    await expect(commits.run(() => insert.run(1), (committed) => settled.push([9, committed]))).resolves.toBeDefined();
    expect(settled.at(-1)).toEqual([9, true]);
    expect(db.prepare('SELECT n FROM item').all()).toEqual([{ n: 1 }]);
    expect(db.pragma('synchronous', { simple: true })).toBe(2);
  });

  it('fails the batch, not the process, when another writer holds the database, and works again after', async () => {
    const db = open({ busyTimeoutMs: 0 });
    const insert = withTable(db);
    const commits = new GroupCommit(db);
    const other = open({ busyTimeoutMs: 0 });
    other.exec('BEGIN IMMEDIATE');
    const locked = await Promise.allSettled([commits.run(() => insert.run(1)), commits.run(() => insert.run(2))]);
    expect(locked.map((o) => o.status === 'rejected' && (o.reason as GroupCommitError).code)).toEqual(['STATE_COMMIT_FAILED', 'STATE_COMMIT_FAILED']);
    other.exec('ROLLBACK');
    await commits.run(() => insert.run(3));
    expect(db.prepare('SELECT n FROM item').all()).toEqual([{ n: 3 }]);
  });

  it('puts a write queued while a batch runs into the next batch, after it', async () => {
    const db = open();
    const insert = withTable(db);
    const commits = new GroupCommit(db);
    const order: string[] = [];
    let later: Promise<unknown> | undefined;
    await commits
      .run(() => {
        insert.run(1);
        later = commits.run(() => insert.run(2)).then(() => order.push('later durable'));
      })
      .then(() => order.push('first durable'));
    await later;
    expect(order).toEqual(['first durable', 'later durable']);
    expect(commits.stats()).toMatchObject({ batches: 2, writes: 2 });
  });

  it('flush() commits what is queued and flushes before returning, also for batches a background flush still covers', async () => {
    const db = open();
    const insert = withTable(db);
    const flush = manualFlush();
    const commits = new GroupCommit(db, { flusher: flush.flusher });
    const inBackground = commits.run(() => insert.run(6));
    await turn();
    expect(flush.calls).toHaveLength(1);
    const queued = commits.run(() => insert.run(7));
    expect(commits.pending).toBe(1);
    commits.flush();
    expect([commits.pending, flush.flushedNow()]).toEqual([0, 1]);
    await expect(Promise.all([inBackground, queued])).resolves.toHaveLength(2);
    expect(open().prepare('SELECT n FROM item').all()).toEqual([{ n: 6 }, { n: 7 }]);
    // Once the background flush is done, nothing waits: nothing to flush.
    flush.calls[0]!.done();
    await turn();
    commits.flush();
    expect(flush.flushedNow()).toBe(1);
  });

  it('flushes the real WAL file, and needs no flush for an in-memory database', async () => {
    const db = open();
    const insert = withTable(db);
    const commits = new GroupCommit(db);
    await Promise.all([commits.run(() => insert.run(1)), commits.run(() => insert.run(2))]);
    expect(commits.stats()).toMatchObject({ batches: 1, flushes: 1, failures: 0 });
    const memory = openStateDb(':memory:');
    opened.push(memory);
    const inMemory = new GroupCommit(memory);
    const insertInMemory = withTable(memory);
    await inMemory.run(() => insertInMemory.run(1));
    expect(inMemory.stats()).toMatchObject({ batches: 1, failures: 0 });
    // And synchronously, before the database is closed.
    void commits.run(() => insert.run(3));
    commits.flush();
    db.close();
  });

  it('keeps one descriptor on the WAL for all its flushes, also across a checkpoint that truncates the WAL', async () => {
    const db = open();
    const insert = withTable(db);
    const commits = new GroupCommit(db);
    const walDescriptors = () => fs.readdirSync('/proc/self/fd').filter((fd) => {
      try {
        return fs.readlinkSync(`/proc/self/fd/${fd}`) === `${dbPath}-wal`;
      } catch {
        return false; // closed while listed
      }
    }).length;
    const before = walDescriptors();
    for (let i = 0; i < 30; i++) await commits.run(() => insert.run(i));
    expect(walDescriptors()).toBe(before + 1);
    db.pragma('wal_checkpoint(TRUNCATE)');
    expect(fs.statSync(`${dbPath}-wal`).size).toBe(0);
    for (let i = 30; i < 60; i++) await commits.run(() => insert.run(i));
    expect(walDescriptors()).toBe(before + 1);
    expect(commits.stats()).toMatchObject({ batches: 60, flushes: 60, failures: 0 });
    expect((db.prepare('SELECT count(*) AS n FROM item').get() as { n: number }).n).toBe(60);
  });

  it('runLazy: a write that starts no batch of its own joins the next one, or one after lazyDelayMs', async () => {
    const db = open();
    const insert = withTable(db);
    const flush = manualFlush();
    const commits = new GroupCommit(db, { flusher: flush.flusher, lazyDelayMs: 40 });
    // Joins a batch somebody else starts later (before its own delay is up).
    const lazy = commits.runLazy(() => insert.run(1));
    await turn();
    expect(commits.stats().batches).toBe(0);
    const eager = commits.run(() => insert.run(2));
    await turn();
    expect(commits.stats()).toMatchObject({ batches: 1, writes: 2 });
    flush.calls[0]!.done();
    await Promise.all([lazy, eager]);
    // Alone, it waits for its delay, then commits and resolves after the flush like any write.
    const started = performance.now();
    let settledAt = 0;
    const alone = commits.runLazy(() => insert.run(3), () => (settledAt = performance.now()));
    await turn();
    expect(commits.stats().batches).toBe(1);
    await new Promise((resolve) => setTimeout(resolve, 80));
    expect(commits.stats()).toMatchObject({ batches: 2, writes: 3 });
    expect(settledAt - started).toBeGreaterThanOrEqual(35);
    flush.calls[1]!.done();
    await alone;
    // flush() (shutdown) commits lazy writes at once.
    void commits.runLazy(() => insert.run(4));
    commits.flush();
    expect((db.prepare('SELECT count(*) AS n FROM item').get() as { n: number }).n).toBe(4);
  });
});
