// `ztedge audit export` and `prove` (in process, through main()): an export in either format
// carries proofs that check against the signed newest checkpoint, verifies on its own, and
// refuses edits, dropped records and altered proofs; prove's proof checks with the RFC 9162
// verifier against the checkpoint note it prints.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { verifySignedNote } from '../../src/audit/checkpoint.js';
import { parseExport, verifyExport } from '../../src/audit/export.js';
import { leafHash, verifyInclusion } from '../../src/audit/merkle.js';
import { main } from '../../src/cli/main.js';
import type { PrivateKey } from '../../src/crypto/keys.js';
import { writeLog } from './cli-support.js';
import { deviceKey, tempStateDir, writeKeyFiles } from './support.js';

let dir: string;
let key: PrivateKey;
let pub: string;
let remove: () => void;

beforeAll(async () => {
  const t = tempStateDir('ztedge-export-');
  dir = t.dir;
  remove = t.remove;
  key = deviceKey('p256');
  pub = writeKeyFiles(dir, 'device', key).publicPath;
  await writeLog(dir, key, 120, { every: 25 });
});
afterAll(() => remove());

async function ztedge(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, { stdout: (t) => void (stdout += `${t}\n`), stderr: (t) => void (stderr += `${t}\n`), readStdin: async () => Buffer.alloc(0) });
  return { code, stdout, stderr };
}

describe('audit export', () => {
  it.each(['jsonl', 'cbor'] as const)('exports a range with proofs that verify on their own (%s)', async (format) => {
    const out = path.join(dir, `range.${format}`);
    const exported = await ztedge('audit', 'export', '--state-dir', dir, '--from', '30', '--to', '90', '--format', format, '--out', out);
    expect(exported.code, exported.stderr).toBe(0);
    const parsed = parseExport(fs.readFileSync(out));
    expect(parsed.records.map((r) => r.seq)).toEqual(Array.from({ length: 61 }, (_, i) => 30 + i));
    expect(parsed.header.anchor).toMatchObject({ seq: 125, size: 124 });
    expect(parsed.records.filter((r) => r.kind === 'checkpoint').map((r) => r.seq)).toEqual([52, 78]);
    expect(parsed.records.every((r) => r.proof !== null)).toBe(true);
    expect(verifyExport(parsed, [key.publicKey]).failure).toBeUndefined();

    const verified = await ztedge('audit', 'verify', '--file', out, '--device-key', pub);
    expect(verified.code, verified.stderr).toBe(0);
    expect(verified.stdout).toMatch(/^audit log intact: records 30…90 \(61\), 2 checkpoints verified/);
  });

  it('refuses an edited record, a dropped one, an altered proof, and a checkpoint by another key', async () => {
    const out = path.join(dir, 'tamper.jsonl');
    expect((await ztedge('audit', 'export', '--state-dir', dir, '--from', '1', '--format', 'jsonl', '--out', out)).code).toBe(0);
    const lines = fs.readFileSync(out, 'utf8').trimEnd().split('\n');
    const write = (name: string, edited: string[]) => {
      const file = path.join(dir, name);
      fs.writeFileSync(file, `${edited.join('\n')}\n`);
      return file;
    };
    const record = (seq: number) => JSON.parse(lines[seq]!) as Record<string, unknown>;
    const replace = (seq: number, changes: Record<string, unknown>) => lines.map((l, i) => (i === seq ? JSON.stringify({ ...record(seq), ...changes }) : l));

    const edited = write('edited.jsonl', replace(10, { body: Buffer.from('forged').toString('base64') }));
    let result = await ztedge('audit', 'verify', '--file', edited, '--device-key', pub);
    expect([result.code, result.stderr]).toEqual([10, expect.stringContaining('AUDIT_HASH_MISMATCH at seq 10:')]);

    const dropped = write('dropped.jsonl', lines.filter((_, i) => i !== 33));
    result = await ztedge('audit', 'verify', '--file', dropped, '--device-key', pub);
    expect([result.code, result.stderr]).toEqual([12, expect.stringContaining('AUDIT_SEQ_GAP at seq 33:')]);

    const proof = record(40).proof as string[];
    const badProof = write('proof.jsonl', replace(40, { proof: [proof[1], proof[0], ...proof.slice(2)] }));
    result = await ztedge('audit', 'verify', '--file', badProof, '--device-key', pub);
    expect([result.code, result.stderr]).toEqual([24, expect.stringContaining('AUDIT_PROOF_INVALID at seq 40:')]);

    const otherKey = writeKeyFiles(dir, 'other', deviceKey('p256')).publicPath;
    result = await ztedge('audit', 'verify', '--file', out, '--device-key', otherKey);
    expect([result.code, result.stderr]).toEqual([15, expect.stringContaining('AUDIT_CHECKPOINT_KEY at seq 125:')]);

    const garbage = write('garbage.jsonl', ['{"type":"header"}']);
    result = await ztedge('audit', 'verify', '--file', garbage);
    expect([result.code, result.stderr]).toEqual([3, expect.stringMatching(/^AUDIT_EXPORT_MALFORMED: /)]);
  });

  it('refuses what it cannot do, with a reason', async () => {
    let result = await ztedge('audit', 'export', '--state-dir', dir, '--from', '1', '--format', 'cbor');
    expect([result.code, result.stderr]).toEqual([2, expect.stringContaining('--format cbor writes binary')]);
    result = await ztedge('audit', 'export', '--state-dir', dir, '--from', '1', '--format', 'xml');
    expect(result.code).toBe(2);
    result = await ztedge('audit', 'export', '--state-dir', dir, '--from', '500', '--format', 'jsonl');
    expect([result.code, result.stderr]).toEqual([3, expect.stringContaining('AUDIT_BAD_RANGE')]);
  });
});

describe('audit prove and checkpoint', () => {
  it('prints an inclusion proof that checks against the signed checkpoint it names', async () => {
    const result = await ztedge('audit', 'prove', '--state-dir', dir, '--seq', '77');
    expect(result.code, result.stderr).toBe(0);
    const printed = JSON.parse(result.stdout) as { leafIndex: number; treeSize: number; recordHash: string; proof: string[]; checkpoint: { seq: number; note: string } };
    const note = verifySignedNote(printed.checkpoint.note, key.publicKey, 'ztedge/plant-1/arm-1');
    expect(note.size).toBe(printed.treeSize);
    verifyInclusion(printed.leafIndex, note.size, leafHash(Buffer.from(printed.recordHash, 'hex')), printed.proof.map((h) => Buffer.from(h, 'hex')), note.root);

    const checkpointJson = await ztedge('audit', 'checkpoint', '--state-dir', dir, '--format', 'json');
    const cp = JSON.parse(checkpointJson.stdout) as { seq: number; size: number; verifierKey: string; note: string };
    expect(cp).toMatchObject({ seq: 125, size: 124 });
    expect(cp.verifierKey).toMatch(/^ztedge\/plant-1\/arm-1\+[0-9a-f]{8}\+AjBZ/); // 0x02 (ECDSA) then the DER SPKI of a P-256 key
    expect(cp.note).toBe(printed.checkpoint.note);
  });

  it('says why a record cannot be proven', async () => {
    const t = tempStateDir('ztedge-prove-');
    try {
      await writeLog(t.dir, key, 10, { every: 1000 });
      // close() checkpointed the 10 records at seq 11: a later record is not covered.
      let result = await ztedge('audit', 'prove', '--state-dir', t.dir, '--seq', '11');
      expect([result.code, result.stderr]).toEqual([4, expect.stringContaining('AUDIT_NOT_CHECKPOINTED')]);
      result = await ztedge('audit', 'prove', '--state-dir', t.dir, '--seq', '11', '--size', '11');
      expect(result.code, result.stderr).toBe(0);
      result = await ztedge('audit', 'prove', '--state-dir', t.dir, '--seq', '99');
      expect([result.code, result.stderr]).toEqual([4, expect.stringContaining('AUDIT_NOT_FOUND')]);
    } finally {
      t.remove();
    }
  });
});
