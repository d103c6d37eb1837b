// Issue 4 end to end: `ztedge bundle push` → the agent verifies and activates the bundle →
// decisions follow it → the retained status says so; an older bundle is refused and reported.
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { runCleanups, waitUntil } from '../support/wait.js';
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
    const push = (file: string) => cli(['bundle', 'push', file, ...brokerArgs(broker)]);

    expect(await grip()).toMatchObject({ decision: 'deny', reasons: ['NO_ACTIVE_BUNDLE'], outcome: 'rejected' });

    const revision1 = site.bundleFile(1, CELL_POLICIES);
    const revision2 = site.bundleFile(2, CELL_POLICIES + GRIP_POLICY);
    const pushed = await push(revision1);
    expect(pushed.code).toBe(0);
    expect(pushed.stdout[0]).toMatch(/^pushed cell-e2e revision 1 \([0-9a-f]{64}, \d+ bytes\) → ztedge\/site-1\/arm-01\/bundle \(retained\)$/);
    await waitUntil(() => running.agent.status().bundle?.revision === 1, 'revision 1 active');
    expect(await grip()).toMatchObject({ decision: 'deny', reasons: ['NO_PERMIT'] });

    expect((await push(revision2)).code).toBe(0);
    await waitUntil(() => running.agent.status().bundle?.revision === 2, 'revision 2 active');
    expect(await grip()).toMatchObject({ decision: 'allow', outcome: 'executed' });
    await waitUntil(() => lastStatus()?.bundle?.revision === 2, 'status with revision 2');
    expect(lastStatus()).toMatchObject({ state: 'online', lastRejection: null });

    // An older bundle, validly signed, is a rollback: refused, reported, and nothing changes.
    expect((await push(revision1)).code).toBe(0);
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
