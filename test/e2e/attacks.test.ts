// Issue 9: the holes an independent attacker found in a running agent on a real broker, each
// replayed here the way it was found (raw envelopes on Mosquitto, the simulated arm behind the
// agent). Each test failed before its fix.
import { afterEach, describe, expect, it } from 'vitest';
import { type TestBroker, startBroker } from '../support/broker.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { GRIP_POLICY, Operator, type RunningAgent, type Site, command, makeSite, startAgent, startArm } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

async function setup(opts: { raw?: Record<string, unknown>; policies?: string } = {}) {
  const broker = await startBroker();
  cleanups.push(() => broker.stop());
  const site = makeSite();
  cleanups.push(() => site.remove());
  const bundleFile = site.bundleFile(1, opts.policies ?? CELL_POLICIES + GRIP_POLICY);
  const running = await launch(site, broker, bundleFile, opts.raw);
  const arm = await startArm(broker);
  cleanups.push(() => arm.stop());
  const operator = await Operator.connect(broker, site);
  cleanups.push(() => operator.close());
  return { broker, site, arm, operator, bundleFile, running, agent: running.agent };
}

async function launch(site: Site, broker: TestBroker, bundleFile: string, raw: Record<string, unknown> = {}) {
  const running: RunningAgent = await startAgent(site.config(broker.url, { bundleFile, ...raw }));
  cleanups.push(() => running.stop());
  await waitUntil(() => running.agent.status().online && running.agent.status().bundle?.revision === 1, 'agent online with bundle 1');
  return running;
}

async function decideOverHttp(running: RunningAgent, envelope: Uint8Array) {
  const res = await fetch(`http://127.0.0.1:${running.agent.httpPort()}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/cose' }, body: envelope });
  return { status: res.status, body: (await res.json()) as Record<string, unknown> };
}

describe('hole 1: a key holder cannot move the trusted clock', () => {
  it('denied commands with iat just inside the skew leave the device time alone; honest e-stops execute over MQTT, HTTP and after a restart', async () => {
    const { broker, site, arm, operator, bundleFile, running } = await setup();
    // Mallory may do nothing. She learns the device's time from each signed result's iat and
    // claims 25 s more every time.
    let deviceTimeMs = Date.now();
    for (let i = 0; i < 40; i++) {
      const digest = await operator.send(command(site.keys.mallory, 'move', { speed: 1 }, { now: deviceTimeMs + 25_000 }));
      const [result] = await operator.waitResults(digest, 1, () => Date.now() + 3_600_000);
      expect(result!.claims.decision).toBe('deny');
      deviceTimeMs = Math.max(deviceTimeMs, result!.claims.iatMs);
    }
    // The device still tells the local time (results carry whole seconds).
    expect(Math.abs(deviceTimeMs - Date.now())).toBeLessThan(30_000);

    const estop = await operator.send(command(site.keys.planner, 'estop', {}, { lifetimeMs: 60_000 }));
    expect(await operator.result(estop)).toMatchObject({ decision: 'allow', outcome: 'executed' });
    const overHttp = await decideOverHttp(running, command(site.keys.planner, 'estop', {}, { lifetimeMs: 60_000 }));
    expect(overHttp).toMatchObject({ status: 200, body: { decision: 'allow', outcome: 'executed' } });

    await running.stop();
    await launch(site, broker, bundleFile);
    const afterRestart = await operator.send(command(site.keys.planner, 'estop', {}, { lifetimeMs: 60_000 }));
    expect(await operator.result(afterRestart)).toMatchObject({ decision: 'allow', outcome: 'executed' });
    expect(arm.executed.map((r) => r.action)).toEqual(['estop', 'estop', 'estop']);
  });
});
