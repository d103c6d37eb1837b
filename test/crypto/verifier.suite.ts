// One behavioural suite for every SignatureVerifier implementation (native and noble run the
// very same cases, each from its own test file), so the two paths cannot drift apart: what the
// agent accepts must not depend on the runtime it runs on.
import { describe, expect, it } from 'vitest';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import type { SignatureVerifier } from '../../src/crypto/signature-verifier.js';
import { sign } from '../../src/crypto/signer.js';

const P256_N = BigInt('0xffffffff00000000ffffffffffffffffbce6faada7179e84f3b9cac2fc632551');
const ED25519_L = 2n ** 252n + 27742317777372353535851937790883648493n;
const text = (s: string) => new TextEncoder().encode(s);

export function verifierSuite(verifier: SignatureVerifier): void {
  describe.each(['ed25519', 'p256'] as const)(`${verifier.name} verifier, %s`, (keyType) => {
    const key = generatePrivateKey(keyType);
    const message = text('move arm');
    const signature = sign(key, message);

    it('accepts a valid signature, sync and async', async () => {
      expect(signature.length).toBe(64);
      expect(verifier.verify(key.publicKey, message, signature)).toBe(true);
      await expect(verifier.verifyAsync(key.publicKey, message, signature)).resolves.toBe(true);
    });

    it('refuses a changed message, a flipped bit, another key', async () => {
      const flipped = new Uint8Array(signature);
      flipped[10] ^= 1;
      const other = generatePrivateKey(keyType).publicKey;
      for (const [k, m, s] of [
        [key.publicKey, text('move arn'), signature],
        [key.publicKey, message, flipped],
        [other, message, signature],
      ] as const) {
        expect(verifier.verify(k, m, s)).toBe(false);
        await expect(verifier.verifyAsync(k, m, s)).resolves.toBe(false);
      }
    });

    it('answers false, never throws, on signatures of the wrong length', async () => {
      for (const bad of [new Uint8Array(0), signature.subarray(0, 63), new Uint8Array([...signature, 0]), new Uint8Array(128)]) {
        expect(verifier.verify(key.publicKey, message, bad)).toBe(false);
        await expect(verifier.verifyAsync(key.publicKey, message, bad)).resolves.toBe(false);
      }
    });
  });

  it(`${verifier.name}: accepts high-S P-256 signatures (COSE does not require low-S)`, () => {
    const key = generatePrivateKey('p256');
    const message = text('high s');
    const signature = sign(key, message);
    const s = BigInt('0x' + Buffer.from(signature.subarray(32)).toString('hex'));
    const highS = new Uint8Array(signature);
    highS.set(Buffer.from((P256_N - s).toString(16).padStart(64, '0'), 'hex'), 32);
    expect(verifier.verify(key.publicKey, message, signature)).toBe(true);
    expect(verifier.verify(key.publicKey, message, highS)).toBe(true);
  });

  it(`${verifier.name}: refuses an Ed25519 signature with S + L (non-canonical S, RFC 8032 §5.1.7)`, () => {
    const key = generatePrivateKey('ed25519');
    const message = text('canonical');
    const signature = sign(key, message);
    const s = BigInt('0x' + Buffer.from(signature.subarray(32)).reverse().toString('hex'));
    const malleated = new Uint8Array(signature);
    malleated.set(Buffer.from((s + ED25519_L).toString(16).padStart(64, '0'), 'hex').reverse(), 32);
    expect(verifier.verify(key.publicKey, message, signature)).toBe(true);
    expect(verifier.verify(key.publicKey, message, malleated)).toBe(false);
  });
}
