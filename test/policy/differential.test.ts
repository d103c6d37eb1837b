// Differential test: random policy sets, entity graphs and requests through ztedge's engine and
// through cedar-wasm (the reference implementation). Decisions, determining policy sets and
// errored policy sets must be identical. Some policies call extension functions with the wrong
// number of arguments, which Cedar loads and reports as evaluation errors.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { extensionArityProblems, parsePolicies } from '../../src/policy/index.js';
import { authorizationCase } from './support/generators.js';
import { engineOutcome, oracleOutcome, reproducer, sameOutcome } from './support/differential.js';
import type { Outcome } from './support/differential.js';

const RUNS = 5000;
// About 20 s on an idle machine; generous because CI machines are often shared.
const TIMEOUT_MS = 300_000;

function describeError(e: unknown): string {
  return e instanceof Error ? `${e.name}: ${e.message}` : String(e);
}

describe('differential: ztedge vs cedar-wasm', () => {
  it(`agrees on ${RUNS} random authorization cases`, () => {
    const buckets = { allow: 0, deny: 0, errored: 0, wrongArity: 0 };
    fc.assert(
      fc.property(authorizationCase, (c) => {
        let expected: Outcome;
        try {
          expected = oracleOutcome(c);
        } catch (e) {
          // The generator must only make inputs cedar-wasm accepts.
          throw new Error(`cedar-wasm refused a generated input\n${reproducer(c, '(not run)', describeError(e))}`);
        }
        let ours: Outcome;
        try {
          ours = engineOutcome(c);
        } catch (e) {
          throw new Error(`ztedge threw where cedar-wasm decided\n${reproducer(c, describeError(e), expected)}`);
        }
        if (!sameOutcome(ours, expected)) throw new Error(`mismatch\n${reproducer(c, ours, expected)}`);
        buckets[expected.decision]++;
        if (expected.errored.length > 0) buckets.errored++;
        if (extensionArityProblems(parsePolicies(c.policies)).length > 0) buckets.wrongArity++;
      }),
      { numRuns: RUNS, seed: Number(process.env.DIFF_SEED ?? Date.now() % 2 ** 31), endOnFailure: false },
    );
    const share = (n: number) => n / RUNS;
    console.log(
      `differential: ${RUNS} cases: allow ${(100 * share(buckets.allow)).toFixed(1)}%, ` +
        `deny ${(100 * share(buckets.deny)).toFixed(1)}%, with errored policies ${(100 * share(buckets.errored)).toFixed(1)}%, ` +
        `with wrong-arity extension calls ${(100 * share(buckets.wrongArity)).toFixed(1)}%`,
    );
    // The generator must exercise every outcome, or agreement proves little.
    expect(share(buckets.allow)).toBeGreaterThanOrEqual(0.05);
    expect(share(buckets.deny)).toBeGreaterThanOrEqual(0.05);
    expect(share(buckets.errored)).toBeGreaterThanOrEqual(0.05);
    expect(share(buckets.wrongArity)).toBeGreaterThanOrEqual(0.03);
  }, TIMEOUT_MS);
});
