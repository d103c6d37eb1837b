// Verification on node:crypto (OpenSSL). Creating a KeyObject costs more than an Ed25519
// verify, so one is cached per PublicKey object for as long as that object lives.
import { type KeyObject, verify } from 'node:crypto';
import { type PublicKey, publicKeyToKeyObject } from './keys.js';
import { SIGNATURE_LENGTH } from './algorithms.js';
import type { SignatureVerifier } from './verifier.js';

const keyObjects = new WeakMap<PublicKey, KeyObject>();

function keyObjectFor(key: PublicKey): KeyObject {
  let keyObject = keyObjects.get(key);
  if (keyObject === undefined) {
    keyObject = publicKeyToKeyObject(key);
    keyObjects.set(key, keyObject);
  }
  return keyObject;
}

export const nativeVerifier: SignatureVerifier = {
  name: 'native',
  verify(key, message, signature) {
    if (signature.length !== SIGNATURE_LENGTH) return false;
    try {
      const keyObject = keyObjectFor(key);
      return key.keyType === 'ed25519'
        ? verify(null, message, keyObject, signature)
        : verify('sha256', message, { key: keyObject, dsaEncoding: 'ieee-p1363' }, signature);
    } catch {
      return false;
    }
  },
};
