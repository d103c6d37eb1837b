// Signature verification behind one interface, with two implementations selected by name:
// `native` (node:crypto / OpenSSL, the fast default) and `noble` (@noble/curves, pure
// JavaScript, for runtimes without OpenSSL). Both are held to the same Wycheproof vectors.
//
// Signatures are raw: Ed25519 64 bytes (RFC 8032), ECDSA P-256 r||s of exactly 64 bytes
// (the COSE form, RFC 9053). Both implementations verify Ed25519 strictly (canonical S and
// point encodings, as OpenSSL does) and accept high-S ECDSA signatures (COSE does not
// require low-S). verify() returns false for anything malformed and never throws; nor does
// verifyAsync(), which native runs on libuv's thread pool so the event loop goes on meanwhile.
import type { PublicKey } from './keys.js';

export type VerifierName = 'native' | 'noble';

export const VERIFIER_NAMES: readonly VerifierName[] = ['native', 'noble'];

export interface SignatureVerifier {
  readonly name: VerifierName;
  /** True only when `signature` is a valid signature of `message` under `key`. */
  verify(key: PublicKey, message: Uint8Array, signature: Uint8Array): boolean;
  /** The same answer as verify(), off the calling thread where the implementation can. */
  verifyAsync(key: PublicKey, message: Uint8Array, signature: Uint8Array): Promise<boolean>;
}
