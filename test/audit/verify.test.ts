// The streaming verifier on its own: resuming from where an earlier verifier stopped (as a
// collector does batch after batch) gives the same verdicts as one pass, links between
// checkpoints included.
import { describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/store/group-commit.js';
import { openStateDb } from '../../src/store/state-db.js';
import { signCheckpoint, readUnverifiedCheckpoint } from '../../src/audit/checkpoint.js';
import { recordHash, type AuditRecord } from '../../src/audit/chain.js';
import { SqliteAuditLog } from '../../src/audit/log.js';
import { LogVerifier } from '../../src/audit/verify.js';
import { encodeCbor } from '../../src/envelope/cbor.js';
import { deviceKey, T0 } from './support.js';

async function records(): Promise<{ all: AuditRecord[]; key: ReturnType<typeof deviceKey> }> {
  const db = openStateDb(':memory:');
  const key = deviceKey();
  const log = new SqliteAuditLog(db, { now: () => T0, commits: new GroupCommit(db), checkpoints: { key, device: 'arm-1', everyRecords: 15 } });
  for (let i = 0; i < 100; i += 10) await Promise.all(Array.from({ length: 10 }, (_, j) => log.append('command', encodeCbor({ n: i + j }))));
  await log.close();
  const all = [...log.reader.iterate(1)];
  db.close();
  return { all, key };
}

function verifyInTwo(all: AuditRecord[], keys: readonly ReturnType<typeof deviceKey>['publicKey'][], split: number) {
  const first = new LogVerifier({ keys });
  for (const r of all.slice(0, split)) {
    const failure = first.push(r);
    if (failure !== undefined) return failure;
  }
  const second = new LogVerifier({ keys, start: first.resumePoint() });
  for (const r of all.slice(split)) {
    const failure = second.push(r);
    if (failure !== undefined) return failure;
  }
  return second.report();
}

describe('LogVerifier resumed across batches', () => {
  it('accepts the log split anywhere, and carries the checkpoint link across the split', async () => {
    const { all, key } = await records();
    for (const split of [1, 15, 16, 17, 50, all.length - 1]) {
      const result = verifyInTwo(all, [key.publicKey], split);
      expect(result).not.toHaveProperty('code');
      expect(result).toMatchObject({ firstSeq: split + 1, lastSeq: all.length });
    }
  });

  it('finds a checkpoint whose link skips the one before the split', async () => {
    const { all, key } = await records();
    // Re-sign checkpoint 32 (a device key holder rewriting history) with a link to the empty tree.
    const at = all.findIndex((r) => r.seq === 32);
    expect(all[at]!.kind).toBe('checkpoint');
    const cp = readUnverifiedCheckpoint(all[at]!.body);
    const forged = signCheckpoint({ ...cp, prevSize: 0, prevRoot: new Uint8Array(32) }, key);
    const edited = all.slice();
    let prev = all[at - 1]!.hash;
    for (let i = at; i < edited.length; i++) {
      const r = i === at ? { ...all[i]!, body: forged } : all[i]!;
      const hash = recordHash(prev, r.seq, r.timeMs, r.kind, r.body);
      edited[i] = { ...r, prevHash: prev, hash };
      prev = hash;
    }
    expect(verifyInTwo(edited, [key.publicKey], 20)).toMatchObject({ code: 'AUDIT_CHECKPOINT_LINK', seq: 32 });
    expect(verifyInTwo(edited, [key.publicKey], 5)).toMatchObject({ code: 'AUDIT_CHECKPOINT_LINK', seq: 32 });
  });

  it('checks the first checkpoint against the empty tree when the first batch had none', async () => {
    const { all, key } = await records();
    const forged = signCheckpoint({ ...readUnverifiedCheckpoint(all[15]!.body), prevSize: 3 }, key);
    const edited = all.slice(0, 16).map((r, i) => (i === 15 ? { ...r, body: forged, hash: recordHash(r.prevHash, r.seq, r.timeMs, r.kind, forged) } : r));
    expect(verifyInTwo(edited, [key.publicKey], 5)).toMatchObject({ code: 'AUDIT_CHECKPOINT_LINK', seq: 16 });
  });
});
