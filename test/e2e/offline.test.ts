// Without a broker the agent keeps deciding locally (HTTP API on loopback), connects by itself
// once the broker is there, and a command that waited at the broker past its expiry is refused.
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '../../src/crypto/bytes.js';
import { verifyResult } from '../../src/envelope/result.js';
import { startBroker } from '../support/broker.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { ARM, DEVICE, GRIP_POLICY, Operator, brokerArgs, cli, type RunningAgent, command, makeSite, startAgent, startArm } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

describe('an agent without its broker', () => {
  it('decides over the local API, reconnects by itself, and refuses a command that expired on the way', async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.stop());
    await broker.kill(); // the port stays reserved for restart()
    const site = makeSite();
    cleanups.push(() => site.remove());
    // A one-second skew allowance, so a short-lived command expires quickly.
    const config = site.config(broker.url, {
      bundleFile: site.bundleFile(1, CELL_POLICIES + GRIP_POLICY),
      limits: { clockSkew: '1s' },
      executors: { grip: { kind: 'mqtt', timeout: '10s' }, release: { kind: 'mqtt', timeout: '1s' } },
    });
    let running: RunningAgent = await startAgent(config);
    cleanups.push(() => running.stop());
    const base = `http://127.0.0.1:${running.agent.httpPort()}`;
    const decide = async (envelope: Uint8Array, type = 'application/cose') => {
      const res = await fetch(`${base}/v1/decide`, { method: 'POST', headers: { 'content-type': type }, body: envelope });
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };

    // A sender cannot reach the broker either: it says so once its timeout has passed.
    const unreachable = await cli(['cmd', 'send', ...brokerArgs(broker), '--key', site.keyFile('planner'), '--act', 'grip', '--res', ARM, '--timeout', '1s']);
    expect(unreachable.code).toBe(1);
    expect(unreachable.stderr.join('\n')).toMatch(/^LINK_OFFLINE: could not reach the broker at mqtt:\/\/127\.0\.0\.1:\d+ within 1000 ms/);

    expect(await (await fetch(`${base}/healthz`)).json()).toEqual({ status: 'ok' });
    expect((await fetch(`${base}/readyz`)).status).toBe(200);
    expect(await (await fetch(`${base}/v1/status`)).json()).toMatchObject({ online: false, bundle: { revision: 1 } });

    const forbidden = await decide(command(site.keys.planner, 'move', { speed: 300 }));
    expect(forbidden).toMatchObject({ status: 403, body: { decision: 'deny', reasons: ['FORBIDDEN'], policies: ['speed-cap'], outcome: 'not_executed' } });
    const signed = verifyResult(Buffer.from(String(forbidden.body.result), 'base64'), {
      keyResolver: () => site.keys.device.publicKey,
      deviceId: DEVICE,
      topic: 'cmd/result',
      now: Date.now(),
    });
    expect(signed.claims).toMatchObject({ decision: 'deny', reasons: ['FORBIDDEN'] });
    expect(toHex(signed.claims.cmd)).toBe(forbidden.body.command);
    const forged = command(site.keys.planner, 'grip');
    forged[forged.length - 1] ^= 0x80;
    expect(await decide(forged)).toMatchObject({ status: 400, body: { decision: 'deny', reasons: ['ENVELOPE_BAD_SIGNATURE'], outcome: 'rejected' } });
    expect(await decide(command(site.keys.planner, 'grip'), 'application/json')).toMatchObject({ status: 415, body: { error: { code: 'UNSUPPORTED_MEDIA_TYPE' } } });
    // Allowed, but the arm is on the broker: the execution fails once its timeout has passed, and says so.
    expect(await decide(command(site.keys.planner, 'release'))).toMatchObject({
      status: 200,
      body: { decision: 'allow', outcome: 'failed', reasons: ['PERMITTED', 'EXEC_LINK_OFFLINE'] },
    });

    // The broker comes up; the agent finds it without help.
    await broker.restart();
    await waitUntil(() => running.agent.status().online, 'agent reconnected', 20_000);
    const arm = await startArm(broker);
    cleanups.push(() => arm.stop());
    const peer = await Operator.connect(broker, site);
    cleanups.push(() => peer.close());
    const grip = await peer.send(command(site.keys.planner, 'grip'));
    expect(await peer.result(grip)).toMatchObject({ decision: 'allow', outcome: 'executed' });

    // Commands published while the agent is away wait at the broker, in its session: the sender
    // gives up on its result, the command is still carried out when the agent is back...
    await running.stop();
    const late = await cli(['cmd', 'send', ...brokerArgs(broker), '--key', site.keyFile('planner'), '--act', 'release', '--res', ARM, '--timeout', '1s']);
    expect(late.code).toBe(1);
    expect(late.stderr.join('\n')).toMatch(/^RESULT_TIMEOUT: no result for command [0-9a-f]{64} in time/);
    // ...unless it expired on the way.
    const stale = command(site.keys.planner, 'grip', {}, { lifetimeMs: 1000 });
    const staleDigest = await peer.send(stale);
    const expiresAt = (Math.floor(Date.now() / 1000) + 1) * 1000 + 1000;
    await waitUntil(() => Date.now() > expiresAt + 200, 'the command to expire', 5_000);
    running = await startAgent(config);
    expect(await peer.result(staleDigest)).toMatchObject({ decision: 'deny', reasons: ['ENVELOPE_EXPIRED'], outcome: 'rejected' });
    await waitUntil(() => arm.executed.length === 2, 'the late command carried out');
    expect(arm.executed.map((r) => r.action)).toEqual(['grip', 'release']);
  });
});
