// The record hash preimage: fixed-width big-endian seq and time (checked against a BigInt
// transcription of the format at the edges of the safe-integer range), and the kind's bytes.
import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { AUDIT_KINDS, recordHash } from '../../src/audit/chain.js';

function reference(prev: Uint8Array, seq: number, timeMs: number, kind: string, body: Uint8Array): Uint8Array {
  const fixed = Buffer.alloc(16);
  fixed.writeBigUInt64BE(BigInt(seq), 0);
  fixed.writeBigUInt64BE(BigInt(timeMs), 8);
  const k = Buffer.from(kind);
  return new Uint8Array(createHash('sha256').update(prev).update(fixed).update(Uint8Array.of(k.length)).update(k).update(body).digest());
}

describe('record hash', () => {
  it('matches the format at the edges of the seq and time ranges, for every kind', () => {
    const prev = new Uint8Array(32).fill(0xab);
    const body = new TextEncoder().encode('{"cmd":1}');
    for (const seq of [1, 255, 2 ** 32 - 1, 2 ** 32, 2 ** 32 + 1, 2 ** 40 + 12345, Number.MAX_SAFE_INTEGER]) {
      for (const timeMs of [0, 1_760_000_000_000, 2 ** 32, Number.MAX_SAFE_INTEGER]) {
        for (const kind of AUDIT_KINDS) expect(recordHash(prev, seq, timeMs, kind, body)).toEqual(reference(prev, seq, timeMs, kind, body));
      }
    }
  });
});
