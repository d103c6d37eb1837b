// Acknowledgement order for messages handled concurrently. MQTT requires a client to send
// PUBACKs in the order the PUBLISH packets arrived (MQTT 5 §4.6, MQTT 3.1.1 §4.6), so a message
// whose handler finishes early waits for every earlier one. Entries are numbered by arrival;
// finishing one returns the run of entries, from the oldest, that may now be acknowledged.

export class AckOrder<T> {
  private readonly entries: Array<{ item: T; finished: boolean }> = [];
  /** Arrival number of entries[0]. */
  private first = 0;

  /** Registers an arrival; returns its number, to pass to finish(). */
  arrive(item: T): number {
    this.entries.push({ item, finished: false });
    return this.first + this.entries.length - 1;
  }

  /**
   * Marks an arrival finished. Returns the entries now acknowledgeable, oldest first (empty while
   * an earlier one is unfinished, and for an arrival dropped by clear()).
   */
  finish(ticket: number): T[] {
    const entry = this.entries[ticket - this.first];
    if (entry === undefined) return [];
    entry.finished = true;
    const ready: T[] = [];
    while (this.entries.length > 0 && this.entries[0]!.finished) {
      ready.push(this.entries.shift()!.item);
      this.first++;
    }
    return ready;
  }

  /** Forgets every waiting entry (their connection is gone; the broker redelivers them). */
  clear(): void {
    this.first += this.entries.length;
    this.entries.length = 0;
  }

  /** Entries not yet released. */
  get size(): number {
    return this.entries.length;
  }
}
