import { openStateDb } from '../../src/store/state-db.js';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { GENESIS_HASH, recordHash, verifyChain } from '../../src/audit/chain.js';
import { AuditError, SqliteAuditLog } from '../../src/audit/log.js';

function tempDb() {
  const path = join(mkdtempSync(join(tmpdir(), 'ztedge-audit-')), 'state.db');
  return { path, open: () => openStateDb(path) };
}

const body = (s: string) => new TextEncoder().encode(s);

describe('audit hash chain', () => {
  it('binds every field into the hash', () => {
    const h = recordHash(GENESIS_HASH, 1, 1000, 'command', body('x'));
    expect(recordHash(GENESIS_HASH, 2, 1000, 'command', body('x'))).not.toEqual(h);
    expect(recordHash(GENESIS_HASH, 1, 1001, 'command', body('x'))).not.toEqual(h);
    expect(recordHash(GENESIS_HASH, 1, 1000, 'decision', body('x'))).not.toEqual(h);
    expect(recordHash(GENESIS_HASH, 1, 1000, 'command', body('y'))).not.toEqual(h);
    expect(recordHash(h, 1, 1000, 'command', body('x'))).not.toEqual(h);
  });
});

describe('SqliteAuditLog', () => {
  it('group-commits concurrent appends into a gap-free, verifiable chain that survives reopen', async () => {
    const t = tempDb();
    let db = t.open();
    let clock = 1_700_000_000_000;
    let log = new SqliteAuditLog(db, { now: () => clock++ });
    const refs = await Promise.all(Array.from({ length: 50 }, (_, i) => log.append('command', body(`c${i}`))));
    expect(refs.map((r) => r.seq)).toEqual(Array.from({ length: 50 }, (_, i) => i + 1));
    expect(log.verify()).toBeUndefined();
    db.close();

    db = t.open();
    log = new SqliteAuditLog(db, { now: () => clock++ });
    expect(log.head().seq).toBe(50);
    const next = await log.append('decision', body('after restart'));
    expect(next.seq).toBe(51);
    expect(verifyChain(log.read(1, 100))).toBeUndefined();
    db.close();
  });

  it('detects an edited record, and the table refuses updates and unsynced deletes', async () => {
    const t = tempDb();
    const db = t.open();
    const log = new SqliteAuditLog(db, { now: () => 5 });
    for (let i = 0; i < 5; i++) await log.append('command', body(`r${i}`));
    expect(() => db.prepare("UPDATE audit SET body = x'00' WHERE seq = 3").run()).toThrow(/append-only/);
    expect(() => db.prepare('DELETE FROM audit WHERE seq = 5').run()).toThrow(/only after upstream sync/);
    // Simulate an attacker with raw file access who bypasses the triggers.
    db.exec('DROP TRIGGER audit_no_update');
    db.prepare("UPDATE audit SET body = x'00' WHERE seq = 3").run();
    expect(log.verify()).toEqual({ code: 'AUDIT_HASH_MISMATCH', seq: 3 });
    db.close();
  });

  it('rejects bad kinds and oversize bodies without writing', async () => {
    const db = tempDb().open();
    const log = new SqliteAuditLog(db, { now: () => 1, maxBodyBytes: 8 });
    await expect(log.append('command', new Uint8Array(9))).rejects.toMatchObject({ code: 'AUDIT_BODY_TOO_LARGE' });
    await expect(log.append('nonsense' as never, body('x'))).rejects.toBeInstanceOf(AuditError);
    expect(log.head().seq).toBe(0);
    db.close();
  });

  it('rejects every append of a batch whose commit fails, and keeps the head consistent', async () => {
    const db = tempDb().open();
    const log = new SqliteAuditLog(db, { now: () => 1 });
    await log.append('system', body('ok'));
    db.exec("CREATE TRIGGER fail_insert BEFORE INSERT ON audit WHEN NEW.seq = 3 BEGIN SELECT RAISE(ABORT, 'disk full'); END");
    const results = await Promise.allSettled([log.append('command', body('a')), log.append('command', body('b'))]);
    expect(results.map((r) => r.status)).toEqual(['rejected', 'rejected']);
    expect((results[0] as PromiseRejectedResult).reason).toMatchObject({ code: 'AUDIT_WRITE_FAILED' });
    expect(log.head().seq).toBe(1);
    db.exec('DROP TRIGGER fail_insert');
    expect((await log.append('command', body('c'))).seq).toBe(2);
    expect(log.verify()).toBeUndefined();
    db.close();
  });
});
