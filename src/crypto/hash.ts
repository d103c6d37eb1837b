import { hash } from 'node:crypto';

/** SHA-256 of `data` (one-shot, OpenSSL). */
export function sha256(data: Uint8Array): Uint8Array {
  return new Uint8Array(hash('sha256', data, 'buffer'));
}
