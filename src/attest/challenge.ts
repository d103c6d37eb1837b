// Admission of attestation challenges: a nonce of 8-64 bytes, each nonce answered once, and a
// rate limit, so a flood of challenges cannot keep the device signing (and its TPM quoting).
// Pure: the clock is passed in.
import { toHex } from '../crypto/bytes.js';
import { AttestError } from './errors.js';
import { checkNonce } from './evidence.js';

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
