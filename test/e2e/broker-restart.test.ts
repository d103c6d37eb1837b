// Commands keep flowing while the broker restarts: every command gets exactly one execution on
// the arm and one result (delivery is at least once, so a result may arrive twice, always the
// same signed bytes).
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '../../src/crypto/bytes.js';
import { startBroker } from '../support/broker.js';
import { runCleanups, sleep, waitUntil } from '../support/wait.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { GRIP_POLICY, Operator, command, makeSite, startAgent, startArm } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

const COMMANDS = 18;

describe('a broker restart in the middle of a stream of commands', () => {
  it('executes each command once and answers each once', async () => {
    const broker = await startBroker({ persistence: true });
    cleanups.push(() => broker.stop());
    const site = makeSite();
    cleanups.push(() => site.remove());
    // The broker saves its state on every change, so it is slow: executions get time to be acknowledged.
    const executors = Object.fromEntries(['grip', 'release'].map((action) => [action, { kind: 'mqtt', timeout: '60s' }]));
    const running = await startAgent(site.config(broker.url, { bundleFile: site.bundleFile(1, CELL_POLICIES + GRIP_POLICY), executors }));
    cleanups.push(() => running.stop());
    await waitUntil(() => running.agent.status().online, 'agent online');
    // Persistent sessions on both sides, so what the broker holds reaches them after the restart.
    const arm = await startArm(broker, 'sim-arm-restart');
    cleanups.push(() => arm.stop());
    const operator = await Operator.connect(broker, site, { clientId: 'operator-restart', clean: false });
    cleanups.push(() => operator.close());

    const envelopes = Array.from({ length: COMMANDS }, (_, i) => command(site.keys.planner, i % 2 === 0 ? 'grip' : 'release', { step: i }));
    const published: Array<Promise<Uint8Array>> = [];
    let restarted: Promise<void> | undefined;
    for (const [i, envelope] of envelopes.entries()) {
      published.push(operator.send(envelope));
      if (i === COMMANDS / 3) restarted = broker.restart();
      await sleep(10);
    }
    await restarted;
    const digests = await Promise.all(published);

    await waitUntil(() => digests.every((d) => operator.results(d).length > 0), 'a result for every command', 60_000);
    const results = digests.map((d) => operator.results(d));
    expect(results.map((r) => r.length)).toEqual(digests.map(() => 1));
    expect(results.map((r) => [r[0]!.claims.decision, r[0]!.claims.outcome])).toEqual(digests.map(() => ['allow', 'executed']));

    const executedIds = arm.executed.map((r) => r.commandId);
    expect(new Set(executedIds).size).toBe(executedIds.length);
    expect(executedIds.sort()).toEqual(results.map((r) => toHex(r[0]!.claims.cmd)).sort());
    const deliveries = digests.reduce((n, d) => n + operator.deliveries(d).length, 0);
    console.log(`[broker restart] ${COMMANDS} commands: ${arm.executed.length} executions, ${arm.duplicates} repeated exec deliveries, ${deliveries} result deliveries`);
  });
});
