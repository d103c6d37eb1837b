// Under a command backlog the controller's acks still reach the agent. The broker queues messages
// per client, in order, and drops them beyond its queue limit (Mosquitto: max_queued_messages,
// QoS 1 included). On the command connection an ack would wait behind every command not yet read,
// or be dropped while that queue is full: commands the arm ran would be reported as timed out.
// The agent reads acks on a connection of its own (`<clientId>-exec`).
import mqtt from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { readUnverifiedResult } from '../../src/envelope/result.js';
import { startBroker } from '../support/broker.js';
import { runCleanups, sleep } from '../support/wait.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { command, GRIP_POLICY, makeSite, PREFIX, startAgent, startArm, untilOnlineWithBundle } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

const COMMANDS = 1500;

describe('executor acks on their own connection', () => {
  it('every command the arm ran is reported executed, even while the command queue overflows', async () => {
    const broker = await startBroker({ maxQueuedMessages: 20 });
    cleanups.push(() => broker.stop());
    console.log(
      broker.kind === 'mosquitto'
        ? `[executor-connection] mosquitto with max_queued_messages 20: the command queue overflows`
        : '[executor-connection] aedes (Mosquitto not installed): no queue limit, so this run cannot show an overflow',
    );
    const site = makeSite();
    cleanups.push(() => site.remove());
    const running = await startAgent(
      site.config(broker.url, { bundleFile: site.bundleFile(1, CELL_POLICIES + GRIP_POLICY), executors: { grip: { kind: 'mqtt', timeout: '3s' } } }),
    );
    cleanups.push(() => running.stop());
    await untilOnlineWithBundle(running.agent);
    const arm = await startArm(broker);
    cleanups.push(() => arm.stop());

    const sender = await mqtt.connectAsync(broker.url, { protocolVersion: broker.protocolVersion, clientId: `sender-${Date.now()}` });
    cleanups.push(() => sender.endAsync());
    const outcomes = new Map<string, string>();
    sender.on('message', (_topic, payload) => {
      try {
        const claims = readUnverifiedResult(payload);
        outcomes.set(toHex(claims.cmd), claims.outcome);
      } catch {
        // not a result
      }
    });
    await sender.subscribeAsync(`${PREFIX}cmd/result/#`, { qos: 1 });
    const envelopes = Array.from({ length: COMMANDS }, (_, i) => command(site.keys.planner, 'grip', { n: i }));
    // As fast as the client writes: far more than the agent decides meanwhile.
    await Promise.all(envelopes.map((envelope) => sender.publishAsync(`${PREFIX}cmd`, Buffer.from(envelope), { qos: 1 })));

    // Settled: every execution the arm acked has had its 3 s to come back, and results stopped.
    let seen = -1;
    while (outcomes.size !== seen) {
      seen = outcomes.size;
      await sleep(4_000);
    }
    const ran = new Set(arm.executed.map((request) => request.commandId));
    expect(ran.size).toBeGreaterThan(50);
    const digests = envelopes.map((envelope) => toHex(sha256(envelope)));
    const notExecuted = digests.filter((digest) => ran.has(digest) && outcomes.get(digest) !== 'executed').map((digest) => outcomes.get(digest) ?? 'no result');
    expect(notExecuted).toEqual([]);
    expect(digests.filter((digest) => outcomes.get(digest) === 'executed').length).toBe(ran.size);
    const tally = new Map<string, number>();
    for (const outcome of outcomes.values()) tally.set(outcome, (tally.get(outcome) ?? 0) + 1);
    console.log(`[executor-connection] outcomes ${JSON.stringify(Object.fromEntries(tally))}`);
    console.log(`[executor-connection] ${COMMANDS} sent, ${outcomes.size} answered, ${ran.size} executed and reported so`);
  }, 120_000);
});
