// Signing runs on node:crypto: Ed25519 (RFC 8032) or ECDSA P-256 with SHA-256, both
// producing the 64-byte raw form COSE uses. signAsync() runs it on libuv's thread pool.
import { sign as cryptoSign } from 'node:crypto';
import type { PrivateKey } from './keys.js';

type SignCallback = (error: Error | null, signature: Buffer) => void;

function nodeSign(key: PrivateKey, message: Uint8Array, callback?: SignCallback): Buffer | undefined {
  // The overloads of sign() with and without a callback are distinct in the typings.
  const run = cryptoSign as (algorithm: string | null, data: Uint8Array, key: object, callback?: SignCallback) => Buffer | undefined;
  return key.keyType === 'ed25519'
    ? run(null, message, key.keyObject, callback)
    : run('sha256', message, { key: key.keyObject, dsaEncoding: 'ieee-p1363' }, callback);
}

const asBytes = (signature: Buffer) => new Uint8Array(signature.buffer, signature.byteOffset, signature.byteLength);

export function sign(key: PrivateKey, message: Uint8Array): Uint8Array {
  return asBytes(nodeSign(key, message)!);
}

export function signAsync(key: PrivateKey, message: Uint8Array): Promise<Uint8Array> {
  return new Promise((resolve, reject) => {
    nodeSign(key, message, (error, signature) => (error === null ? resolve(asBytes(signature)) : reject(error)));
  });
}
