// No dead configuration: every option config-options.ts describes is set here on a running agent
// and shown to change what it does (or, for options it refuses, to be refused). An option added to
// the description without a case here fails the first test.
import { createServer as createHttpServer } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AgentConfig, validateConfig } from '../../src/agent/config.js';
import { CONFIG_OPTIONS, REFUSED_OPTIONS } from '../../src/agent/config-options.js';
import { buildBundle } from '../../src/bundle/build.js';
import { BundleError } from '../../src/bundle/errors.js';
import { DEFAULT_SETTINGS } from '../../src/bundle/format.js';
import { signBundle } from '../../src/bundle/sign.js';
import { bytesEqual } from '../../src/crypto/bytes.js';
import { verifyResult } from '../../src/envelope/result.js';
import { openStateDb } from '../../src/store/state-db.js';
import { Outbox } from '../../src/transport/outbox.js';
import { CELL_ENTITIES, CELL_POLICIES } from '../agent/fixture.js';
import { type TestBroker, startBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { DEVICE, GRIP_POLICY, SITE, type RunningAgent, type Site, command, makeSite, startAgent } from './support.js';

const cleanups: Array<() => unknown> = [];
/** Agents and peers of one test, stopped after it. */
const perTest: Array<() => unknown> = [];
let site: Site;
let broker: TestBroker;
let agents = 0;

beforeAll(async () => {
  site = makeSite();
  cleanups.push(() => site.remove());
  broker = await startBroker();
  cleanups.push(() => broker.stop());
});
afterEach(() => runCleanups(perTest));
afterAll(() => runCleanups(cleanups));

function merge(base: Record<string, unknown>, over: Record<string, unknown>): Record<string, unknown> {
  const out: Record<string, unknown> = { ...base };
  for (const [key, value] of Object.entries(over)) {
    const inner = out[key];
    out[key] = typeof value === 'object' && value !== null && !Array.isArray(value) && typeof inner === 'object' && inner !== null ? merge(inner as Record<string, unknown>, value as Record<string, unknown>) : value;
  }
  return out;
}

/** A configuration of its own state directory, with `over` merged into the minimal one. */
function configOf(over: Record<string, unknown> = {}): AgentConfig {
  const stateDir = path.join(site.dir, `state-${++agents}`);
  return validateConfig(merge({ device: { id: DEVICE, site: SITE }, stateDir, deviceKey: site.keyFile('device'), roots: { keys: [site.pubFile('root')] }, http: { port: 0 } }, over));
}

async function start(over: Record<string, unknown> = {}, prepare?: (config: AgentConfig) => void): Promise<RunningAgent> {
  const config = configOf(over);
  prepare?.(config);
  const running = await startAgent(config);
  perTest.push(() => running.stop());
  return running;
}

function logged(running: RunningAgent): Array<Record<string, unknown>> {
  return running.logs.map((l) => JSON.parse(l) as Record<string, unknown>);
}

function refusalOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    if (err instanceof BundleError) return err.code;
    throw err;
  }
  return 'ACTIVATED';
}

interface Decided {
  status: number;
  body: { decision?: string; outcome?: string; reasons?: string[]; result?: string; error?: { code: string } };
}

async function decide(running: RunningAgent, envelope: Uint8Array, host = '127.0.0.1'): Promise<Decided> {
  const res = await fetch(`http://${host}:${running.agent.httpPort()}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/cose' }, body: envelope });
  return { status: res.status, body: (await res.json()) as Decided['body'] };
}

function scopedBundle(profiles: string[]): Uint8Array {
  const now = Math.floor(Date.now() / 1000);
  const built = buildBundle(
    { policies: [{ file: 'cell.cedar', text: CELL_POLICIES }], entities: CELL_ENTITIES, issuers: [], attestation: [], settings: DEFAULT_SETTINGS, tests: [] },
    { id: 'scoped', revision: 1, created: now - 60, expires: now + 86_400, scope: { sites: [], devices: [], profiles }, minAgentVersion: '0.1.0' },
  );
  return signBundle(built.bytes, site.keys.root);
}

async function freePort(): Promise<number> {
  const server = createTcpServer();
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  await new Promise<void>((resolve) => server.close(() => resolve()));
  return port;
}

function writeFile(name: string, text: string): string {
  const file = path.join(site.dir, name);
  fs.writeFileSync(file, text, { mode: 0o600 });
  return file;
}

const move = () => command(site.keys.planner, 'move', { speed: 100, zone: 'A' });

/** Connects with `over` and says whether the agent got online (or which problem it logged). */
async function connects(over: Record<string, unknown>): Promise<string> {
  const running = await start(over);
  try {
    await waitUntil(() => running.agent.status().online || logged(running).some((l) => l.message === 'transport problem'), 'online or a transport problem', 15_000);
    return running.agent.status().online ? 'online' : String(logged(running).find((l) => l.message === 'transport problem')!.code);
  } finally {
    await running.stop();
  }
}

const authBroker = { current: null as TestBroker | null };
async function withUsers(): Promise<TestBroker> {
  if (authBroker.current === null) {
    authBroker.current = await startBroker({ users: [{ username: 'agent', password: 's3cret-pw' }] });
    cleanups.push(() => authBroker.current!.stop());
  }
  return authBroker.current;
}
const tlsBroker = { current: null as TestBroker | null };
async function withTls(): Promise<TestBroker> {
  if (tlsBroker.current === null) {
    tlsBroker.current = await startBroker({ tls: true });
    cleanups.push(() => tlsBroker.current!.stop());
  }
  return tlsBroker.current;
}

/** For each option: how setting it changes what the agent does. */
const EFFECTS: Record<string, () => Promise<void>> = {
  'device.id': async () => {
    // The bundle is scoped to DEVICE.
    const plain = await start();
    expect(refusalOf(() => plain.agent.bundles.activate(site.bundle(1)))).toBe('ACTIVATED');
    const other = await start({ device: { id: 'arm-02' } });
    expect(refusalOf(() => other.agent.bundles.activate(site.bundle(1)))).toBe('BUNDLE_SCOPE');
  },
  'device.site': async () => {
    const other = await start({ device: { site: 'site-2' } });
    expect(refusalOf(() => other.agent.bundles.activate(site.bundle(1)))).toBe('BUNDLE_SCOPE');
  },
  'device.profile': async () => {
    const plain = await start();
    expect(refusalOf(() => plain.agent.bundles.activate(scopedBundle(['robot-arm'])))).toBe('BUNDLE_SCOPE');
    const arm = await start({ device: { profile: 'robot-arm' } });
    expect(refusalOf(() => arm.agent.bundles.activate(scopedBundle(['robot-arm'])))).toBe('ACTIVATED');
  },
  stateDir: async () => {
    const dir = path.join(site.dir, 'chosen-state');
    await start({ stateDir: dir });
    expect(fs.existsSync(path.join(dir, 'state.db'))).toBe(true);
  },
  deviceKey: async () => {
    const running = await start({ deviceKey: site.keyFile('alice') });
    running.agent.bundles.activate(site.bundle(1));
    const result = Buffer.from((await decide(running, move())).body.result!, 'base64');
    const verifyWith = (key: typeof site.keys.alice.publicKey) => () =>
      verifyResult(result, { keyResolver: (kid) => (bytesEqual(kid, key.kid) ? key : undefined), deviceId: DEVICE, topic: 'cmd/result', now: Date.now() });
    expect(verifyWith(site.keys.alice.publicKey)).not.toThrow();
    expect(verifyWith(site.keys.device.publicKey)).toThrow();
  },
  'roots.keys': async () => {
    const running = await start({ roots: { keys: [site.pubFile('alice')] } });
    expect(refusalOf(() => running.agent.bundles.activate(site.bundle(1)))).toBe('BUNDLE_UNKNOWN_SIGNER');
  },
  'roots.threshold': async () => {
    const running = await start({ roots: { keys: [site.pubFile('root'), site.pubFile('alice')], threshold: 2 } });
    expect(refusalOf(() => running.agent.bundles.activate(site.bundle(1)))).toBe('BUNDLE_THRESHOLD');
  },
  'broker.url': async () => {
    expect((await start()).agent.status().online).toBe(false);
    expect(await connects({ broker: { url: broker.url } })).toBe('online');
  },
  'broker.username': async () => {
    const users = await withUsers();
    const password = writeFile('mqtt-password', 's3cret-pw\n');
    expect(await connects({ broker: { url: users.url, username: 'agent', passwordFile: password } })).toBe('online');
    expect(await connects({ broker: { url: users.url, username: 'intruder', passwordFile: password } })).toBe('LINK_CONNECT_REFUSED');
  },
  'broker.passwordFile': async () => {
    const users = await withUsers();
    const wrong = writeFile('mqtt-password-wrong', 'guess\n');
    expect(await connects({ broker: { url: users.url, username: 'agent', passwordFile: wrong } })).toBe('LINK_CONNECT_REFUSED');
  },
  'broker.ca': async () => {
    const secure = await withTls();
    const files = secure.tlsFiles!;
    expect(await connects({ broker: { url: secure.url, ca: files.ca, cert: files.clientCert, key: files.clientKey } })).toBe('online');
    // Without the CA the broker's certificate is not trusted.
    expect(await connects({ broker: { url: secure.url, cert: files.clientCert, key: files.clientKey } })).not.toBe('online');
  },
  'broker.cert': async () => {
    const secure = await withTls();
    // The broker asks for a client certificate: without cert and key it refuses the agent.
    expect(await connects({ broker: { url: secure.url, ca: secure.tlsFiles!.ca } })).not.toBe('online');
  },
  'broker.key': async () => {
    const secure = await withTls();
    const files = secure.tlsFiles!;
    // The key must be the certificate's: another key file fails the TLS handshake.
    expect(await connects({ broker: { url: secure.url, ca: files.ca, cert: files.clientCert, key: files.clientKey } })).toBe('online');
    const otherKey = path.join(site.dir, 'device.key');
    expect(await connects({ broker: { url: secure.url, ca: files.ca, cert: files.clientCert, key: otherKey } })).not.toBe('online');
  },
  'broker.clientId': async () => {
    const running = await start({ broker: { url: broker.url, clientId: 'custom-client-7' } });
    await waitUntil(() => running.agent.status().online, 'online');
    // A second client with the same id takes the session over: the agent is the one dropped.
    const twin = await MqttPeer.connect(broker, { clientId: 'custom-client-7' });
    perTest.push(() => twin.close());
    await waitUntil(() => logged(running).some((l) => String(l.message).startsWith('broker connection lost')), 'the agent to be taken over');
    await running.stop();
  },
  'broker.topicPrefix': async () => {
    const watcher = await MqttPeer.connect(broker);
    perTest.push(() => watcher.close());
    await watcher.subscribe('plant/arm-x/status');
    await start({ broker: { url: broker.url, topicPrefix: 'plant/arm-x/' } });
    await watcher.waitFor('plant/arm-x/status', 1, 15_000);
  },
  'http.enabled': async () => {
    expect(logged(await start({ http: { enabled: false } })).find((l) => l.message === 'agent started')).toMatchObject({ http: 'off' });
  },
  'http.host': async () => {
    const running = await start({ http: { host: '127.0.0.2' } });
    expect(logged(running).find((l) => l.message === 'agent started')?.http).toBe(`127.0.0.2:${running.agent.httpPort()}`);
    expect((await fetch(`http://127.0.0.2:${running.agent.httpPort()}/healthz`)).status).toBe(200);
  },
  'http.port': async () => {
    const port = await freePort();
    const running = await start({ http: { port } });
    expect(running.agent.httpPort()).toBe(port);
    expect((await fetch(`http://127.0.0.1:${port}/healthz`)).status).toBe(200);
  },
  'http.adminTokenFile': async () => {
    const token = 'f0e1d2c3b4a5968778695a4b3c2d1e0f';
    const running = await start({ http: { adminTokenFile: writeFile('admin.token', `${token}\n`) } });
    const audit = await fetch(`http://127.0.0.1:${running.agent.httpPort()}/v1/audit`, { headers: { authorization: `Bearer ${token}` } });
    expect(audit.status).toBe(200);
    expect(((await audit.json()) as { records: Array<{ kind: string }> }).records[0]).toMatchObject({ kind: 'system' });
    const without = await start();
    expect((await fetch(`http://127.0.0.1:${without.agent.httpPort()}/v1/audit`, { headers: { authorization: `Bearer ${token}` } })).status).toBe(403);
  },
  posture: async () => {
    // The robot cell's move permit requires a posture other than untrusted.
    const trusted = await start();
    trusted.agent.bundles.activate(site.bundle(1));
    expect((await decide(trusted, move())).body.decision).toBe('allow');
    const untrusted = await start({ posture: 'untrusted' });
    untrusted.agent.bundles.activate(site.bundle(1));
    expect((await decide(untrusted, move())).body).toMatchObject({ decision: 'deny', reasons: ['NO_PERMIT'] });
  },
  bundleFile: async () => {
    const running = await start({ bundleFile: site.bundleFile(4) });
    expect(running.agent.status().bundle?.revision).toBe(4);
  },
  logLevel: async () => {
    const quiet = await start({ logLevel: 'warn' });
    expect(logged(quiet).map((l) => l.message)).toEqual(['agent not ready']);
    expect(logged(await start()).map((l) => l.message)).toEqual(['agent not ready', 'agent started']);
  },
  executors: async () => {
    const requests: string[] = [];
    const controller = createHttpServer((req, res) => {
      let body = '';
      req.on('data', (chunk: Buffer) => (body += chunk.toString()));
      req.on('end', () => {
        requests.push(body);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{"done":true}');
      });
    });
    await new Promise<void>((resolve) => controller.listen(0, '127.0.0.1', resolve));
    perTest.push(() => new Promise<void>((resolve) => controller.close(() => resolve())));
    const url = `http://127.0.0.1:${(controller.address() as AddressInfo).port}/grip`;
    const grip = () => command(site.keys.planner, 'grip');
    const none = await start();
    none.agent.bundles.activate(site.bundle(2, CELL_POLICIES + GRIP_POLICY));
    expect((await decide(none, grip())).body).toMatchObject({ decision: 'allow', outcome: 'failed', reasons: ['PERMITTED', 'NO_EXECUTOR'] });
    const running = await start({ executors: { grip: { kind: 'http', url } } });
    running.agent.bundles.activate(site.bundle(2, CELL_POLICIES + GRIP_POLICY));
    expect((await decide(running, grip())).body).toMatchObject({ decision: 'allow', outcome: 'executed' });
    expect(requests.map((r) => (JSON.parse(r) as { action: string }).action)).toEqual(['grip']);
  },
  'limits.envelopeMaxBytes': async () => {
    const big = command(site.keys.planner, 'move', { speed: 100, zone: 'A', note: 'x'.repeat(300) });
    const running = await start({ limits: { envelopeMaxBytes: 256 } });
    running.agent.bundles.activate(site.bundle(1));
    expect(await decide(running, big)).toMatchObject({ status: 413, body: { error: { code: 'ENVELOPE_TOO_LARGE' } } });
    const roomy = await start();
    roomy.agent.bundles.activate(site.bundle(1));
    expect((await decide(roomy, big)).status).toBe(200);
  },
  'limits.bundleMaxBytes': async () => {
    const running = await start({ limits: { bundleMaxBytes: 1024 } });
    expect(refusalOf(() => running.agent.bundles.activate(site.bundle(1)))).toBe('BUNDLE_TOO_LARGE');
  },
  'limits.clockSkew': async () => {
    const ahead = () => command(site.keys.planner, 'move', { speed: 100, zone: 'A' }, { now: Date.now() + 10_000 });
    const strict = await start({ limits: { clockSkew: '1s' } });
    strict.agent.bundles.activate(site.bundle(1));
    expect((await decide(strict, ahead())).body.reasons).toEqual(['ENVELOPE_IAT_FUTURE']);
    const lenient = await start();
    lenient.agent.bundles.activate(site.bundle(1));
    expect((await decide(lenient, ahead())).body.decision).toBe('allow');
  },
  'limits.maxLifetime': async () => {
    const long = () => command(site.keys.planner, 'move', { speed: 100, zone: 'A' }, { lifetimeMs: 5 * 60_000 });
    const strict = await start({ limits: { maxLifetime: '1m' } });
    strict.agent.bundles.activate(site.bundle(1));
    expect((await decide(strict, long())).body.reasons).toEqual(['ENVELOPE_LIFETIME_TOO_LONG']);
    const lenient = await start();
    lenient.agent.bundles.activate(site.bundle(1));
    expect((await decide(lenient, long())).body.decision).toBe('allow');
  },
  'limits.maxPendingApprovals': async () => {
    const weld = () => command(site.keys.planner, 'weld');
    const running = await start({ limits: { maxPendingApprovals: 1 } });
    running.agent.bundles.activate(site.bundle(1));
    expect((await decide(running, weld())).body.decision).toBe('pending');
    expect((await decide(running, weld())).body).toMatchObject({ decision: 'deny', reasons: ['APPROVAL_QUEUE_FULL'] });
  },
  'limits.outboxMaxMessages': async () => {
    // 80 messages wait in the outbox of a device that cannot reach its broker.
    const offline = { broker: { url: 'mqtt://127.0.0.1:1' } };
    const prefill = (config: AgentConfig) => {
      fs.mkdirSync(config.stateDir, { recursive: true });
      const db = openStateDb(path.join(config.stateDir, 'state.db'));
      const link = { online: false, publish: async () => {}, on: () => link, off: () => link };
      const outbox = new Outbox(db, link, { maxMessages: 1000, maxBytes: 1 << 20 });
      for (let i = 0; i < 80; i++) outbox.enqueue({ topic: `queued/${i}`, payload: new Uint8Array([i]), qos: 1 });
      db.close();
    };
    const full = (running: RunningAgent) => logged(running).some((l) => l.message === 'status could not be queued' && String(l.error).includes('outbox full'));
    expect(full(await start({ ...offline, limits: { outboxMaxMessages: 100 } }, prefill))).toBe(true);
    expect(full(await start(offline, prefill))).toBe(false);
  },
};

describe('every configuration option', () => {
  it('is either exercised below or refused', () => {
    expect(Object.keys(EFFECTS).sort()).toEqual(CONFIG_OPTIONS.map((o) => o.path).sort());
    for (const path of Object.keys(REFUSED_OPTIONS)) expect(EFFECTS[path]).toBeUndefined();
  });

  it.each(Object.keys(REFUSED_OPTIONS))('%s is refused at load, with the reason', (option) => {
    const [section, key] = option.split('.') as [string, string];
    expect(() => configOf({ [section]: { [key]: 1 } })).toThrow(`${option}: ${REFUSED_OPTIONS[option]}`);
  });

  it.each(Object.keys(EFFECTS))('%s changes what the agent does', async (option) => {
    await EFFECTS[option]!();
  });
});
