// The agent's state directory: one notion of it for the agent and for every command that works on
// it. It is the configuration's `stateDir`, holding
//
//   state.db       the SQLite state database (audit log, replay guard, trusted clock, ...)
//   bundles/       the bundle store (active and last-known-good bundles, revision floor)
//   lock           while an owner (the agent, or a command) holds it (store/state-lock.ts)
//
// A command pointed anywhere else — a directory that does not exist, or the bundle store inside
// a state directory — is refused before it creates or changes anything there.
import fs from 'node:fs';
import path from 'node:path';
import { BundleManager, type BundleEvent, bundleEventRecord } from '../bundle/activation.js';
import { BundleStore } from '../bundle/store.js';
import type { TrustOptions, VerifiedBundle } from '../bundle/verify.js';
import { SqliteAuditLog } from '../audit/log.js';
import { encodeCbor } from '../envelope/cbor.js';
import { openStateDb } from '../store/state-db.js';
import { StateDirLock, StateLockError } from '../store/state-lock.js';
import { TrustedClock } from '../store/trusted-clock.js';
import { AgentError } from './errors.js';

export const STATE_DB_FILE = 'state.db';
export const BUNDLE_STORE_DIR = 'bundles';

export function stateDbPath(stateDir: string): string {
  return path.join(stateDir, STATE_DB_FILE);
}

export function bundleStoreDir(stateDir: string): string {
  return path.join(stateDir, BUNDLE_STORE_DIR);
}

/** Refuses (STATE_DIR_INVALID, saying what it is instead) a directory the agent has not made its state directory. */
export function requireAgentStateDir(dir: string): void {
  const refuse = (why: string): never => {
    throw new AgentError('STATE_DIR_INVALID', `${dir} ${why}`);
  };
  let stat: fs.Stats;
  try {
    stat = fs.statSync(dir);
  } catch {
    return refuse('does not exist: give the agent\'s state directory (stateDir in its configuration)');
  }
  if (!stat.isDirectory()) refuse('is not a directory');
  if (fs.existsSync(stateDbPath(dir)) && fs.existsSync(bundleStoreDir(dir))) return;
  const parent = path.dirname(path.resolve(dir));
  const looksLikeBundleStore = ['state.json', 'revision-floor', 'blobs'].some((name) => fs.existsSync(path.join(dir, name)));
  if (looksLikeBundleStore && fs.existsSync(stateDbPath(parent))) {
    refuse(`is the bundle store inside the agent's state directory; give the state directory itself: ${parent}`);
  }
  refuse(`is not an agent state directory (it has no ${STATE_DB_FILE} and ${BUNDLE_STORE_DIR}/): give the agent's stateDir, as in its configuration`);
}

export interface StoppedRollback {
  fromRevision: number | null;
  bundle: VerifiedBundle;
  /** Sequence number of the audit record of the rollback. */
  auditSeq: number;
}

/**
 * Rolls a stopped agent's state directory back to its last-known-good bundle, as the agent would
 * (re-verified at the directory's trusted time), and writes it to the directory's audit log: the
 * request before anything changes, then the outcome (rolled back, or refused and why). Refused
 * while the agent runs (the lock); creates nothing in a directory that is not a state directory.
 */
export async function rollbackStoppedAgent(stateDir: string, trust: TrustOptions, command: string): Promise<StoppedRollback> {
  requireAgentStateDir(stateDir);
  let lock: StateDirLock;
  try {
    lock = StateDirLock.acquire(stateDir, command);
  } catch (err) {
    if (err instanceof StateLockError && err.code === 'STATE_DIR_LOCKED') {
      throw new StateLockError(
        'STATE_DIR_LOCKED',
        `${err.message}. A running agent owns its state directory: stop it first, or send it a signed rollback instruction (ztedge bundle rollback-build, sign, push)`,
      );
    }
    throw err;
  }
  const db = openStateDb(stateDbPath(stateDir));
  try {
    const clock = new TrustedClock(db, Date.now);
    const audit = new SqliteAuditLog(db, { now: () => clock.now() });
    const manager = new BundleManager({ store: new BundleStore(bundleStoreDir(stateDir), { maxBundleBytes: trust.maxBytes }), trust, clock });
    const events: BundleEvent[] = [];
    manager.on((event) => events.push(event));
    const before = manager.start();
    const lkg = manager.status().lkg;
    await audit.append(
      'bundle',
      encodeCbor({ event: 'rollback-requested', by: command, atMs: clock.now(), fromRevision: before?.manifest.revision ?? null, revision: lkg?.revision ?? null }),
    );
    let bundle: VerifiedBundle;
    try {
      bundle = manager.rollback();
    } finally {
      // What the manager did or refused (re-verification), as the agent records it.
      for (const event of events) if (event.kind !== 'loaded') await audit.append('bundle', encodeCbor(bundleEventRecord(event)));
    }
    clock.persist();
    return { fromRevision: before?.manifest.revision ?? null, bundle, auditSeq: audit.head().seq };
  } finally {
    db.close();
    lock.release();
  }
}
