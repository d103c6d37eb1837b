// The signed results of recent MQTT commands, by the digest of the envelope bytes.
//
// MQTT delivers at least once: a broker redelivers a command whose acknowledgement it lost, and a
// sender's client resends a publish it saw no PUBACK for. The replay guard makes sure such a
// repeat never runs again, but answering it with a fresh "replay" denial would tell the sender
// that a command failed when it ran. So a repeat of the exact bytes is answered with the same
// signed result as the first arrival (once that is known); anything else the replay guard refuses
// gets its own denial. Kept in memory for the most recent commands only: after a restart, or for
// an old command, a repeat gets the replay denial — never a second execution either way.

/** A result, or the promise of one (results are signed off the event loop). */
type Result = Uint8Array | null | Promise<Uint8Array | null>;

export type FirstArrival = { first: true; settle: (result: Result) => void } | { first: false; earlier: Promise<Uint8Array | null> };

export class RecentResults {
  private readonly byDigest = new Map<string, Promise<Uint8Array | null>>();
  private readonly resolvers = new Map<string, (result: Result) => void>();

  constructor(private readonly capacity: number) {
    if (!Number.isSafeInteger(capacity) || capacity < 1) throw new RangeError('capacity must be a positive integer');
  }

  /**
   * Called when a command arrives. The first arrival of `digest` must settle with its signed result
   * (null when there is none to repeat); later arrivals get a promise of it.
   */
  arrive(digest: string): FirstArrival {
    const earlier = this.byDigest.get(digest);
    if (earlier !== undefined) return { first: false, earlier };
    let resolve!: (result: Result) => void;
    this.byDigest.set(digest, new Promise((r) => (resolve = r)));
    this.resolvers.set(digest, resolve);
    this.evict();
    return {
      first: true,
      settle: (result) => {
        this.resolvers.delete(digest);
        resolve(result);
      },
    };
  }

  /** A later result for the same command (a held command settled): repeats get this one now. */
  update(digest: string, result: Uint8Array | Promise<Uint8Array>): void {
    if (!this.byDigest.has(digest)) return;
    this.byDigest.set(digest, Promise.resolve(result).catch(() => null));
  }

  get size(): number {
    return this.byDigest.size;
  }

  private evict(): void {
    while (this.byDigest.size > this.capacity) {
      const oldest = this.byDigest.keys().next().value!;
      // An evicted first arrival still in progress answers its waiters with nothing to repeat.
      this.resolvers.get(oldest)?.(null);
      this.resolvers.delete(oldest);
      this.byDigest.delete(oldest);
    }
  }
}
