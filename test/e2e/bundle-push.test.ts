// Issue 4 end to end: `ztedge bundle push` → the agent verifies and activates the bundle →
// decisions follow it → the retained status says so; an older bundle is refused and reported.
import fs from 'node:fs';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { readUnverifiedBundle, signBundle } from '../../src/bundle/sign.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { GRIP_POLICY, Operator, PREFIX, auditTrail, brokerArgs, cli, command, makeSite, startAgent, startArm } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

interface Status {
  state: string;
  bundle: { revision: number } | null;
  lastRejection: { code: string; revision: number | null } | null;
}

describe('bundle push, end to end', () => {
  it('activates pushed bundles, changes decisions with them, and refuses a rollback', async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.stop());
    const site = makeSite();
    cleanups.push(() => site.remove());
    const config = site.config(broker.url);
    let running = await startAgent(config);
    cleanups.push(() => running.stop());
    const arm = await startArm(broker);
    cleanups.push(() => arm.stop());
    const operator = await Operator.connect(broker, site);
    cleanups.push(() => operator.close());
    const statusWatcher = await MqttPeer.connect(broker);
    cleanups.push(() => statusWatcher.close());
    await statusWatcher.subscribe(`${PREFIX}status`);
    const lastStatus = () => {
      const messages = statusWatcher.on(`${PREFIX}status`);
      return messages.length === 0 ? null : (JSON.parse(messages.at(-1)!.payload.toString()) as Status);
    };
    const grip = async () => operator.result(await operator.send(command(site.keys.planner, 'grip')));
    const push = (file: string) => cli(['bundle', 'push', file, ...brokerArgs(broker), '--root', site.pubFile('root'), '--threshold', '1']);

    expect(await grip()).toMatchObject({ decision: 'deny', reasons: ['NO_ACTIVE_BUNDLE'], outcome: 'rejected' });

    const revision1 = site.bundleFile(1, CELL_POLICIES);
    const revision2 = site.bundleFile(2, CELL_POLICIES + GRIP_POLICY);
    const pushed = await push(revision1);
    expect(pushed.code).toBe(0);
    expect(pushed.stdout[0]).toMatch(/^pushed cell-e2e revision 1 \([0-9a-f]{64}, \d+ bytes\) → ztedge\/site-1\/arm-01\/bundle \(retained\)$/);
    expect(pushed.stdout[1]).toBe('device arm-01 activated revision 1');
    await waitUntil(() => running.agent.status().bundle?.revision === 1, 'revision 1 active');
    expect(await grip()).toMatchObject({ decision: 'deny', reasons: ['NO_PERMIT'] });

    expect((await push(revision2)).code).toBe(0);
    await waitUntil(() => running.agent.status().bundle?.revision === 2, 'revision 2 active');
    expect(await grip()).toMatchObject({ decision: 'allow', outcome: 'executed' });
    await waitUntil(() => lastStatus()?.bundle?.revision === 2, 'status with revision 2');
    expect(lastStatus()).toMatchObject({ state: 'online', lastRejection: null });

    // An older bundle, validly signed, is a rollback: push refuses to publish it over the newer one.
    const older = await push(revision1);
    expect([older.code, older.stderr.join('\n')]).toEqual([1, expect.stringMatching(/^BUNDLE_ROLLBACK: device arm-01 reports revision 2 active; revision 1 is not newer, so it was not pushed/)]);
    // Published anyway (by hand, retained): the device refuses it, reports it, and nothing changes.
    const raw = await MqttPeer.connect(broker);
    cleanups.push(() => raw.close());
    await raw.publish(`${PREFIX}bundle`, fs.readFileSync(revision1), { qos: 1, retain: true });
    await waitUntil(() => lastStatus()?.lastRejection !== null, 'status with the rejection');
    expect(lastStatus()).toMatchObject({ bundle: { revision: 2 }, lastRejection: { code: 'BUNDLE_ROLLBACK', revision: 1 } });
    const rejections = () => auditTrail(running.agent).filter(({ record, body }) => record.kind === 'bundle' && body.get('event') === 'rejected');
    expect(rejections().map(({ body }) => [body.get('code'), body.get('revision')])).toEqual([['BUNDLE_ROLLBACK', 1]]);
    expect(await grip()).toMatchObject({ decision: 'allow', outcome: 'executed' });

    // A restarted agent meets the same retained bundle again: still refused, recorded only once.
    await running.stop();
    running = await startAgent(config);
    await waitUntil(() => running.agent.status().online, 'restarted agent online');
    // The retained bundle comes with the subscription, before this command.
    expect(await grip()).toMatchObject({ decision: 'allow', outcome: 'executed' });
    expect(running.agent.status()).toMatchObject({ bundle: { revision: 2 }, lastRejection: { code: 'BUNDLE_ROLLBACK', revision: 1 } });
    expect(rejections()).toHaveLength(1);
    expect(arm.executed.map((r) => r.action)).toEqual(['grip', 'grip', 'grip']);
  });
});

describe('bundle push checks before it publishes, and waits for the outcome', () => {
  it('refuses what does not verify, reports the device refusal, and exits 4 without an outcome', async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.stop());
    const site = makeSite();
    cleanups.push(() => site.remove());
    const watcher = await MqttPeer.connect(broker);
    cleanups.push(() => watcher.close());
    await watcher.subscribe(`${PREFIX}bundle`);
    const trust = ['--root', site.pubFile('root'), '--threshold', '1'];
    const push = (file: string, ...extra: string[]) => cli(['bundle', 'push', file, ...brokerArgs(broker), ...extra]);

    // Roots are required: push checks what it publishes.
    const signed = site.bundleFile(1);
    const noRoots = await push(signed);
    expect([noRoots.code, noRoots.stderr[0]]).toEqual([2, expect.stringMatching(/push checks what it publishes: give --root and --threshold/)]);

    // Unsigned, or signed by a key that is no root: refused here, never published.
    const unsigned = `${site.dir}/unsigned.cbor`;
    fs.writeFileSync(unsigned, readUnverifiedBundle(site.bundle(1)).payloadBytes);
    const refusedUnsigned = await push(unsigned, ...trust);
    expect([refusedUnsigned.code, refusedUnsigned.stderr[0]]).toEqual([1, expect.stringMatching(/^BUNDLE_UNSIGNED: /)]);
    const byStranger = await push(signed, '--root', site.pubFile('stranger'), '--threshold', '1');
    expect([byStranger.code, byStranger.stderr[0]]).toEqual([1, expect.stringMatching(/^BUNDLE_UNKNOWN_SIGNER: /)]);
    const otherDevice = await cli(['bundle', 'push', signed, '--mqtt', broker.url, '--site', 'site-1', '--device', 'arm-99', ...trust]);
    expect([otherDevice.code, otherDevice.stderr[0]]).toEqual([1, expect.stringMatching(/^BUNDLE_SCOPE: /)]);

    // No device on the broker: published (retained), but no outcome in time: exit 4.
    const nobody = await push(signed, ...trust, '--timeout', '2s');
    expect([nobody.code, nobody.stderr[0]]).toEqual([4, expect.stringMatching(/^PUSH_NO_OUTCOME: device arm-01 reported no outcome within 2000 ms \(its status: none seen\); the bundle stays retained/)]);
    await watcher.waitFor(`${PREFIX}bundle`);
    expect(watcher.on(`${PREFIX}bundle`)).toHaveLength(1);

    // The device picks the retained bundle up; a bundle that verifies here but not there (signed
    // by a key the operator trusts and the device does not) is refused there: exit 1 with its code.
    const running = await startAgent(site.config(broker.url));
    cleanups.push(() => running.stop());
    await waitUntil(() => running.agent.status().bundle?.revision === 1, 'revision 1 from the retained message');
    const foreign = `${site.dir}/foreign.cbor`;
    fs.writeFileSync(foreign, signBundle(readUnverifiedBundle(site.bundle(2)).payloadBytes, site.keys.stranger));
    const refusedThere = await push(foreign, '--root', site.pubFile('stranger'), '--threshold', '1');
    expect([refusedThere.code, refusedThere.stderr[0]]).toEqual([1, 'PUSH_REFUSED: device arm-01 refused cell-e2e revision 2: BUNDLE_UNKNOWN_SIGNER']);
    expect(running.agent.status().bundle?.revision).toBe(1);

    // --no-wait: published and done.
    const quick = await push(site.bundleFile(3), ...trust, '--no-wait');
    expect([quick.code, quick.stdout.length]).toEqual([0, 1]);
    await waitUntil(() => running.agent.status().bundle?.revision === 3, 'revision 3');
  });
});
