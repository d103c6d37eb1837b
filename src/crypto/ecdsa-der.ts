// Conversion between DER-encoded ECDSA P-256 signatures (X.509 / TLS, Wycheproof's DER
// vectors) and the raw r||s form COSE uses. Parsing is strict DER: any BER variant (long
// length forms where short ones fit, superfluous leading zeros, negative integers,
// trailing bytes) is refused, so one signature has exactly one DER encoding.
import { CryptoError } from './errors.js';

const COORDINATE_LENGTH = 32;
const SEQUENCE = 0x30;
const INTEGER = 0x02;

function invalid(reason: string): CryptoError {
  return new CryptoError('SIGNATURE_ENCODING_INVALID', `invalid DER ECDSA signature: ${reason}`);
}

/** DER ECDSA-Sig-Value → 64-byte r||s. */
export function derToP1363(der: Uint8Array): Uint8Array {
  if (der.length < 2 || der[0] !== SEQUENCE) throw invalid('not a SEQUENCE');
  const [sequenceLength, contentStart] = readLength(der, 1);
  if (contentStart + sequenceLength !== der.length) throw invalid('length does not match the input');
  const out = new Uint8Array(2 * COORDINATE_LENGTH);
  const afterR = readInteger(der, contentStart, out, 0);
  const afterS = readInteger(der, afterR, out, COORDINATE_LENGTH);
  if (afterS !== der.length) throw invalid('trailing bytes inside the SEQUENCE');
  return out;
}

/** 64-byte r||s → DER ECDSA-Sig-Value. */
export function p1363ToDer(raw: Uint8Array): Uint8Array {
  if (raw.length !== 2 * COORDINATE_LENGTH) throw invalid(`raw signature must be ${2 * COORDINATE_LENGTH} bytes`);
  const r = derInteger(raw.subarray(0, COORDINATE_LENGTH));
  const s = derInteger(raw.subarray(COORDINATE_LENGTH));
  // At most 2 * 35 content bytes: the short length form always fits.
  return Uint8Array.from([SEQUENCE, r.length + s.length, ...r, ...s]);
}

function readLength(der: Uint8Array, offset: number): [length: number, next: number] {
  const first = der[offset];
  if (first === undefined) throw invalid('truncated length');
  if (first < 0x80) return [first, offset + 1];
  if (first !== 0x81) throw invalid('length form too long for a P-256 signature');
  const length = der[offset + 1];
  if (length === undefined) throw invalid('truncated length');
  if (length < 0x80) throw invalid('long length form where the short form fits');
  return [length, offset + 2];
}

function readInteger(der: Uint8Array, offset: number, out: Uint8Array, outOffset: number): number {
  if (der[offset] !== INTEGER) throw invalid('expected an INTEGER');
  const [length, start] = readLength(der, offset + 1);
  const end = start + length;
  if (length === 0 || end > der.length) throw invalid('truncated INTEGER');
  let value = der.subarray(start, end);
  if ((value[0]! & 0x80) !== 0) throw invalid('negative INTEGER');
  if (value[0] === 0 && value.length > 1) {
    if ((value[1]! & 0x80) === 0) throw invalid('INTEGER with a superfluous leading zero');
    value = value.subarray(1);
  }
  if (value.length > COORDINATE_LENGTH) throw invalid('INTEGER larger than the curve order');
  out.set(value, outOffset + COORDINATE_LENGTH - value.length);
  return end;
}

function derInteger(unsigned: Uint8Array): number[] {
  let start = 0;
  while (start < unsigned.length - 1 && unsigned[start] === 0) start++;
  const digits = [...unsigned.subarray(start)];
  if ((digits[0]! & 0x80) !== 0) digits.unshift(0);
  return [INTEGER, digits.length, ...digits];
}
