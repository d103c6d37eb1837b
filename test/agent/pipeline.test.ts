import { describe, expect, it } from 'vitest';
import { toHex } from '../../src/crypto/bytes.js';
import { signApproval } from '../../src/envelope/approval.js';
import { decodeCbor } from '../../src/envelope/cbor.js';
import { CELL_POLICIES, approval, command, makeCore } from './fixture.js';

const limits = { maxBytes: 1 << 20, maxDepth: 32 };

describe('command pipeline', () => {
  it('executes a permitted command once, after its audit record', async () => {
    const core = makeCore();
    const bytes = command(core.keys.planner, core.clock.ms, 'move', { speed: 50 });
    const out = await core.pipeline.handleCommand({ bytes, source: 'mqtt' });
    // Policies are named by their @id in the result and in the audit record.
    expect(out).toMatchObject({ decision: 'allow', policies: ['operators-move'], reasons: ['PERMITTED'], outcome: 'executed', detail: { done: true } });
    expect(core.executor.calls).toEqual([
      { commandId: toHex(out.digest!), action: 'move', principal: 'Agent::"planner"', resource: 'Arm::"arm-01"', args: { speed: 50 } },
    ]);
    const records = core.audit.read(1, 10);
    expect(records.map((r) => r.kind)).toEqual(['decision', 'execution']);
    const decision = decodeCbor(records[0]!.body, limits) as Map<string, unknown>;
    expect(decision.get('decision')).toBe('allow');
    expect(decision.get('principal')).toBe('Agent::"planner"');
    expect(decision.get('policies')).toEqual(['operators-move']);
    // The same envelope again is a replay, also after a restart.
    expect((await core.pipeline.handleCommand({ bytes, source: 'mqtt' })).reasons).toEqual(['ENVELOPE_REPLAY']);
    const after = core.restart();
    expect((await after.pipeline.handleCommand({ bytes, source: 'mqtt' })).reasons).toEqual(['ENVELOPE_REPLAY']);
    expect(core.executor.calls).toHaveLength(1);
    expect(after.executor.calls).toHaveLength(0);
    after.close();
  });

  it('denies by policy, forbid, posture and envelope checks, never executing', async () => {
    const core = makeCore();
    const now = core.clock.ms;
    const cases: Array<[Uint8Array, string]> = [
      [command(core.keys.planner, now, 'move', { speed: 150 }), 'NO_PERMIT'],
      [command(core.keys.planner, now, 'move', { speed: 300 }), 'FORBIDDEN'],
      [command(core.keys.mallory, now, 'move', { speed: 10 }), 'NO_PERMIT'],
      [command(core.keys.stranger, now, 'move', { speed: 10 }), 'ENVELOPE_KID_UNKNOWN'],
      [command(core.keys.planner, now, 'move', { speed: 10 }, { device: 'arm-02' }), 'ENVELOPE_BAD_SIGNATURE'],
      [command(core.keys.planner, now - 120_000, 'move', { speed: 10 }), 'ENVELOPE_EXPIRED'],
      [command(core.keys.planner, now, 'move', { speed: 10 }, { topic: 'approve' }), 'ENVELOPE_BAD_SIGNATURE'],
      [new Uint8Array([0xd2, 0x84, 0x40]), 'ENVELOPE_TRUNCATED'],
    ];
    for (const [bytes, reason] of cases) {
      const out = await core.pipeline.handleCommand({ bytes, source: 'mqtt' });
      expect({ reason: out.reasons[0], decision: out.decision }).toEqual({ reason, decision: 'deny' });
    }
    core.posture.value = 'untrusted';
    expect((await core.pipeline.handleCommand({ bytes: command(core.keys.planner, now, 'move', { speed: 10 }), source: 'mqtt' })).reasons).toEqual(['NO_PERMIT']);
    expect(core.executor.calls).toHaveLength(0);
    expect(core.audit.verify()).toBeUndefined();
    expect(core.audit.head().seq).toBe(cases.length + 1);
    core.close();
  });

  it('enforces @rate per principal and action, across a restart, and recovers after the period', async () => {
    let core = makeCore();
    const send = async () => (await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms, 'move', { speed: 1 }), source: 'mqtt' })).reasons[0];
    expect([await send(), await send()]).toEqual(['PERMITTED', 'PERMITTED']);
    core = core.restart();
    expect([await send(), await send()]).toEqual(['PERMITTED', 'RATE_LIMITED']);
    core.clock.ms += 61_000;
    expect(await send()).toBe('PERMITTED');
    core.close();
  });

  it('lets only @safety actions through in fail-closed mode', async () => {
    const core = makeCore();
    core.failClosed.active = true;
    const move = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms, 'move', { speed: 1 }), source: 'mqtt' });
    const estop = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms, 'estop'), source: 'mqtt' });
    expect([move.reasons, estop.outcome]).toEqual([['FAIL_CLOSED'], 'executed']);
    core.close();
  });

  it('holds @approval commands until two distinct permitted approvers agree, across a restart', async () => {
    let core = makeCore();
    const weld = command(core.keys.planner, core.clock.ms, 'weld');
    const held = await core.pipeline.handleCommand({ bytes: weld, source: 'mqtt', reply: { topic: 'r' } });
    expect(held).toMatchObject({ decision: 'pending', outcome: 'pending_approval', reasons: ['APPROVAL_REQUIRED'] });
    const digest = held.digest!;
    const now = () => core.clock.ms;
    expect((await core.pipeline.handleApproval(approval(core.keys.mallory, now(), digest))).code).toBe('APPROVAL_NOT_APPROVER');
    expect((await core.pipeline.handleApproval(approval(core.keys.planner, now(), digest))).code).toBe('APPROVAL_SELF');
    expect((await core.pipeline.handleApproval(approval(core.keys.alice, now(), digest))).code).toBe('APPROVAL_COUNTED');
    expect((await core.pipeline.handleApproval(approval(core.keys.alice, now(), digest))).code).toBe('APPROVAL_DUPLICATE');
    expect(core.executor.calls).toHaveLength(0);
    core = core.restart();
    core.clock.ms += 1000;
    const done = await core.pipeline.handleApproval(approval(core.keys.bob, now(), digest));
    expect(done.code).toBe('APPROVAL_QUORUM');
    expect(done.settled?.outcome).toMatchObject({ decision: 'allow', outcome: 'executed', reasons: ['APPROVED'] });
    expect(done.settled?.command.reply).toMatchObject({ route: { topic: 'r' } });
    expect(core.executor.calls.map((c) => c.action)).toEqual(['weld']);
    // The policy says @grant_ttl("5m"): the approval created a just-in-time grant, shown with its
    // expiry, and the same weld within 5 minutes needs no new quorum.
    expect(done.settled?.outcome.grantExpiresMs).toBe(now() + 5 * 60_000);
    const again = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, now(), 'weld'), source: 'mqtt' });
    expect(again).toMatchObject({ decision: 'allow', reasons: ['JIT_GRANT'], outcome: 'executed', grantExpiresMs: now() + 5 * 60_000 });
    core.clock.ms += 5 * 60_000;
    expect(await core.pipeline.handleCommand({ bytes: command(core.keys.planner, now(), 'weld'), source: 'mqtt' })).toMatchObject({ decision: 'pending' });
    core.close();
  });

  it('refuses an approval whose iss names another approver; it counts for nobody', async () => {
    const core = makeCore();
    const held = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms, 'weld'), source: 'mqtt' });
    const posing = signApproval({ key: core.keys.mallory, issuer: 'User::"alice"', deviceId: 'arm-01', topic: 'approve', commandDigest: held.digest!, decision: 'approve', now: core.clock.ms, lifetimeMs: 60_000 });
    expect((await core.pipeline.handleApproval(posing)).code).toBe('ENVELOPE_ISSUER_MISMATCH');
    // Her own iss is accepted as such (and she is no approver).
    const own = signApproval({ key: core.keys.mallory, issuer: 'User::"mallory"', deviceId: 'arm-01', topic: 'approve', commandDigest: held.digest!, decision: 'approve', now: core.clock.ms, lifetimeMs: 60_000 });
    expect((await core.pipeline.handleApproval(own)).code).toBe('APPROVAL_NOT_APPROVER');
    expect((await core.pipeline.handleApproval(approval(core.keys.alice, core.clock.ms, held.digest!))).code).toBe('APPROVAL_COUNTED');
    core.close();
  });

  it('denies a held command whose expiry comes before its quorum', async () => {
    const core = makeCore();
    const weld = command(core.keys.planner, core.clock.ms, 'weld', {}, { lifetimeMs: 10_000 });
    const held = await core.pipeline.handleCommand({ bytes: weld, source: 'mqtt' });
    await core.pipeline.handleApproval(approval(core.keys.alice, core.clock.ms, held.digest!));
    core.clock.ms += 11_000;
    expect((await core.pipeline.handleApproval(approval(core.keys.bob, core.clock.ms, held.digest!))).code).toBe('APPROVAL_EXPIRED');
    const expired = await core.pipeline.expirePending();
    expect(expired.map((e) => e.outcome.reasons)).toEqual([['APPROVAL_EXPIRED']]);
    expect(core.executor.calls).toHaveLength(0);
    core.close();
  });

  it('approves exactly one command when the policy grants nothing: the same command again is held again', async () => {
    const core = makeCore(undefined, undefined, undefined, undefined, { policies: CELL_POLICIES.replace('@grant_ttl("5m")\n', '') });
    const weld = async () => core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms, 'weld'), source: 'mqtt' });
    const held = await weld();
    expect(held.decision).toBe('pending');
    await core.pipeline.handleApproval(approval(core.keys.alice, core.clock.ms, held.digest!));
    const done = await core.pipeline.handleApproval(approval(core.keys.bob, core.clock.ms, held.digest!));
    expect(done.settled?.outcome).toMatchObject({ decision: 'allow', reasons: ['APPROVED'], outcome: 'executed' });
    expect(done.settled?.outcome.grantExpiresMs).toBeUndefined();
    expect(await weld()).toMatchObject({ decision: 'pending', reasons: ['APPROVAL_REQUIRED'] });
    expect(core.executor.calls.map((c) => c.action)).toEqual(['weld']);
    core.close();
  });

  it('answers each approval with its code and reason, the quorum before the command runs, and records every approver', async () => {
    const core = makeCore();
    const held = await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms, 'weld'), source: 'mqtt' });
    const answers: Array<Record<string, unknown>> = [];
    const approve = (key: typeof core.keys.alice) =>
      core.pipeline.handleApproval(approval(key, core.clock.ms, held.digest!), (a) => answers.push({ code: a.code, message: a.message, approvals: a.approvals, executed: core.executor.calls.length, grant: a.grantExpiresMs }));
    await approve(core.keys.mallory);
    await approve(core.keys.alice);
    await approve(core.keys.bob);
    expect(answers).toEqual([
      { code: 'APPROVAL_NOT_APPROVER', message: 'User::"mallory" is not in Role::"supervisor", whose approval this command needs', approvals: undefined, executed: 0, grant: undefined },
      { code: 'APPROVAL_COUNTED', message: 'approval 1 of 2 counted; the command waits for 1 more', approvals: 1, executed: 0, grant: undefined },
      { code: 'APPROVAL_QUORUM', message: 'approval 2 of 2: quorum reached; the command is allowed and runs', approvals: 2, executed: 0, grant: core.clock.ms + 5 * 60_000 },
    ]);
    expect(core.executor.calls).toHaveLength(1);
    // Garbage is answered too (within the refusal answer rate), with the envelope's code.
    const garbage = await core.pipeline.handleApproval(new Uint8Array([1, 2, 3]));
    expect(garbage).toMatchObject({ code: 'ENVELOPE_TRAILING_BYTES' });
    expect(garbage.unanswered).toBeUndefined();
    const records = core.audit.read(1, 100).map((r) => decodeCbor(r.body, limits) as Map<string, unknown>);
    const allowed = records.find((b) => b.get('decision') === 'allow')!;
    expect(allowed.get('approvers')).toEqual(['User::"alice"', 'User::"bob"']);
    expect(records.find((b) => b.get('approval') === 'APPROVAL_NOT_APPROVER')?.get('message')).toMatch(/is not in Role::"supervisor"/);
    core.close();
  });
});
