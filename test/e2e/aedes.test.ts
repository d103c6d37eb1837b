// The core flow on an MQTT 3.1.1 broker (aedes): no response topics or correlation data, so the
// sender waits on `cmd/result` and picks its result out by the command it names.
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker } from '../support/broker.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { ARM, GRIP_POLICY, brokerArgs, cli, makeSite, startAgent, startArm } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

describe('commands over MQTT 3.1.1 (aedes)', () => {
  it('executes an allowed command and denies a forbidden one', async () => {
    const broker = await startBroker({ kind: 'aedes' });
    cleanups.push(() => broker.stop());
    const site = makeSite();
    cleanups.push(() => site.remove());
    const running = await startAgent(site.config(broker.url, { bundleFile: site.bundleFile(1, CELL_POLICIES + GRIP_POLICY) }));
    cleanups.push(() => running.stop());
    await waitUntil(() => running.agent.status().online, 'agent online');
    expect(running.logs.map((line) => JSON.parse(line)).find((l) => l.message === 'broker connected')).toMatchObject({ protocolVersion: 4 });
    const arm = await startArm(broker);
    cleanups.push(() => arm.stop());
    const send = (key: 'planner' | 'mallory', act: string, args = '{}') =>
      cli(['cmd', 'send', ...brokerArgs(broker), '--key', site.keyFile(key), '--act', act, '--res', ARM, '--args', args, '--device-key', site.pubFile('device')]);

    const allowed = await send('planner', 'move', '{"speed": 20, "y": -40}');
    expect(allowed.stderr).toEqual([]);
    expect(allowed.code).toBe(0);
    const result = JSON.parse(allowed.stdout[0]!);
    expect(result).toMatchObject({ decision: 'allow', outcome: 'executed', verified: true });
    expect(arm.executed.map((r) => [r.commandId, r.action, r.args])).toEqual([[result.command, 'move', { speed: 20, y: -40 }]]);

    const forbidden = await send('planner', 'move', '{"speed": 400}');
    expect(forbidden.code).toBe(3);
    expect(JSON.parse(forbidden.stdout[0]!)).toMatchObject({ decision: 'deny', reasons: ['FORBIDDEN'], verified: true });
    const notPermitted = await send('mallory', 'grip');
    expect(notPermitted.code).toBe(3);
    expect(JSON.parse(notPermitted.stdout[0]!)).toMatchObject({ decision: 'deny', reasons: ['NO_PERMIT'], verified: true });
    expect(arm.executed).toHaveLength(1);

    // An approval is answered on cmd/result too, matched by its digest.
    const approval = await cli(['approve', ...brokerArgs(broker), '--key', site.keyFile('alice'), '--command', '00'.repeat(32), '--device-key', site.pubFile('device')]);
    expect([approval.code, approval.stderr[0]]).toEqual([1, expect.stringMatching(/^APPROVAL_UNKNOWN_COMMAND: /)]);
    expect(JSON.parse(approval.stdout[0]!)).toMatchObject({ code: 'APPROVAL_UNKNOWN_COMMAND', verified: true });
  });
});
