import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { backoffDelayMs, checkBackoffPolicy } from '../../src/transport/backoff.js';

const policy = { initialMs: 500, maxMs: 60_000 };

describe('backoffDelayMs', () => {
  it('stays within [ceiling/2, ceiling] with ceiling = min(max, initial·2^attempt)', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 100 }), fc.double({ min: 0, max: 1, maxExcluded: true, noNaN: true }), (attempt, r) => {
        const ceiling = Math.min(policy.maxMs, policy.initialMs * 2 ** attempt);
        const delay = backoffDelayMs(attempt, policy, () => r);
        expect(delay).toBeGreaterThanOrEqual(Math.floor(ceiling / 2));
        expect(delay).toBeLessThanOrEqual(ceiling);
      }),
    );
  });

  it('doubles the range per attempt until the cap', () => {
    const low = (attempt: number) => backoffDelayMs(attempt, policy, () => 0);
    const high = (attempt: number) => backoffDelayMs(attempt, policy, () => 0.999999);
    expect([0, 1, 2, 3].map(low)).toEqual([250, 500, 1000, 2000]);
    expect([0, 1, 2, 3].map(high)).toEqual([500, 1000, 2000, 4000]);
    expect(low(20)).toBe(30_000);
    expect(high(1e9)).toBe(60_000);
  });

  it('spreads clients with different randomness apart', () => {
    const delays = new Set([0, 0.25, 0.5, 0.75].map((r) => backoffDelayMs(4, policy, () => r)));
    expect(delays.size).toBe(4);
  });

  it('clamps a misbehaving random source and negative attempts', () => {
    expect(backoffDelayMs(0, policy, () => 7)).toBe(500);
    expect(backoffDelayMs(0, policy, () => -3)).toBe(250);
    expect(backoffDelayMs(-5, policy, () => 0)).toBe(250);
  });
});

describe('checkBackoffPolicy', () => {
  it('accepts a sane policy and explains a bad one', () => {
    expect(checkBackoffPolicy(policy)).toBeNull();
    expect(checkBackoffPolicy({ initialMs: 0, maxMs: 10 })).toMatch(/initialMs/);
    expect(checkBackoffPolicy({ initialMs: 100, maxMs: 10 })).toMatch(/maxMs/);
    expect(checkBackoffPolicy({ initialMs: Number.NaN, maxMs: 10 })).toMatch(/initialMs/);
  });
});
