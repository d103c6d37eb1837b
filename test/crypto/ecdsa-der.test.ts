import { describe, expect, it } from 'vitest';
import { CryptoError } from '../../src/crypto/errors.js';
import { derToP1363, p1363ToDer } from '../../src/crypto/ecdsa-der.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { sign } from '../../src/crypto/signer.js';
import { sign as nodeSign } from 'node:crypto';

const hex = (text: string) => new Uint8Array(Buffer.from(text, 'hex'));

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof CryptoError) return err.code;
    throw err;
  }
  return undefined;
}

describe('ECDSA DER ↔ r||s', () => {
  it('agrees with OpenSSL DER output and round-trips', () => {
    const key = generatePrivateKey('p256');
    for (let i = 0; i < 50; i++) {
      const message = new TextEncoder().encode(`message ${i}`);
      const der = new Uint8Array(nodeSign('sha256', message, { key: key.keyObject, dsaEncoding: 'der' }));
      const raw = derToP1363(der);
      expect(raw.length).toBe(64);
      expect(p1363ToDer(raw)).toEqual(der);
      const raw2 = sign(key, message);
      expect(derToP1363(p1363ToDer(raw2))).toEqual(raw2);
    }
  });

  it('encodes small integers minimally', () => {
    const raw = new Uint8Array(64);
    raw[31] = 1;
    raw[63] = 0x80;
    expect(Buffer.from(p1363ToDer(raw)).toString('hex')).toBe('300702010102020080');
  });

  it.each([
    ['empty', ''],
    ['not a sequence', '310602010102010'],
    ['long-form length that fits short form', '30810602010102010'],
    ['superfluous leading zero', '3007020200010201' + '01'],
    ['negative r', '3006020181020101'],
    ['trailing bytes', '300602010102010100'],
    ['length past the end', '300702010102010'],
    ['integer wider than 32 bytes', '3026022201' + '00'.repeat(33) + '020101'],
    ['zero-length integer', '30050200020101'],
  ])('refuses %s', (_name, der) => {
    expect(codeOf(() => derToP1363(hex(der)))).toBe('SIGNATURE_ENCODING_INVALID');
  });
});
