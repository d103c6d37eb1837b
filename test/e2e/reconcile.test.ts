// Issue 9 (also found): after a kill -9 in the middle of a stream, every command that was decided
// `allow` but whose execution was never recorded is settled at the next start as `outcome unknown`:
// an audit record and a result to its sender, and it is never run again.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '../../src/crypto/bytes.js';
import { startBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { DEVICE, GRIP_POLICY, Operator, PREFIX, SITE, auditTrail, command, makeSite, spawnCli, startAgent } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

describe('reconciling after kill -9', () => {
  it('settles each decided but unrecorded command as outcome unknown, audited and answered, and never runs it again', async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.stop());
    const site = makeSite();
    cleanups.push(() => site.remove());
    const bundleFile = site.bundleFile(1, CELL_POLICIES + GRIP_POLICY);
    const clientId = `ztedge-${DEVICE}-${path.basename(site.dir)}`;
    const file = path.join(site.dir, 'agent.json');
    fs.writeFileSync(
      file,
      JSON.stringify({
        device: { id: DEVICE, site: SITE },
        stateDir: site.stateDir,
        deviceKey: site.keyFile('device'),
        roots: { keys: [site.pubFile('root')] },
        broker: { url: broker.url, clientId },
        http: { enabled: false },
        bundleFile,
        executors: { grip: { kind: 'mqtt', timeout: '60s' }, release: { kind: 'mqtt', timeout: '60s' } },
      }),
    );
    // A controller that takes the exec messages (and acts, as far as anyone knows) but dies before acknowledging.
    const controller = await MqttPeer.connect(broker);
    cleanups.push(() => controller.close());
    await controller.subscribe(`${PREFIX}exec/+`);
    const operator = await Operator.connect(broker, site);
    cleanups.push(() => operator.close());

    const run = spawnCli(['run', '--config', file]);
    cleanups.push(() => run.kill('SIGKILL'));
    await waitUntil(() => run.stdout().includes('"broker connected"'), 'the agent on the broker', 30_000);
    const digests = [];
    for (const action of ['grip', 'release', 'grip']) digests.push(await operator.send(command(site.keys.planner, action)));
    await waitUntil(() => controller.received.length === 3, 'three exec messages at the controller', 20_000);
    run.kill('SIGKILL');
    expect((await run.exited).signal).toBe('SIGKILL');
    expect(digests.map((d) => operator.results(d).length)).toEqual([0, 0, 0]);

    const running = await startAgent(site.config(broker.url, { bundleFile, executors: { grip: { kind: 'mqtt', timeout: '2s' }, release: { kind: 'mqtt', timeout: '2s' } } }));
    cleanups.push(() => running.stop());
    for (const digest of digests) {
      expect(await operator.result(digest)).toMatchObject({ decision: 'allow', outcome: 'unknown', reasons: ['PERMITTED', 'OUTCOME_UNKNOWN'] });
    }
    const unknown = auditTrail(running.agent).filter(({ record, body }) => record.kind === 'execution' && body.get('outcome') === 'unknown');
    expect(unknown.map(({ body }) => toHex(body.get('cmd') as Uint8Array)).sort()).toEqual(digests.map(toHex).sort());
    expect(running.agent.audit.verify()).toBeUndefined();
    // Nothing ran twice: no exec message was sent again, and a restart finds nothing left to settle.
    expect(controller.received).toHaveLength(3);
    await running.stop();
    const again = await startAgent(site.config(broker.url, { bundleFile }));
    cleanups.push(() => again.stop());
    expect(auditTrail(again.agent).filter(({ body }) => body.get('outcome') === 'unknown')).toHaveLength(3);
  }, 120_000);
});
