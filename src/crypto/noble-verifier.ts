// Verification on @noble/curves (pure JavaScript). Its defaults differ from OpenSSL and
// from COSE: ed25519 accepts ZIP-215 encodings unless `zip215: false` (RFC 8032 strict),
// and p256 refuses high-S signatures unless `lowS: false`.
import { ed25519 } from '@noble/curves/ed25519.js';
import { p256 } from '@noble/curves/nist.js';
import { SIGNATURE_LENGTH } from './algorithms.js';
import type { SignatureVerifier } from './signature-verifier.js';

export const nobleVerifier: SignatureVerifier = {
  name: 'noble',
  // Pure JavaScript has no thread pool to go to: the same check, answered as a promise.
  verifyAsync(key, message, signature) {
    return Promise.resolve(nobleVerifier.verify(key, message, signature));
  },
  verify(key, message, signature) {
    if (signature.length !== SIGNATURE_LENGTH) return false;
    try {
      return key.keyType === 'ed25519'
        ? ed25519.verify(signature, message, key.raw, { zip215: false })
        : p256.verify(signature, message, key.raw, { lowS: false, prehash: true, format: 'compact' });
    } catch {
      return false;
    }
  },
};
