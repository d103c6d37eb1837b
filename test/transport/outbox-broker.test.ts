// The outbox and the link together against a real broker that goes away and comes back.
import { randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { MqttLink } from '../../src/transport/mqtt-link.js';
import { Outbox } from '../../src/transport/outbox.js';
import { deviceTopics } from '../../src/transport/topics.js';
import { startBroker, type TestBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { nextEvent, runCleanups, sleep, waitUntil } from '../support/wait.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

async function setup() {
  const broker = await startBroker({ persistence: true });
  cleanups.push(() => broker.stop());
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-outbox-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const topics = deviceTopics({ site: 'test', device: `dev-${randomUUID().slice(0, 8)}` });
  // The collector keeps a persistent session, so what the broker accepted reaches it even
  // when the broker restarts in between.
  const collector = await MqttPeer.connect(broker, { clientId: `collector-${randomUUID().slice(0, 8)}`, clean: false });
  cleanups.push(() => collector.close());
  await collector.subscribe(topics.cmdResult);
  return { broker, dbPath: path.join(dir, 'state.db'), topics, collector };
}

function startAgentSide(broker: TestBroker, dbPath: string) {
  const link = new MqttLink({
    url: broker.url,
    clientId: 'agent-under-test',
    backoff: { initialMs: 50, maxMs: 300 },
    onMessage: () => {},
  });
  const db = openStateDb(dbPath);
  const outbox = new Outbox(db, link, { maxMessages: 10_000, maxBytes: 10_000_000, retryDelayMs: 50 });
  outbox.start();
  link.start();
  const stop = async () => {
    await outbox.close();
    await link.close();
    db.close();
  };
  cleanups.push(stop);
  return { link, outbox, stop };
}

/** First occurrence of each payload, in arrival order (at-least-once may repeat some). */
const firstArrivals = (collector: MqttPeer, topic: string) => [...new Set(collector.on(topic).map((m) => m.payload.toString()))];

describe('Outbox over a real broker', () => {
  it('holds results while the broker is down and sends them, in order, once it is back', async () => {
    const { broker, dbPath, topics, collector } = await setup();
    const { link, outbox } = startAgentSide(broker, dbPath);
    await waitUntil(() => link.online, 'link online');

    const offline = nextEvent(link, 'offline');
    await broker.kill();
    await offline;
    for (let i = 0; i < 5; i++) outbox.enqueue({ topic: topics.cmdResult, payload: Buffer.from(`r${i}`), qos: 1, critical: true });
    await sleep(150);
    expect(outbox.metrics()).toMatchObject({ sent: 0, heldMessages: 5 });

    await broker.restart();
    await waitUntil(() => outbox.metrics().heldMessages === 0, 'outbox drained');
    await collector.waitFor(topics.cmdResult, 5);
    expect(firstArrivals(collector, topics.cmdResult)).toEqual(['r0', 'r1', 'r2', 'r3', 'r4']);
  });

  it('sends after an agent restart what the previous run could not, before what the new run sends', async () => {
    const { broker, dbPath, topics, collector } = await setup();
    const first = startAgentSide(broker, dbPath);
    await waitUntil(() => first.link.online, 'link online');
    await broker.kill();
    await waitUntil(() => !first.link.online, 'link offline');
    for (let i = 0; i < 3; i++) first.outbox.enqueue({ topic: topics.cmdResult, payload: Buffer.from(`before-restart-${i}`), qos: 1 });
    await first.stop();

    await broker.restart();
    const second = startAgentSide(broker, dbPath);
    for (let i = 0; i < 3; i++) await second.outbox.enqueueGrouped({ topic: topics.cmdResult, payload: Buffer.from(`after-restart-${i}`), qos: 1 });
    await waitUntil(() => second.outbox.metrics().sent === 6, 'both runs\' messages sent');
    await collector.waitFor(topics.cmdResult, 6);
    expect(firstArrivals(collector, topics.cmdResult)).toEqual([
      'before-restart-0',
      'before-restart-1',
      'before-restart-2',
      'after-restart-0',
      'after-restart-1',
      'after-restart-2',
    ]);
  });

  it('sends a steady stream of grouped results in order, each once, without reading them back from the database', async () => {
    const { broker, dbPath, topics, collector } = await setup();
    const { link, outbox } = startAgentSide(broker, dbPath);
    await waitUntil(() => link.online, 'link online');

    const total = 500;
    const expected = Array.from({ length: total }, (_, i) => `result-${String(i).padStart(4, '0')}`);
    for (let i = 0; i < total; i += 10) {
      // Ten results per turn, as commands complete; the broker keeps up (a backlog beyond what
      // the outbox holds in memory would be read back, which is not what this measures).
      await waitUntil(() => i - outbox.metrics().sent <= 32, 'the broker keeping up');
      await Promise.all(
        expected.slice(i, i + 10).map((p) => outbox.enqueueGrouped({ topic: topics.cmdResult, payload: Buffer.from(p), qos: 1, critical: true })),
      );
    }
    await waitUntil(() => outbox.metrics().sent === total, 'all acknowledged');
    await collector.waitFor(topics.cmdResult, total);

    expect(collector.on(topics.cmdResult).map((m) => m.payload.toString())).toEqual(expected);
    expect(outbox.metrics()).toMatchObject({ enqueued: total, sent: total, retries: 0, heldMessages: 0, reads: 0 });
  });

  it('loses nothing while the broker restarts under a steady stream of results', async () => {
    const { broker, dbPath, topics, collector } = await setup();
    const { link, outbox } = startAgentSide(broker, dbPath);
    await waitUntil(() => link.online, 'link online');

    const total = 300;
    const producer = (async () => {
      for (let i = 0; i < total; i++) {
        outbox.enqueue({ topic: topics.cmdResult, payload: Buffer.from(String(i).padStart(4, '0')), qos: 1, critical: true });
        if (i % 10 === 9) await sleep(5);
      }
    })();
    await waitUntil(() => outbox.metrics().sent >= 60, 'some results sent before the restart');
    await broker.restart();
    await producer;
    await waitUntil(() => outbox.metrics().heldMessages === 0, 'outbox drained', 20_000);
    await waitUntil(() => firstArrivals(collector, topics.cmdResult).length === total, 'every result at the collector', 20_000);

    const expected = Array.from({ length: total }, (_, i) => String(i).padStart(4, '0'));
    const arrived = firstArrivals(collector, topics.cmdResult);
    expect([...arrived].sort()).toEqual(expected);
    // aedes interleaves a resumed subscriber's queued messages with live ones (what it receives
    // from the outbox is in order), so arrival order is checked on Mosquitto only.
    if (broker.kind === 'mosquitto') expect(arrived).toEqual(expected);
    expect(link.metrics().connects).toBeGreaterThanOrEqual(2);
    expect(outbox.metrics()).toMatchObject({ enqueued: total, sent: total, refused: 0, rejected: 0 });
  });
});
