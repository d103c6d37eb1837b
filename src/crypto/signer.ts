// Signing runs on node:crypto: Ed25519 (RFC 8032) or ECDSA P-256 with SHA-256, both
// producing the 64-byte raw form COSE uses.
import { sign as cryptoSign } from 'node:crypto';
import type { PrivateKey } from './keys.js';

export function sign(key: PrivateKey, message: Uint8Array): Uint8Array {
  const signature =
    key.keyType === 'ed25519'
      ? cryptoSign(null, message, key.keyObject)
      : cryptoSign('sha256', message, { key: key.keyObject, dsaEncoding: 'ieee-p1363' });
  return new Uint8Array(signature.buffer, signature.byteOffset, signature.byteLength);
}
