// Signed checkpoints: the COSE_Sign1 and the C2SP note signature by the device key (Ed25519 and
// P-256), refusals of anything else, and the log writing them every N records, after T, on
// demand and at shutdown — each covering exactly the records before it and linked to the last.
import { createPublicKey, verify as cryptoVerify } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import {
  type Checkpoint,
  CHECKPOINT_AAD,
  CheckpointError,
  decodeCheckpointBody,
  encodeCheckpointPayload,
  noteKeyId,
  noteText,
  noteVerifierKey,
  signCheckpoint,
  signedNote,
  verifyCheckpointBody,
  verifyNoteSignature,
  verifySignedNote,
} from '../../src/audit/checkpoint.js';
import { SqliteAuditLog } from '../../src/audit/log.js';
import { EMPTY_ROOT } from '../../src/audit/merkle.js';
import { verifyStoredLog } from '../../src/audit/verify.js';
import { publicKeyFromRaw, publicKeyToKeyObject } from '../../src/crypto/keys.js';
import { encodeCbor } from '../../src/envelope/cbor.js';
import { signSign1 } from '../../src/envelope/cose.js';
import { sleep, waitUntil } from '../support/wait.js';
import { body, deviceKey, naiveRoot, T0, tempStateDir } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

const sample = (over: Partial<Checkpoint> = {}): Checkpoint => ({
  origin: 'ztedge/plant-1/arm-1',
  device: 'arm-1',
  size: 42,
  root: new Uint8Array(32).fill(7),
  timeMs: T0,
  prevSize: 10,
  prevRoot: new Uint8Array(32).fill(3),
  ...over,
});

describe.each(['ed25519', 'p256'] as const)('checkpoint signed with a %s device key', (type) => {
  const key = deviceKey(type);
  const other = deviceKey(type);

  it('verifies with the device key only', () => {
    const signed = signCheckpoint(sample(), key);
    const verified = verifyCheckpointBody(signed, [other.publicKey, key.publicKey]);
    expect(verified.checkpoint).toEqual(sample());
    expect(verified.key.kid).toEqual(key.publicKey.kid);
    expect(() => verifyCheckpointBody(signed, [other.publicKey])).toThrow(expect.objectContaining({ code: 'CHECKPOINT_UNKNOWN_KEY' }));
  });

  it('refuses a checkpoint re-signed by another key under the device kid, a changed payload, and a payload signed for another purpose', () => {
    const payload = encodeCheckpointPayload(sample());
    const forged = encodeCbor({ cose: signSign1({ payload, key: other, kid: key.publicKey.kid, externalAad: CHECKPOINT_AAD }), note: decodeCheckpointBody(signCheckpoint(sample(), key)).note });
    expect(() => verifyCheckpointBody(forged, [key.publicKey])).toThrow(expect.objectContaining({ code: 'CHECKPOINT_BAD_SIGNATURE' }));

    const real = decodeCheckpointBody(signCheckpoint(sample(), key));
    const cose = real.cose.slice();
    const at = Buffer.from(cose).indexOf(Buffer.from(sample().root));
    cose[at]! ^= 1;
    expect(() => verifyCheckpointBody(encodeCbor({ cose, note: real.note }), [key.publicKey])).toThrow(expect.objectContaining({ code: 'CHECKPOINT_BAD_SIGNATURE' }));

    // The device key signs other things too (command results): without the checkpoint AAD it is no checkpoint.
    const elsewhere = encodeCbor({ cose: signSign1({ payload, key }), note: real.note });
    expect(() => verifyCheckpointBody(elsewhere, [key.publicKey])).toThrow(expect.objectContaining({ code: 'CHECKPOINT_BAD_SIGNATURE' }));

    // A correct COSE signature with the note signature of another checkpoint.
    const mixed = encodeCbor({ cose: real.cose, note: decodeCheckpointBody(signCheckpoint(sample({ size: 43 }), key)).note });
    expect(() => verifyCheckpointBody(mixed, [key.publicKey])).toThrow(expect.objectContaining({ code: 'CHECKPOINT_BAD_NOTE' }));
  });

  it('refuses malformed bodies and payloads', () => {
    expect(() => verifyCheckpointBody(new Uint8Array([1, 2, 3]), [key.publicKey])).toThrow(CheckpointError);
    const extra = encodeCbor({ cose: new Uint8Array(1), note: new Uint8Array(1), more: 1 });
    expect(() => verifyCheckpointBody(extra, [key.publicKey])).toThrow(/unknown key more/);
    expect(() => encodeCheckpointPayload(sample({ origin: 'has space' }))).toThrow(CheckpointError);
    const badPrev = signCheckpoint(sample({ prevSize: 50 }), key);
    expect(() => verifyCheckpointBody(badPrev, [key.publicKey])).toThrow(/prev_size is larger/);
  });

  it('exports a C2SP tlog-checkpoint note that verifies with the device verifier key', () => {
    const cp = sample();
    const { note } = decodeCheckpointBody(signCheckpoint(cp, key));
    const text = signedNote(cp, note);
    expect(text).toBe(`ztedge/plant-1/arm-1\n42\n${Buffer.from(cp.root).toString('base64')}\n\n\u2014 ztedge/plant-1/arm-1 ${Buffer.from(note).toString('base64')}\n`);
    expect(verifySignedNote(text, key.publicKey, 'ztedge/plant-1/arm-1')).toEqual({ origin: cp.origin, size: 42, root: cp.root });
    // Other keys' signature lines are ignored; this key's bad signature refuses the note.
    const cosigned = `${text}\u2014 witness.example/w1 ${Buffer.from(new Uint8Array(68).fill(1)).toString('base64')}\n`;
    expect(verifySignedNote(cosigned, key.publicKey).size).toBe(42);
    expect(() => verifySignedNote(text.replace('\n42\n', '\n43\n'), key.publicKey)).toThrow(expect.objectContaining({ code: 'CHECKPOINT_BAD_SIGNATURE' }));
    expect(() => verifySignedNote(text, other.publicKey)).toThrow(expect.objectContaining({ code: 'CHECKPOINT_UNKNOWN_KEY' }));
    expect(() => verifySignedNote(text, key.publicKey, 'ztedge/elsewhere')).toThrow(/origin/);

    // The verifier key names the same key id and the signature type of the key.
    const vkey = noteVerifierKey(cp.origin, key.publicKey);
    const [name, id] = vkey.split('+') as [string, string];
    const material = vkey.slice(name.length + id.length + 2);
    expect(name).toBe(cp.origin);
    expect(id).toBe(Buffer.from(noteKeyId(cp.origin, key.publicKey)).toString('hex'));
    expect(Buffer.from(material, 'base64')[0]).toBe(type === 'ed25519' ? 0x01 : 0x02);

    // An independent check of the signature bytes with node:crypto, as a note verifier does it.
    const signature = Buffer.from(note.subarray(4));
    const ok =
      type === 'ed25519'
        ? cryptoVerify(null, Buffer.from(noteText(cp)), publicKeyToKeyObject(key.publicKey), signature)
        : cryptoVerify('sha256', Buffer.from(noteText(cp)), createPublicKey({ key: Buffer.from(material, 'base64').subarray(1), format: 'der', type: 'spki' }), signature);
    expect(ok).toBe(true);
  });
});

describe('C2SP signed-note key ids', () => {
  it('derives the Ed25519 key id of the signed-note spec example and verifies its signature', () => {
    // From c2sp.org/signed-note: vkey example.com/foo+530d903a+AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k
    const material = Buffer.from('AekyeRrm56hApGFkyQR4ZCbV54Id2LKaANYcrnKv3U2k', 'base64');
    const pub = publicKeyFromRaw('ed25519', new Uint8Array(material.subarray(1)));
    expect(Buffer.from(noteKeyId('example.com/foo', pub)).toString('hex')).toBe('530d903a');
    const sig = new Uint8Array(Buffer.from('Uw2QOkn8srV1yJGh2VYRlL1Tnagv1YEq6TfXppzi2ONncAlTgK7Ztg1ERYNZXsYjOBH3mFXmRKuwHjG1Yu72IneyaQM=', 'base64'));
    expect(verifyNoteSignature('This is an example message.\n', 'example.com/foo', pub, sig)).toBe(true);
    expect(verifyNoteSignature('This is an example message!\n', 'example.com/foo', pub, sig)).toBe(false);
  });
});

describe('checkpoints in the log', () => {
  function setup(opts: { everyRecords?: number; everyMs?: number; type?: 'ed25519' | 'p256' } = {}) {
    const t = tempStateDir();
    cleanups.push(t.remove);
    const db = t.open();
    cleanups.unshift(() => db.close());
    const key = deviceKey(opts.type ?? 'ed25519');
    let clock = T0;
    const log = new SqliteAuditLog(db, {
      now: () => clock++,
      checkpoints: { key, device: 'arm-1', origin: 'ztedge/plant-1/arm-1', everyRecords: opts.everyRecords ?? 1000, everyMs: opts.everyMs ?? 60_000 },
    });
    cleanups.unshift(() => log.close().catch(() => undefined));
    return { db, log, key };
  }
  const checkpointSeqs = (log: SqliteAuditLog) => [...log.reader.iterate(1)].filter((r) => r.kind === 'checkpoint').map((r) => r.seq);

  it.each(['ed25519', 'p256'] as const)('writes one every N records, covering exactly the records before it (%s)', async (type) => {
    const { log, key } = setup({ everyRecords: 10, type });
    for (let i = 0; i < 7; i++) await Promise.all(Array.from({ length: 5 }, (_, j) => log.append('command', body(`c${i}.${j}`))));
    expect(checkpointSeqs(log)).toEqual([11, 22, 33]);
    const records = [...log.reader.iterate(1)];
    expect(records).toHaveLength(38);
    let prev = { size: 0, root: EMPTY_ROOT };
    for (const seq of [11, 22, 33]) {
      const { checkpoint } = verifyCheckpointBody(records[seq - 1]!.body, [key.publicKey]);
      expect(checkpoint.size).toBe(seq - 1);
      expect(checkpoint.root).toEqual(naiveRoot(records.slice(0, seq - 1).map((r) => r.hash)));
      expect({ size: checkpoint.prevSize, root: checkpoint.prevRoot }).toEqual(prev);
      prev = { size: checkpoint.size, root: checkpoint.root };
    }
    expect(log.latestCheckpoint()?.seq).toBe(33);
    expect(log.latestCheckpoint()?.checkpoint.size).toBe(32);
    expect([log.reader.nextCheckpoint(0)?.seq, log.reader.nextCheckpoint(11)?.seq, log.reader.nextCheckpoint(33)]).toEqual([11, 22, undefined]);
    expect(log.reader.keys().map((k) => k.key.raw)).toEqual([key.publicKey.raw]);
    const report = verifyStoredLog(log.reader, { keys: [key.publicKey], device: 'arm-1' });
    expect(report).toMatchObject({ records: 38, checkpoints: 3, uncovered: 5, lastCheckpoint: { seq: 33, size: 32 } });
    expect(report.failure).toBeUndefined();
  });

  it('writes one T after the first uncovered record, and none while nothing new arrives', async () => {
    const { log } = setup({ everyMs: 60 });
    await Promise.all([log.append('command', body('a')), log.append('command', body('b'))]);
    await log.append('command', body('c'));
    await waitUntil(() => checkpointSeqs(log).length === 1, 'a timed checkpoint', 5000);
    expect(checkpointSeqs(log)).toEqual([4]);
    await sleep(200);
    expect(checkpointSeqs(log)).toEqual([4]);
    await log.append('command', body('d'));
    await waitUntil(() => checkpointSeqs(log).length === 2, 'the next timed checkpoint', 5000);
    expect(checkpointSeqs(log)).toEqual([4, 6]);
  });

  it('checkpoints on demand and at shutdown only when records follow the last one', async () => {
    const { log, key } = setup();
    expect(await log.checkpoint()).toBeNull();
    await log.append('system', body('start'));
    expect((await log.checkpoint())?.seq).toBe(2);
    expect(await log.checkpoint()).toBeNull();
    await log.append('system', body('stop'));
    await log.close();
    expect(checkpointSeqs(log)).toEqual([2, 4]);
    expect(verifyStoredLog(log.reader, { keys: [key.publicKey] })).toMatchObject({ checkpoints: 2, uncovered: 0 });
  });

  it('refuses appends of the checkpoint kind and a checkpoint without a key', async () => {
    const { log } = setup();
    await expect(log.append('checkpoint', body('fake'))).rejects.toMatchObject({ code: 'AUDIT_BAD_KIND' });
    const t = tempStateDir();
    cleanups.push(t.remove);
    const db = t.open();
    const plain = new SqliteAuditLog(db, { now: () => T0 });
    await expect(plain.checkpoint()).rejects.toMatchObject({ code: 'AUDIT_NO_CHECKPOINT_KEY' });
    db.close();
  });

  it('continues the checkpoint chain after a reopen', async () => {
    const t = tempStateDir();
    cleanups.push(t.remove);
    const key = deviceKey();
    const options = { now: () => T0, checkpoints: { key, device: 'arm-1', everyRecords: 4 } };
    let db = t.open();
    let log = new SqliteAuditLog(db, options);
    for (let i = 0; i < 6; i++) await log.append('command', body(`a${i}`));
    await log.close();
    db.close();
    db = t.open();
    log = new SqliteAuditLog(db, options);
    for (let i = 0; i < 6; i++) await log.append('command', body(`b${i}`));
    await log.close();
    expect(checkpointSeqs(log)).toEqual([5, 8, 13, 16]);
    const report = verifyStoredLog(log.reader, { keys: [key.publicKey] });
    expect(report.failure).toBeUndefined();
    expect(report.checkpoints).toBe(4);
    db.close();
  });
});
