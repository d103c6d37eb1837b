// The device's signed replies to one message of ours (a command's results, an approval's answer),
// picked out of everything arriving on the reply topics: matched by the digest of what we sent
// and, on MQTT 5, by our correlation data; checked with the device key when the caller has it.
import { bytesEqual, toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import type { PublicKey } from '../crypto/keys.js';
import { EnvelopeError } from '../envelope/errors.js';
import type { ResolvedKey } from '../envelope/signed-claims.js';
import type { InboundMessage } from '../transport/mqtt-link.js';

/** What the waiter needs to know of one kind of reply. */
export interface ReplyKind<Claims> {
  /** Reads the claims without checking the signature; throws when the payload is not this kind. */
  read(payload: Uint8Array): Claims;
  /** The digest of the message this reply answers. */
  answers(claims: Claims): Uint8Array;
  /** Checks the signature; throws an EnvelopeError when it does not verify. */
  verify(payload: Uint8Array, opts: { keyResolver: (kid: Uint8Array) => ResolvedKey | undefined; deviceId: string; now: number }): unknown;
  /** Replies that are not news (e.g. a redelivered message answered as a replay). */
  ignore?(claims: Claims): boolean;
  /** For the warning about a reply that does not verify: "a result for this command". */
  noun: string;
}

export interface Reply<Claims> {
  claims: Claims;
  /** Whether the signature was checked with the device key. */
  verified: boolean;
}

export class ReplyWaiter<Claims> {
  digest: Uint8Array | undefined;
  /** Replies accepted so far. */
  seen = 0;
  private correlation: Uint8Array | undefined;
  private readonly queue: Array<Reply<Claims>> = [];
  // Replies come at least once: the same signed bytes again are not news.
  private readonly delivered = new Set<string>();
  private wake: (() => void) | null = null;

  constructor(
    private readonly kind: ReplyKind<Claims>,
    private readonly deviceId: string,
    private readonly deviceKey: PublicKey | undefined,
    private readonly warn: (text: string) => void,
  ) {}

  expect(digest: Uint8Array, correlation?: Uint8Array): void {
    this.digest = digest;
    this.correlation = correlation;
  }

  offer(message: InboundMessage): void {
    if (this.digest === undefined) return;
    // With correlation data, MQTT 5 says whose reply this is; a different one is someone else's.
    if (this.correlation !== undefined && message.correlationData !== undefined && !bytesEqual(message.correlationData, this.correlation)) return;
    let claims: Claims;
    try {
      claims = this.kind.read(message.payload);
    } catch {
      return; // another kind of reply (they share topics)
    }
    if (!bytesEqual(this.kind.answers(claims), this.digest) || this.kind.ignore?.(claims) === true) return;
    const id = toHex(sha256(message.payload));
    if (this.delivered.has(id)) return;
    let verified = false;
    if (this.deviceKey !== undefined) {
      const deviceKey = this.deviceKey;
      try {
        this.kind.verify(message.payload, { keyResolver: (kid) => (bytesEqual(kid, deviceKey.kid) ? deviceKey : undefined), deviceId: this.deviceId, now: Date.now() });
        verified = true;
      } catch (err) {
        if (!(err instanceof EnvelopeError)) throw err;
        this.warn(`ignored ${this.kind.noun} that does not verify with the device key: ${err.code}`);
        return;
      }
    }
    this.delivered.add(id);
    this.seen++;
    this.queue.push({ claims, verified });
    this.wake?.();
  }

  /** The next reply, or null after `timeoutMs` without one. */
  async next(timeoutMs: number): Promise<Reply<Claims> | null> {
    if (this.queue.length === 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
    return this.queue.shift() ?? null;
  }
}
