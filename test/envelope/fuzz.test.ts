// Fuzzing the command verifier with fast-check: over 100,000 random and mutated envelopes per
// run. Properties: nothing but an EnvelopeError with an UPPER_SNAKE code is ever thrown, and
// an envelope is only accepted when its signed parts (protected header and payload; the
// external_aad is fixed by the verifier) are exactly those of a validly signed original.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { bytesEqual } from '../../src/crypto/bytes.js';
import { type CborValue, CborTagged, encodeCbor } from '../../src/envelope/cbor.js';
import { verifyCommand } from '../../src/envelope/command.js';
import { decodeSign1 } from '../../src/envelope/cose.js';
import { EnvelopeError } from '../../src/envelope/errors.js';
import { NOW, command, craft, ecKey, edKey, parts, verifyOptions } from './support/fixtures.js';

const options = verifyOptions();

const seeds = [
  command(),
  command({ key: ecKey }),
  command({ args: { speed: 1, list: [1, 2, 3], rec: { a: 'b', n: -5 } }, notBefore: NOW - 1000 }),
  command({ key: ecKey, alg: -9, action: 'estop', resource: 'Cell::Robot::"r2"' }),
  craft({ unprotectedHeader: new Map<number, CborValue>([[99, 'unsigned'], [100, [1, 2]]]) }),
];
const signedParts = seeds.map((seed) => {
  const [protectedBytes, , payload] = parts(seed);
  return { protectedBytes, payload };
});

it('starts from envelopes that verify', () => {
  for (const seed of seeds) expect(verifyCommand(seed, options).claims.act).toBeTruthy();
});

/** How often each outcome occurred, to show the fuzz reaches every stage of verification. */
const outcomes = new Map<string, number>();

/** Runs the verifier; returns true when accepted. Fails on any non-EnvelopeError. */
function verifies(bytes: Uint8Array): boolean {
  try {
    verifyCommand(bytes, options);
  } catch (err) {
    if (!(err instanceof EnvelopeError)) throw err;
    if (!/^ENVELOPE_[A-Z_]+$/.test(err.code)) throw new Error(`unstable code ${err.code}`);
    outcomes.set(err.code, (outcomes.get(err.code) ?? 0) + 1);
    return false;
  }
  outcomes.set('accepted', (outcomes.get('accepted') ?? 0) + 1);
  const message = decodeSign1(bytes);
  const signedUnchanged = signedParts.some((s) => bytesEqual(s.protectedBytes, message.protectedBytes) && bytesEqual(s.payload, message.payload));
  if (!signedUnchanged) throw new Error(`accepted an envelope whose signed bytes changed: ${Buffer.from(bytes).toString('hex')}`);
  return true;
}

type Mutation =
  | { kind: 'flip'; at: number; bit: number }
  | { kind: 'set'; at: number; value: number }
  | { kind: 'insert'; at: number; bytes: Uint8Array }
  | { kind: 'delete'; at: number; count: number }
  | { kind: 'truncate'; at: number }
  | { kind: 'duplicate'; at: number; count: number; to: number }
  | { kind: 'splice'; at: number; seed: number; from: number; count: number };

const position = fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true });
const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant('flip' as const), at: position, bit: fc.integer({ min: 0, max: 7 }) }),
  fc.record({ kind: fc.constant('set' as const), at: position, value: fc.constantFrom(0x00, 0x18, 0x1b, 0x1f, 0x5f, 0x7f, 0x9f, 0xbf, 0xd2, 0xf7, 0xfb, 0xff, 0x80, 0xa0, 0x40, 0x60) }),
  fc.record({ kind: fc.constant('insert' as const), at: position, bytes: fc.uint8Array({ minLength: 1, maxLength: 9 }) }),
  fc.record({ kind: fc.constant('delete' as const), at: position, count: fc.integer({ min: 1, max: 16 }) }),
  fc.record({ kind: fc.constant('truncate' as const), at: position }),
  fc.record({ kind: fc.constant('duplicate' as const), at: position, count: fc.integer({ min: 1, max: 40 }), to: position }),
  fc.record({ kind: fc.constant('splice' as const), at: position, seed: fc.nat(seeds.length - 1), from: position, count: fc.integer({ min: 1, max: 64 }) }),
);

function mutate(input: Uint8Array, mutations: Mutation[]): Uint8Array {
  let bytes = Array.from(input);
  for (const m of mutations) {
    const at = Math.floor(m.at * bytes.length);
    switch (m.kind) {
      case 'flip':
        if (bytes.length > 0) bytes[at] = bytes[at]! ^ (1 << m.bit);
        break;
      case 'set':
        if (bytes.length > 0) bytes[at] = m.value;
        break;
      case 'insert':
        bytes.splice(at, 0, ...m.bytes);
        break;
      case 'delete':
        bytes.splice(at, m.count);
        break;
      case 'truncate':
        bytes = bytes.slice(0, at);
        break;
      case 'duplicate': {
        const chunk = bytes.slice(at, at + m.count);
        bytes.splice(Math.floor(m.to * bytes.length), 0, ...chunk);
        break;
      }
      case 'splice': {
        const donor = seeds[m.seed]!;
        const from = Math.floor(m.from * donor.length);
        bytes.splice(at, m.count, ...donor.subarray(from, from + m.count));
        break;
      }
    }
  }
  return Uint8Array.from(bytes);
}

// Random CBOR values shaped like envelope parts, so many inputs get past the parser.
const cborValue: fc.Arbitrary<CborValue> = fc.letrec<{ v: CborValue }>((tie) => ({
  v: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    fc.integer({ min: -1000, max: 1000 }),
    fc.constantFrom<CborValue>(-8, -7, -9, -19, 1, 4, 18, 2n ** 53n, 1n << 60n),
    fc.string({ maxLength: 12 }),
    fc.uint8Array({ maxLength: 20 }),
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('v'), { maxLength: 3 }),
    fc
      .uniqueArray(fc.tuple(fc.oneof(fc.integer({ min: -8, max: 8 }), fc.constantFrom('act', 'res', 'args')), tie('v')), { maxLength: 4, selector: ([k]) => k })
      .map((entries) => new Map(entries)),
  ),
})).v;

const kid = fc.oneof(fc.constant(edKey.publicKey.kid), fc.constant(ecKey.publicKey.kid), fc.uint8Array({ minLength: 0, maxLength: 20 }));
const protectedHeader = fc
  .tuple(fc.constantFrom<CborValue | undefined>(-8, -7, -9, -19, -36, 'EdDSA', undefined), kid, fc.option(cborValue, { nil: undefined }))
  .map(([alg, k, extra]) => {
    const map = new Map<number, CborValue>();
    if (alg !== undefined) map.set(1, alg);
    map.set(4, k);
    if (extra !== undefined) map.set(3, extra);
    return map;
  });
const claimsLike = fc
  .tuple(fc.constantFrom('User::"alice"', ''), fc.constantFrom('robot-1', 'robot-2'), fc.integer({ min: 0, max: 2 ** 33 }), fc.uint8Array({ minLength: 15, maxLength: 17 }), cborValue)
  .map(([iss, aud, t, cti, args]) => new Map<number | string, CborValue>([[1, iss], [3, aud], [4, t + 60], [6, t], [7, cti], ['act', 'move'], ['res', 'Robot::"a"'], ['args', args]]));

const structured = fc
  .tuple(protectedHeader, fc.oneof(claimsLike, cborValue), fc.uint8Array({ minLength: 0, maxLength: 70 }), fc.constantFrom(18, 18, 18, 98, 17), cborValue)
  .map(([ph, payload, signature, tag, unprotected]) =>
    encodeCbor(new CborTagged(tag, [encodeCbor(ph), unprotected instanceof Map ? unprotected : new Map(), encodeCbor(payload), signature])),
  );

describe('fuzz', () => {
  it('mutated valid envelopes: only EnvelopeError, no acceptance of changed signed bytes (60,000 runs)', () => {
    let accepted = 0;
    fc.assert(
      fc.property(fc.nat(seeds.length - 1), fc.array(mutation, { minLength: 1, maxLength: 4 }), (seed, mutations) => {
        if (verifies(mutate(seeds[seed]!, mutations))) accepted++;
      }),
      { numRuns: 60_000 },
    );
    // Mutations of unsigned bytes (the unprotected header, or a no-op) may verify; most must not.
    expect(accepted).toBeLessThan(60_000 * 0.2);
  });

  it('random bytes: only EnvelopeError, never accepted (20,000 runs)', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 400 }), fc.uint8Array({ maxLength: 300 }).map((b) => Uint8Array.from([0xd2, 0x84, ...b]))), (bytes) => {
        expect(verifies(bytes)).toBe(false);
      }),
      { numRuns: 20_000 },
    );
  });

  it('random COSE-shaped envelopes: only EnvelopeError, never accepted (30,000 runs)', () => {
    fc.assert(
      fc.property(structured, (bytes) => {
        expect(verifies(bytes)).toBe(false);
      }),
      { numRuns: 30_000 },
    );
  });

  it('reached the parser, header, key, signature and claim checks', () => {
    for (const code of ['ENVELOPE_MALFORMED', 'ENVELOPE_TRUNCATED', 'ENVELOPE_WRONG_TAG', 'ENVELOPE_ALG_UNSUPPORTED', 'ENVELOPE_KID_UNKNOWN', 'ENVELOPE_BAD_SIGNATURE', 'accepted']) {
      expect(outcomes.get(code) ?? 0, code).toBeGreaterThan(100);
    }
  });
});
