// One process at a time owns a state directory: the running agent, or an operator command that
// changes it while the agent is stopped (`ztedge bundle rollback`). Two owners would interleave
// audit records, bundle state and broker sessions.
//
// The lock is an exclusive SQLite lock held on `<stateDir>/lock` (locking_mode EXCLUSIVE: taken
// by the first write, kept until the connection closes). It is an OS file lock, so the kernel
// drops it when its holder dies, kill -9 included: there is no stale lock to clean up. SQLite
// also keeps connections of one process apart, so a second owner in the same process is refused
// as well. Who holds it is written beside it (`lock.holder`) for the refusal message only. Both
// files exist only while the lock is held.
import fs from 'node:fs';
import path from 'node:path';
import Database from 'better-sqlite3';
import type { Database as SqliteDatabase } from 'better-sqlite3';
import { ZtedgeError } from '../errors.js';

export type StateLockErrorCode = 'STATE_DIR_LOCKED' | 'STATE_DIR_LOCK_FAILED';

export class StateLockError extends ZtedgeError<StateLockErrorCode> {}

export const LOCK_FILE = 'lock';
const HOLDER_FILE = 'lock.holder';
const MAX_HOLDER_BYTES = 1024;

export class StateDirLock {
  private constructor(
    private db: SqliteDatabase | null,
    readonly dir: string,
  ) {}

  /**
   * Takes the lock on `dir` (which must exist) for `holder` (e.g. "ztedge run"), or throws
   * STATE_DIR_LOCKED at once, without waiting, when another owner has it.
   */
  static acquire(dir: string, holder: string): StateDirLock {
    const file = path.join(dir, LOCK_FILE);
    let db: SqliteDatabase;
    try {
      db = new Database(file, { timeout: 0 });
      fs.chmodSync(file, 0o600);
    } catch (err) {
      // The built program's SQLite addon refused or unloadable (NATIVE_ADDON_*): say that, not "lock".
      if (err instanceof ZtedgeError) throw err;
      throw new StateLockError('STATE_DIR_LOCK_FAILED', `cannot open the lock of state directory ${dir}: ${(err as Error).message}`, { cause: err });
    }
    try {
      db.pragma('locking_mode = EXCLUSIVE');
      db.pragma('journal_mode = MEMORY');
      db.exec('BEGIN EXCLUSIVE; CREATE TABLE IF NOT EXISTS lock (id INTEGER PRIMARY KEY); COMMIT');
    } catch (err) {
      db.close();
      if ((err as { code?: unknown }).code === 'SQLITE_BUSY') {
        const by = readHolder(dir);
        throw new StateLockError(
          'STATE_DIR_LOCKED',
          `state directory ${dir} is in use by another process${by === undefined ? '' : ` (${by})`}`,
        );
      }
      throw new StateLockError('STATE_DIR_LOCK_FAILED', `cannot lock state directory ${dir}: ${(err as Error).message}`, { cause: err });
    }
    try {
      fs.writeFileSync(path.join(dir, HOLDER_FILE), `pid ${process.pid}, ${holder}, since ${new Date().toISOString()}\n`, { mode: 0o600 });
    } catch {
      // Only the refusal message of another owner would miss it.
    }
    return new StateDirLock(db, dir);
  }

  /**
   * Lets go, removing the lock files first: a stopped agent's directory holds only its state, and
   * a command that failed on it leaves nothing behind. (Whoever opened the file before it was
   * removed finds it still locked and gives up at once; it never waits on the old file.)
   */
  release(): void {
    if (this.db === null) return;
    try {
      fs.rmSync(path.join(this.dir, HOLDER_FILE), { force: true });
      fs.rmSync(path.join(this.dir, LOCK_FILE), { force: true });
    } finally {
      this.db.close();
      this.db = null;
    }
  }
}

function readHolder(dir: string): string | undefined {
  try {
    const file = path.join(dir, HOLDER_FILE);
    if (fs.statSync(file).size > MAX_HOLDER_BYTES) return undefined;
    return fs.readFileSync(file, 'utf8').trim().replace(/[^\x20-\x7e]/g, '?') || undefined;
  } catch {
    return undefined;
  }
}
