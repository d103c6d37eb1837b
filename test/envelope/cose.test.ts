import { describe, expect, it } from 'vitest';
import { COSE_ALG, type CoseAlgorithm } from '../../src/crypto/algorithms.js';
import { bytesEqual } from '../../src/crypto/bytes.js';
import { type PrivateKey, type PublicKey, generatePrivateKey } from '../../src/crypto/keys.js';
import { sign } from '../../src/crypto/signer.js';
import { VERIFIER_NAMES, getVerifier } from '../../src/crypto/verifier.js';
import { type CborMap, type CborValue, CborTagged, decodeCbor, encodeCbor } from '../../src/envelope/cbor.js';
import { decodeSign1, signSign, signSign1, verifySign, verifySign1 } from '../../src/envelope/cose.js';
import { EnvelopeError } from '../../src/envelope/errors.js';

const ed = generatePrivateKey('ed25519');
const ec = generatePrivateKey('p256');
const payload = new TextEncoder().encode('payload');

function outcome(run: () => unknown): string {
  try {
    run();
    return 'ok';
  } catch (err) {
    if (err instanceof EnvelopeError) return err.code;
    throw err;
  }
}

function resolverOf(...keys: PublicKey[]) {
  return (kid: Uint8Array) => keys.find((k) => bytesEqual(k.kid, kid));
}

/** A COSE_Sign1 with a hand-made protected header, correctly signed. */
function customSign1(key: PrivateKey, protectedHeader: CborMap, unprotected: CborMap = new Map()): Uint8Array {
  const protectedBytes = encodeCbor(protectedHeader);
  const signature = sign(key, encodeCbor(['Signature1', protectedBytes, new Uint8Array(0), payload]));
  return encodeCbor(new CborTagged(18, [protectedBytes, unprotected, payload, signature]));
}

describe('COSE_Sign1', () => {
  const cases: [string, PrivateKey, CoseAlgorithm][] = [
    ['EdDSA', ed, COSE_ALG.EdDSA],
    ['Ed25519', ed, COSE_ALG.Ed25519],
    ['ES256', ec, COSE_ALG.ES256],
    ['ESP256', ec, COSE_ALG.ESP256],
  ];
  for (const name of VERIFIER_NAMES) {
    it.each(cases)(`signs and verifies with %s (${name})`, (_alg, key, alg) => {
      const aad = new Uint8Array([1, 2, 3]);
      const bytes = signSign1({ payload, key, alg, externalAad: aad });
      const verified = verifySign1(bytes, { key: resolverOf(ed.publicKey, ec.publicKey), externalAad: aad, verifier: getVerifier(name) });
      expect(verified.alg.id).toBe(alg);
      expect(verified.kid).toEqual(key.publicKey.kid);
      expect(verified.message.payload).toEqual(payload);
      expect(outcome(() => verifySign1(bytes, { key: key.publicKey, verifier: getVerifier(name) }))).toBe('ENVELOPE_BAD_SIGNATURE');
    });
  }

  it('puts alg and kid in the protected header and emits tag 18', () => {
    const bytes = signSign1({ payload, key: ed });
    expect(bytes[0]).toBe(0xd2);
    const message = decodeSign1(bytes);
    expect(message.protectedHeader).toEqual(new Map<number, CborValue>([[1, -8], [4, ed.publicKey.kid]]));
    expect(message.unprotectedHeader.size).toBe(0);
    const untagged = signSign1({ payload, key: ed, tagged: false });
    expect(decodeSign1(untagged, { requireTag: false }).tagged).toBe(false);
  });

  it('refuses to sign with an algorithm of the other key type', () => {
    expect(outcome(() => signSign1({ payload, key: ed, alg: COSE_ALG.ES256 }))).toBe('ENVELOPE_ALG_KEY_MISMATCH');
  });

  it('honours the algorithm allow-list', () => {
    const bytes = signSign1({ payload, key: ed, alg: COSE_ALG.Ed25519 });
    expect(outcome(() => verifySign1(bytes, { key: ed.publicKey, algorithms: [COSE_ALG.EdDSA] }))).toBe('ENVELOPE_ALG_UNSUPPORTED');
    expect(outcome(() => verifySign1(bytes, { key: ed.publicKey, algorithms: [COSE_ALG.Ed25519] }))).toBe('ok');
  });

  it('accepts crit naming understood labels and refuses unknown or misplaced ones', () => {
    const withCrit = (crit: CborValue) => customSign1(ed, new Map<number, CborValue>([[1, -8], [2, crit], [4, ed.publicKey.kid]]));
    expect(outcome(() => verifySign1(withCrit([4]), { key: ed.publicKey }))).toBe('ok');
    expect(outcome(() => verifySign1(withCrit([99]), { key: ed.publicKey }))).toBe('ENVELOPE_CRIT_UNKNOWN');
    expect(outcome(() => verifySign1(withCrit(['x-policy']), { key: ed.publicKey }))).toBe('ENVELOPE_CRIT_UNKNOWN');
    expect(outcome(() => verifySign1(withCrit([]), { key: ed.publicKey }))).toBe('ENVELOPE_MALFORMED');
    expect(outcome(() => verifySign1(withCrit([3]), { key: ed.publicKey }))).toBe('ENVELOPE_MALFORMED');
    const unprotectedCrit = customSign1(ed, new Map([[1, -8]]), new Map<number, CborValue>([[2, [99]]]));
    expect(outcome(() => verifySign1(unprotectedCrit, { key: ed.publicKey }))).toBe('ENVELOPE_MALFORMED');
  });

  it('refuses a header label present in both buckets', () => {
    const bytes = customSign1(ed, new Map([[1, -8]]), new Map([[1, -7]]));
    expect(outcome(() => verifySign1(bytes, { key: ed.publicKey }))).toBe('ENVELOPE_DUPLICATE_KEY');
  });

  it('refuses a kid that is not a byte string and detached payloads', () => {
    const textKid = customSign1(ed, new Map<number, CborValue>([[1, -8], [4, 'kid']]));
    expect(outcome(() => verifySign1(textKid, { key: ed.publicKey }))).toBe('ENVELOPE_MALFORMED');
    const message = decodeCbor(signSign1({ payload, key: ed }), { maxBytes: 1 << 16, maxDepth: 8, allowRootTag: true }) as CborTagged;
    const detached = encodeCbor(new CborTagged(18, [...(message.value as CborValue[]).slice(0, 2), null, (message.value as CborValue[])[3]!]));
    expect(outcome(() => verifySign1(detached, { key: ed.publicKey }))).toBe('ENVELOPE_MALFORMED');
  });
});

describe('COSE_Sign (several signers)', () => {
  const roots = [generatePrivateKey('ed25519'), generatePrivateKey('p256'), generatePrivateKey('ed25519')];
  const stranger = generatePrivateKey('ed25519');
  const trusted = resolverOf(...roots.map((k) => k.publicKey));

  for (const name of VERIFIER_NAMES) {
    it(`reports which signers verified (${name})`, () => {
      const bytes = signSign({ payload, signers: [{ key: roots[0]! }, { key: roots[1]!, alg: COSE_ALG.ESP256 }, { key: stranger }] });
      expect(bytes[0]).toBe(0xd8);
      expect(bytes[1]).toBe(98);
      const result = verifySign(bytes, { keys: trusted, verifier: getVerifier(name) });
      expect(result.payload).toEqual(payload);
      expect(result.verifiedKids).toEqual([roots[0]!.publicKey.kid, roots[1]!.publicKey.kid]);
      expect(result.signers.map((s) => s.error?.code ?? 'ok')).toEqual(['ok', 'ok', 'ENVELOPE_KID_UNKNOWN']);
    });
  }

  it('counts a signer once even if it signed twice', () => {
    const bytes = signSign({ payload, signers: [{ key: roots[0]! }, { key: roots[0]! }] });
    expect(verifySign(bytes, { keys: trusted }).verifiedKids).toHaveLength(1);
  });

  it('binds every signature to the body and external_aad', () => {
    const aad = new Uint8Array([7]);
    const bytes = signSign({ payload, signers: [{ key: roots[0]! }, { key: roots[2]! }], externalAad: aad });
    expect(verifySign(bytes, { keys: trusted, externalAad: aad }).verifiedKids).toHaveLength(2);
    const other = verifySign(bytes, { keys: trusted, externalAad: new Uint8Array([8]) });
    expect(other.verifiedKids).toHaveLength(0);
    expect(other.signers.every((s) => s.error?.code === 'ENVELOPE_BAD_SIGNATURE')).toBe(true);
  });

  it('rejects a signature moved onto another payload', () => {
    const a = decodeCbor(signSign({ payload, signers: [{ key: roots[0]! }] }), { maxBytes: 1 << 16, maxDepth: 8, allowRootTag: true }) as CborTagged;
    const parts = a.value as CborValue[];
    const swapped = encodeCbor(new CborTagged(98, [parts[0]!, parts[1]!, new TextEncoder().encode('other'), parts[3]!]));
    expect(verifySign(swapped, { keys: trusted }).verifiedKids).toHaveLength(0);
  });

  it('refuses the wrong tag, a Sign1 message and an empty signer list', () => {
    const sign1 = signSign1({ payload, key: roots[0]! });
    expect(outcome(() => verifySign(sign1, { keys: trusted }))).toBe('ENVELOPE_WRONG_TAG');
    const empty = encodeCbor(new CborTagged(98, [new Uint8Array(0), new Map(), payload, []]));
    expect(outcome(() => verifySign(empty, { keys: trusted }))).toBe('ENVELOPE_MALFORMED');
  });

  it('records an algorithm outside the allow-list per signer', () => {
    const bytes = signSign({ payload, signers: [{ key: roots[0]! }, { key: roots[1]! }] });
    const result = verifySign(bytes, { keys: trusted, algorithms: [COSE_ALG.EdDSA] });
    expect(result.signers.map((s) => s.error?.code ?? 'ok')).toEqual(['ok', 'ENVELOPE_ALG_UNSUPPORTED']);
  });
});
