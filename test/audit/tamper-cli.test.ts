// Tampering with an agent's audit log, each kind detected by the real `ztedge audit verify`
// (a child process) with the first bad seq named and its own exit code; the commands reading a
// log that is being written, without blocking the writer.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { decodeCheckpointBody, readUnverifiedCheckpoint, signCheckpoint } from '../../src/audit/checkpoint.js';
import { SqliteAuditLog } from '../../src/audit/log.js';
import type { PrivateKey } from '../../src/crypto/keys.js';
import { encodeCbor } from '../../src/envelope/cbor.js';
import { waitUntil } from '../support/wait.js';
import { copyStateDir, openAsForger, rechain, writeLog, ztedge } from './cli-support.js';
import { deviceKey, T0, tempStateDir, writeKeyFiles } from './support.js';

let work: string;
let key: PrivateKey;
let other: PrivateKey;
let pub: string;
/** A pristine log: 300 records with a checkpoint every 20 (at seq 21, 42, …, 315). */
let pristine: string;
let removeWork: () => void;

beforeAll(async () => {
  const t = tempStateDir('ztedge-tamper-');
  work = t.dir;
  removeWork = t.remove;
  key = deviceKey();
  other = deviceKey();
  pub = writeKeyFiles(work, 'device', key).publicPath;
  pristine = path.join(work, 'pristine');
  fs.mkdirSync(pristine);
  await writeLog(pristine, key, 300);
});
afterAll(() => removeWork());

let n = 0;
/** A copy of the pristine log, changed by `tamper` with raw database access. */
function tampered(tamper: (db: ReturnType<typeof openStateDb>) => void): string {
  const dir = path.join(work, `case-${n++}`);
  copyStateDir(pristine, dir);
  const db = openAsForger(dir);
  try {
    tamper(db);
  } finally {
    db.close();
  }
  return dir;
}

const verify = (dir: string, ...extra: string[]) => ztedge(['audit', 'verify', '--state-dir', dir, '--device-key', pub, ...extra]);

function expectFailure(result: { code: number | null; stderr: string }, code: string, exit: number, seq: number): void {
  expect(result.stderr).toContain(`${code} at seq ${seq}:`);
  expect(result.code).toBe(exit);
}

// Each case starts the CLI (a tsx child) once or a few times: seconds each on a loaded machine.
describe('ztedge audit verify on a tampered log', { timeout: 180_000 }, () => {
  it('passes the untouched log', async () => {
    const result = await verify(pristine);
    expect(result.stderr).toBe('');
    expect(result.code).toBe(0);
    expect(result.stdout).toMatch(/^audit log intact: records 1…315 \(315\), 15 checkpoints verified/);
    expect(result.stdout).toContain('device keys pinned with --device-key');
  });

  it('an edited record: exit 10 at its seq', async () => {
    const dir = tampered((db) => db.prepare('UPDATE audit SET body = ? WHERE seq = 57').run(encodeCbor({ act: 'estop', n: 55, tag: 'a' })));
    expectFailure(await verify(dir), 'AUDIT_HASH_MISMATCH', 10, 57);
  });

  it('reordered records: exit 11 at the first moved seq', async () => {
    const dir = tampered((db) => {
      const row = db.prepare('SELECT time_ms, kind, body, prev_hash, hash FROM audit WHERE seq = ?');
      const set = db.prepare('UPDATE audit SET time_ms = ?, kind = ?, body = ?, prev_hash = ?, hash = ? WHERE seq = ?');
      const a = row.get(100) as Record<string, unknown>;
      const b = row.get(101) as Record<string, unknown>;
      set.run(b.time_ms, b.kind, b.body, b.prev_hash, b.hash, 100);
      set.run(a.time_ms, a.kind, a.body, a.prev_hash, a.hash, 101);
    });
    expectFailure(await verify(dir), 'AUDIT_PREV_MISMATCH', 11, 100);
  });

  it('a deleted record: exit 12 at its seq', async () => {
    const dir = tampered((db) => db.prepare('DELETE FROM audit WHERE seq = 80').run());
    expectFailure(await verify(dir), 'AUDIT_SEQ_GAP', 12, 80);
  });

  it('a log cut off at its end: exit 13 at the first missing seq', async () => {
    const dir = tampered((db) => db.prepare('DELETE FROM audit WHERE seq > 150').run());
    expectFailure(await verify(dir), 'AUDIT_TRUNCATED', 13, 151);
  });

  it('a forged checkpoint signature: exit 14 at the checkpoint', async () => {
    const dir = tampered((db) => {
      const { body } = db.prepare('SELECT body FROM audit WHERE seq = 63').get() as { body: Buffer };
      const { cose, note } = decodeCheckpointBody(body);
      cose[cose.length - 10]! ^= 0x01; // the signature is the COSE_Sign1's last item
      db.prepare('UPDATE audit SET body = ? WHERE seq = 63').run(encodeCbor({ cose, note }));
      rechain(db, 63);
    });
    expectFailure(await verify(dir), 'AUDIT_CHECKPOINT_SIGNATURE', 14, 63);
  });

  it('a checkpoint re-signed with another key: exit 15, also when the forger records that key in the database', async () => {
    const resign = (db: ReturnType<typeof openStateDb>) => {
      const { body } = db.prepare('SELECT body FROM audit WHERE seq = 63').get() as { body: Buffer };
      db.prepare('UPDATE audit SET body = ? WHERE seq = 63').run(signCheckpoint(readUnverifiedCheckpoint(body), other));
      rechain(db, 63);
    };
    const dir = tampered(resign);
    expectFailure(await verify(dir), 'AUDIT_CHECKPOINT_KEY', 15, 63);
    // Without a pinned key, the keys recorded in the database decide.
    expectFailure(await ztedge(['audit', 'verify', '--state-dir', dir]), 'AUDIT_CHECKPOINT_KEY', 15, 63);
    const bolder = tampered((db) => {
      resign(db);
      db.prepare('INSERT INTO audit_keys (kid, key_type, public_key, since_seq) VALUES (?, ?, ?, 63)').run(other.publicKey.kid, 'ed25519', other.publicKey.raw);
    });
    expectFailure(await verify(bolder), 'AUDIT_CHECKPOINT_KEY', 15, 63);
  });

  it('records rewritten and re-chained under an old checkpoint: exit 16 at the checkpoint', async () => {
    const dir = tampered((db) => {
      db.prepare('UPDATE audit SET body = ? WHERE seq = 30').run(encodeCbor({ act: 'estop', n: 28, tag: 'a' }));
      rechain(db, 30);
    });
    expectFailure(await verify(dir), 'AUDIT_CHECKPOINT_ROOT', 16, 42);
  });

  it('a checkpoint moved along the log: exit 18 where it now stands', async () => {
    const dir = tampered((db) => {
      const row = db.prepare('SELECT time_ms, kind, body FROM audit WHERE seq = ?');
      const set = db.prepare('UPDATE audit SET time_ms = ?, kind = ?, body = ? WHERE seq = ?');
      const cp = row.get(42) as Record<string, unknown>;
      const next = row.get(43) as Record<string, unknown>;
      set.run(next.time_ms, next.kind, next.body, 42);
      set.run(cp.time_ms, cp.kind, cp.body, 43);
      rechain(db, 42);
    });
    expectFailure(await verify(dir), 'AUDIT_CHECKPOINT_MISPLACED', 18, 43);
  });

  it('a damaged stored tree node: exit 23 at the record that completes it', async () => {
    const dir = tampered((db) => db.prepare('UPDATE audit_tree SET hash = zeroblob(32) WHERE level = 8 AND idx = 0').run());
    expectFailure(await verify(dir), 'AUDIT_TREE_MISMATCH', 23, 256);
  });

  it('a log rolled back to an earlier checkpoint: exit 21 given a later checkpoint note, which a rollback cannot satisfy', async () => {
    const dir = path.join(work, 'rollback');
    fs.mkdirSync(dir);
    await writeLog(dir, key, 100);
    const snapshot = path.join(work, 'rollback-snapshot');
    copyStateDir(dir, snapshot);
    await writeLog(dir, key, 100, { tag: 'later' });
    const note = path.join(work, 'later.note');
    const exported = await ztedge(['audit', 'checkpoint', '--state-dir', dir, '--out', note]);
    expect(exported.code, exported.stderr).toBe(0);
    expect(fs.readFileSync(note, 'utf8')).toMatch(/^ztedge\/plant-1\/arm-1\n\d+\n[A-Za-z0-9+/]{43}=\n\n\u2014 ztedge\/plant-1\/arm-1 /);
    expect((await verify(dir, '--checkpoint', note)).code).toBe(0);
    copyStateDir(snapshot, dir); // the rollback: the older database put back in place
    // On its own the older log is intact (nothing in it can tell)…
    expect((await verify(dir)).code).toBe(0);
    // …but it does not contain the checkpoint the verifier saw.
    const snapshotLast = 105; // 100 records + 5 checkpoints
    expectFailure(await verify(dir, '--checkpoint', note), 'AUDIT_ROLLED_BACK', 21, snapshotLast + 1);
    // A truncation that also rewrote the tree head is a rollback too.
  });

  it('another history signed with the device key: exit 22 at the size where they part', async () => {
    const forked = path.join(work, 'fork');
    fs.mkdirSync(forked);
    await writeLog(forked, key, 300, { tag: 'other history' });
    const note = path.join(work, 'fork.note');
    expect((await ztedge(['audit', 'checkpoint', '--state-dir', forked, '--out', note])).code).toBe(0);
    expectFailure(await verify(pristine, '--checkpoint', note), 'AUDIT_FORK', 22, 314);
  });

  it('refuses unknown flags and a missing state directory with their own codes', async () => {
    const unknown = await ztedge(['audit', 'verify', '--state-dir', pristine, '--fast']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain('unknown option --fast');
    const missing = await ztedge(['audit', 'verify', '--state-dir', path.join(work, 'nowhere')]);
    expect(missing.code).toBe(3);
    expect(missing.stderr).toMatch(/^AUDIT_DB_UNREADABLE: /);
    const help = await ztedge(['audit', 'verify', '--help']);
    expect(help.code).toBe(0);
    expect(help.stdout).toContain('14  checkpoint signature forged');
  });
});

describe('reading a log while it is written', { timeout: 180_000 }, () => {
  it('verifies, tails and exports without blocking the writer', async () => {
    const t = tempStateDir('ztedge-live-');
    const db = openStateDb(t.dbPath);
    let clock = T0;
    const log = new SqliteAuditLog(db, { now: () => clock++, checkpoints: { key, device: 'arm-1', origin: 'ztedge/plant-1/arm-1', everyRecords: 50 } });
    await log.append('system', encodeCbor({ event: 'start' }));
    let stop = false;
    let failures = 0;
    const writer = (async () => {
      let i = 0;
      while (!stop) {
        const batch = Array.from({ length: 20 }, () => log.append('command', encodeCbor({ act: 'move', n: i++ })).catch(() => void failures++));
        await Promise.all(batch);
      }
    })();
    try {
      const before = log.head().seq;
      const [verified, tailed, exported] = await Promise.all([
        verify(t.dir),
        ztedge(['audit', 'tail', '--state-dir', t.dir, '--lines', '3']),
        ztedge(['audit', 'export', '--state-dir', t.dir, '--from', '1', '--format', 'jsonl']),
      ]);
      expect(verified.code, verified.stderr).toBe(0);
      expect(tailed.code).toBe(0);
      expect(tailed.stdout.trim().split('\n')).toHaveLength(3);
      expect(exported.code).toBe(0);
      // The writer went on meanwhile.
      expect(log.head().seq).toBeGreaterThan(before + 100);
    } finally {
      stop = true;
      await writer;
      await log.close();
      db.close();
    }
    expect(failures).toBe(0);

    // --follow prints what is appended after it started.
    const db2 = openStateDb(t.dbPath);
    const log2 = new SqliteAuditLog(db2, { now: () => clock++ });
    const child = spawn(process.execPath, [new URL('../../src/cli/bin.mjs', import.meta.url).pathname, 'audit', 'tail', '--state-dir', t.dir, '--lines', '1', '--follow'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.setEncoding('utf8').on('data', (c: string) => (out += c));
    const closed = new Promise<number | null>((resolve) => child.on('close', resolve));
    try {
      await waitUntil(() => out.split('\n').length >= 2, 'the first tail line', 20_000);
      await log2.append('decision', encodeCbor({ followed: 'one' }));
      await log2.append('decision', encodeCbor({ followed: 'two' }));
      await waitUntil(() => out.includes('"two"'), 'followed records', 20_000);
      expect(out).toMatch(/decision\s+\{followed: "one"\}\n.*decision\s+\{followed: "two"\}/);
    } finally {
      child.kill('SIGTERM');
      expect(await closed).toBe(0);
      db2.close();
      t.remove();
    }
  });
});
