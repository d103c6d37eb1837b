// Issue 9: the holes an independent attacker found in a running agent on a real broker, each
// replayed here the way it was found (raw envelopes on Mosquitto, the simulated arm behind the
// agent). Each test failed before its fix.
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import type { PrivateKey } from '../../src/crypto/keys.js';
import type { CborMapKey, Encodable } from '../../src/envelope/cbor.js';
import { CLAIM } from '../../src/envelope/claims.js';
import { sealEnvelope } from '../../src/envelope/signed-claims.js';
import { type TestBroker, startBroker } from '../support/broker.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { ARM, auditTrail, command, DEVICE, GRIP_POLICY, makeSite, Operator, PREFIX, type RunningAgent, type Site, startAgent, startArm, untilOnlineWithBundle } from './support.js';

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
  await untilOnlineWithBundle(running.agent);
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

describe('hole 2: a command\'s resource is bound to the device that runs it', () => {
  it('refuses a resource hosted elsewhere before the policy runs, even when a policy permits it there', async () => {
    // Mallory may grip arm-02 (another device), nothing on arm-01.
    const policies = `${CELL_POLICIES}${GRIP_POLICY}
@id("mallory-grips-arm-02")
permit (principal == User::"mallory", action == Action::"grip", resource == Arm::"arm-02");
`;
    const { site, arm, operator, running, agent } = await setup({ policies });
    const elsewhere = await operator.send(command(site.keys.mallory, 'grip', {}, { resource: 'Arm::"arm-02"' }));
    expect(await operator.result(elsewhere)).toMatchObject({ decision: 'deny', reasons: ['RESOURCE_NOT_ON_DEVICE'], policies: [], outcome: 'not_executed' });
    const overHttp = await decideOverHttp(running, command(site.keys.mallory, 'grip', {}, { resource: 'Arm::"arm-02"' }));
    expect(overHttp).toMatchObject({ status: 403, body: { decision: 'deny', reasons: ['RESOURCE_NOT_ON_DEVICE'] } });
    // On arm-01's own resource her permit does not apply.
    const here = await operator.send(command(site.keys.mallory, 'grip', {}, { resource: ARM }));
    expect(await operator.result(here)).toMatchObject({ decision: 'deny', reasons: ['NO_PERMIT'] });
    // The device itself is always its own resource; the policy decides.
    const device = await operator.send(command(site.keys.planner, 'estop', {}, { resource: 'Device::"arm-01"' }));
    expect(await operator.result(device)).toMatchObject({ decision: 'allow', outcome: 'executed' });
    expect(arm.executed.map((r) => [r.action, r.resource])).toEqual([['estop', 'Device::"arm-01"']]);
    const refusals = auditTrail(agent).filter(({ body }) => (body.get('reasons') as string[] | undefined)?.[0] === 'RESOURCE_NOT_ON_DEVICE');
    expect(refusals.map(({ body }) => body.get('resource'))).toEqual(['Arm::"arm-02"', 'Arm::"arm-02"']);
    // The exec message names the resource, so the controller checks the binding as well: an exec
    // message published around the agent (which broker ACLs must prevent) for arm-02 is not run.
    const spoofed = { commandId: 'ab'.repeat(32), action: 'grip', principal: 'User::"mallory"', resource: 'Arm::"arm-02"', args: {} };
    await operator.peer.publish(`${PREFIX}exec/grip`, JSON.stringify(spoofed));
    await waitUntil(() => arm.foreign === 1, 'the arm refusing a foreign resource');
    expect(arm.executed).toHaveLength(1);
  });
});

describe('hole 3: the agent reports executed only for what the controller ran', () => {
  it('gives each command its own executor id (the envelope digest); acks that match nothing pending are refused and audited', async () => {
    const policies = `${CELL_POLICIES}${GRIP_POLICY}
@id("alice-grips")
permit (principal == User::"alice", action == Action::"grip", resource in Cell::"cell-1");
`;
    const { site, arm, operator, agent } = await setup({ policies });
    // Two issuers happen to use the same cti: two commands, two executions.
    const cti = new Uint8Array(randomBytes(16));
    const fromPlanner = command(site.keys.planner, 'grip', {}, { cti });
    const fromAlice = command(site.keys.alice, 'grip', {}, { cti });
    const first = await operator.send(fromPlanner);
    expect(await operator.result(first)).toMatchObject({ decision: 'allow', outcome: 'executed' });
    const second = await operator.send(fromAlice);
    expect(await operator.result(second)).toMatchObject({ decision: 'allow', outcome: 'executed' });
    expect(arm.duplicates).toBe(0);
    expect(arm.executed.map((r) => [r.commandId, r.principal])).toEqual([
      [toHex(sha256(fromPlanner)), 'Agent::"planner"'],
      [toHex(sha256(fromAlice)), 'User::"alice"'],
    ]);

    // An acknowledgement nothing waits for (forged, or a controller's repeat) changes nothing and is recorded.
    const ackRefusals = () => auditTrail(agent).filter(({ body }) => body.has('ack')).map(({ body }) => body.get('ack'));
    await operator.peer.publish(`${PREFIX}exec/grip/ack`, JSON.stringify({ id: 'cd'.repeat(32), status: 'ok' }));
    await operator.peer.publish(`${PREFIX}exec/grip/ack`, JSON.stringify({ id: toHex(sha256(fromAlice)), status: 'ok' }));
    await operator.peer.publish(`${PREFIX}exec/grip/ack`, '{"id": 7');
    await waitUntil(() => ackRefusals().length >= 3, 'three refused acks recorded');
    expect(ackRefusals()).toEqual(['EXEC_ACK_UNKNOWN', 'EXEC_ACK_DUPLICATE', 'EXEC_ACK_MALFORMED']);
    expect(arm.executed).toHaveLength(2);
  });
});

describe('hole 4: iss is bound to the signing key, and nobody uses up another issuer\'s cti', () => {
  it('refuses a command whose iss names another principal; the genuine command with that cti still runs', async () => {
    const { site, arm, operator, agent } = await setup();
    const cti = new Uint8Array(randomBytes(16));
    // Mallory signs with her own key, claiming to be the planner, with the planner's next cti.
    const forged = await operator.send(command(site.keys.mallory, 'grip', {}, { cti, issuer: 'Agent::"planner"' }));
    expect(await operator.result(forged)).toMatchObject({ decision: 'deny', reasons: ['ENVELOPE_ISSUER_MISMATCH'], outcome: 'rejected' });
    // The same cti under her own name (or none) is her own nonce: decided, and it does not burn the planner's.
    const own = await operator.send(command(site.keys.mallory, 'grip', {}, { cti, issuer: 'User::"mallory"' }));
    expect(await operator.result(own)).toMatchObject({ decision: 'deny', reasons: ['NO_PERMIT'] });
    const genuine = await operator.send(command(site.keys.planner, 'grip', {}, { cti, issuer: 'Agent::"planner"' }));
    expect(await operator.result(genuine)).toMatchObject({ decision: 'allow', outcome: 'executed' });
    expect(arm.executed.map((r) => r.principal)).toEqual(['Agent::"planner"']);
    // No decision record carries a false iss.
    const decided = auditTrail(agent).filter(({ record }) => record.kind === 'decision').map(({ body }) => [body.get('iss'), body.get('principal')]);
    expect(decided).toEqual([
      ['User::"mallory"', 'User::"mallory"'],
      ['Agent::"planner"', 'Agent::"planner"'],
    ]);
  });
});

describe('hole 5: every refusal is recorded, and no input goes unanswered', () => {
  /** A command signed like the attacker's, with args holding a `name` key at the top level. */
  function withArgKey(key: PrivateKey, action: string, name: string): Uint8Array {
    const now = Math.floor(Date.now() / 1000);
    return sealEnvelope(
      new Map<CborMapKey, Encodable>([
        [CLAIM.aud, DEVICE],
        [CLAIM.exp, now + 60],
        [CLAIM.iat, now],
        [CLAIM.cti, new Uint8Array(randomBytes(16))],
        ['act', action],
        ['res', ARM],
        ['args', new Map<CborMapKey, Encodable>([[name, new Map<CborMapKey, Encodable>([['polluted', true]])], ['speed', 1]])],
      ]),
      { key, deviceId: DEVICE, topic: 'cmd' },
    );
  }

  it('refuses args with __proto__, constructor or prototype keys with their own code, audited, over MQTT and HTTP', async () => {
    const { site, arm, operator, running, agent } = await setup();
    for (const name of ['__proto__', 'constructor', 'prototype']) {
      // Allowed by the policy otherwise (planner grips), and denied otherwise (mallory).
      for (const key of [site.keys.planner, site.keys.mallory]) {
        const digest = await operator.send(withArgKey(key, 'grip', name));
        expect(await operator.result(digest)).toMatchObject({ decision: 'deny', reasons: ['ENVELOPE_ARGS_RESERVED_KEY'], outcome: 'rejected' });
      }
    }
    const overHttp = await decideOverHttp(running, withArgKey(site.keys.mallory, 'grip', '__proto__'));
    expect(overHttp).toMatchObject({ status: 400, body: { decision: 'deny', reasons: ['ENVELOPE_ARGS_RESERVED_KEY'] } });
    expect(arm.executed).toEqual([]);
    // Refusals before a decision are sampled: the first five of a kind per source and minute get a record each.
    const recorded = auditTrail(agent).filter(({ body }) => body.get('rejected') === 'ENVELOPE_ARGS_RESERVED_KEY');
    expect(recorded.map(({ body }) => body.get('source'))).toEqual(['mqtt:cmd', 'mqtt:cmd', 'mqtt:cmd', 'mqtt:cmd', 'mqtt:cmd', 'http']);
    const metrics = await (await fetch(`http://127.0.0.1:${running.agent.httpPort()}/metrics`)).text();
    expect(metrics).toContain('ztedge_refusals_total{source="mqtt:cmd",reason="ENVELOPE_ARGS_RESERVED_KEY"} 6');
    expect(metrics).toContain('ztedge_refusals_total{source="http",reason="ENVELOPE_ARGS_RESERVED_KEY"} 1');
    expect(agent.audit.verify()).toBeUndefined();
    // The agent is still healthy: an ordinary command runs.
    const grip = await operator.send(command(site.keys.planner, 'grip'));
    expect(await operator.result(grip)).toMatchObject({ decision: 'allow', outcome: 'executed' });
  });

  it('answers every malformed HTTP request with a JSON code, never a 500, and counts each refusal', async () => {
    const { running } = await setup();
    const base = `http://127.0.0.1:${running.agent.httpPort()}`;
    const cases: Array<[string, RequestInit & { path?: string }, number, string]> = [
      ['wrong media type', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'move arm' }, 415, 'UNSUPPORTED_MEDIA_TYPE'],
      ['empty body', { method: 'POST', headers: { 'content-type': 'application/cose' }, body: new Uint8Array(0) }, 400, 'ENVELOPE_MALFORMED'],
      ['oversize body', { method: 'POST', headers: { 'content-type': 'application/cose' }, body: new Uint8Array(70 * 1024) }, 413, 'ENVELOPE_TOO_LARGE'],
      ['unknown route', { method: 'GET', path: '/v1/nothing' }, 404, 'NOT_FOUND'],
      ['wrong method', { method: 'PUT', headers: { 'content-type': 'application/cose' }, body: new Uint8Array([1]) }, 404, 'NOT_FOUND'],
    ];
    for (const [name, init, status, code] of cases) {
      const res = await fetch(`${base}${init.path ?? '/v1/decide'}`, init);
      expect({ name, status: res.status, body: await res.json() }).toEqual({ name, status, body: { error: { code, message: expect.any(String) } } });
    }
    const garbage = await fetch(`${base}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/cose' }, body: new Uint8Array(randomBytes(40)) });
    expect(garbage.status).toBe(400);
    expect(await garbage.json()).toMatchObject({ decision: 'deny', outcome: 'rejected' });
    const metrics = await (await fetch(`${base}/metrics`)).text();
    for (const [code, n] of [['UNSUPPORTED_MEDIA_TYPE', 1], ['ENVELOPE_MALFORMED', 1], ['ENVELOPE_TOO_LARGE', 1], ['NOT_FOUND', 2]] as const) {
      expect(metrics).toContain(`ztedge_http_refusals_total{code="${code}"} ${n}`);
    }
  });
});

describe('hole 6: results go only to reply topics in the configured namespace', () => {
  it('refuses a response topic outside it (the device\'s own e-stop topic, anywhere else), audited, and answers on the default topic', async () => {
    const { broker, site, arm, operator, agent } = await setup();
    if (broker.protocolVersion !== 5) {
      // Only on a machine without Mosquitto (CI has it): response topics are MQTT 5.
      console.log('[hole 6] not run: the aedes fallback speaks MQTT 3.1.1, which has no response topics');
      return;
    }
    const spy = await Operator.connect(broker, site);
    cleanups.push(() => spy.close());
    await spy.peer.subscribe(`${PREFIX}exec/#`);
    await spy.peer.subscribe('elsewhere/#');
    await spy.peer.subscribe(`${PREFIX}cmd/result`);

    const garbage = new Uint8Array(randomBytes(40));
    for (const responseTopic of [`${PREFIX}exec/estop`, 'elsewhere/inbox', `${PREFIX}cmd`, `${PREFIX}status`]) {
      const correlationData = randomBytes(8);
      await operator.peer.publish(`${PREFIX}cmd`, Buffer.from(garbage), { qos: 1, properties: { responseTopic, correlationData } });
      // Answered on the default result topic, with the sender's correlation data, saying why.
      await waitUntil(() => spy.peer.on(`${PREFIX}cmd/result`).some((m) => m.correlationData?.equals(correlationData)), `the refusal for ${responseTopic}`);
      const answer = spy.peer.on(`${PREFIX}cmd/result`).find((m) => m.correlationData?.equals(correlationData))!;
      expect(operator.verify(answer.payload).claims).toMatchObject({ decision: 'deny', reasons: ['REPLY_TOPIC_REFUSED'], outcome: 'rejected' });
    }
    // A signed command naming a foreign reply topic is not decided at all (its sender would never hear).
    const grip = command(site.keys.planner, 'grip');
    await operator.peer.publish(`${PREFIX}cmd`, Buffer.from(grip), { qos: 1, properties: { responseTopic: `${PREFIX}exec/estop`, correlationData: randomBytes(8) } });
    await waitUntil(() => spy.peer.on(`${PREFIX}cmd/result`).length >= 5, 'the refusal of the signed command');
    expect(spy.peer.received.filter((m) => m.topic.startsWith(`${PREFIX}exec/`) || m.topic.startsWith('elsewhere/'))).toEqual([]);
    expect(arm.malformed).toBe(0);
    expect(arm.executed).toEqual([]);
    // The same bytes with a reply topic inside the namespace are decided and answered there.
    const [refused, decided] = await operator.waitResults(await operator.send(grip), 2);
    expect(refused!.claims.reasons).toEqual(['REPLY_TOPIC_REFUSED']);
    expect(decided!.claims).toMatchObject({ decision: 'allow', outcome: 'executed' });
    const refusals = auditTrail(agent).filter(({ body }) => body.get('rejected') === 'REPLY_TOPIC_REFUSED');
    expect(refusals).toHaveLength(5);
  });
});

describe('also found: each topic has its own size cap, and oversize bundles are recorded', () => {
  it('cuts a command above the envelope limit as it arrives (not at the bundle limit), records it and answers it', async () => {
    const { broker, site, operator, agent, running } = await setup();
    const correlationData = randomBytes(8);
    await operator.peer.publish(`${PREFIX}cmd`, Buffer.alloc(1024 * 1024, 0xa0), {
      qos: 1,
      ...(broker.protocolVersion === 5 ? { properties: { responseTopic: `${PREFIX}cmd/result/big`, correlationData } } : {}),
    });
    const metrics = async () => (await fetch(`http://127.0.0.1:${running.agent.httpPort()}/metrics`)).text();
    await waitUntil(() => auditTrail(agent).some(({ body }) => body.get('oversize') === 'cmd'), 'the oversize command recorded');
    const [record] = auditTrail(agent).filter(({ body }) => body.get('oversize') === 'cmd');
    expect(Object.fromEntries(record!.body)).toMatchObject({ oversize: 'cmd', bytes: 1024 * 1024, limit: 64 * 1024 });
    expect(await metrics()).toContain('ztedge_oversize_dropped_total{topic="cmd"} 1');
    if (broker.protocolVersion === 5) {
      await waitUntil(() => operator.peer.on(`${PREFIX}cmd/result/big`).length > 0, 'the answer to the oversize command');
      const answer = operator.peer.on(`${PREFIX}cmd/result/big`)[0]!;
      expect(answer.correlationData?.equals(correlationData)).toBe(true);
      expect(operator.verify(answer.payload).claims).toMatchObject({ decision: 'deny', reasons: ['ENVELOPE_TOO_LARGE'], outcome: 'rejected' });
    }
    // The link is still in step: an ordinary command after it is decided.
    expect(await operator.result(await operator.send(command(site.keys.planner, 'grip')))).toMatchObject({ decision: 'allow', outcome: 'executed' });
  });

  it('records a bundle above the bundle limit in the audit log and as the last rejection', async () => {
    const { operator, agent } = await setup({ raw: { limits: { bundleMaxBytes: 64 * 1024 } } });
    await operator.peer.publish(`${PREFIX}bundle`, Buffer.alloc(200 * 1024, 0xd8), { qos: 1 });
    await waitUntil(() => agent.status().lastRejection !== null, 'the bundle refusal in the status');
    expect(agent.status().lastRejection).toMatchObject({ code: 'BUNDLE_TOO_LARGE', revision: null, digest: null });
    expect(agent.status().bundle?.revision).toBe(1);
    await waitUntil(() => auditTrail(agent).some(({ record, body }) => record.kind === 'bundle' && body.get('event') === 'rejected'), 'the bundle refusal audited');
    const [rejected] = auditTrail(agent).filter(({ record, body }) => record.kind === 'bundle' && body.get('event') === 'rejected');
    expect(rejected!.body.get('code')).toBe('BUNDLE_TOO_LARGE');
    expect(String(rejected!.body.get('message'))).toContain(`${200 * 1024} bytes`);
  });
});

describe('also found: unauthenticated garbage is counted and sampled, not recorded and answered one by one', () => {
  it('a flood of garbage on cmd and approve adds a bounded number of audit records and results, and counts every message by source and reason', async () => {
    const { site, operator, agent, running } = await setup();
    const before = agent.audit.head().seq;
    const results = () => operator.peer.received.filter((m) => m.topic.startsWith(`${PREFIX}cmd/result`)).length;
    const FLOOD = 600;
    const sends: Array<Promise<void>> = [];
    for (let i = 0; i < FLOOD; i++) {
      sends.push(operator.peer.publish(`${PREFIX}cmd`, randomBytes(40), { qos: 1 }));
      if (i % 2 === 0) sends.push(operator.peer.publish(`${PREFIX}approve`, randomBytes(40), { qos: 1 }));
    }
    await Promise.all(sends);
    const metrics = async () => (await fetch(`http://127.0.0.1:${running.agent.httpPort()}/metrics`)).text();
    const counted = (text: string, source: string) =>
      [...text.matchAll(new RegExp(`^ztedge_refusals_total\\{source="${source}",reason="[A-Z_]+"\\} (\\d+)$`, 'gm'))].reduce((n, m) => n + Number(m[1]), 0);
    const deadline = Date.now() + 120_000;
    let text = await metrics();
    while (counted(text, 'mqtt:cmd') < FLOOD || counted(text, 'mqtt:approve') < FLOOD / 2) {
      if (Date.now() > deadline) throw new Error(`not every garbage message was counted:\n${text.split('\n').filter((l) => l.startsWith('ztedge_refusals_total')).join('\n')}`);
      await new Promise((resolve) => setTimeout(resolve, 200));
      text = await metrics();
    }
    await running.agent.flushRefusals();
    const added = agent.audit.head().seq - before;
    const summary = auditTrail(agent).find(({ body }) => body.has('refusals'))!.body;
    const bySource = summary.get('refusals') as Map<string, Map<string, number>>;
    expect([...bySource.get('mqtt:cmd')!.values()].reduce((a, b) => a + b, 0)).toBe(FLOOD);
    expect([...bySource.get('mqtt:approve')!.values()].reduce((a, b) => a + b, 0)).toBe(FLOOD / 2);
    // At most five records per source and reason (and 100 in all) per window, plus one summary:
    // never one record per message.
    const kinds = [...bySource.values()].reduce((n, reasons) => n + reasons.size, 0);
    const recorded = summary.get('recorded') as number;
    expect(recorded).toBeLessThanOrEqual(Math.min(5 * kinds, 100));
    expect(added).toBe(recorded + 1);
    expect(summary.get('unrecorded')).toBe(FLOOD + FLOOD / 2 - recorded);
    // Signed results for garbage are rate-limited too.
    await new Promise((resolve) => setTimeout(resolve, 500));
    expect(results()).toBeLessThanOrEqual(200);
    // An honest command still gets its decision recorded and answered.
    expect(await operator.result(await operator.send(command(site.keys.planner, 'grip')))).toMatchObject({ decision: 'allow', outcome: 'executed' });
  }, 180_000);
});

describe('also found: errors raised by Node\'s HTTP layer carry the JSON error body', () => {
  /** Writes raw bytes to the API and reads everything until the server closes the connection. */
  async function raw(port: number, request: Buffer): Promise<string> {
    const net = await import('node:net');
    return new Promise((resolve, reject) => {
      // Written without a half-close, as a real client does; the server closes when it is done.
      const socket = net.connect(port, '127.0.0.1', () => socket.write(request));
      const chunks: Buffer[] = [];
      socket.on('data', (c: Buffer) => chunks.push(c));
      socket.on('error', reject);
      socket.on('close', () => resolve(Buffer.concat(chunks).toString('latin1')));
      socket.setTimeout(10_000, () => socket.destroy(new Error('no close')));
    });
  }

  /** The responses in a raw HTTP/1.1 stream: status and JSON body of each. */
  function responses(text: string): Array<{ status: number; body: unknown }> {
    const out = [];
    let rest = text;
    while (rest.startsWith('HTTP/1.1 ')) {
      const headEnd = rest.indexOf('\r\n\r\n');
      const head = rest.slice(0, headEnd);
      const length = Number(/content-length: (\d+)/i.exec(head)?.[1] ?? 0);
      const body = rest.slice(headEnd + 4, headEnd + 4 + length);
      out.push({ status: Number(head.slice(9, 12)), body: length > 0 ? JSON.parse(body) : null });
      rest = rest.slice(headEnd + 4 + length);
    }
    return out;
  }

  it('answers a body longer than its Content-Length and oversized headers with { error: { code, message } }', async () => {
    const { running } = await setup();
    const port = running.agent.httpPort();
    const envelope = randomBytes(5);
    const overlong = Buffer.concat([
      Buffer.from(`POST /v1/decide HTTP/1.1\r\nHost: x\r\nContent-Type: application/cose\r\nContent-Length: 5\r\n\r\n`),
      envelope,
      Buffer.from('and then some bytes that are no request at all'),
    ]);
    const [first, second] = responses(await raw(port, overlong));
    expect(first).toMatchObject({ status: 400, body: { decision: 'deny', outcome: 'rejected' } });
    expect(second).toEqual({ status: 400, body: { error: { code: 'HTTP_MALFORMED', message: expect.any(String) } } });

    const bigHeaders = Buffer.from(`GET /healthz HTTP/1.1\r\nHost: x\r\nX-Filler: ${'a'.repeat(20_000)}\r\n\r\n`);
    expect(responses(await raw(port, bigHeaders))).toEqual([{ status: 431, body: { error: { code: 'HTTP_HEADERS_TOO_LARGE', message: expect.any(String) } } }]);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain('ztedge_http_refusals_total{code="HTTP_MALFORMED"} 1');
    expect(metrics).toContain('ztedge_http_refusals_total{code="HTTP_HEADERS_TOO_LARGE"} 1');
  });
});
