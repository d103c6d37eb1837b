// Attacks on the command envelope: each is rejected with its own code, on both verifiers,
// and nothing but an EnvelopeError ever escapes (outcome() rethrows anything else).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { VERIFIER_NAMES, getVerifier } from '../../src/crypto/verifier.js';
import { type CborMap, CborTagged, type CborValue, encodeCbor } from '../../src/envelope/cbor.js';
import { contextAad } from '../../src/envelope/claims.js';
import { acceptCommand, verifyCommand } from '../../src/envelope/command.js';
import { ReplayGuard } from '../../src/store/replay-guard.js';
import type { EnvelopeVerifyOptions } from '../../src/envelope/signed-claims.js';
import {
  ISSUER,
  NOW,
  assemble,
  command,
  craft,
  ecKey,
  edKey,
  outcome,
  parts,
  standardClaims,
  strangerKey,
  verifyOptions,
} from './support/fixtures.js';

const hex = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s/g, ''), 'hex'));
const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
const ED25519_L = 2n ** 252n + 27742317777372353535851937790883648493n;

const header = (entries: [number, CborValue][]): CborMap => new Map(entries);
const edKid = edKey.publicKey.kid;

function withSignature(bytes: Uint8Array, edit: (signature: Uint8Array) => void): Uint8Array {
  const p = parts(bytes);
  const signature = new Uint8Array(p[3]);
  edit(signature);
  return assemble([p[0], p[1], p[2], signature]);
}

/** Replaces the outer array head (0x84 after the tag) by an indefinite-length one. */
function indefiniteOuterArray(bytes: Uint8Array): Uint8Array {
  expect(bytes[0]).toBe(0xd2);
  expect(bytes[1]).toBe(0x84);
  return Uint8Array.from([0xd2, 0x9f, ...bytes.subarray(2), 0xff]);
}

/** {"a": [[[...1...]]]} with `depth` arrays: deeper than the encoder would ever write. */
function deepMap(depth: number): Uint8Array {
  return Uint8Array.from([0xa1, 0x61, 0x61, ...new Uint8Array(depth).fill(0x81), 0x01]);
}

/** The envelope with its unprotected header replaced by raw CBOR (signature still valid). */
function withRawUnprotected(bytes: Uint8Array, unprotected: Uint8Array): Uint8Array {
  const [protectedBytes, , payload, signature] = parts(bytes);
  return Uint8Array.from([0xd2, 0x84, ...encodeCbor(protectedBytes), ...unprotected, ...encodeCbor(payload), ...encodeCbor(signature)]);
}

/** Standard claims with "args" set to raw CBOR. */
function claimsWithRawArgs(args: Uint8Array): Uint8Array {
  const claims = standardClaims();
  claims.delete('args');
  const encoded = encodeCbor(claims);
  expect(encoded[0]).toBe(0xa0 + claims.size);
  return Uint8Array.from([0xa0 + claims.size + 1, ...encoded.subarray(1), ...encodeCbor('args'), ...args]);
}

interface Attack {
  name: string;
  code: string;
  envelope: () => Uint8Array;
  options?: Partial<EnvelopeVerifyOptions>;
}

const attacks: Attack[] = [
  { name: 'bad signature (one bit flipped)', code: 'ENVELOPE_BAD_SIGNATURE', envelope: () => withSignature(command(), (s) => (s[10]! ^= 1)) },
  { name: 'signature truncated to 63 bytes', code: 'ENVELOPE_BAD_SIGNATURE', envelope: () => { const p = parts(command()); return assemble([p[0], p[1], p[2], p[3].subarray(0, 63)]); } },
  { name: 'empty signature', code: 'ENVELOPE_BAD_SIGNATURE', envelope: () => { const p = parts(command()); return assemble([p[0], p[1], p[2], new Uint8Array(0)]); } },
  {
    name: 'payload swapped under a valid signature',
    code: 'ENVELOPE_BAD_SIGNATURE',
    envelope: () => { const a = parts(command()); const b = parts(command({ action: 'estop' })); return assemble([a[0], a[1], b[2], a[3]]); },
  },
  {
    name: 'protected header altered (label added)',
    code: 'ENVELOPE_BAD_SIGNATURE',
    envelope: () => { const p = parts(command()); return assemble([encodeCbor(header([[1, -8], [3, 0], [4, edKid]])), p[1], p[2], p[3]]); },
  },
  {
    name: 'protected header re-encoded with the same meaning',
    code: 'ENVELOPE_BAD_SIGNATURE',
    envelope: () => { const p = parts(command()); return assemble([Uint8Array.from([0xa2, 0x01, 0x38, 0x07, 0x04, 0x50, ...edKid]), p[1], p[2], p[3]]); },
  },
  { name: 'stranger signs under a trusted kid', code: 'ENVELOPE_BAD_SIGNATURE', envelope: () => craft({ key: strangerKey, protectedHeader: header([[1, -8], [4, edKid]]) }) },
  { name: 'alg swapped -8 → -7 on an Ed25519 key', code: 'ENVELOPE_ALG_KEY_MISMATCH', envelope: () => { const p = parts(command()); return assemble([encodeCbor(header([[1, -7], [4, edKid]])), p[1], p[2], p[3]]); } },
  {
    name: 'alg swapped -7 → -8 on a P-256 key',
    code: 'ENVELOPE_ALG_KEY_MISMATCH',
    envelope: () => { const p = parts(command({ key: ecKey })); return assemble([encodeCbor(header([[1, -8], [4, ecKey.publicKey.kid]])), p[1], p[2], p[3]]); },
  },
  { name: 'alg -19 (Ed25519) on a P-256 key', code: 'ENVELOPE_ALG_KEY_MISMATCH', envelope: () => craft({ key: edKey, protectedHeader: header([[1, -19], [4, ecKey.publicKey.kid]]) }) },
  { name: 'alg unknown (-999)', code: 'ENVELOPE_ALG_UNSUPPORTED', envelope: () => craft({ protectedHeader: header([[1, -999], [4, edKid]]) }) },
  { name: 'alg ES512 (-36), not on the allow-list', code: 'ENVELOPE_ALG_UNSUPPORTED', envelope: () => craft({ protectedHeader: header([[1, -36], [4, edKid]]) }) },
  { name: 'alg as a text name', code: 'ENVELOPE_ALG_UNSUPPORTED', envelope: () => craft({ protectedHeader: header([[1, 'EdDSA'], [4, edKid]]) }) },
  { name: 'alg outside a configured allow-list', code: 'ENVELOPE_ALG_UNSUPPORTED', envelope: () => command(), options: { algorithms: [-7, -9] } },
  { name: 'alg missing', code: 'ENVELOPE_ALG_MISSING', envelope: () => craft({ protectedHeader: header([[4, edKid]]) }) },
  { name: 'alg only in the unprotected header', code: 'ENVELOPE_ALG_MISSING', envelope: () => craft({ protectedHeader: header([[4, edKid]]), unprotectedHeader: header([[1, -8]]) }) },
  { name: 'unknown kid', code: 'ENVELOPE_KID_UNKNOWN', envelope: () => command({ key: strangerKey }) },
  { name: 'kid missing', code: 'ENVELOPE_KID_MISSING', envelope: () => craft({ protectedHeader: header([[1, -8]]) }) },
  { name: 'kid only in the unprotected header', code: 'ENVELOPE_KID_MISSING', envelope: () => craft({ protectedHeader: header([[1, -8]]), unprotectedHeader: header([[4, edKid]]) }) },
  { name: 'unknown critical header', code: 'ENVELOPE_CRIT_UNKNOWN', envelope: () => craft({ protectedHeader: header([[1, -8], [2, [-70000]], [4, edKid], [-70000, 1]]) }) },
  { name: 'wrong tag (98, COSE_Sign)', code: 'ENVELOPE_WRONG_TAG', envelope: () => craft({ tag: 98 }) },
  { name: 'wrong tag (17, COSE_Mac0)', code: 'ENVELOPE_WRONG_TAG', envelope: () => craft({ tag: 17 }) },
  { name: 'untagged COSE_Sign1', code: 'ENVELOPE_WRONG_TAG', envelope: () => craft({ tag: null }) },
  { name: 'truncated', code: 'ENVELOPE_TRUNCATED', envelope: () => command().subarray(0, 100) },
  { name: 'trailing bytes', code: 'ENVELOPE_TRAILING_BYTES', envelope: () => Uint8Array.from([...command(), 0x00]) },
  { name: 'oversize', code: 'ENVELOPE_TOO_LARGE', envelope: () => command({ args: { blob: 'x'.repeat(70_000) } }) },
  { name: 'oversize under a lower limit', code: 'ENVELOPE_TOO_LARGE', envelope: () => command(), options: { maxBytes: 128 } },
  { name: 'nesting bomb in the unprotected header', code: 'ENVELOPE_TOO_DEEP', envelope: () => withRawUnprotected(command(), deepMap(5000)) },
  { name: 'nesting bomb in args (validly signed)', code: 'ENVELOPE_TOO_DEEP', envelope: () => craft({ payload: claimsWithRawArgs(deepMap(100)) }) },
  { name: 'duplicate claim (two iss)', code: 'ENVELOPE_DUPLICATE_KEY', envelope: () => craft({ payload: hex('a3 01 6161 01 6162 07 50' + '07'.repeat(16)) }) },
  { name: 'duplicate protected header label', code: 'ENVELOPE_DUPLICATE_KEY', envelope: () => craft({ protectedBytes: Uint8Array.from([0xa3, 0x01, 0x27, 0x04, 0x50, ...edKid, 0x01, 0x26]) }) },
  { name: 'kid in both header buckets', code: 'ENVELOPE_DUPLICATE_KEY', envelope: () => craft({ unprotectedHeader: header([[4, edKid]]) }) },
  { name: 'indefinite-length outer array', code: 'ENVELOPE_INDEFINITE_LENGTH', envelope: () => indefiniteOuterArray(command()) },
  { name: 'payload not a claims map', code: 'ENVELOPE_MALFORMED', envelope: () => craft({ payload: encodeCbor(['not', 'a', 'map']) }) },
  { name: 'floating-point exp', code: 'ENVELOPE_MALFORMED', envelope: () => craft({ payload: hex('a2 01 6161 04 fb 41d8000000000000') }) },
  { name: 'byte string tagged 64 in the claims (cbor-x default)', code: 'ENVELOPE_MALFORMED', envelope: () => craft({ payload: hex('a1 07 d840 50' + '07'.repeat(16)) }) },
  { name: 'COSE_Sign1 with five items', code: 'ENVELOPE_MALFORMED', envelope: () => encodeCbor(new CborTagged(18, [...parts(command()), new Uint8Array(0)])) },
  { name: 'protected header that is not a map', code: 'ENVELOPE_MALFORMED', envelope: () => craft({ protectedBytes: encodeCbor([1, -8]) }) },
  { name: 'expired', code: 'ENVELOPE_EXPIRED', envelope: () => command({ now: NOW - 10 * 60_000 }) },
  { name: 'not yet valid', code: 'ENVELOPE_NOT_YET_VALID', envelope: () => command({ notBefore: NOW + 120_000, lifetimeMs: 290_000 }) },
  { name: 'iat far in the future', code: 'ENVELOPE_IAT_FUTURE', envelope: () => command({ now: NOW + 10 * 60_000 }) },
  { name: 'lifetime too long', code: 'ENVELOPE_LIFETIME_TOO_LONG', envelope: () => command({ lifetimeMs: 24 * 3_600_000 }) },
  { name: 'wrong audience', code: 'ENVELOPE_WRONG_AUDIENCE', envelope: () => craft({ payload: new Map([...standardClaims(), [3, 'robot-2']]) }) },
  { name: 'cti missing', code: 'ENVELOPE_CLAIM_MISSING', envelope: () => craft({ payload: new Map([...standardClaims()].filter(([k]) => k !== 7)) }) },
  { name: 'cti of 8 bytes', code: 'ENVELOPE_CLAIM_INVALID', envelope: () => craft({ payload: new Map([...standardClaims(), [7, new Uint8Array(8)]]) }) },
  { name: 'wrong device: envelope for robot-2 delivered to robot-1', code: 'ENVELOPE_BAD_SIGNATURE', envelope: () => command({ deviceId: 'robot-2' }) },
  { name: 'wrong device in external_aad only (aud says robot-1)', code: 'ENVELOPE_BAD_SIGNATURE', envelope: () => craft({ aad: contextAad('robot-2', 'cmd') }) },
  { name: 'wrong topic: approval-topic envelope delivered on cmd', code: 'ENVELOPE_BAD_SIGNATURE', envelope: () => command({ topic: 'approve' }) },
  {
    name: 'issuer claims someone else than the key owner',
    code: 'ENVELOPE_ISSUER_MISMATCH',
    envelope: () => command({ issuer: 'User::"admin"' }),
    options: { keyResolver: (kid) => (Buffer.from(kid).equals(Buffer.from(edKid)) ? { key: edKey.publicKey, issuer: ISSUER } : undefined) },
  },
];

describe('attack table', () => {
  for (const name of VERIFIER_NAMES) {
    describe(name, () => {
      it.each(attacks)('$name → $code', ({ envelope, code, options }) => {
        expect(outcome(() => verifyCommand(envelope(), verifyOptions({ verifier: getVerifier(name), ...options })))).toBe(code);
      });
    });
  }

  it('accepts the untouched envelope that the attacks start from', () => {
    expect(outcome(() => verifyCommand(command(), verifyOptions()))).toBe('ok');
    expect(outcome(() => verifyCommand(craft(), verifyOptions()))).toBe('ok');
  });
});

describe('replay', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ztedge-replay-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('accepts a command once and refuses it the second time', () => {
    const guard = new ReplayGuard(openStateDb(join(dir, 'once.db')));
    const bytes = command();
    expect(outcome(() => acceptCommand(bytes, verifyOptions(), guard))).toBe('ok');
    expect(outcome(() => acceptCommand(bytes, verifyOptions({ now: NOW + 1000 }), guard))).toBe('ENVELOPE_REPLAY');
    expect(outcome(() => acceptCommand(command(), verifyOptions(), guard))).toBe('ok');
  });

  it('refuses a replay after a restart (state on disk)', () => {
    const path = join(dir, 'restart.db');
    const bytes = command();
    const first = openStateDb(path);
    expect(outcome(() => acceptCommand(bytes, verifyOptions(), new ReplayGuard(first)))).toBe('ok');
    first.close();
    const second = openStateDb(path);
    expect(outcome(() => acceptCommand(bytes, verifyOptions({ now: NOW + 5000 }), new ReplayGuard(second)))).toBe('ENVELOPE_REPLAY');
    second.close();
  });

  it('does not record a command that fails verification', () => {
    const guard = new ReplayGuard(openStateDb(join(dir, 'failed.db')));
    const bytes = command();
    expect(outcome(() => acceptCommand(bytes, verifyOptions({ deviceId: 'robot-2' }), guard))).toBe('ENVELOPE_BAD_SIGNATURE');
    expect(guard.size()).toBe(0);
    expect(outcome(() => acceptCommand(bytes, verifyOptions(), guard))).toBe('ok');
  });
});

describe('known traps (DESIGN.md)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'ztedge-traps-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('cbor-x defaults: duplicate claims, tagged byte strings and big integers are not taken silently', () => {
    expect(outcome(() => verifyCommand(craft({ payload: hex('a2 01 6161 01 6162') }), verifyOptions()))).toBe('ENVELOPE_DUPLICATE_KEY');
    expect(outcome(() => verifyCommand(craft({ payload: hex('a1 07 d840 50' + '07'.repeat(16)) }), verifyOptions()))).toBe('ENVELOPE_MALFORMED');
    // exp = 2^64 - 1 seconds: refused as a claim value, never rounded into a float that passes.
    const claims = new Map([...standardClaims(), [4, (1n << 64n) - 1n]]);
    expect(outcome(() => verifyCommand(craft({ payload: claims }), verifyOptions()))).toBe('ENVELOPE_CLAIM_INVALID');
  });

  it('the signed bytes are the bytes received, never re-encoded', () => {
    // A sender whose encoder writes alg -8 in a long form: valid, because Sig_structure uses
    // the protected bytes as received; rewriting them to the short form breaks the signature.
    const longForm = Uint8Array.from([0xa2, 0x01, 0x38, 0x07, 0x04, 0x50, ...edKid]);
    const bytes = craft({ protectedBytes: longForm });
    expect(outcome(() => verifyCommand(bytes, verifyOptions()))).toBe('ok');
    const p = parts(bytes);
    expect(outcome(() => verifyCommand(assemble([encodeCbor(header([[1, -8], [4, edKid]])), p[1], p[2], p[3]]), verifyOptions()))).toBe('ENVELOPE_BAD_SIGNATURE');
  });

  for (const name of VERIFIER_NAMES) {
    it(`@noble/curves defaults (${name}): high-S P-256 accepted, non-canonical Ed25519 S refused`, () => {
      const options = verifyOptions({ verifier: getVerifier(name) });
      const highS = withSignature(command({ key: ecKey }), (sig) => {
        const s = BigInt('0x' + Buffer.from(sig.subarray(32)).toString('hex'));
        sig.set(Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex'), 32);
      });
      expect(outcome(() => verifyCommand(highS, options))).toBe('ok');
      const nonCanonical = withSignature(command(), (sig) => {
        const s = BigInt('0x' + Buffer.from(sig.subarray(32)).reverse().toString('hex'));
        sig.set(Buffer.from((s + ED25519_L).toString(16).padStart(64, '0'), 'hex').reverse(), 32);
      });
      expect(outcome(() => verifyCommand(nonCanonical, options))).toBe('ENVELOPE_BAD_SIGNATURE');
    });
  }

  it('replay state is keyed on (iss, cti), not signature bytes: a malleated ECDSA signature is still a replay', () => {
    const guard = new ReplayGuard(openStateDb(join(dir, 'malleable.db')));
    const original = command({ key: ecKey });
    const malleated = withSignature(original, (sig) => {
      const s = BigInt('0x' + Buffer.from(sig.subarray(32)).toString('hex'));
      sig.set(Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex'), 32);
    });
    expect(Buffer.from(malleated).equals(Buffer.from(original))).toBe(false);
    expect(outcome(() => verifyCommand(malleated, verifyOptions()))).toBe('ok');
    expect(outcome(() => acceptCommand(original, verifyOptions(), guard))).toBe('ok');
    expect(outcome(() => acceptCommand(malleated, verifyOptions(), guard))).toBe('ENVELOPE_REPLAY');
    const p = parts(original);
    const reheadered = assemble([p[0], header([[99, 'unprotected']]), p[2], p[3]]);
    expect(outcome(() => acceptCommand(reheadered, verifyOptions(), guard))).toBe('ENVELOPE_REPLAY');
  });

  it('context binding: an envelope cannot move to another device or topic', () => {
    const bytes = command();
    expect(outcome(() => verifyCommand(bytes, verifyOptions()))).toBe('ok');
    expect(outcome(() => verifyCommand(bytes, verifyOptions({ deviceId: 'robot-2' })))).toBe('ENVELOPE_BAD_SIGNATURE');
    expect(outcome(() => verifyCommand(bytes, verifyOptions({ topic: 'approve' })))).toBe('ENVELOPE_BAD_SIGNATURE');
  });

  it('RFC 9864: fully-specified ids accepted for their key type only', () => {
    expect(outcome(() => verifyCommand(command({ alg: -19 }), verifyOptions()))).toBe('ok');
    expect(outcome(() => verifyCommand(command({ key: ecKey, alg: -9 }), verifyOptions()))).toBe('ok');
    expect(outcome(() => verifyCommand(craft({ key: ecKey, protectedHeader: header([[1, -19], [4, ecKey.publicKey.kid]]) }), verifyOptions()))).toBe('ENVELOPE_ALG_KEY_MISMATCH');
    expect(outcome(() => verifyCommand(craft({ key: edKey, protectedHeader: header([[1, -9], [4, edKid]]) }), verifyOptions()))).toBe('ENVELOPE_ALG_KEY_MISMATCH');
  });
});
