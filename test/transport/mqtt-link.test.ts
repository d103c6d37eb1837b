import { spawn, type ChildProcess } from 'node:child_process';
import { generateKeyPairSync, randomUUID } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { TransportError } from '../../src/transport/errors.js';
import { MqttLink, type InboundMessage, type MqttLinkOptions, type OversizeReport } from '../../src/transport/mqtt-link.js';
import { deviceTopics } from '../../src/transport/topics.js';
import { startBroker, type StartBrokerOptions, type TestBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { nextEvent, runCleanups, waitUntil } from '../support/wait.js';

const FIXTURE = new URL('./fixtures/agent-process.ts', import.meta.url).pathname;

/** A link plus what it saw, closed after each test. */
interface Harness {
  link: MqttLink;
  messages: InboundMessage[];
  problems: TransportError[];
  oversize: OversizeReport[];
}

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

function newTopics() {
  return deviceTopics({ site: 'test', device: `dev-${randomUUID().slice(0, 8)}` });
}

function makeLink(
  broker: TestBroker,
  opts: Partial<MqttLinkOptions> & Pick<MqttLinkOptions, 'subscriptions'>,
  handler?: (m: InboundMessage) => void | Promise<void>,
): Harness {
  const h: Harness = { link: undefined as unknown as MqttLink, messages: [], problems: [], oversize: [] };
  h.link = new MqttLink({
    url: broker.url,
    clientId: `ztedge-${randomUUID().slice(0, 12)}`,
    backoff: { initialMs: 50, maxMs: 400 },
    ...(broker.tlsFiles ? { tls: { caFile: broker.tlsFiles.ca, certFile: broker.tlsFiles.clientCert, keyFile: broker.tlsFiles.clientKey } } : {}),
    ...opts,
    onMessage: async (m) => {
      await handler?.(m);
      h.messages.push(m);
    },
  });
  h.link.on('problem', (p) => h.problems.push(p));
  h.link.on('oversize', (o) => h.oversize.push(o));
  cleanups.push(() => h.link.close());
  return h;
}

async function online(h: Harness): Promise<{ protocolVersion: 5 | 4; sessionPresent: boolean }> {
  const event = nextEvent<[{ protocolVersion: 5 | 4; sessionPresent: boolean }]>(h.link, 'online');
  h.link.start();
  return (await event)[0];
}

async function peer(broker: TestBroker, opts?: Parameters<typeof MqttPeer.connect>[1]): Promise<MqttPeer> {
  const p = await MqttPeer.connect(broker, opts);
  cleanups.push(() => p.close());
  return p;
}

async function startTestBroker(opts?: StartBrokerOptions): Promise<TestBroker> {
  const broker = await startBroker(opts);
  cleanups.push(() => broker.stop());
  return broker;
}

const payloads = (h: Harness, topic?: string) => h.messages.filter((m) => !topic || m.topic === topic).map((m) => m.payload.toString());

describe('MqttLink against the test broker', () => {
  let broker: TestBroker;
  beforeAll(async () => {
    broker = await startBroker({ persistence: true });
  });
  afterAll(() => broker?.stop());

  it('publishes and receives at QoS 1, in order, and reports online with the protocol in use', async () => {
    const t = newTopics();
    const h = makeLink(broker, { subscriptions: [t.cmd, t.bundle] });
    const info = await online(h);
    expect(info.protocolVersion).toBe(broker.protocolVersion);
    expect(h.link.online).toBe(true);

    const operator = await peer(broker);
    for (let i = 0; i < 5; i++) await operator.publish(t.cmd, `cmd-${i}`);
    await operator.publish(t.bundle, 'bundle-1', { qos: 1, retain: true });
    await waitUntil(() => h.messages.length === 6, 'six messages');
    expect(payloads(h, t.cmd)).toEqual(['cmd-0', 'cmd-1', 'cmd-2', 'cmd-3', 'cmd-4']);
    expect(h.messages.every((m) => m.qos === 1)).toBe(true);

    const collector = await peer(broker);
    await collector.subscribe(t.cmdResult);
    await h.link.publish(t.cmdResult, Buffer.from('result-0'), { qos: 1 });
    expect((await collector.waitFor(t.cmdResult))[0].payload.toString()).toBe('result-0');
    expect(h.link.metrics()).toMatchObject({ messagesIn: 6, publishesAcked: 1, connects: 1 });
    expect(h.problems).toEqual([]);
  });

  it.runIf(process.env.ZTEDGE_TEST_BROKER !== 'aedes')('carries MQTT 5 response topic and correlation data both ways', async () => {
    const t = newTopics();
    const h = makeLink(broker, { subscriptions: [t.cmd] });
    await online(h);
    const operator = await peer(broker);
    await operator.subscribe('ops/replies/+');
    await operator.publish(t.cmd, 'do-it', {
      qos: 1,
      properties: { responseTopic: 'ops/replies/42', correlationData: Buffer.from([1, 2, 3]) },
    });
    await waitUntil(() => h.messages.length === 1, 'the command');
    const cmd = h.messages[0];
    expect(cmd.responseTopic).toBe('ops/replies/42');
    expect([...cmd.correlationData!]).toEqual([1, 2, 3]);

    await h.link.publish(cmd.responseTopic!, Buffer.from('done'), { qos: 1, correlationData: cmd.correlationData! });
    const [reply] = await operator.waitFor('ops/replies/42');
    expect(reply.payload.toString()).toBe('done');
    expect([...reply.correlationData!]).toEqual([1, 2, 3]);
  });

  it.runIf(process.env.ZTEDGE_TEST_BROKER !== 'aedes')('ignores and reports a response topic it must not publish to', async () => {
    const t = newTopics();
    const h = makeLink(broker, { subscriptions: [t.cmd] });
    await online(h);
    const operator = await peer(broker);
    // A wildcard is not a topic name; mqtt.js would refuse to send it, so a '$' topic stands in.
    await operator.publish(t.cmd, 'x', { qos: 1, properties: { responseTopic: '$SYS/broker/x' } });
    await waitUntil(() => h.messages.length === 1, 'the command');
    expect(h.messages[0].responseTopic).toBeUndefined();
    expect(h.problems.map((p) => p.code)).toEqual(['LINK_RESPONSE_TOPIC_INVALID']);
  });

  it('drops an oversize message unbuffered, reports it, acknowledges it, and delivers what follows', async () => {
    const t = newTopics();
    const clientId = `ztedge-${randomUUID().slice(0, 12)}`;
    const h = makeLink(broker, { clientId, subscriptions: [t.cmd], maxPayloadBytes: 64 * 1024 });
    await online(h);
    const operator = await peer(broker);
    await operator.publish(t.cmd, Buffer.alloc(2 * 1024 * 1024, 0x41));
    await operator.publish(t.cmd, 'small');
    await waitUntil(() => h.messages.length === 1, 'the small message');
    expect(payloads(h)).toEqual(['small']);
    expect(h.oversize).toEqual([{ topic: t.cmd, qos: 1, payloadBytes: 2 * 1024 * 1024, limit: 64 * 1024 }]);
    expect(h.link.metrics().oversizeDropped).toBe(1);

    // It was acknowledged: the next session of the same client gets only what comes after.
    await h.link.close();
    const again = makeLink(broker, { clientId, subscriptions: [t.cmd], maxPayloadBytes: 64 * 1024 });
    expect((await online(again)).sessionPresent).toBe(true);
    await operator.publish(t.cmd, 'sentinel');
    await waitUntil(() => again.messages.length === 1, 'the sentinel');
    expect(payloads(again)).toEqual(['sentinel']);
    expect(again.oversize).toEqual([]);
  });

  it('acknowledges only after the handler: a failed handler leaves the message to be redelivered', async () => {
    const t = newTopics();
    let failures = 0;
    const h = makeLink(broker, { subscriptions: [t.cmd] }, (m) => {
      if (m.payload.toString() === 'cmd-1' && failures++ === 0) throw new Error('audit store unavailable');
    });
    await online(h);
    const operator = await peer(broker);
    await operator.publish(t.cmd, 'cmd-1');
    await operator.publish(t.cmd, 'cmd-2');
    const handledAfterCmd1 = () => payloads(h).lastIndexOf('cmd-2') > payloads(h).indexOf('cmd-1');
    await waitUntil(() => payloads(h).includes('cmd-1') && handledAfterCmd1(), 'cmd-1, then cmd-2');
    // cmd-2 may have been handled alongside the failing cmd-1, but it is never acknowledged ahead
    // of it: the broker handed cmd-1 over again, on a new connection, and everything after it.
    expect(payloads(h).filter((p) => p === 'cmd-1')).toEqual(['cmd-1']);
    expect(failures).toBe(2);
    expect(h.problems.map((p) => p.code)).toContain('LINK_HANDLER_FAILED');
    expect(h.link.metrics()).toMatchObject({ handlerFailures: 1, connects: 2 });
  });

  it('backs off on a message whose handler keeps failing, and resets once it succeeds', async () => {
    const t = newTopics();
    let failuresLeft = 3;
    const h = makeLink(broker, { subscriptions: [t.cmd], random: () => 0, backoff: { initialMs: 40, maxMs: 10_000 } }, () => {
      if (failuresLeft-- > 0) throw new Error('disk full');
    });
    const delays: number[] = [];
    h.link.on('reconnecting', ({ delayMs }) => delays.push(delayMs));
    await online(h);
    const operator = await peer(broker);
    await operator.publish(t.cmd, 'poison');
    await waitUntil(() => h.messages.length === 1, 'the message handled at last');
    // Each failure dropped the connection; the redelivery loop slowed down exponentially.
    expect(delays).toEqual([20, 40, 80]);
    expect(h.link.metrics()).toMatchObject({ handlerFailures: 3, connects: 4 });
  });

  it('starts handlers in arrival order, at most receiveMaximum at once, even when handlers are slow', async () => {
    const t = newTopics();
    let running = 0;
    let mostAtOnce = 0;
    const started: string[] = [];
    const h = makeLink(broker, { subscriptions: [t.cmd], receiveMaximum: 3, protocolVersion: 4 }, async (m) => {
      started.push(m.payload.toString());
      mostAtOnce = Math.max(mostAtOnce, ++running);
      await new Promise((resolve) => setTimeout(resolve, 5));
      running--;
    });
    await online(h);
    const operator = await peer(broker);
    await Promise.all(Array.from({ length: 20 }, (_, i) => operator.publish(t.cmd, `m${i}`)));
    await waitUntil(() => h.messages.length === 20, 'twenty messages');
    // MQTT 3.1.1 has no flow control: the bound is the link's own.
    expect(mostAtOnce).toBe(3);
    expect(started).toEqual(Array.from({ length: 20 }, (_, i) => `m${i}`));
  });

  it('delivers QoS 1 messages published while it was away (persistent session)', async () => {
    const t = newTopics();
    const clientId = `ztedge-${randomUUID().slice(0, 12)}`;
    const first = makeLink(broker, { clientId, subscriptions: [t.cmd] });
    expect((await online(first)).sessionPresent).toBe(false);
    await first.link.close();

    const operator = await peer(broker);
    for (let i = 0; i < 3; i++) await operator.publish(t.cmd, `queued-${i}`);

    const second = makeLink(broker, { clientId, subscriptions: [t.cmd] });
    expect((await online(second)).sessionPresent).toBe(true);
    await waitUntil(() => second.messages.length === 3, 'the queued messages');
    expect(payloads(second)).toEqual(['queued-0', 'queued-1', 'queued-2']);
  });

  it('reconnects after a broker restart and gets messages queued across it (broker persistence)', async () => {
    const t = newTopics();
    const h = makeLink(broker, { subscriptions: [t.cmd] });
    await online(h);
    const offline = nextEvent(h.link, 'offline');
    const back = nextEvent<[{ sessionPresent: boolean }]>(h.link, 'online');
    await broker.restart();
    await offline;
    const operator = await peer(broker);
    await operator.publish(t.cmd, 'after-restart');
    expect((await back)[0].sessionPresent).toBe(true);
    await waitUntil(() => h.messages.length === 1, 'the message');
    expect(payloads(h)).toEqual(['after-restart']);
    expect(h.link.metrics().connects).toBe(2);
  });

  it('a killed agent: its will marks it offline, and the command it had not acknowledged is redelivered', async () => {
    const t = newTopics();
    const clientId = `ztedge-${randomUUID().slice(0, 12)}`;
    const observer = await peer(broker);
    await observer.subscribe(t.status);

    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, broker.url, clientId, t.status, t.cmd], {
      stdio: ['ignore', 'pipe', 'inherit'],
    });
    cleanups.push(() => void child.kill('SIGKILL'));
    const lines = collectLines(child);
    await waitUntil(() => lines.includes('online'), 'the agent process online', 15_000);
    await observer.publish(t.cmd, 'open-valve');
    await waitUntil(() => lines.includes('received open-valve'), 'the agent to receive the command');

    child.kill('SIGKILL');
    await waitUntil(
      () => observer.on(t.status).map((m) => m.payload.toString()).join(',') === 'online,offline',
      'status online then offline',
    );
    const late = await peer(broker);
    await late.subscribe(t.status);
    const [retained] = await late.waitFor(t.status);
    expect([retained.payload.toString(), retained.retain]).toEqual(['offline', true]);

    const next = makeLink(broker, { clientId, subscriptions: [t.cmd] });
    expect((await online(next)).sessionPresent).toBe(true);
    await waitUntil(() => next.messages.length === 1, 'the redelivered command');
    expect(payloads(next)).toEqual(['open-valve']);
    // MQTT requires the DUP flag on a redelivery; aedes does not set it.
    if (broker.kind === 'mosquitto') expect(next.messages[0].duplicate).toBe(true);
  });

  it('publishes its will (retained offline) when closed cleanly', async () => {
    const t = newTopics();
    const h = makeLink(broker, { subscriptions: [], will: { topic: t.status, payload: Buffer.from('offline') } });
    await online(h);
    await h.link.publish(t.status, Buffer.from('online'), { qos: 1, retain: true });
    await h.link.close();
    expect(h.link.online).toBe(false);
    const late = await peer(broker);
    await late.subscribe(t.status);
    const [retained] = await late.waitFor(t.status);
    expect([retained.payload.toString(), retained.retain]).toEqual(['offline', true]);
    await expect(h.link.publish(t.status, Buffer.from('x'), { qos: 1 })).rejects.toMatchObject({ code: 'LINK_CLOSED' });
  });

  it('fails fast when offline instead of queueing in memory', async () => {
    const h = makeLink(broker, { subscriptions: [] });
    await expect(h.link.publish('a/b', Buffer.from('x'), { qos: 1 })).rejects.toMatchObject({ code: 'LINK_OFFLINE' });
    await online(h);
    await expect(h.link.publish('a/+', Buffer.from('x'), { qos: 1 })).rejects.toMatchObject({ code: 'TOPIC_NAME_INVALID' });
  });

  it('refuses bad options with a typed error', () => {
    const base = { clientId: 'c', onMessage: () => {} };
    for (const url of ['ws://127.0.0.1:1', 'mqtt://user:pw@127.0.0.1:1', 'mqtt://127.0.0.1:1/path', 'not a url']) {
      expect(() => new MqttLink({ ...base, url })).toThrow(expect.objectContaining({ code: 'LINK_OPTIONS_INVALID' }));
    }
    const url = broker.url;
    for (const bad of [
      { clientId: '' },
      { maxPayloadBytes: 0 },
      { receiveMaximum: 0 },
      { backoff: { initialMs: 10, maxMs: 1 } },
      { will: { topic: 'a/#', payload: Buffer.alloc(0) } },
      { tls: { caFile: '/x' } },
    ]) {
      expect(() => new MqttLink({ ...base, url, ...bad })).toThrow(expect.objectContaining({ code: 'LINK_OPTIONS_INVALID' }));
    }
  });
});

describe('MqttLink: session loss, credentials, ACL and TLS', () => {
  it('resubscribes when the broker restarts without the session', async () => {
    const volatileBroker = await startTestBroker({ persistence: false });
    const t = newTopics();
    const h = makeLink(volatileBroker, { subscriptions: [t.cmd] });
    await online(h);
    const back = nextEvent<[{ sessionPresent: boolean }]>(h.link, 'online');
    await volatileBroker.restart();
    expect((await back)[0].sessionPresent).toBe(false);
    const operator = await peer(volatileBroker);
    await operator.publish(t.cmd, 'still-subscribed');
    await waitUntil(() => h.messages.length === 1, 'the message after resubscribing');
    expect(payloads(h)).toEqual(['still-subscribed']);
  });

  it('reports a refused connection with the broker reason code and keeps retrying with backoff', async () => {
    const guarded = await startTestBroker({ users: [{ username: 'agent', password: 's3cret' }] });
    const h = makeLink(guarded, { subscriptions: [], username: 'agent', password: 'wrong' });
    h.link.start();
    const delays: number[] = [];
    h.link.on('reconnecting', ({ delayMs }) => delays.push(delayMs));
    await waitUntil(() => h.link.metrics().connectFailures >= 3, 'three refused attempts');
    expect(h.link.online).toBe(false);
    // Exponential, jittered (random() here is real) within [ceiling/2, ceiling], ceiling 50·2^n.
    delays.slice(0, 3).forEach((delay, n) => {
      expect(delay).toBeGreaterThanOrEqual((50 * 2 ** n) / 2);
      expect(delay).toBeLessThanOrEqual(50 * 2 ** n);
    });
    const refusal = h.problems.find((p) => p.code === 'LINK_CONNECT_REFUSED');
    // MQTT 5: 0x86 bad user name or password / 0x87 not authorized; 3.1.1: 4 or 5.
    expect(guarded.protocolVersion === 5 ? [0x86, 0x87] : [4, 5]).toContain(refusal?.reasonCode);

    const good = makeLink(guarded, { subscriptions: [], username: 'agent', password: 's3cret' });
    await online(good);
  });

  it.runIf(process.env.ZTEDGE_TEST_BROKER !== 'aedes')('surfaces a publish the broker refuses (MQTT 5 PUBACK reason code)', async () => {
    const guarded = await startTestBroker({
      users: [{ username: 'agent', password: 's3cret' }],
      acl: [{ user: 'agent', access: 'readwrite', topic: 'ztedge/#' }],
    });
    const h = makeLink(guarded, { subscriptions: [], username: 'agent', password: 's3cret' });
    await online(h);
    await h.link.publish('ztedge/s/d/status', Buffer.from('ok'), { qos: 1 });
    await expect(h.link.publish('elsewhere/x', Buffer.from('no'), { qos: 1 })).rejects.toMatchObject({
      code: 'PUBLISH_REJECTED',
      reasonCode: 0x87,
    });
    expect(h.link.metrics()).toMatchObject({ publishesAcked: 1, publishesRejected: 1 });
  });

  it('connects over TLS with a client certificate, and reports unreadable TLS files', async () => {
    const secure = await startTestBroker({ tls: true });
    expect(secure.url.startsWith('mqtts://')).toBe(true);
    const t = newTopics();
    const h = makeLink(secure, { subscriptions: [t.cmd] });
    await online(h);
    const operator = await peer(secure);
    await operator.publish(t.cmd, 'over-tls');
    await waitUntil(() => h.messages.length === 1, 'the message over TLS');

    const broken = makeLink(secure, { subscriptions: [], tls: { caFile: '/nonexistent/ca.pem' } });
    broken.link.start();
    await waitUntil(() => broken.problems.length >= 2, 'two failed attempts');
    expect(broken.problems[0].code).toBe('LINK_TLS_FILES_UNREADABLE');
    expect(broken.link.online).toBe(false);

    // A key that is not the certificate's: refused as such on every attempt, never a crash.
    const otherKey = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-tls-')), 'other.key');
    fs.writeFileSync(otherKey, generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
    const mismatched = makeLink(secure, { subscriptions: [], tls: { caFile: secure.tlsFiles!.ca, certFile: secure.tlsFiles!.clientCert, keyFile: otherKey } });
    mismatched.link.start();
    await waitUntil(() => mismatched.problems.length >= 2, 'two refused attempts');
    expect(mismatched.problems[0].code).toBe('LINK_TLS_FILES_UNUSABLE');
    expect(mismatched.problems[0].message).toContain(otherKey);
    expect(mismatched.link.online).toBe(false);

    const untrusting = makeLink(secure, { subscriptions: [], tls: {} });
    untrusting.link.start();
    await waitUntil(() => untrusting.problems.length >= 1, 'a failed handshake');
    expect(untrusting.problems[0].code).toBe('LINK_CONNECTION_ERROR');
    expect(untrusting.link.online).toBe(false);
  });
});

describe('MqttLink: MQTT 3.1.1 fallback (aedes)', () => {
  it('falls back from 5 to 3.1.1, then works at QoS 1 with a persistent session', async () => {
    const aedes = await startTestBroker({ kind: 'aedes', persistence: true });
    const t = newTopics();
    const clientId = `ztedge-${randomUUID().slice(0, 12)}`;
    const h = makeLink(aedes, { clientId, subscriptions: [t.cmd] });
    const info = await online(h);
    expect(info.protocolVersion).toBe(4);
    expect(h.link.protocolVersion).toBe(4);
    expect(h.problems).toEqual([]);

    const operator = await peer(aedes);
    await operator.subscribe(t.cmdResult);
    await operator.publish(t.cmd, 'v311');
    await waitUntil(() => h.messages.length === 1, 'the command');
    expect(h.messages[0].responseTopic).toBeUndefined();
    // MQTT 5 properties cannot travel over 3.1.1; the message itself does.
    await h.link.publish(t.cmdResult, Buffer.from('r'), { qos: 1, correlationData: Buffer.from([9]) });
    const [result] = await operator.waitFor(t.cmdResult);
    expect(result.payload.toString()).toBe('r');

    await h.link.close();
    await operator.publish(t.cmd, 'while-away');
    const again = makeLink(aedes, { clientId, subscriptions: [t.cmd] });
    expect(await online(again)).toEqual({ protocolVersion: 4, sessionPresent: true });
    await waitUntil(() => again.messages.length === 1, 'the queued message');
    expect(payloads(again)).toEqual(['while-away']);
  });

  it('drops an oversize message on 3.1.1 too', async () => {
    const aedes = await startTestBroker({ kind: 'aedes' });
    const t = newTopics();
    const h = makeLink(aedes, { subscriptions: [t.cmd], maxPayloadBytes: 1024 });
    await online(h);
    const operator = await peer(aedes);
    await operator.publish(t.cmd, Buffer.alloc(300 * 1024));
    await operator.publish(t.cmd, 'next');
    await waitUntil(() => h.messages.length === 1, 'the next message');
    expect(h.oversize).toEqual([{ topic: t.cmd, qos: 1, payloadBytes: 300 * 1024, limit: 1024 }]);
  });
});

function collectLines(child: ChildProcess): string[] {
  const lines: string[] = [];
  let partial = '';
  child.stdout?.on('data', (chunk: Buffer) => {
    const parts = (partial + chunk.toString()).split('\n');
    partial = parts.pop() ?? '';
    lines.push(...parts);
  });
  return lines;
}
