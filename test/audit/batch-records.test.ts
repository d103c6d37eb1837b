// The records of a sync batch, written and read in one pass: the bytes are exactly the generic
// deterministic encoder's, reading gives back the records, and the reader never accepts what the
// generic strict decoder would read differently (it declines, and the generic path decides).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type BatchRecord, encodeBatchRecords, readBatchRecords } from '../../src/audit/batch-records.js';
import { AUDIT_KINDS } from '../../src/audit/chain.js';
import { decodeCbor, encodeCbor } from '../../src/cbor/cbor.js';

const LIMITS = { maxRecords: 1000, maxBodyBytes: 4096 };
const boundary = [0, 1, 23, 24, 255, 256, 65535, 65536, 2 ** 32 - 1, 2 ** 32, 2 ** 53 - 1];

const record: fc.Arbitrary<BatchRecord> = fc.record({
  seq: fc.oneof(fc.constantFrom(...boundary.filter((n) => n >= 1)), fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER })),
  timeMs: fc.oneof(fc.constantFrom(...boundary), fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER })),
  kind: fc.constantFrom(...AUDIT_KINDS),
  body: fc.oneof(fc.uint8Array({ maxLength: 300 }), fc.constantFrom(23, 24, 255, 256, 4096).map((n) => new Uint8Array(n).fill(7))),
  hash: fc.uint8Array({ minLength: 32, maxLength: 32 }),
});
const records = fc.array(record, { minLength: 1, maxLength: 30 });

const generic = (rs: readonly BatchRecord[]) => encodeCbor(rs.map((r) => [r.seq, r.timeMs, r.kind, r.body, r.hash]));
/** What the generic decoder reads, as records (or undefined where the protocol refuses it). */
function genericRead(raw: Uint8Array): BatchRecord[] | undefined {
  let list;
  try {
    list = decodeCbor(raw, { maxBytes: 1 << 26, maxDepth: 2 });
  } catch {
    return undefined;
  }
  if (!Array.isArray(list) || list.length === 0 || list.length > LIMITS.maxRecords) return undefined;
  const out: BatchRecord[] = [];
  for (const item of list) {
    if (!Array.isArray(item) || item.length !== 5) return undefined;
    const [seq, timeMs, kind, body, hash] = item;
    if (typeof seq !== 'number' || seq < 1 || typeof timeMs !== 'number' || timeMs < 0) return undefined;
    if (typeof kind !== 'string' || !(AUDIT_KINDS as readonly string[]).includes(kind)) return undefined;
    if (!(body instanceof Uint8Array) || body.length > LIMITS.maxBodyBytes || !(hash instanceof Uint8Array) || hash.length !== 32) return undefined;
    out.push({ seq, timeMs, kind: kind as BatchRecord['kind'], body, hash });
  }
  return out;
}

const plain = (rs: readonly BatchRecord[] | undefined) => rs?.map((r) => ({ ...r, body: Array.from(r.body), hash: Array.from(r.hash) }));

describe('batch records', () => {
  it('writes exactly the bytes of the generic deterministic encoder', () => {
    fc.assert(fc.property(records, (rs) => {
        expect(Buffer.from(encodeBatchRecords(rs)).equals(Buffer.from(generic(rs)))).toBe(true);
      }));
  });

  it('reads back the records it wrote', () => {
    fc.assert(fc.property(records, (rs) => {
        expect(plain(readBatchRecords(encodeBatchRecords(rs), LIMITS))).toEqual(plain(rs));
      }));
  });

  it('never reads a mutated batch differently from the generic decoder (it declines instead)', () => {
    fc.assert(
      fc.property(records, fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }), fc.nat(8), (rs, edits, cut) => {
        const raw = encodeBatchRecords(rs).slice();
        for (const [at, value] of edits) raw[at % raw.length] = value;
        const bytes = raw.subarray(0, raw.length - (cut % 3 === 0 ? cut % raw.length : 0));
        const fast = readBatchRecords(bytes, LIMITS);
        if (fast !== undefined) expect(plain(fast)).toEqual(plain(genericRead(bytes)));
      }),
      { numRuns: 1000 },
    );
  });

  it('declines what is outside its bounds or form, for the generic decoder to refuse or read', () => {
    const one: BatchRecord = { seq: 1, timeMs: 5, kind: 'decision', body: new Uint8Array(10), hash: new Uint8Array(32) };
    expect(readBatchRecords(encodeBatchRecords([one]), LIMITS)).toHaveLength(1);
    expect(readBatchRecords(encodeBatchRecords([{ ...one, body: new Uint8Array(4097) }]), LIMITS)).toBeUndefined();
    expect(readBatchRecords(encodeBatchRecords([{ ...one, hash: new Uint8Array(31) }]), LIMITS)).toBeUndefined();
    expect(readBatchRecords(encodeBatchRecords([{ ...one, seq: 0 }]), LIMITS)).toBeUndefined();
    expect(readBatchRecords(encodeBatchRecords([{ ...one, kind: 'other' as BatchRecord['kind'] }]), LIMITS)).toBeUndefined();
    expect(readBatchRecords(encodeBatchRecords(Array.from({ length: 1001 }, (_, i) => ({ ...one, seq: i + 1 }))), LIMITS)).toBeUndefined();
    expect(readBatchRecords(Uint8Array.of(...encodeBatchRecords([one]), 0), LIMITS)).toBeUndefined();
    expect(readBatchRecords(Uint8Array.of(0x80), LIMITS)).toBeUndefined();
    // A seq above 2^53 (a bigint to the generic decoder) is not read as a number.
    const big = encodeBatchRecords([{ ...one, seq: 2 ** 53 - 1 }]);
    big[3] = 0x40; // high word 0x00200000 → 2^53 + …
    expect(readBatchRecords(big, LIMITS)).toBeUndefined();
    // Non-shortest heads are still CBOR: read, with the same values as the generic decoder.
    const long = Uint8Array.of(0x81, 0x85, 0x19, 0x00, 0x01, 0x05, 0x68, ...new TextEncoder().encode('decision'), 0x40, 0x58, 0x20, ...new Uint8Array(32));
    expect(plain(readBatchRecords(long, LIMITS))).toEqual(plain(genericRead(long)));
  });
});
