// Admission of attestation challenges: a nonce of 8-64 bytes, each nonce answered once, and a
// rate limit, so a flood of challenges cannot keep the device signing (and its TPM quoting).
// Pure: the clock is passed in.
import { toHex } from '../crypto/bytes.js';
import { decodeCbor, encodeCbor } from '../envelope/cbor.js';
import { decodeSign1 } from '../envelope/cose.js';
import { EnvelopeError } from '../envelope/errors.js';
import { AttestError } from './errors.js';
import { EAT, EVIDENCE_MAX_BYTES, checkNonce } from './evidence.js';

export interface ChallengeGuardOptions {
  /** Challenges answered per window (a token bucket of that size, refilled evenly). Default 10. */
  readonly limit?: number;
  /** Default 60 s. */
  readonly windowMs?: number;
  /** How long an answered nonce is remembered (refused if it comes again). Default 1 h. */
  readonly rememberMs?: number;
  /** Most nonces remembered; the oldest are forgotten first. Default 10,000. */
  readonly maxRemembered?: number;
  readonly now: () => number;
}

export class ChallengeGuard {
  readonly limit: number;
  readonly windowMs: number;
  #tokens: number;
  #refilledAt: number;
  /** Nonce (hex) → when it was answered; insertion order is age order. */
  readonly #answered = new Map<string, number>();
  readonly #rememberMs: number;
  readonly #maxRemembered: number;
  readonly #now: () => number;

  constructor(options: ChallengeGuardOptions) {
    this.limit = options.limit ?? 10;
    this.windowMs = options.windowMs ?? 60_000;
    this.#rememberMs = options.rememberMs ?? 3_600_000;
    this.#maxRemembered = options.maxRemembered ?? 10_000;
    this.#now = options.now;
    this.#tokens = this.limit;
    this.#refilledAt = this.#now();
  }

  /**
   * Admits a challenge or throws: ATTEST_NONCE_INVALID (length), ATTEST_NONCE_REUSED,
   * ATTEST_RATE_LIMITED. A refused challenge uses up nothing.
   */
  admit(nonce: Uint8Array): void {
    checkNonce(nonce);
    const now = this.#now();
    this.#forget(now);
    const key = toHex(nonce);
    if (this.#answered.has(key)) throw new AttestError('ATTEST_NONCE_REUSED', 'this nonce was answered already; send a fresh one');
    this.#refill(now);
    if (this.#tokens < 1) {
      throw new AttestError('ATTEST_RATE_LIMITED', `more than ${this.limit} challenges in ${this.windowMs / 1000}s; try again later`);
    }
    this.#tokens -= 1;
    this.#answered.set(key, now);
    if (this.#answered.size > this.#maxRemembered) this.#answered.delete(this.#answered.keys().next().value!);
  }

  #refill(now: number): void {
    const elapsed = Math.max(0, now - this.#refilledAt);
    this.#tokens = Math.min(this.limit, this.#tokens + (elapsed * this.limit) / this.windowMs);
    this.#refilledAt = now;
  }

  #forget(now: number): void {
    for (const [key, at] of this.#answered) {
      if (now - at <= this.#rememberMs) break;
      this.#answered.delete(key);
    }
  }
}

// ---------------------------------------------------------------------------------------
// On the wire: a challenge on `attest/challenge` is the nonce itself (8-64 raw bytes); the
// answer on `attest/evidence` (or the MQTT 5 response topic, with the correlation data) is the
// evidence, or — when the challenge is refused — a small unsigned CBOR map
// { "error": code, "message": text, "nonce": bytes } so the challenger need not wait for nothing.

export function encodeRefusal(code: string, message: string, nonce: Uint8Array): Uint8Array {
  return encodeCbor({ error: code, message: message.slice(0, 300), nonce: nonce.slice(0, 64) });
}

export type ChallengeReply =
  | { readonly kind: 'evidence'; readonly nonce: Uint8Array }
  | { readonly kind: 'refusal'; readonly nonce: Uint8Array; readonly code: string; readonly message: string };

/** Recognizes a reply and the nonce it answers, without verifying anything; null if neither. */
export function readChallengeReply(bytes: Uint8Array): ChallengeReply | null {
  try {
    const value = decodeCbor(bytes, { maxBytes: EVIDENCE_MAX_BYTES, maxDepth: 8, allowRootTag: true });
    if (value instanceof Map) {
      const [code, message, nonce] = [value.get('error'), value.get('message'), value.get('nonce')];
      if (typeof code !== 'string' || typeof message !== 'string' || !(nonce instanceof Uint8Array)) return null;
      return { kind: 'refusal', code, message, nonce };
    }
    const message = decodeSign1(bytes, { maxBytes: EVIDENCE_MAX_BYTES, maxDepth: 8 });
    const claims = decodeCbor(message.payload, { maxBytes: EVIDENCE_MAX_BYTES, maxDepth: 4 });
    const nonce = claims instanceof Map ? claims.get(EAT.nonce) : undefined;
    return nonce instanceof Uint8Array ? { kind: 'evidence', nonce } : null;
  } catch (err) {
    if (err instanceof EnvelopeError) return null;
    throw err;
  }
}
