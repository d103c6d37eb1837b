import { ZtedgeError } from '../errors.js';

/**
 * Failures of key handling and signature encoding, each with a stable UPPER_SNAKE `code`.
 * Signature verification itself never throws: an invalid signature is `false`.
 */
export type CryptoErrorCode =
  | 'KEY_FILE_EXISTS'
  | 'KEY_FILE_PERMISSIONS'
  | 'KEY_FILE_UNREADABLE'
  | 'KEY_FILE_UNWRITABLE'
  | 'KEY_INVALID'
  | 'KEY_TYPE_UNSUPPORTED'
  | 'SIGNATURE_ENCODING_INVALID'
  | 'VERIFIER_UNKNOWN';

export class CryptoError extends ZtedgeError<CryptoErrorCode> {}
