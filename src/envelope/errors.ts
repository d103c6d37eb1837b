/**
 * Every rejection of an envelope (COSE structure, signature, claims, replay) is an
 * EnvelopeError with a stable UPPER_SNAKE `code`, so callers, audit records and tests can
 * match on the reason without parsing messages.
 */
export class EnvelopeError extends Error {
  override readonly name = 'EnvelopeError';

  constructor(
    readonly code: string,
    message: string,
  ) {
    super(message);
  }
}
