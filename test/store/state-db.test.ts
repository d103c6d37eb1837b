import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StateDbError, migrate, openStateDb } from '../../src/store/state-db.js';

let tmp: string;
beforeEach(() => {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-statedb-'));
});
afterEach(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

function mode(file: string): number {
  return fs.statSync(file).mode & 0o777;
}

function expectCode(run: () => unknown, code: string): void {
  let thrown: unknown;
  try {
    run();
  } catch (err) {
    thrown = err;
  }
  expect(thrown).toBeInstanceOf(StateDbError);
  expect((thrown as StateDbError).code).toBe(code);
}

describe('openStateDb', () => {
  it('sets WAL, synchronous FULL, foreign keys and the busy timeout', () => {
    const db = openStateDb(path.join(tmp, 'state.db'), { busyTimeoutMs: 1234 });
    try {
      expect(db.pragma('journal_mode', { simple: true })).toBe('wal');
      expect(db.pragma('synchronous', { simple: true })).toBe(2); // FULL
      expect(db.pragma('foreign_keys', { simple: true })).toBe(1);
      expect(db.pragma('busy_timeout', { simple: true })).toBe(1234);
      expect(db.pragma('trusted_schema', { simple: true })).toBe(0);
    } finally {
      db.close();
    }
  });

  it('creates the file 0600 and missing parents 0700 whatever the umask', () => {
    const previous = process.umask(0);
    try {
      const file = path.join(tmp, 'a', 'b', 'state.db');
      const db = openStateDb(file);
      db.exec('CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)');
      expect(mode(file)).toBe(0o600);
      expect(mode(file + '-wal')).toBe(0o600);
      expect(mode(file + '-shm')).toBe(0o600);
      expect(mode(path.join(tmp, 'a'))).toBe(0o700);
      expect(mode(path.join(tmp, 'a', 'b'))).toBe(0o700);
      db.close();
    } finally {
      process.umask(previous);
    }
  });

  it('tightens an existing database file that others could read', () => {
    const file = path.join(tmp, 'state.db');
    new Database(file).close();
    fs.chmodSync(file, 0o644);
    openStateDb(file).close();
    expect(mode(file)).toBe(0o600);
  });

  it('keeps committed rows across close and reopen', () => {
    const file = path.join(tmp, 'state.db');
    const db = openStateDb(file);
    db.exec('CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (42)');
    db.close();
    const again = openStateDb(file);
    expect(again.prepare('SELECT x FROM t').pluck().get()).toBe(42);
    again.close();
  });

  it('refuses a file that is not a database', () => {
    const file = path.join(tmp, 'state.db');
    fs.writeFileSync(file, 'this is a configuration file, not SQLite\n'.repeat(50));
    expectCode(() => openStateDb(file), 'STATE_DB_NOT_A_DATABASE');
  });

  it('reports a database held locked by another connection', () => {
    const file = path.join(tmp, 'state.db');
    const holder = openStateDb(file);
    holder.pragma('locking_mode = EXCLUSIVE');
    holder.exec('CREATE TABLE t (x INTEGER); INSERT INTO t VALUES (1)');
    try {
      expectCode(() => openStateDb(file, { busyTimeoutMs: 20 }), 'STATE_DB_LOCKED');
    } finally {
      holder.close();
    }
  });

  it('refuses a directory where the file should be', () => {
    const file = path.join(tmp, 'state.db');
    fs.mkdirSync(file);
    expectCode(() => openStateDb(file), 'STATE_DB_OPEN_FAILED');
  });

  it('rejects a negative busy timeout', () => {
    expectCode(() => openStateDb(':memory:', { busyTimeoutMs: -1 }), 'STATE_DB_BAD_VALUE');
  });
});

describe('migrate', () => {
  const steps = ['CREATE TABLE a (x INTEGER NOT NULL)', 'ALTER TABLE a ADD COLUMN y TEXT'];

  function version(db: Database.Database, module: string): number | undefined {
    return db.prepare('SELECT version FROM schema_version WHERE module = ?').pluck().get(module) as number | undefined;
  }

  it('applies each step once and records the version per module', () => {
    const file = path.join(tmp, 'state.db');
    const db = openStateDb(file);
    expect(migrate(db, 'alpha', steps.slice(0, 1))).toBe(1);
    expect(migrate(db, 'alpha', steps.slice(0, 1))).toBe(0);
    expect(migrate(db, 'beta', ['CREATE TABLE b (z INTEGER)'])).toBe(1);
    db.close();

    const reopened = openStateDb(file);
    expect(migrate(reopened, 'alpha', steps)).toBe(1);
    expect(version(reopened, 'alpha')).toBe(2);
    expect(version(reopened, 'beta')).toBe(1);
    reopened.prepare('INSERT INTO a (x, y) VALUES (1, ?)').run('two columns now');
    reopened.close();
  });

  it('rolls back every pending step when one fails', () => {
    const db = openStateDb(':memory:');
    expectCode(() => migrate(db, 'alpha', [...steps, 'CREATE TABLE broken (']), 'STATE_DB_MIGRATION_FAILED');
    expect(version(db, 'alpha')).toBeUndefined();
    expect(db.prepare("SELECT count(*) FROM sqlite_schema WHERE name = 'a'").pluck().get()).toBe(0);
    db.close();
  });

  it('refuses a schema written by a newer version', () => {
    const db = openStateDb(':memory:');
    migrate(db, 'alpha', steps);
    expectCode(() => migrate(db, 'alpha', steps.slice(0, 1)), 'STATE_DB_SCHEMA_TOO_NEW');
    db.close();
  });

  it('rejects module names that are not identifiers', () => {
    const db = openStateDb(':memory:');
    expectCode(() => migrate(db, "x'; DROP TABLE schema_version; --", steps), 'STATE_DB_BAD_VALUE');
    db.close();
  });
});
