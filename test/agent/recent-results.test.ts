import { describe, expect, it } from 'vitest';
import { RecentResults } from '../../src/agent/recent-results.js';

const bytes = (n: number) => new Uint8Array([n]);

describe('RecentResults', () => {
  it('gives later arrivals of a command the first arrival\'s result, once known, and then its update', async () => {
    const recent = new RecentResults(10);
    const first = recent.arrive('aa');
    const second = recent.arrive('aa');
    if (!first.first || second.first) throw new Error('expected one first arrival');
    let answered: Uint8Array | null | undefined;
    void second.earlier.then((r) => (answered = r));
    await Promise.resolve();
    expect(answered).toBeUndefined(); // still in progress
    first.settle(bytes(1));
    expect(await second.earlier).toEqual(bytes(1));
    recent.update('aa', bytes(2));
    const third = recent.arrive('aa');
    expect(third.first).toBe(false);
    expect(third.first ? null : await third.earlier).toEqual(bytes(2));
    // Another command is a first arrival of its own.
    expect(recent.arrive('bb').first).toBe(true);
  });

  it('forgets the oldest commands beyond its capacity; waiters on a forgotten one get nothing to repeat', async () => {
    const recent = new RecentResults(2);
    recent.arrive('a');
    const waiting = recent.arrive('a');
    const b = recent.arrive('b');
    if (!b.first) throw new Error('expected a first arrival');
    b.settle(bytes(7));
    recent.arrive('c');
    expect(recent.size).toBe(2);
    expect(waiting.first ? 'first' : await waiting.earlier).toBeNull();
    expect(recent.arrive('a').first).toBe(true);
    recent.update('zz', bytes(9)); // never seen: not remembered
    expect(recent.arrive('zz').first).toBe(true);
  });
});
