// Picks a signature verifier by name (see signature-verifier.ts for the interface both implement).
import { CryptoError } from './errors.js';
import { nativeVerifier } from './native-verifier.js';
import { nobleVerifier } from './noble-verifier.js';
import { type SignatureVerifier, type VerifierName, VERIFIER_NAMES } from './signature-verifier.js';

export { type SignatureVerifier, type VerifierName, VERIFIER_NAMES };

export function getVerifier(name: string = 'native'): SignatureVerifier {
  if (name === 'native') return nativeVerifier;
  if (name === 'noble') return nobleVerifier;
  throw new CryptoError('VERIFIER_UNKNOWN', `unknown verifier '${name}' (expected ${VERIFIER_NAMES.join(' or ')})`);
}
