// Signing one root key at a time: each signer appends a signature without touching what earlier
// signers signed; the same key cannot sign twice; only bundles can be signed.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleError } from '../../src/bundle/errors.js';
import { readUnverifiedBundle, signBundle } from '../../src/bundle/sign.js';
import { COSE_ALG } from '../../src/crypto/algorithms.js';
import { type CborValue, CborTagged, decodeCbor } from '../../src/envelope/cbor.js';
import { addSignSignature, signSign, verifySign } from '../../src/envelope/cose.js';
import { type Roots, buildPayload, makeRoots } from './support.js';

let roots: Roots;

beforeAll(() => {
  roots = makeRoots();
});

afterAll(() => {
  fs.rmSync(roots.dir, { recursive: true, force: true });
});

function coseParts(bytes: Uint8Array): CborValue[] {
  const root = decodeCbor(bytes, { maxBytes: 1 << 24, maxDepth: 8, allowRootTag: true });
  expect(root).toBeInstanceOf(CborTagged);
  return (root as CborTagged).value as CborValue[];
}

function refusal(run: () => unknown): BundleError {
  try {
    run();
  } catch (err) {
    if (err instanceof BundleError) return err;
    throw err;
  }
  throw new Error('expected a BundleError');
}

const hex = (b: Uint8Array | undefined) => (b === undefined ? undefined : Buffer.from(b).toString('hex'));

describe('signBundle', () => {
  it('wraps the payload bytes unchanged, then appends one signature per signer', () => {
    const payload = buildPayload();
    const once = signBundle(payload, roots.keys[0].key);
    const twice = signBundle(once, roots.keys[1].key, { alg: COSE_ALG.ESP256 });
    const [, , signedPayload, signatures] = coseParts(twice);
    expect(signedPayload).toEqual(payload);
    expect((signatures as CborValue[]).length).toBe(2);
    // The first signer's COSE_Signature is carried over byte for byte.
    expect((signatures as CborValue[])[0]).toEqual((coseParts(once)[3] as CborValue[])[0]);

    const listed = readUnverifiedBundle(twice).signatures;
    expect(listed.map((s) => [hex(s.kid), s.alg])).toEqual([
      [hex(roots.keys[0].key.publicKey.kid), COSE_ALG.EdDSA],
      [hex(roots.keys[1].key.publicKey.kid), COSE_ALG.ESP256],
    ]);
    const keys = new Map(roots.keys.map((k) => [hex(k.key.publicKey.kid), k.key.publicKey]));
    expect(verifySign(twice, { maxBytes: 1 << 24, keys: (kid) => keys.get(hex(kid)) }).verifiedKids).toHaveLength(2);
  });

  it('refuses a second signature by the same key', () => {
    const once = signBundle(buildPayload(), roots.keys[0].key);
    expect(refusal(() => signBundle(once, roots.keys[0].key)).code).toBe('BUNDLE_ALREADY_SIGNED');
  });

  it('refuses to sign what is not a bundle', () => {
    expect(refusal(() => signBundle(Uint8Array.of(0x83, 1, 2, 3), roots.keys[0].key)).code).toBe('BUNDLE_MALFORMED');
    // JSON text happens to start like a long CBOR text string.
    expect(refusal(() => signBundle(Buffer.from('{"not": "cbor"}'), roots.keys[0].key)).code).toBe('BUNDLE_TRUNCATED');
    const foreign = signSign({ payload: buildPayload(), signers: [{ key: roots.keys[0].key }] });
    expect(refusal(() => signBundle(foreign, roots.keys[1].key)).message).toMatch(/content type/);
    expect(refusal(() => signBundle(buildPayload(), roots.keys[0].key, { maxBytes: 100 })).code).toBe('BUNDLE_TOO_LARGE');
  });
});

describe('addSignSignature (COSE_Sign)', () => {
  it('adds a signature that verifies alongside the existing ones, with external AAD', () => {
    const aad = Buffer.from('context');
    const first = signSign({ payload: Uint8Array.of(1, 2, 3), signers: [{ key: roots.keys[1].key }], externalAad: aad });
    const second = addSignSignature(first, { signer: { key: roots.keys[2].key }, externalAad: aad });
    const keys = new Map(roots.keys.map((k) => [hex(k.key.publicKey.kid), k.key.publicKey]));
    const checked = verifySign(second, { keys: (kid) => keys.get(hex(kid)), externalAad: aad });
    expect(checked.signers.map((s) => s.error)).toEqual([undefined, undefined]);
    expect(checked.verifiedKids.map(hex)).toEqual([hex(roots.keys[1].key.publicKey.kid), hex(roots.keys[2].key.publicKey.kid)]);
    // Without the AAD the added signature does not verify.
    const unbound = verifySign(second, { keys: (kid) => keys.get(hex(kid)) });
    expect(unbound.verifiedKids).toHaveLength(0);
  });

  it('refuses what is not a COSE_Sign', () => {
    const sign1Tagged = Uint8Array.from([0xd2, 0x84, 0x40, 0xa0, 0x40, 0x40]);
    expect(() => addSignSignature(sign1Tagged, { signer: { key: roots.keys[0].key } })).toThrow(/expected CBOR tag 98/);
  });
});
