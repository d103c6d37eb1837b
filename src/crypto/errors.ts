/**
 * Failures of key handling and signature encoding, each with a stable UPPER_SNAKE `code`.
 * Signature verification itself never throws: an invalid signature is `false`.
 */
export class CryptoError extends Error {
  override readonly name = 'CryptoError';

  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
