import type { CborErrorCode } from '../cbor/cbor.js';
import { ZtedgeError } from '../errors.js';

/**
 * Every rejection of an envelope (COSE structure, signature, claims, replay) is an
 * EnvelopeError with a stable UPPER_SNAKE `code`, so callers, audit records and tests can
 * match on the reason without parsing messages.
 */
export type EnvelopeErrorCode =
  | 'ENVELOPE_ALG_KEY_MISMATCH'
  | 'ENVELOPE_ARGS_RESERVED_KEY'
  | 'ENVELOPE_ALG_MISSING'
  | 'ENVELOPE_ALG_UNSUPPORTED'
  | 'ENVELOPE_BAD_SIGNATURE'
  | 'ENVELOPE_CLAIM_INVALID'
  | 'ENVELOPE_CLAIM_MISSING'
  | 'ENVELOPE_CRIT_UNKNOWN'
  | 'ENVELOPE_EXPIRED'
  | 'ENVELOPE_IAT_FUTURE'
  | 'ENVELOPE_ISSUER_MISMATCH'
  | 'ENVELOPE_KID_MISSING'
  | 'ENVELOPE_KID_UNKNOWN'
  | 'ENVELOPE_LIFETIME_TOO_LONG'
  | 'ENVELOPE_NOT_YET_VALID'
  | 'ENVELOPE_REPLAY'
  | 'ENVELOPE_REPLAY_QUOTA'
  | 'ENVELOPE_REPLAY_STORE_FULL'
  | 'ENVELOPE_TIME_INVALID'
  | 'ENVELOPE_UNREADABLE'
  | 'ENVELOPE_WRONG_AUDIENCE'
  | 'ENVELOPE_WRONG_TAG'
  // The CBOR codec's refusals in the envelope's vocabulary (CBOR_TOO_DEEP → ENVELOPE_TOO_DEEP).
  | `ENVELOPE_${CborErrorCode extends `CBOR_${infer Rest}` ? Rest : never}`;

export class EnvelopeError extends ZtedgeError<EnvelopeErrorCode> {}
