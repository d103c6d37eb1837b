// The JavaScript SHA-256 (the Merkle tree's leaf and node hashes) gives OpenSSL's digest for the
// FIPS 180-4 examples, for every length across the one- and two-block padding boundaries and
// several blocks beyond, and for random contents.
import { createHash } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { sha256Js } from '../../src/crypto/sha256-js.js';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const openssl = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');
const ascii = (s: string) => new TextEncoder().encode(s);

describe('sha256Js', () => {
  it('gives the FIPS 180-4 example digests', () => {
    expect(hex(sha256Js(new Uint8Array(0)))).toBe('e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855');
    expect(hex(sha256Js(ascii('abc')))).toBe('ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad');
    expect(hex(sha256Js(ascii('abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq')))).toBe('248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1');
  });

  it('agrees with OpenSSL for every length from 0 to 300 bytes', () => {
    for (let n = 0; n <= 300; n++) {
      const data = Uint8Array.from({ length: n }, (_, i) => (i * 151 + n * 7 + 0x80) & 0xff);
      expect(hex(sha256Js(data)), `length ${n}`).toBe(openssl(data));
    }
  });

  it('agrees with OpenSSL on random contents, views into larger buffers included', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.nat(16), (bytes, offset) => {
        const backing = new Uint8Array(offset + bytes.length + 5).fill(0xa5);
        backing.set(bytes, offset);
        const view = backing.subarray(offset, offset + bytes.length);
        expect(hex(sha256Js(view))).toBe(openssl(bytes));
      }),
      { numRuns: 2000 },
    );
  });

  it('returns a fresh array each time', () => {
    const a = sha256Js(ascii('a'));
    const b = sha256Js(ascii('b'));
    expect(hex(a)).toBe(openssl(ascii('a')));
    expect(a).not.toBe(b);
  });
});
