// The transport side of group commit: the MQTT link hands messages to handlers concurrently (so
// commands of one burst share a commit) while PUBACKs still go out in arrival order, as MQTT
// requires: a message finished early is not acknowledged ahead of an earlier one.
import { randomUUID } from 'node:crypto';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { AckOrder } from '../../src/transport/ack-order.js';
import { MqttLink, type InboundMessage } from '../../src/transport/mqtt-link.js';
import { startBroker, type TestBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { nextEvent, runCleanups, waitUntil } from '../support/wait.js';

describe('AckOrder', () => {
  it('releases finished arrivals only as a run from the oldest', () => {
    const order = new AckOrder<string>();
    const [a, b, c, d] = ['a', 'b', 'c', 'd'].map((x) => order.arrive(x));
    expect(order.finish(c!)).toEqual([]);
    expect(order.finish(b!)).toEqual([]);
    expect(order.finish(a!)).toEqual(['a', 'b', 'c']);
    expect(order.size).toBe(1);
    const e = order.arrive('e');
    expect(order.finish(e)).toEqual([]);
    expect(order.finish(d!)).toEqual(['d', 'e']);
    expect(order.finish(d!)).toEqual([]);
  });

  it('forgets what clear() dropped, and numbers on', () => {
    const order = new AckOrder<string>();
    const a = order.arrive('a');
    const b = order.arrive('b');
    order.clear();
    expect([order.finish(a), order.finish(b), order.size]).toEqual([[], [], 0]);
    const c = order.arrive('c');
    expect(c).toBe(2);
    expect(order.finish(c)).toEqual(['c']);
  });
});

describe('MqttLink with concurrent handlers', () => {
  let broker: TestBroker;
  const cleanups: Array<() => unknown> = [];
  beforeAll(async () => {
    broker = await startBroker({ persistence: true });
  });
  afterAll(() => broker?.stop());
  afterEach(() => runCleanups(cleanups));

  function link(clientId: string, topic: string, handler: (m: InboundMessage) => Promise<void>): MqttLink {
    const l = new MqttLink({ url: broker.url, clientId, subscriptions: [topic], backoff: { initialMs: 50, maxMs: 400 }, onMessage: handler });
    cleanups.push(() => l.close());
    return l;
  }

  async function online(l: MqttLink): Promise<{ sessionPresent: boolean }> {
    const event = nextEvent<[{ sessionPresent: boolean }]>(l, 'online');
    l.start();
    return (await event)[0];
  }

  it('runs handlers side by side but never acknowledges a message ahead of an earlier, unfinished one', async () => {
    const clientId = `ztedge-${randomUUID().slice(0, 12)}`;
    const topic = `ztedge/test/${randomUUID().slice(0, 8)}/cmd`;
    let releaseFirst!: () => void;
    const firstHeld = new Promise<void>((resolve) => (releaseFirst = resolve));
    const finished: string[] = [];
    let running = 0;
    let mostAtOnce = 0;
    const first = link(clientId, topic, async (m) => {
      mostAtOnce = Math.max(mostAtOnce, ++running);
      if (m.payload.toString() === 'm0') await firstHeld;
      running--;
      finished.push(m.payload.toString());
    });
    await online(first);
    const operator = await MqttPeer.connect(broker);
    cleanups.push(() => operator.close());
    for (let i = 0; i < 5; i++) await operator.publish(topic, `m${i}`);
    await waitUntil(() => finished.length === 4, 'm1..m4 handled while m0 is held');
    expect(finished).toEqual(['m1', 'm2', 'm3', 'm4']);
    expect(mostAtOnce).toBeGreaterThan(1);

    // Stop while m0 is still in its handler: nothing after it may have been acknowledged.
    const closed = first.close();
    releaseFirst();
    await closed;

    const redelivered: string[] = [];
    const second = link(clientId, topic, async (m) => {
      redelivered.push(m.payload.toString());
    });
    expect((await online(second)).sessionPresent).toBe(true);
    await waitUntil(() => redelivered.length === 5, 'the five unacknowledged messages');
    expect(redelivered).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
  });

  it('acknowledges each message once it and every earlier one are handled', async () => {
    const clientId = `ztedge-${randomUUID().slice(0, 12)}`;
    const topic = `ztedge/test/${randomUUID().slice(0, 8)}/cmd`;
    const handled: string[] = [];
    const first = link(clientId, topic, async (m) => {
      // Later messages finish first.
      await new Promise((resolve) => setTimeout(resolve, 30 - 5 * Number(m.payload.toString().slice(1))));
      handled.push(m.payload.toString());
    });
    await online(first);
    const operator = await MqttPeer.connect(broker);
    cleanups.push(() => operator.close());
    await Promise.all(Array.from({ length: 5 }, (_, i) => operator.publish(topic, `m${i}`)));
    await waitUntil(() => handled.length === 5, 'five messages');
    expect(handled).toEqual(['m4', 'm3', 'm2', 'm1', 'm0']);
    await first.close();

    // All five were acknowledged: a new session of the same client gets only what comes next.
    const next: string[] = [];
    const second = link(clientId, topic, async (m) => {
      next.push(m.payload.toString());
    });
    expect((await online(second)).sessionPresent).toBe(true);
    await operator.publish(topic, 'sentinel');
    await waitUntil(() => next.length === 1, 'the sentinel');
    expect(next).toEqual(['sentinel']);
  });
});
