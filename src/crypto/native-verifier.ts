// Verification on node:crypto (OpenSSL). Creating a KeyObject costs more than an Ed25519
// verify, so one is cached per PublicKey object for as long as that object lives.
// verifyAsync() passes a callback, which makes node:crypto run the check on libuv's thread pool:
// an Ed25519 verify costs the event loop ~30 µs instead of ~150–200 µs on the target machines.
import { type KeyObject, verify } from 'node:crypto';
import { type PublicKey, publicKeyToKeyObject } from './keys.js';
import { SIGNATURE_LENGTH } from './algorithms.js';
import type { SignatureVerifier } from './signature-verifier.js';

const keyObjects = new WeakMap<PublicKey, KeyObject>();

function keyObjectFor(key: PublicKey): KeyObject {
  let keyObject = keyObjects.get(key);
  if (keyObject === undefined) {
    keyObject = publicKeyToKeyObject(key);
    keyObjects.set(key, keyObject);
  }
  return keyObject;
}

type VerifyCallback = (error: Error | null, valid: boolean) => void;

function nodeVerify(key: PublicKey, message: Uint8Array, signature: Uint8Array, callback?: VerifyCallback): boolean | undefined {
  const keyObject = keyObjectFor(key);
  // The overloads of verify() with and without a callback are distinct in the typings.
  const run = verify as (algorithm: string | null, data: Uint8Array, key: object, signature: Uint8Array, callback?: VerifyCallback) => boolean | undefined;
  return key.keyType === 'ed25519'
    ? run(null, message, keyObject, signature, callback)
    : run('sha256', message, { key: keyObject, dsaEncoding: 'ieee-p1363' }, signature, callback);
}

export const nativeVerifier: SignatureVerifier = {
  name: 'native',
  verify(key, message, signature) {
    if (signature.length !== SIGNATURE_LENGTH) return false;
    try {
      return nodeVerify(key, message, signature) === true;
    } catch {
      return false;
    }
  },
  verifyAsync(key, message, signature) {
    if (signature.length !== SIGNATURE_LENGTH) return Promise.resolve(false);
    return new Promise((resolve) => {
      try {
        nodeVerify(key, message, signature, (error, valid) => resolve(error === null && valid === true));
      } catch {
        resolve(false);
      }
    });
  },
};
