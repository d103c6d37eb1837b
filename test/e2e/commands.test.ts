// Issue 5 end to end: signed commands from the broker to the simulated arm through a running agent
// (Mosquitto, MQTT 5 when installed), and what the agent refuses on the way.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import type { CborMapKey, Encodable } from '../../src/envelope/cbor.js';
import { CLAIM } from '../../src/envelope/claims.js';
import { sealEnvelope } from '../../src/envelope/signed-claims.js';
import { type TestBroker, startBroker } from '../support/broker.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { ARM, auditTrail, brokerArgs, cli, command, DEVICE, GRIP_POLICY, makeSite, Operator, PREFIX, type RunningAgent, type Site, startAgent, startArm, untilOnlineWithBundle } from './support.js';
import { CELL_POLICIES } from '../agent/fixture.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

async function setup(opts: { now?: () => number; raw?: Record<string, unknown> } = {}) {
  const broker = await startBroker();
  cleanups.push(() => broker.stop());
  const site = makeSite();
  cleanups.push(() => site.remove());
  const bundleFile = site.bundleFile(1, CELL_POLICIES + GRIP_POLICY);
  const running = await launch(site, broker, bundleFile, opts);
  const arm = await startArm(broker);
  cleanups.push(() => arm.stop());
  const operator = await Operator.connect(broker, site);
  cleanups.push(() => operator.close());
  return { broker, site, arm, operator, bundleFile, ...running };
}

/** Starts an agent that installs the cell bundle (revision 1, plus grip) from its bundle file. */
async function launch(site: Site, broker: TestBroker, bundleFile: string, opts: { now?: () => number; raw?: Record<string, unknown> } = {}) {
  const running: RunningAgent = await startAgent(site.config(broker.url, { bundleFile, ...opts.raw }), opts.now);
  cleanups.push(() => running.stop());
  await untilOnlineWithBundle(running.agent);
  return { running, agent: running.agent };
}

describe('commands over MQTT, end to end', () => {
  it('executes an allowed command exactly once on the arm, with a result signed by the device', async () => {
    const { broker, site, arm, agent } = await setup();
    const sent = await cli([
      'cmd', 'send', ...brokerArgs(broker),
      '--key', site.keyFile('planner'),
      '--act', 'move', '--res', ARM, '--args', '{"speed": 40, "x": 120}',
      '--device-key', site.pubFile('device'),
    ]);
    expect(sent.stderr).toEqual([]);
    expect(sent.code).toBe(0);
    const result = JSON.parse(sent.stdout[0]!);
    expect(result).toMatchObject({ decision: 'allow', outcome: 'executed', reasons: ['PERMITTED'], policies: ['operators-move'], device: DEVICE, verified: true });
    expect(arm.executed).toEqual([{ commandId: result.command, action: 'move', principal: 'Agent::"planner"', resource: ARM, args: { speed: 40, x: 120 } }]);
    expect(arm.state.position.x).toBe(120);
    // Decision before execution in the audit log, both naming the command.
    const records = auditTrail(agent).filter(({ record }) => record.kind === 'decision' || record.kind === 'execution');
    expect(records.map(({ record, body }) => [record.kind, toHex(body.get('cmd') as Uint8Array)])).toEqual([
      ['decision', result.command],
      ['execution', result.command],
    ]);
    expect(agent.audit.verify()).toBeUndefined();
  });

  it('denies by policy (no permit, forbid) and executes nothing', async () => {
    const { broker, site, arm } = await setup();
    const send = (args: string) =>
      cli(['cmd', 'send', ...brokerArgs(broker), '--key', site.keyFile('planner'), '--act', 'move', '--res', ARM, '--args', args, '--device-key', site.pubFile('device')]);
    const [tooFast, overCap] = [await send('{"speed": 150}'), await send('{"speed": 300}')];
    expect([tooFast.code, overCap.code]).toEqual([3, 3]);
    expect(JSON.parse(tooFast.stdout[0]!)).toMatchObject({ decision: 'deny', reasons: ['NO_PERMIT'], outcome: 'not_executed', verified: true });
    expect(JSON.parse(overCap.stdout[0]!)).toMatchObject({ decision: 'deny', reasons: ['FORBIDDEN'], policies: ['speed-cap'], verified: true });
    const mallory = await cli(['cmd', 'send', ...brokerArgs(broker), '--key', site.keyFile('mallory'), '--act', 'grip', '--res', ARM]);
    expect(mallory.code).toBe(3);
    expect(JSON.parse(mallory.stdout[0]!)).toMatchObject({ decision: 'deny', reasons: ['NO_PERMIT'], verified: false });
    expect(arm.executed).toEqual([]);
  });

  it('refuses unknown issuers, forged signatures, wrong audiences and expired commands before any policy', async () => {
    const { site, arm, operator, agent } = await setup();
    const { keys } = site;
    const forged = command(keys.planner, 'grip');
    forged[forged.length - 1] ^= 0x01; // the last byte of the signature
    const now = Date.now();
    // Signed for this device's topic binding but addressed (aud) to another device.
    const otherAudience = sealEnvelope(
      new Map<CborMapKey, Encodable>([
        [CLAIM.iss, 'Agent::"planner"'],
        [CLAIM.aud, 'arm-02'],
        [CLAIM.exp, Math.floor(now / 1000) + 60],
        [CLAIM.iat, Math.floor(now / 1000)],
        [CLAIM.cti, new Uint8Array(randomBytes(16))],
        ['act', 'grip'],
        ['res', ARM],
        ['args', {}],
      ]),
      { key: keys.planner, deviceId: DEVICE, topic: 'cmd' },
    );
    const cases: Array<[string, Uint8Array]> = [
      ['ENVELOPE_KID_UNKNOWN', command(keys.stranger, 'grip')],
      ['ENVELOPE_BAD_SIGNATURE', forged],
      // Meant for another device: its signature binds that device's id, not this one's.
      ['ENVELOPE_BAD_SIGNATURE', command(keys.planner, 'grip', {}, { device: 'arm-02' })],
      ['ENVELOPE_WRONG_AUDIENCE', otherAudience],
      ['ENVELOPE_EXPIRED', command(keys.planner, 'grip', {}, { now: now - 10 * 60_000 })],
    ];
    for (const [reason, envelope] of cases) {
      const result = await operator.result(await operator.send(envelope));
      expect({ reason, decision: result.decision, outcome: result.outcome }).toEqual({ reason: result.reasons[0], decision: 'deny', outcome: 'rejected' });
    }
    expect(arm.executed).toEqual([]);
    const refusals = auditTrail(agent).filter(({ body }) => body.has('rejected')).map(({ body }) => body.get('rejected'));
    expect(refusals).toEqual(cases.map(([reason]) => reason));
  });

  it('runs a command once however often its bytes arrive, also after an agent restart', async () => {
    const { broker, site, arm, operator, running, bundleFile } = await setup();
    const cti = new Uint8Array(randomBytes(16));
    const grip = command(site.keys.planner, 'grip', {}, { cti });
    const digest = await operator.send(grip);
    expect(await operator.result(digest)).toMatchObject({ decision: 'allow', outcome: 'executed' });

    // The same bytes again (a redelivery, a sender's retry or a replay): the first result again, nothing run.
    await operator.send(grip);
    await waitUntil(() => operator.deliveries(digest).length >= 2, 'the repeat answered');
    expect(operator.results(digest)).toHaveLength(1);
    // Another envelope reusing the nonce is a replay, whoever signed it.
    const reused = await operator.send(command(site.keys.planner, 'release', {}, { cti }));
    expect(await operator.result(reused)).toMatchObject({ decision: 'deny', reasons: ['ENVELOPE_REPLAY'], outcome: 'rejected' });

    await running.stop();
    const restarted = await launch(site, broker, bundleFile);
    await operator.send(grip);
    const [, afterRestart] = await operator.waitResults(digest, 2);
    expect(afterRestart!.claims).toMatchObject({ decision: 'deny', reasons: ['ENVELOPE_REPLAY'], outcome: 'rejected' });
    expect(arm.executed.map((r) => r.commandId)).toEqual([toHex(digest)]);
    const replays = auditTrail(restarted.agent).filter(({ body }) => body.get('rejected') === 'ENVELOPE_REPLAY');
    expect(replays).toHaveLength(3);
  });

  it('enforces @rate per principal and action and recovers when the period has passed', async () => {
    const clock = { ms: Date.now() };
    const { site, arm, operator } = await setup({ now: () => clock.ms });
    const move = async () => {
      const digest = await operator.send(command(site.keys.planner, 'move', { speed: 10 }, { now: clock.ms }));
      return (await operator.result(digest, () => clock.ms)).reasons[0];
    };
    expect([await move(), await move(), await move(), await move()]).toEqual(['PERMITTED', 'PERMITTED', 'PERMITTED', 'RATE_LIMITED']);
    // Another action of the same principal has its own budget.
    const grip = await operator.send(command(site.keys.planner, 'grip', {}, { now: clock.ms }));
    expect((await operator.result(grip, () => clock.ms)).reasons).toEqual(['PERMITTED']);
    clock.ms += 61_000;
    expect(await move()).toBe('PERMITTED');
    expect(arm.executed.map((r) => r.action)).toEqual(['move', 'move', 'move', 'grip', 'move']);
  });

  it('holds a command for two approvers; each refused approval is recorded and answered with its reason', async () => {
    const { broker, site, arm, agent } = await setup();
    const pending: string[] = [];
    const weld = cli(
      ['cmd', 'send', ...brokerArgs(broker), '--key', site.keyFile('planner'), '--act', 'weld', '--res', ARM, '--args', '{"seam": "s-7"}', '--device-key', site.pubFile('device'), '--timeout', '20s'],
      (line) => pending.push(line),
    );
    await waitUntil(() => pending.length > 0, 'the pending result');
    const held = JSON.parse(pending[0]!);
    expect(held).toMatchObject({ decision: 'pending', outcome: 'pending_approval', reasons: ['APPROVAL_REQUIRED'], verified: true });
    const approve = (who: 'alice' | 'bob' | 'mallory' | 'planner', command: string = held.command) =>
      cli(['approve', ...brokerArgs(broker), '--key', site.keyFile(who), '--command', command, '--device-key', site.pubFile('device')]);
    const approvalCodes = () =>
      auditTrail(agent)
        .filter(({ body }) => body.has('approval'))
        .map(({ body }) => [body.get('approval'), body.get('approver')]);

    // Each refusal: exit 1, the device's code and reason on stderr, its signed answer on stdout.
    const mallory = await approve('mallory');
    expect([mallory.code, mallory.stderr]).toEqual([1, ['APPROVAL_NOT_APPROVER: User::"mallory" is not in Role::"supervisor", whose approval this command needs']]);
    expect(JSON.parse(mallory.stdout[0]!)).toMatchObject({ command: held.command, decision: 'approve', code: 'APPROVAL_NOT_APPROVER', required: 2, device: DEVICE, verified: true });
    const planner = await approve('planner');
    expect([planner.code, planner.stderr]).toEqual([1, ['APPROVAL_SELF: Agent::"planner" sent this command and cannot approve it']]);
    const alice = await approve('alice');
    expect([alice.code, alice.stderr]).toEqual([0, []]);
    expect(JSON.parse(alice.stdout[0]!)).toMatchObject({ code: 'APPROVAL_COUNTED', message: 'approval 1 of 2 counted; the command waits for 1 more', approvals: 1, required: 2, verified: true });
    const again = await approve('alice');
    expect([again.code, again.stderr]).toEqual([1, ['APPROVAL_DUPLICATE: User::"alice" has already approved this command (1 of 2); an approver counts once']]);
    const unknown = await approve('bob', '00'.repeat(32));
    expect([unknown.code, unknown.stderr[0]]).toEqual([1, expect.stringMatching(/^APPROVAL_UNKNOWN_COMMAND: no command 0{64} is held for approval on this device/)]);
    expect(approvalCodes()).toEqual([
      ['APPROVAL_NOT_APPROVER', 'User::"mallory"'],
      ['APPROVAL_SELF', 'Agent::"planner"'],
      ['APPROVAL_COUNTED', 'User::"alice"'],
      ['APPROVAL_DUPLICATE', 'User::"alice"'],
      ['APPROVAL_UNKNOWN_COMMAND', 'User::"bob"'],
    ]);
    expect(arm.executed).toEqual([]);

    const bob = await approve('bob');
    expect([bob.code, JSON.parse(bob.stdout[0]!)]).toEqual([0, expect.objectContaining({ code: 'APPROVAL_QUORUM', message: 'approval 2 of 2: quorum reached; the command is allowed and runs', approvals: 2, required: 2 })]);
    const done = await weld;
    expect(done.code).toBe(0);
    expect(JSON.parse(done.stdout[1]!)).toMatchObject({ command: held.command, decision: 'allow', outcome: 'executed', reasons: ['APPROVED'], verified: true });
    expect(arm.executed.map((r) => [r.action, r.args])).toEqual([['weld', { seam: 's-7' }]]);
    // The record of the approved command names every approver counted.
    const allowed = auditTrail(agent).find(({ record, body }) => record.kind === 'decision' && body.get('decision') === 'allow' && toHex(body.get('cmd') as Uint8Array) === held.command)!;
    expect(allowed.body.get('approvers')).toEqual(['User::"alice"', 'User::"bob"']);

    // --no-wait: done once the broker has it (here: a command no longer held).
    const noWait = await cli(['approve', ...brokerArgs(broker), '--key', site.keyFile('alice'), '--command', held.command, '--no-wait']);
    expect([noWait.code, JSON.parse(noWait.stdout[0]!)]).toEqual([0, expect.objectContaining({ command: held.command, decision: 'approve', topic: `${PREFIX}approve` })]);
  });

  it('denies a held command whose expiry comes before its quorum', async () => {
    const { broker, site, arm, operator } = await setup();
    // --no-wait: the sender stops at the pending result (exit 4); the settled one still follows.
    const sent = await cli(['cmd', 'send', ...brokerArgs(broker), '--key', site.keyFile('planner'), '--act', 'weld', '--res', ARM, '--lifetime', '3s', '--no-wait']);
    expect(sent.code).toBe(4);
    const held = JSON.parse(sent.stdout[0]!);
    expect(held).toMatchObject({ decision: 'pending', reasons: ['APPROVAL_REQUIRED'] });
    expect((await cli(['approve', ...brokerArgs(broker), '--key', site.keyFile('alice'), '--command', held.command])).code).toBe(0);
    const [, settled] = await operator.waitResults(fromHex(held.command)!, 2);
    expect(settled!.claims).toMatchObject({ decision: 'deny', reasons: ['APPROVAL_EXPIRED'], outcome: 'not_executed' });
    expect(arm.executed).toEqual([]);
    // An approval that comes after the command expired is refused, and says so.
    const late = await cli(['approve', ...brokerArgs(broker), '--key', site.keyFile('bob'), '--command', held.command]);
    expect([late.code, late.stderr[0]]).toEqual([1, expect.stringMatching(/^APPROVAL_UNKNOWN_COMMAND: no command [0-9a-f]{64} is held for approval on this device \(never held, already settled, or expired\)$/)]);
  });
});
