// The CBOR codec as the envelope layer sees it: the same strict decoder and deterministic
// encoder (src/cbor/), with the codec's refusals reported as envelope refusals
// (CBOR_TOO_DEEP → ENVELOPE_TOO_DEEP, …) so a sender learns why its envelope was refused in the
// envelope's own vocabulary.
import { CborError, type CborValue, type DecodeLimits, type Encodable, decodeCbor as decodeStrict, encodeCbor as encodeStrict } from '../cbor/cbor.js';
import { EnvelopeError } from './errors.js';

export { type CborMap, type CborMapKey, type CborValue, type DecodeLimits, type Encodable, CborTagged } from '../cbor/cbor.js';

/** Decodes exactly one CBOR item; throws EnvelopeError. */
export function decodeCbor(bytes: Uint8Array, limits: DecodeLimits): CborValue {
  try {
    return decodeStrict(bytes, limits);
  } catch (err) {
    throw asEnvelopeError(err);
  }
}

/** Encodes deterministically; throws EnvelopeError('ENVELOPE_UNENCODABLE'). */
export function encodeCbor(value: Encodable, sizeHint?: number): Uint8Array {
  try {
    return encodeStrict(value, sizeHint);
  } catch (err) {
    throw asEnvelopeError(err);
  }
}

function asEnvelopeError(err: unknown): unknown {
  if (!(err instanceof CborError)) return err;
  return new EnvelopeError(`ENVELOPE_${err.code.slice('CBOR_'.length)}`, err.message);
}
