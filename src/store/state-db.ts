// The agent's SQLite state database (replay guard, trusted clock, caches, audit): opened with
// settings that keep committed state across kill -9 and power loss, readable by the agent's user
// only, with a per-module schema version so each module owns and migrates its own tables.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase } from 'better-sqlite3';

export type { SqliteDatabase as Database };

export type StateDbErrorCode =
  | 'STATE_DB_NOT_A_DATABASE'
  | 'STATE_DB_CORRUPT'
  | 'STATE_DB_LOCKED'
  | 'STATE_DB_OPEN_FAILED'
  | 'STATE_DB_PRAGMA_REJECTED'
  | 'STATE_DB_SCHEMA_TOO_NEW'
  | 'STATE_DB_MIGRATION_FAILED'
  | 'STATE_DB_BAD_VALUE';

export class StateDbError extends Error {
  override readonly name = 'StateDbError';

  constructor(
    readonly code: StateDbErrorCode,
    message: string,
    options?: { cause?: unknown },
  ) {
    super(message, options);
  }
}

export interface StateDbOptions {
  /** How long a statement waits for another connection's lock before failing (default 5000). */
  busyTimeoutMs?: number;
  /** A loaded better-sqlite3 addon or its path (the single-executable build ships its own). */
  nativeBinding?: string | object;
}

const DEFAULT_BUSY_TIMEOUT_MS = 5000;
const SQLITE_SYNCHRONOUS_FULL = 2;
const MODULE_NAME = /^[a-z][a-z0-9_]{0,63}$/;
const MEMORY = ':memory:';

/**
 * Opens (creating if needed) the state database at `dbPath`. The file and its WAL/SHM companions
 * are mode 0600; a missing parent directory is created 0700. `':memory:'` opens a private
 * in-memory database with the same settings (for tests of modules built on it).
 */
export function openStateDb(dbPath: string, opts: StateDbOptions = {}): SqliteDatabase {
  const busyTimeoutMs = opts.busyTimeoutMs ?? DEFAULT_BUSY_TIMEOUT_MS;
  if (!Number.isSafeInteger(busyTimeoutMs) || busyTimeoutMs < 0) {
    throw new StateDbError('STATE_DB_BAD_VALUE', `busyTimeoutMs must be a non-negative integer, got ${busyTimeoutMs}`);
  }
  if (dbPath !== MEMORY) prepareFile(dbPath);

  let db: SqliteDatabase;
  try {
    db = new Database(dbPath, {
      timeout: busyTimeoutMs,
      // The typings say string; the runtime also takes a loaded addon object.
      ...(opts.nativeBinding === undefined ? {} : { nativeBinding: opts.nativeBinding as string }),
    });
  } catch (err) {
    throw toStateDbError(err, dbPath);
  }
  try {
    applyPragmas(db, dbPath);
    db.exec('CREATE TABLE IF NOT EXISTS schema_version (module TEXT PRIMARY KEY, version INTEGER NOT NULL) STRICT');
    if (dbPath !== MEMORY) tightenCompanionModes(dbPath);
  } catch (err) {
    db.close();
    throw toStateDbError(err, dbPath);
  }
  return db;
}

/**
 * Brings `module`'s tables to the latest schema: `migrations[i]` upgrades from version i to
 * i + 1 and runs exactly once, all pending steps in one IMMEDIATE transaction (all or nothing).
 * A database written by a newer agent (higher version than known) is refused rather than
 * guessed at. Returns the number of steps applied.
 */
export function migrate(db: SqliteDatabase, module: string, migrations: readonly string[]): number {
  if (!MODULE_NAME.test(module)) {
    throw new StateDbError('STATE_DB_BAD_VALUE', `invalid migration module name '${module}'`);
  }
  const readVersion = db.prepare<[string], { version: number }>('SELECT version FROM schema_version WHERE module = ?');
  const writeVersion = db.prepare(
    'INSERT INTO schema_version (module, version) VALUES (?, ?) ON CONFLICT (module) DO UPDATE SET version = excluded.version',
  );
  const run = db.transaction((): number => {
    const current = readVersion.get(module)?.version ?? 0;
    if (current > migrations.length) {
      throw new StateDbError(
        'STATE_DB_SCHEMA_TOO_NEW',
        `state database has '${module}' schema version ${current}, this agent knows up to ${migrations.length}`,
      );
    }
    for (let version = current; version < migrations.length; version++) {
      try {
        db.exec(migrations[version]);
      } catch (err) {
        throw new StateDbError(
          'STATE_DB_MIGRATION_FAILED',
          `migration '${module}' ${version} → ${version + 1} failed: ${(err as Error).message}`,
          { cause: err },
        );
      }
    }
    if (migrations.length > current) writeVersion.run(module, migrations.length);
    return migrations.length - current;
  });
  try {
    return run.immediate();
  } catch (err) {
    throw err instanceof StateDbError ? err : toStateDbError(err, db.name);
  }
}

function prepareFile(dbPath: string): void {
  try {
    fs.mkdirSync(path.dirname(dbPath), { recursive: true, mode: 0o700 });
    // Created 0600 up front: SQLite would create it with the umask's mode, and copies the main
    // file's mode onto the -wal and -shm files it creates later.
    fs.closeSync(fs.openSync(dbPath, fs.constants.O_RDWR | fs.constants.O_CREAT, 0o600));
    if (!fs.statSync(dbPath).isFile()) {
      throw new Error('not a regular file');
    }
    fs.chmodSync(dbPath, 0o600);
  } catch (err) {
    throw new StateDbError('STATE_DB_OPEN_FAILED', `cannot open state database ${dbPath}: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

/** Companion files left by an older, looser install keep their mode unless tightened. */
function tightenCompanionModes(dbPath: string): void {
  for (const suffix of ['-wal', '-shm']) {
    try {
      fs.chmodSync(dbPath + suffix, 0o600);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
    }
  }
}

function applyPragmas(db: SqliteDatabase, dbPath: string): void {
  const journalMode = db.pragma('journal_mode = WAL', { simple: true });
  // An in-memory database has no WAL; its journal mode is 'memory' and durability is moot.
  const expectedJournal = dbPath === MEMORY ? 'memory' : 'wal';
  if (journalMode !== expectedJournal) {
    throw new StateDbError('STATE_DB_PRAGMA_REJECTED', `journal_mode is '${String(journalMode)}', expected WAL`);
  }
  // WAL defaults to NORMAL, which can lose committed transactions on power loss.
  db.pragma('synchronous = FULL');
  db.pragma('foreign_keys = ON');
  // Schema objects in the file cannot run functions with side effects.
  db.pragma('trusted_schema = OFF');
  if (db.pragma('synchronous', { simple: true }) !== SQLITE_SYNCHRONOUS_FULL) {
    throw new StateDbError('STATE_DB_PRAGMA_REJECTED', 'synchronous = FULL was not applied');
  }
  if (db.pragma('foreign_keys', { simple: true }) !== 1) {
    throw new StateDbError('STATE_DB_PRAGMA_REJECTED', 'foreign_keys = ON was not applied');
  }
}

function toStateDbError(err: unknown, dbPath: string): StateDbError {
  if (err instanceof StateDbError) return err;
  const sqliteCode = typeof (err as { code?: unknown })?.code === 'string' ? (err as { code: string }).code : '';
  const detail = `${dbPath}: ${(err as Error)?.message ?? String(err)}`;
  if (sqliteCode === 'SQLITE_NOTADB') {
    return new StateDbError('STATE_DB_NOT_A_DATABASE', `not a SQLite database: ${detail}`, { cause: err });
  }
  if (sqliteCode.startsWith('SQLITE_CORRUPT')) {
    return new StateDbError('STATE_DB_CORRUPT', `state database is corrupt: ${detail}`, { cause: err });
  }
  if (sqliteCode.startsWith('SQLITE_BUSY') || sqliteCode.startsWith('SQLITE_LOCKED')) {
    return new StateDbError('STATE_DB_LOCKED', `state database is locked by another process: ${detail}`, { cause: err });
  }
  return new StateDbError('STATE_DB_OPEN_FAILED', `cannot open state database ${detail}`, { cause: err });
}
