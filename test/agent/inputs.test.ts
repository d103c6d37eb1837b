// Issue 9, hole 5: whatever a command holds, the pipeline answers it and records (or counts) what
// it refused; nothing it is given makes it throw.
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { AuditError } from '../../src/audit/log.js';
import type { CborMapKey, Encodable } from '../../src/envelope/cbor.js';
import { CLAIM } from '../../src/envelope/claims.js';
import { sealEnvelope } from '../../src/envelope/signed-claims.js';
import type { PrivateKey } from '../../src/crypto/keys.js';
import { DEVICE, T0, command, makeCore, makeKeys } from './fixture.js';

function withArgs(key: PrivateKey, now: number, action: string, args: Encodable): Uint8Array {
  return sealEnvelope(
    new Map<CborMapKey, Encodable>([
      [CLAIM.aud, DEVICE],
      [CLAIM.exp, Math.floor(now / 1000) + 60],
      [CLAIM.iat, Math.floor(now / 1000)],
      [CLAIM.cti, new Uint8Array(randomBytes(16))],
      ['act', action],
      ['res', 'Arm::"arm-01"'],
      ['args', args],
    ]),
    { key, deviceId: DEVICE, topic: 'cmd' },
  );
}

/** Args as a sender in any language could encode them: maps with any text keys, nested. */
const argValue: fc.Arbitrary<Encodable> = fc.letrec<{ value: Encodable; map: Encodable }>((tie) => ({
  value: fc.oneof(
    { depthSize: 'small' },
    fc.integer(),
    // Every integer CBOR can carry: -(2^64) … 2^64 − 1.
    fc.bigInt({ min: -(1n << 64n), max: (1n << 64n) - 1n }),
    fc.string({ maxLength: 12 }),
    fc.boolean(),
    fc.array(tie('value'), { maxLength: 4 }),
    tie('map'),
  ),
  map: fc
    .uniqueArray(fc.tuple(fc.oneof(fc.constantFrom('__proto__', 'constructor', 'prototype', 'speed', 'toString', 'hasOwnProperty'), fc.string({ maxLength: 8 })), tie('value')), {
      maxLength: 5,
      selector: ([k]) => k,
    })
    .map((entries) => new Map<CborMapKey, Encodable>(entries)),
})).map;

describe('the pipeline under any input', () => {
  it('answers every signed command whatever its args hold, and records or counts each', async () => {
    const core = makeCore();
    // Decisions get a record each; refusals before a decision are counted (and sampled).
    const refusals = () => [...core.metrics.render().matchAll(/^ztedge_refusals_total\{[^}]*\} (\d+)$/gm)].reduce((n, m) => n + Number(m[1]), 0);
    let seen = core.audit.head().seq + refusals();
    await fc.assert(
      fc.asyncProperty(argValue, fc.constantFrom('move', 'estop', 'weld', 'grip'), fc.boolean(), async (args, action, fromMallory) => {
        const key = fromMallory ? core.keys.mallory : core.keys.planner;
        const out = await core.pipeline.handleCommand({ bytes: withArgs(key, core.clock.ms, action, args), source: 'mqtt' });
        expect(['allow', 'deny', 'pending']).toContain(out.decision);
        expect(out.reasons.length).toBeGreaterThan(0);
        expect(out.reasons).not.toContain('INTERNAL_ERROR');
        expect(out.reasons).not.toContain('AUDIT_UNAVAILABLE');
        expect(core.audit.head().seq + refusals()).toBeGreaterThan(seen);
        seen = core.audit.head().seq + refusals();
        core.clock.ms += 61_000; // past every rate window
      }),
      { numRuns: 300 },
    );
    expect(core.audit.verify()).toBeUndefined();
    core.close();
  });

  it('answers a command whose records cannot be written with a denial, never a throw', async () => {
    const failing = { append: () => Promise.reject(new AuditError('AUDIT_WRITE_FAILED', 'disk full')) };
    const core = makeCore(makeKeys(), undefined, { ms: T0 }, undefined, { audit: failing });
    for (const key of [core.keys.mallory, core.keys.planner]) {
      const out = await core.pipeline.handleCommand({ bytes: command(key, core.clock.ms, 'move', { speed: 1 }), source: 'mqtt' });
      expect(out).toMatchObject({ decision: 'deny', reasons: ['AUDIT_UNAVAILABLE'], outcome: 'not_executed' });
    }
    expect(core.executor.calls).toEqual([]);
    core.close();
  });
});
