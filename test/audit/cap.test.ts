// The cap at the log level: unsynced bytes are counted (queued appends included), normal
// appends are refused with AUDIT_FULL at cap − reserve, the reserve takes denials up to the cap,
// safety records and checkpoints are never refused; the synced watermark frees space, pruning
// removes only synced records past the retention, and the count survives a reopen.
import { afterEach, describe, expect, it } from 'vitest';
import { type AppendArea, type AuditLogOptions, RECORD_OVERHEAD_BYTES, SqliteAuditLog } from '../../src/audit/log.js';
import { verifyInclusion, leafHash } from '../../src/audit/merkle.js';
import { TILE_WIDTH } from '../../src/audit/tree-store.js';
import { verifyStoredLog } from '../../src/audit/verify.js';
import { body, deviceKey, naiveRoot, T0, tempStateDir } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

/** 100-byte bodies: a `command` record counts 100 + 7 + 80 bytes. */
const RECORD = 100 + 'command'.length + RECORD_OVERHEAD_BYTES;
const payload = (i: number) => body(String(i).padStart(100, '.'));

function setup(extra: Partial<AuditLogOptions> = {}) {
  const t = tempStateDir();
  cleanups.push(t.remove);
  const clock = { ms: T0 };
  let db = t.open();
  const options: AuditLogOptions = { now: () => clock.ms, cap: { capBytes: 10_000, reserveBytes: 2_000 }, ...extra };
  let log = new SqliteAuditLog(db, options);
  cleanups.unshift(() => db.close());
  return {
    clock,
    get db() {
      return db;
    },
    get log() {
      return log;
    },
    reopen() {
      db.close();
      db = t.open();
      log = new SqliteAuditLog(db, options);
    },
  };
}

async function appendUntilRefused(log: SqliteAuditLog, area: AppendArea, limit = 1000): Promise<{ accepted: number; refusal: unknown }> {
  for (let i = 0; i < limit; i++) {
    const before = log.capacity();
    try {
      await log.append('command', payload(i), { area });
    } catch (err) {
      return { accepted: i, refusal: err };
    }
    expect(area === 'normal' ? before.full : before.reserveExhausted).toBe(false);
  }
  return { accepted: limit, refusal: undefined };
}

describe('the audit cap', () => {
  it('refuses normal appends at cap − reserve, reserve appends at the cap, and never safety appends', async () => {
    const { log } = setup();
    expect(log.capacity()).toMatchObject({ full: false, unsyncedBytes: 0, capBytes: 10_000, reserveBytes: 2_000 });

    const normal = await appendUntilRefused(log, 'normal');
    expect(normal.refusal).toMatchObject({ code: 'AUDIT_FULL' });
    expect(normal.accepted).toBe(Math.ceil(8_000 / RECORD));
    expect(log.capacity()).toMatchObject({ full: true, reserveExhausted: false, unsyncedBytes: normal.accepted * RECORD, unsyncedRecords: normal.accepted });

    const reserve = await appendUntilRefused(log, 'reserve');
    expect(reserve.refusal).toMatchObject({ code: 'AUDIT_FULL' });
    expect((normal.accepted + reserve.accepted) * RECORD).toBeGreaterThanOrEqual(10_000);
    expect((normal.accepted + reserve.accepted - 1) * RECORD).toBeLessThan(10_000);
    expect(log.capacity().reserveExhausted).toBe(true);

    for (let i = 0; i < 5; i++) await log.append('command', payload(i), { area: 'safety' });
    expect(log.capacity().unsyncedBytes).toBe((normal.accepted + reserve.accepted + 5) * RECORD);
    await expect(log.append('command', payload(0), { area: 'bogus' as AppendArea })).rejects.toMatchObject({ code: 'AUDIT_BAD_AREA' });
    // Nothing refused was written: the chain is whole and has exactly the accepted records.
    expect(log.head().seq).toBe(normal.accepted + reserve.accepted + 5);
    expect(verifyStoredLog(log.reader, { keys: [] }).failure).toBeUndefined();
  });

  it('counts appends queued in the same turn, so a burst cannot run past the limit', async () => {
    const { log } = setup();
    const results = await Promise.allSettled(Array.from({ length: 100 }, (_, i) => log.append('command', payload(i))));
    const accepted = results.filter((r) => r.status === 'fulfilled').length;
    expect(accepted).toBe(Math.ceil(8_000 / RECORD));
    expect(results.slice(accepted).every((r) => r.status === 'rejected' && (r.reason as { code: string }).code === 'AUDIT_FULL')).toBe(true);
  });

  it('frees space when the synced watermark moves, and remembers the count across a reopen', async () => {
    const s = setup();
    const { accepted } = await appendUntilRefused(s.log, 'normal');
    s.reopen();
    expect(s.log.capacity()).toMatchObject({ full: true, unsyncedBytes: accepted * RECORD });
    await expect(s.log.markSynced(accepted + 1)).rejects.toMatchObject({ code: 'AUDIT_SYNC_AHEAD' });

    const after = await s.log.markSynced(10);
    expect(after).toMatchObject({ full: false, syncedSeq: 10, unsyncedBytes: (accepted - 10) * RECORD, unsyncedRecords: accepted - 10 });
    await expect(s.log.markSynced(9)).rejects.toMatchObject({ code: 'AUDIT_SYNC_BACKWARDS' });
    // Space for 10 more records.
    const more = await appendUntilRefused(s.log, 'normal');
    expect(more.accepted).toBe(10);
    s.reopen();
    expect(s.log.capacity()).toMatchObject({ syncedSeq: 10, unsyncedBytes: accepted * RECORD });
  });

  it('never refuses a checkpoint for space', async () => {
    const key = deviceKey();
    const { log } = setup({ checkpoints: { key, device: 'arm-1', everyRecords: 1000 } });
    const { accepted } = await appendUntilRefused(log, 'reserve');
    expect((await log.checkpoint())?.seq).toBe(accepted + 1);
    expect(verifyStoredLog(log.reader, { keys: [key.publicKey] })).toMatchObject({ checkpoints: 1 });
  });
});

describe('pruning', () => {
  it('deletes synced records past the retention up to a tile boundary, and keeps the log verifiable and provable', async () => {
    const key = deviceKey();
    // Every record (checkpoints too) one second after the one before: seq s is at T0 + s seconds.
    let ms = T0;
    const s = setup({ now: () => (ms += 1000), cap: undefined, retentionMs: 60_000, checkpoints: { key, device: 'arm-1', everyRecords: 100 } });
    for (let i = 0; i < 10; i++) await Promise.all(Array.from({ length: 100 }, (_, j) => s.log.append('command', payload(i * 100 + j))));
    const total = s.log.head().seq;
    const hashes = [...s.log.reader.iterate(1)].map((r) => r.hash);
    await s.log.checkpoint();

    // Nothing synced: nothing pruned, however old.
    expect(await s.log.prune(T0 + 10 ** 9)).toBe(0);
    await s.log.markSynced(700);
    // Retention keeps the last minute: records up to 700 are synced, but only those older than the cutoff go.
    const now = T0 + 600 * 1000;
    const deleted = await s.log.prune(now);
    const cutoff = now - 60_000;
    const prunedSeq = s.log.reader.meta().prunedSeq;
    expect(prunedSeq % TILE_WIDTH).toBe(0);
    expect(deleted).toBe(prunedSeq);
    expect(prunedSeq).toBe(512);
    expect(s.log.reader.record(prunedSeq + 1)!.timeMs).toBeLessThan(cutoff);
    expect(s.log.reader.record(prunedSeq)).toBeUndefined();
    // Later: everything synced and old, but never past the watermark.
    expect(await s.log.prune(T0 + 10 ** 9)).toBe(0);
    expect(s.log.reader.meta().prunedSeq).toBe(512);
    expect(() => s.db.prepare('DELETE FROM audit WHERE seq = 701').run()).toThrow(/only after upstream sync/);

    // The rest still verifies from the pruned point, checkpoints included, and proves against the full tree.
    const report = verifyStoredLog(s.log.reader, { keys: [key.publicKey] });
    expect(report.failure).toBeUndefined();
    expect(report).toMatchObject({ firstSeq: 513, records: s.log.head().seq - 512 });
    const root = naiveRoot(hashes);
    verifyInclusion(600 - 1, total, leafHash(hashes[599]!), s.log.reader.inclusionProof(600, total), root);
    expect(s.log.reader.rootAt(total)).toEqual(root);
    expect(() => s.log.reader.inclusionProof(500, total)).toThrow(/pruned or missing/);

    // Appends and reopen carry on.
    s.reopen();
    await s.log.append('command', payload(1));
    expect(verifyStoredLog(s.log.reader, { keys: [key.publicKey] }).failure).toBeUndefined();
  });
});
