// Trusted time against key holders (issue 9, hole 1): a command's claims never move the device's
// clock. A key holder with no permission at all used to push it forward by sending denied
// commands whose iat sat just inside the skew, until every honest command, the e-stop included,
// was refused as expired.
import { describe, expect, it } from 'vitest';
import { signCommand } from '../../src/envelope/command.js';
import { DEVICE, command, makeCore } from './fixture.js';

const SKEW_MS = 30_000;

describe('trusted time against the clock-push attack', () => {
  it('10,000 denied commands with iat just inside the skew leave trusted time on the local clock; an honest e-stop then executes', async () => {
    const core = makeCore();
    const started = core.clock.ms;
    const outcomes = new Map<string, number>();
    // The attacker learns the device's time from everything it signs (results carry iat) and
    // always claims 25 s more, as the independent attack did.
    for (let sent = 0; sent < 10_000; sent += 250) {
      const batch = Array.from({ length: 250 }, () =>
        signCommand({
          key: core.keys.mallory,
          issuer: 'User::"mallory"',
          deviceId: DEVICE,
          topic: 'cmd',
          action: 'move',
          resource: 'Arm::"arm-01"',
          args: { speed: 1 },
          now: core.trusted.now() + 25_000,
          lifetimeMs: 60_000,
        }),
      );
      for (const out of await Promise.all(batch.map((bytes) => core.pipeline.handleCommand({ bytes, source: 'mqtt' })))) {
        const key = `${out.decision}:${out.reasons[0]}`;
        outcomes.set(key, (outcomes.get(key) ?? 0) + 1);
      }
      core.clock.ms += 10; // the local clock moves on a little meanwhile
    }
    // Every one was refused: by the policy (mallory may do nothing), never executed.
    expect([...outcomes.values()].reduce((a, b) => a + b, 0)).toBe(10_000);
    expect(outcomes.get('allow:PERMITTED')).toBeUndefined();
    expect(Math.abs(core.trusted.now() - core.clock.ms)).toBeLessThanOrEqual(SKEW_MS);
    expect(core.trusted.now()).toBeLessThan(started + 60_000);

    const estop = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms, 'estop', {}, { lifetimeMs: 60_000 }), source: 'mqtt' });
    expect(estop).toMatchObject({ decision: 'allow', outcome: 'executed' });
    core.close();
  }, 180_000);

  it('while trusted time is in doubt (system clock behind the floor), lets only @safety actions with an early iat through', async () => {
    const core = makeCore();
    // The RTC was reset: the floor (a signed time seen before) is ahead of the system clock, so
    // trusted time is a lower bound and a sender's real time may well be later.
    core.trusted.observeUpstream(core.clock.ms + 600_000);
    expect(core.trusted.inDoubt()).toBe(true);
    const senderNow = core.trusted.now() + 120_000;
    const estop = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, senderNow, 'estop'), source: 'mqtt' });
    expect(estop).toMatchObject({ decision: 'allow', outcome: 'executed', reasons: ['PERMITTED', 'CLOCK_IN_DOUBT'] });
    const move = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, senderNow, 'move', { speed: 1 }), source: 'mqtt' });
    expect(move).toMatchObject({ decision: 'deny', outcome: 'rejected', reasons: ['ENVELOPE_IAT_FUTURE'] });
    // Expiry is never waived: trusted time is a lower bound, so an envelope expired by it is expired.
    const stale = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.trusted.now() - 120_000, 'estop'), source: 'mqtt' });
    expect(stale.reasons).toEqual(['ENVELOPE_EXPIRED']);
    expect(core.executor.calls.map((c) => c.action)).toEqual(['estop']);

    // With the system clock back in step, an early iat is the sender's clock running ahead: refused.
    core.clock.ms = core.trusted.now() + 1000;
    expect(core.trusted.inDoubt()).toBe(false);
    const ahead = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms + 120_000, 'estop'), source: 'mqtt' });
    expect(ahead.reasons).toEqual(['ENVELOPE_IAT_FUTURE']);
    core.close();
  });

  it('a key holder filling the replay store crowds out only itself: an honest e-stop still executes', async () => {
    // 40 entries shared by the bundle's 4 issuer keys: 10 each.
    const core = makeCore(undefined, undefined, undefined, undefined, { replayMaxEntries: 40 });
    const reasons = new Map<string, number>();
    for (let i = 0; i < 60; i++) {
      const out = await core.pipeline.handleCommand({ bytes: command(core.keys.mallory, core.clock.ms, 'move', { speed: 1 }), source: 'mqtt' });
      reasons.set(out.reasons[0]!, (reasons.get(out.reasons[0]!) ?? 0) + 1);
    }
    expect(Object.fromEntries(reasons)).toEqual({ NO_PERMIT: 10, ENVELOPE_REPLAY_QUOTA: 50 });
    const estop = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms, 'estop'), source: 'mqtt' });
    expect(estop).toMatchObject({ decision: 'allow', outcome: 'executed' });
    core.close();
  });
});
