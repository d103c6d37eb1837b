// sha256() gives OpenSSL's digest, byte for byte, as a plain array of its own.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256 } from '../../src/crypto/hash.js';

const openssl = (b: Uint8Array) => new Uint8Array(createHash('sha256').update(b).digest());

describe('sha256', () => {
  it('gives the FIPS 180-4 example digest', () => {
    expect(Buffer.from(sha256(new TextEncoder().encode('abc'))).toString('hex')).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
  });

  it('agrees with OpenSSL for every digest byte value, on random inputs and views', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat(16), (bytes, offset) => {
        const backing = new Uint8Array(offset + bytes.length + 3).fill(0xa5);
        backing.set(bytes, offset);
        const digest = sha256(backing.subarray(offset, offset + bytes.length));
        expect(digest).toEqual(openssl(bytes));
        expect(digest.constructor).toBe(Uint8Array);
        expect(digest.byteLength).toBe(digest.buffer.byteLength);
      }),
      { numRuns: 3000 },
    );
  });
});
