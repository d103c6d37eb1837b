// Running the real `ztedge` command (a child process through tsx) and building logs to run it on.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { openStateDb } from '../../src/store/state-db.js';
import { GENESIS_HASH, recordHash, type AuditKind } from '../../src/audit/chain.js';
import { SqliteAuditLog } from '../../src/audit/log.js';
import type { PrivateKey } from '../../src/crypto/keys.js';
import { encodeCbor } from '../../src/envelope/cbor.js';
import { T0 } from './support.js';

const REPO = new URL('../..', import.meta.url).pathname;
const BIN = path.join(REPO, 'src/cli/bin.mjs');

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export function ztedge(args: string[], opts: { timeoutMs?: number } = {}): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [BIN, ...args], { cwd: REPO, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const timer = setTimeout(() => child.kill('SIGKILL'), opts.timeoutMs ?? 30_000);
    child.on('error', reject);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** Appends `count` command records (checkpoint every `every`) to the log in `dir`, then closes it (final checkpoint). */
export async function writeLog(dir: string, key: PrivateKey, count: number, opts: { every?: number; device?: string; tag?: string } = {}): Promise<void> {
  const db = openStateDb(path.join(dir, 'state.db'));
  let clock = T0;
  const log = new SqliteAuditLog(db, {
    now: () => (clock += 7),
    checkpoints: { key, device: opts.device ?? 'arm-1', origin: `ztedge/plant-1/${opts.device ?? 'arm-1'}`, everyRecords: opts.every ?? 20 },
  });
  for (let i = 0; i < count; i += 10) {
    await Promise.all(Array.from({ length: Math.min(10, count - i) }, (_, j) => log.append('command', encodeCbor({ act: 'move', n: i + j, tag: opts.tag ?? 'a' }))));
  }
  await log.close();
  db.close();
}

/** The state database with the triggers a forger would drop first. */
export function openAsForger(dir: string) {
  const db = openStateDb(path.join(dir, 'state.db'));
  db.exec('DROP TRIGGER IF EXISTS audit_no_update; DROP TRIGGER IF EXISTS audit_prune_synced_only; DROP TRIGGER IF EXISTS audit_tree_no_update');
  return db;
}

type Row = { seq: number; time_ms: number; kind: AuditKind; body: Buffer; prev_hash: Buffer; hash: Buffer };

/** Recomputes prev_hash and hash of every record from `fromSeq` on, as a forger would after an edit. */
export function rechain(db: ReturnType<typeof openStateDb>, fromSeq: number): void {
  const rows = db.prepare('SELECT * FROM audit WHERE seq >= ? ORDER BY seq').all(fromSeq) as Row[];
  let prev: Uint8Array = fromSeq === 1 ? GENESIS_HASH : (db.prepare('SELECT hash FROM audit WHERE seq = ?').get(fromSeq - 1) as { hash: Buffer }).hash;
  const update = db.prepare('UPDATE audit SET prev_hash = ?, hash = ? WHERE seq = ?');
  db.transaction(() => {
    for (const r of rows) {
      const hash = recordHash(prev, r.seq, r.time_ms, r.kind, r.body);
      update.run(prev, hash, r.seq);
      prev = hash;
    }
  })();
}

export function copyStateDir(from: string, to: string): void {
  fs.mkdirSync(to, { recursive: true, mode: 0o700 });
  for (const name of fs.readdirSync(from)) fs.copyFileSync(path.join(from, name), path.join(to, name));
}
