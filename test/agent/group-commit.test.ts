import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommit, GroupCommitError } from '../../src/agent/group-commit.js';
import { openStateDb, type Database } from '../../src/agent/state-db.js';

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

describe('GroupCommit', () => {
  it('commits the writes of one turn in one transaction and resolves each caller only once they are durable', async () => {
    const db = open();
    const insert = withTable(db);
    const commits = new GroupCommit(db);
    // Another connection sees only committed data: what it counts is what a crash would keep.
    const reader = open();
    const countCommitted = () => (reader.prepare('SELECT count(*) AS n FROM item').get() as { n: number }).n;

    const committedAtResolve: number[] = [];
    const results = await Promise.all(
      Array.from({ length: 25 }, (_, i) =>
        commits
          .run(() => {
            insert.run(i);
            return i * 2;
          })
          .then((value) => {
            committedAtResolve.push(countCommitted());
            return value;
          }),
      ),
    );
    expect(results).toEqual(Array.from({ length: 25 }, (_, i) => i * 2));
    expect(committedAtResolve).toEqual(Array(25).fill(25));
    expect(commits.stats()).toEqual({ batches: 1, writes: 25, failures: 0, largestBatch: 25 });

    // The next turn's writes are the next transaction.
    await Promise.all([commits.run(() => insert.run(100)), commits.run(() => insert.run(101))]);
    expect(commits.stats()).toMatchObject({ batches: 2, writes: 27 });
    expect(countCommitted()).toBe(27);
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
    expect(commits.stats()).toMatchObject({ batches: 1, failures: 1 });

    // Nothing of the failed batch lingers in the next one.
    await expect(commits.run(() => insert.run(1), (committed) => settled.push([9, committed]))).resolves.toBeDefined();
    expect(settled.at(-1)).toEqual([9, true]);
    expect(db.prepare('SELECT n FROM item').all()).toEqual([{ n: 1 }]);
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
    await commits.run(() => {
      insert.run(1);
      later = commits.run(() => insert.run(2)).then(() => order.push('later committed'));
    }).then(() => order.push('first committed'));
    await later;
    expect(order).toEqual(['first committed', 'later committed']);
    expect(commits.stats()).toMatchObject({ batches: 2, writes: 2 });
  });

  it('flush() commits what is queued at once', () => {
    const db = open();
    const insert = withTable(db);
    const commits = new GroupCommit(db);
    void commits.run(() => insert.run(7));
    expect(commits.pending).toBe(1);
    commits.flush();
    expect(commits.pending).toBe(0);
    expect(open().prepare('SELECT n FROM item').all()).toEqual([{ n: 7 }]);
  });
});
