// No dead configuration: every option config-options.ts describes is set here on a running agent
// and shown to change what it does (or, for options it refuses, to be refused). An option added to
// the description without a case here fails the first test.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createServer as createHttpServer, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo } from 'node:net';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type AgentConfig, validateConfig } from '../../src/agent/config.js';
import { CONFIG_OPTIONS, REFUSED_OPTIONS } from '../../src/agent/config-options.js';
import { stateDbPath } from '../../src/agent/state-dir.js';
import { type VerifiedEvidence, verifyEvidence } from '../../src/attest/evidence.js';
import { replayLog } from '../../src/attest/quote.js';
import { SqliteAuditLog } from '../../src/audit/log.js';
import { type BundleSource, buildBundle } from '../../src/bundle/build.js';
import { BundleError } from '../../src/bundle/errors.js';
import { DEFAULT_SETTINGS } from '../../src/bundle/format.js';
import { signBundle } from '../../src/bundle/sign.js';
import { SqliteCollectorStore } from '../../src/collector/sqlite-store.js';
import { bytesEqual, fromHex } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { writePublicKeyFile } from '../../src/crypto/key-files.js';
import { encodeCbor } from '../../src/envelope/cbor.js';
import { verifyResult } from '../../src/envelope/result.js';
import { openStateDb } from '../../src/store/state-db.js';
import { Outbox } from '../../src/transport/outbox.js';
import { CELL_ENTITIES, CELL_POLICIES } from '../agent/fixture.js';
import { profileText, sha256Hex, writeTree } from '../attest/support.js';
import { type TestCollector, makeCollector } from '../collector/support.js';
import { type TestBroker, makeTlsFiles, startBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { type TestTpm, startSwtpm, tpmToolsAvailable } from '../support/swtpm.js';
import { runCleanups, sleep, waitUntil } from '../support/wait.js';
import { DEVICE, GRIP_POLICY, Operator, PREFIX, SITE, type RunningAgent, type Site, command, makeSite, startAgent } from './support.js';

/** Whether swtpm and tpm2-tools are here (missing ones fail the file unless ZTEDGE_TEST_NO_TPM=1). */
const withTpm = tpmToolsAvailable();
const NEEDS_TPM = ['attestation.tpm', 'attestation.pcr'];

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

async function start(over: Record<string, unknown> = {}, prepare?: (config: AgentConfig) => void | Promise<void>): Promise<RunningAgent> {
  const config = configOf(over);
  await prepare?.(config);
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

function scopedBundle(profiles: string[], attestation: BundleSource['attestation'] = []): Uint8Array {
  const now = Math.floor(Date.now() / 1000);
  const built = buildBundle(
    { policies: [{ file: 'cell.cedar', text: CELL_POLICIES }], entities: CELL_ENTITIES, issuers: [], attestation, settings: DEFAULT_SETTINGS, tests: [] },
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

/** An MQTT 5 broker: the shared one, or a Mosquitto when the shared one is the 3.1.1 fallback. */
const v5Broker = { current: null as TestBroker | null };
async function mqtt5Broker(): Promise<TestBroker> {
  if (broker.protocolVersion === 5) return broker;
  if (v5Broker.current === null) {
    v5Broker.current = await startBroker({ kind: 'mosquitto' });
    cleanups.push(() => v5Broker.current!.stop());
  }
  return v5Broker.current;
}

// --- Attestation: a device tree under a temp measure root, a profile that measures one file of
// it, a bundle with its reference value, and a software TPM.

const CONTROLLER = '/etc/robot/controller.conf';
const ATTESTING = { profile: 'robot-arm' };

/** A measure root holding the controller configuration with `content`. */
function deviceTree(content: string): string {
  const root = fs.mkdtempSync(path.join(site.dir, 'root-'));
  writeTree(root, { [CONTROLLER]: content });
  return root;
}

/** A profile directory whose robot-arm profile measures the controller configuration only (interval 1h). */
function ownProfiles(): string {
  const dir = path.join(site.dir, 'profiles');
  if (!fs.existsSync(dir)) {
    fs.mkdirSync(dir);
    fs.writeFileSync(path.join(dir, 'robot-arm.json'), profileText('robot-arm', [{ path: CONTROLLER, critical: true }]));
  }
  return dir;
}

/** A bundle file for robot-arm devices whose reference value for the controller configuration is `content`. */
function referencedBundleFile(content: string): string {
  const file = path.join(site.dir, `bundle-referenced-${randomBytes(3).toString('hex')}.cbor`);
  fs.writeFileSync(file, scopedBundle(['robot-arm'], [{ profile: 'robot-arm', files: [{ path: CONTROLLER, sha256: sha256Hex(content) }] }]));
  return file;
}

const swtpm = { current: null as TestTpm | null };
async function tpm(): Promise<TestTpm> {
  if (swtpm.current === null) {
    swtpm.current = await startSwtpm();
    cleanups.push(() => swtpm.current!.stop());
  }
  return swtpm.current;
}

/** The value of a PCR as the TPM itself reports it. */
function pcrValue(tpm: TestTpm, pcr: number): Uint8Array {
  const out = path.join(site.dir, `pcr-${randomBytes(3).toString('hex')}`);
  const read = spawnSync('tpm2_pcrread', [`sha256:${pcr}`, '-o', out], { env: { ...process.env, TPM2TOOLS_TCTI: tpm.tcti }, encoding: 'utf8' });
  if (read.status !== 0) throw new Error(`tpm2_pcrread failed: ${read.stderr}`);
  return new Uint8Array(fs.readFileSync(out));
}

async function challenge(running: RunningAgent): Promise<{ status: number; nonce: Uint8Array; body: { evidence?: string; error?: { code: string } } }> {
  const nonce = randomBytes(16);
  const res = await fetch(`http://127.0.0.1:${running.agent.httpPort()}/v1/attest`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ nonce: nonce.toString('hex') }),
  });
  return { status: res.status, nonce, body: (await res.json()) as { evidence?: string } };
}

/** Challenges the agent and verifies its evidence (with the AK pinned when it has a TPM). */
async function evidenceOf(running: RunningAgent): Promise<VerifiedEvidence> {
  const { status, nonce, body } = await challenge(running);
  expect(status).toBe(200);
  const ak = running.agent.attestation!.ak;
  return verifyEvidence(Buffer.from(body.evidence!, 'base64'), { deviceKey: site.keys.device.publicKey, nonce, now: Date.now(), ...(ak === null ? {} : { ak }) });
}

// --- Audit: a backlog written before the agent starts, a collector to sync to, and collectors
// that are not there or never answer.

/** Writes audit records (CBOR bodies, times `timeMs`) into a state directory before its agent opens it. */
function backlog(bodies: Array<Record<string, string | number>>, timeMs = Date.now()) {
  return async (config: AgentConfig) => {
    fs.mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    const db = openStateDb(stateDbPath(config.stateDir));
    const log = new SqliteAuditLog(db, { now: () => timeMs });
    await Promise.all(bodies.map((body) => log.append('system', encodeCbor(body))));
    db.close();
  };
}
const records = (n: number, size = 0) => Array.from({ length: n }, (_, i) => ({ event: 'backlog', i, ...(size === 0 ? {} : { pad: 'x'.repeat(size) }) }));

interface Upstream {
  collector: TestCollector;
  url: string;
  /** The collector's public key (PEM). */
  keyFile: string;
  /** Client files for the mutual-TLS collector. */
  tls?: { ca: string; clientCert: string; clientKey: string };
}
const upstreams = new Map<'http' | 'mtls', Upstream>();

/**
 * A real collector (SQLite store) shared by the sync cases: `http` on loopback that also takes
 * batches over the shared broker, or `mtls` that asks for a client certificate. Each agent that
 * syncs to it has its own device id (syncingDevice), so the logs of different cases never meet.
 */
async function upstream(kind: 'http' | 'mtls'): Promise<Upstream> {
  const known = upstreams.get(kind);
  if (known !== undefined) return known;
  const dir = fs.mkdtempSync(path.join(site.dir, `collector-${kind}-`));
  const store = new SqliteCollectorStore(path.join(dir, 'collector.db'));
  const tls = kind === 'mtls' ? makeTlsFiles(dir) : undefined;
  const collector = makeCollector(store, {
    port: 0,
    ...(tls === undefined
      ? { mqtt: { url: broker.url, clientId: `collector-${path.basename(site.dir)}` } }
      : { tls: { certFile: path.join(dir, 'server.crt'), keyFile: path.join(dir, 'server.key'), clientCaFile: tls.ca } }),
  });
  await collector.collector.start();
  cleanups.push(async () => {
    await collector.collector.stop();
    fs.rmSync(collector.keysDir, { recursive: true, force: true });
  });
  const keyFile = path.join(dir, 'collector.pub');
  writePublicKeyFile(keyFile, collector.signingKey.publicKey);
  const url = `${tls === undefined ? 'http' : 'https'}://127.0.0.1:${collector.collector.port()}`;
  const made: Upstream = { collector, url, keyFile, ...(tls === undefined ? {} : { tls }) };
  upstreams.set(kind, made);
  return made;
}

let syncingDevices = 0;
/** A fresh device id, registered with `to` (with the site's device key). */
function syncingDevice(to?: Upstream): string {
  const id = `sync-${++syncingDevices}`;
  to?.collector.register({ id, key: site.keys.device });
  return id;
}

/** The agent's watermark reached `seq`: the collector acknowledged every record up to it. */
const syncedTo = (running: RunningAgent, seq: number) => running.agent.audit.capacity().syncedSeq >= seq;
const headOf = (running: RunningAgent) => running.agent.audit.head().seq;
const syncProblems = (running: RunningAgent) => logged(running).filter((l) => l.message === 'audit sync problem') as Array<{ code: string; error: string; atMs: number }>;

/** The last seq of each batch the collector stored for `device` (it keeps its tree head at the end of every batch). */
async function batchEnds(up: Upstream, device: string, upTo: number): Promise<number[]> {
  const ends: number[] = [];
  for (let seq = 1; seq <= upTo; seq++) if ((await up.collector.store.frontierAtOrBefore(device, seq))?.size === seq) ends.push(seq);
  return ends;
}

/** A loopback HTTP server that takes requests and never answers them; counts what arrived. */
async function silentCollector(): Promise<{ url: string; requests: () => number }> {
  const held: ServerResponse[] = [];
  const server = createHttpServer((req, res) => {
    req.resume();
    held.push(res);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  perTest.push(
    () =>
      new Promise<void>((resolve) => {
        server.closeAllConnections();
        server.close(() => resolve());
      }),
  );
  return { url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`, requests: () => held.length };
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
  'broker.replyTopicPrefix': async () => {
    // Response topics are MQTT 5.
    const v5 = await mqtt5Broker();
    const operator = await Operator.connect(v5, site);
    perTest.push(() => operator.close());
    await operator.peer.subscribe('replies/#');
    /** Sends a move naming `responseTopic`; returns its digest. */
    const sendTo = async (responseTopic: string) => {
      const envelope = move();
      await operator.peer.publish(`${PREFIX}cmd`, Buffer.from(envelope), { qos: 1, properties: { responseTopic, correlationData: randomBytes(8) } });
      return sha256(envelope);
    };
    const answersOn = (topic: string) => operator.peer.received.filter((m) => m.topic === topic).map((m) => operator.verify(m.payload).claims);

    const own = await start({ broker: { url: v5.url, replyTopicPrefix: 'replies/arm-01/' } });
    own.agent.bundles.activate(site.bundle(1));
    await waitUntil(() => own.agent.status().online, 'online');
    await sendTo('replies/arm-01/r1');
    await waitUntil(() => answersOn('replies/arm-01/r1').length > 0, 'the result on the named reply topic');
    expect(answersOn('replies/arm-01/r1')[0]).toMatchObject({ decision: 'allow' });
    // The default namespace is not a reply namespace any more.
    expect(await operator.result(await operator.send(move()))).toMatchObject({ decision: 'deny', reasons: ['REPLY_TOPIC_REFUSED'] });
    await own.stop();

    const plain = await start({ broker: { url: v5.url } });
    plain.agent.bundles.activate(site.bundle(1));
    await waitUntil(() => plain.agent.status().online, 'online');
    expect(await operator.result(await sendTo('replies/arm-01/r2'))).toMatchObject({ decision: 'deny', reasons: ['REPLY_TOPIC_REFUSED'] });
    expect(answersOn('replies/arm-01/r2')).toEqual([]);
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
  'attestation.profiles': async () => {
    const root = deviceTree('gain=3\n');
    const bundleFile = referencedBundleFile('gain=3\n');
    const own = await start({ device: ATTESTING, bundleFile, attestation: { profiles: ownProfiles(), measureRoot: root } });
    expect(own.agent.status()).toMatchObject({ posture: 'trusted', attestation: { profile: 'robot-arm', files: 1, mismatches: [] } });
    // The shipped robot-arm profile also measures the agent's binary and configuration, which the bundle has no references for.
    const shipped = await start({ device: ATTESTING, bundleFile, attestation: { measureRoot: root } });
    expect(shipped.agent.status().posture).toBe('untrusted');
    expect(shipped.agent.status().attestation!.mismatches.map((m) => m.path)).toEqual(expect.arrayContaining(['/etc/ztedge/agent.yaml', '/usr/local/bin/ztedge']));
  },
  'attestation.measureRoot': async () => {
    const bundleFile = referencedBundleFile('gain=3\n');
    const measuring = (root: string) => start({ device: ATTESTING, bundleFile, attestation: { profiles: ownProfiles(), measureRoot: root } });
    expect((await measuring(deviceTree('gain=3\n'))).agent.status()).toMatchObject({ posture: 'trusted', attestation: { mismatches: [] } });
    const other = await measuring(deviceTree('gain=9\n'));
    expect(other.agent.status()).toMatchObject({ posture: 'untrusted', attestation: { mismatches: [{ path: CONTROLLER, reason: 'digest', critical: true }] } });
  },
  'attestation.tpm': async () => {
    const swtpm = await tpm();
    const attestation = { profiles: ownProfiles(), measureRoot: deviceTree('gain=3\n') };
    const software = await evidenceOf(await start({ device: ATTESTING, attestation }));
    expect(software.rootOfTrust).toBe('software-only');
    expect(software.tpm).toBeUndefined();
    // With the TPM: a quote by its attestation key over PCR 23 whose log ends with the composite.
    const quoted = await evidenceOf(await start({ device: ATTESTING, attestation: { ...attestation, tpm: swtpm.tcti } }));
    expect(quoted).toMatchObject({ rootOfTrust: 'tpm2', composite: software.composite, tpm: { pcr: 23, logLength: 1 } });
    expect(pcrValue(swtpm, 23)).toEqual(replayLog([fromHex(software.composite)!]));
  },
  'attestation.pcr': async () => {
    const swtpm = await tpm();
    const attestation = { profiles: ownProfiles(), measureRoot: deviceTree('gain=3\n'), tpm: swtpm.tcti };
    const on16 = await start({ device: ATTESTING, attestation: { ...attestation, pcr: 16 } });
    const quoted16 = await evidenceOf(on16);
    expect(quoted16.tpm).toMatchObject({ pcr: 16, logLength: 1 });
    const extended = replayLog([fromHex(quoted16.composite)!]);
    expect(pcrValue(swtpm, 16)).toEqual(extended);
    // One TPM, one agent at a time (no resource manager): the default agent uses PCR 23 and leaves 16 alone.
    await on16.stop();
    const on23 = await evidenceOf(await start({ device: ATTESTING, attestation }));
    expect(on23.tpm).toMatchObject({ pcr: 23, logLength: 1 });
    expect(pcrValue(swtpm, 23)).toEqual(extended);
    expect(pcrValue(swtpm, 16)).toEqual(extended);
  },
  'attestation.interval': async () => {
    // The profile's own interval is an hour; nothing in the tree changes, so only the interval re-measures.
    const attestation = { profiles: ownProfiles(), measureRoot: deviceTree('gain=3\n') };
    const often = await start({ device: ATTESTING, attestation: { ...attestation, interval: '1s' } });
    const hourly = await start({ device: ATTESTING, attestation });
    const measuredAt = (running: RunningAgent) => running.agent.status().attestation!.measuredAt;
    const [first, hourlyFirst] = [measuredAt(often), measuredAt(hourly)];
    await waitUntil(() => measuredAt(often) !== first, 'a measurement on the interval', 5000);
    expect(often.agent.attestation!.state!.trigger).toBe('interval');
    expect(measuredAt(hourly)).toBe(hourlyFirst);
  },
  'attestation.challengesPerMinute': async () => {
    const attestation = { profiles: ownProfiles(), measureRoot: deviceTree('gain=3\n') };
    const once = await start({ device: ATTESTING, attestation: { ...attestation, challengesPerMinute: 1 } });
    expect((await challenge(once)).status).toBe(200);
    expect(await challenge(once)).toMatchObject({ status: 429, body: { error: { code: 'ATTEST_RATE_LIMITED' } } });
    const ten = await start({ device: ATTESTING, attestation });
    for (let i = 0; i < 10; i++) expect((await challenge(ten)).status).toBe(200);
    expect(await challenge(ten)).toMatchObject({ status: 429, body: { error: { code: 'ATTEST_RATE_LIMITED' } } });
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
    // Four issuer keys share a queue of 8: the planner may hold 2 of them.
    const shared = await start({ limits: { maxPendingApprovals: 8 } });
    shared.agent.bundles.activate(site.bundle(1));
    expect((await decide(shared, weld())).body.decision).toBe('pending');
    expect((await decide(shared, weld())).body.decision).toBe('pending');
    expect((await decide(shared, weld())).body).toMatchObject({ decision: 'deny', reasons: ['APPROVAL_QUEUE_SHARE_FULL'] });
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
  'audit.capBytes': async () => {
    // 60 KiB await sync when the agent starts. A 300 KiB cap keeps 256 KiB in reserve by default:
    // the 44 KiB left for commands are used up.
    const bulky = backlog(records(2, 30 * 1024));
    const capped = await start({ audit: { capBytes: 300 * 1024 } }, bulky);
    capped.agent.bundles.activate(site.bundle(1));
    expect((await decide(capped, move())).body).toMatchObject({ decision: 'deny', reasons: ['AUDIT_FULL'] });
    expect(capped.agent.status().audit).toMatchObject({ full: true, capBytes: 300 * 1024 });
    const roomy = await start({}, bulky);
    roomy.agent.bundles.activate(site.bundle(1));
    expect((await decide(roomy, move())).body.decision).toBe('allow');
    // A cap the default reserve would fill entirely is refused, not accepted to deny everything.
    expect(() => configOf({ audit: { capBytes: 256 * 1024 } })).toThrow(/audit\.capBytes: must exceed the default reserve/);
  },
  'audit.reserveBytes': async () => {
    const bulky = backlog(records(2, 30 * 1024));
    const defaultReserve = await start({ audit: { capBytes: 300 * 1024 } }, bulky);
    defaultReserve.agent.bundles.activate(site.bundle(1));
    expect((await decide(defaultReserve, move())).body).toMatchObject({ decision: 'deny', reasons: ['AUDIT_FULL'] });
    const smallReserve = await start({ audit: { capBytes: 300 * 1024, reserveBytes: 16 * 1024 } }, bulky);
    smallReserve.agent.bundles.activate(site.bundle(1));
    expect((await decide(smallReserve, move())).body.decision).toBe('allow');
    expect(smallReserve.agent.status().audit.full).toBe(false);
    expect(() => configOf({ audit: { capBytes: 300 * 1024, reserveBytes: 300 * 1024 } })).toThrow(/audit\.reserveBytes: must be less than audit\.capBytes/);
  },
  'audit.retention': async () => {
    // 300 records from two days ago, synced: a day's retention prunes them (a tile of 256 at a time), the default week keeps them.
    const up = await upstream('http');
    const old = backlog(records(300), Date.now() - 2 * 86_400_000);
    const syncing = (id: string) => ({ device: { id }, audit: { sync: { url: up.url, collectorKey: up.keyFile } } });
    const day = await start(merge(syncing(syncingDevice(up)), { audit: { retention: '1d' } }), old);
    const week = await start(syncing(syncingDevice(up)), old);
    await waitUntil(() => syncedTo(day, 300) && syncedTo(week, 300), 'both logs to sync');
    await waitUntil(() => day.agent.audit.read(1, 1)[0]!.seq > 1, 'synced records past the retention to be pruned');
    expect(day.agent.audit.read(1, 1)[0]!.seq).toBe(257);
    // The pruning the sync runs after each stored batch, once more: a week's retention keeps them.
    expect(await week.agent.audit.prune()).toBe(0);
    expect(week.agent.audit.read(1, 1)[0]!.seq).toBe(1);
  },
  'audit.checkpointEvery': async () => {
    const every2 = await start({ audit: { checkpointEvery: 2 } });
    const plain = await start();
    for (const running of [every2, plain]) {
      running.agent.bundles.activate(site.bundle(1));
      for (let i = 0; i < 3; i++) expect((await decide(running, move())).body.decision).toBe('allow');
    }
    /** Kinds of the records, and the longest run of records no checkpoint follows. */
    const kinds = (running: RunningAgent) => running.agent.audit.read(1, 100).map((r) => r.kind);
    const longestRun = (running: RunningAgent) => Math.max(...kinds(running).join(' ').split('checkpoint').map((run) => run.trim().split(/\s+/).filter(Boolean).length));
    expect(kinds(every2).length).toBeGreaterThan(8);
    expect(longestRun(every2)).toBeLessThanOrEqual(2);
    // By default only the checkpoint at start, 1000 records or a minute apart.
    expect(kinds(plain).filter((k) => k === 'checkpoint')).toHaveLength(1);
    expect(longestRun(plain)).toBeGreaterThan(5);
  },
  'audit.checkpointInterval': async () => {
    const quick = await start({ audit: { checkpointInterval: '200ms' } });
    const plain = await start();
    const last = (running: RunningAgent) => running.agent.audit.read(headOf(running), 1)[0]!;
    for (const running of [quick, plain]) {
      running.agent.bundles.activate(site.bundle(1));
      await waitUntil(() => running.agent.audit.read(1, 10).some((r) => r.kind === 'bundle'), 'the bundle record');
    }
    await waitUntil(() => last(quick).kind === 'checkpoint', 'a checkpoint 200 ms after the bundle record', 5000);
    const [checkpoint, before] = [last(quick), quick.agent.audit.read(headOf(quick) - 1, 1)[0]!];
    expect(before.kind).toBe('bundle');
    expect(checkpoint.timeMs - before.timeMs).toBeGreaterThanOrEqual(150);
    await sleep(300);
    expect(last(plain).kind).toBe('bundle');
  },
  'audit.sync.transport': async () => {
    // Both agents are on the broker; only the mqtt one sends its log there.
    const up = await upstream('http');
    const watcher = await MqttPeer.connect(broker);
    perTest.push(() => watcher.close());
    await watcher.subscribe(`ztedge/${SITE}/+/audit`);
    const [viaHttps, viaMqtt] = [syncingDevice(up), syncingDevice(up)];
    const https = await start({ device: { id: viaHttps }, broker: { url: broker.url }, audit: { sync: { url: up.url, collectorKey: up.keyFile } } });
    const mqtt = await start({ device: { id: viaMqtt }, broker: { url: broker.url }, audit: { sync: { transport: 'mqtt', collectorKey: up.keyFile } } });
    const [httpsHead, mqttHead] = [headOf(https), headOf(mqtt)];
    await waitUntil(() => syncedTo(https, httpsHead) && syncedTo(mqtt, mqttHead), 'both logs to sync', 15_000);
    expect((await up.collector.store.device(viaMqtt))?.lastSeq).toBeGreaterThanOrEqual(mqttHead);
    expect((await up.collector.store.device(viaHttps))?.lastSeq).toBeGreaterThanOrEqual(httpsHead);
    expect(new Set(watcher.received.map((m) => m.topic))).toEqual(new Set([`ztedge/${SITE}/${viaMqtt}/audit`]));
    expect([https.agent.status().audit.sync!.transport, mqtt.agent.status().audit.sync!.transport]).toEqual(['https', 'mqtt']);
  },
  'audit.sync.url': async () => {
    const up = await upstream('http');
    const id = syncingDevice(up);
    const there = await start({ device: { id }, audit: { sync: { url: up.url, collectorKey: up.keyFile } } });
    const head = headOf(there);
    await waitUntil(() => syncedTo(there, head), 'the log to sync');
    expect((await up.collector.store.device(id))?.lastSeq).toBeGreaterThanOrEqual(head);
    const nowhere = await start({ device: { id: syncingDevice(up) }, audit: { sync: { url: `http://127.0.0.1:${await freePort()}`, collectorKey: up.keyFile } } });
    await waitUntil(() => syncProblems(nowhere).length > 0, 'a sync problem');
    expect(syncProblems(nowhere)[0]).toMatchObject({ code: 'SYNC_UNREACHABLE' });
    expect(nowhere.agent.status().audit.sync).toMatchObject({ state: 'unreachable', syncedSeq: 0 });
  },
  'audit.sync.collectorKey': async () => {
    const up = await upstream('http');
    const trusting = await start({ device: { id: syncingDevice(up) }, audit: { sync: { url: up.url, collectorKey: up.keyFile } } });
    const head = headOf(trusting);
    await waitUntil(() => syncedTo(trusting, head), 'the log to sync');
    // Pinned to another key: the collector stores the batch, but its acknowledgement moves nothing.
    const id = syncingDevice(up);
    const pinnedElsewhere = await start({ device: { id }, audit: { sync: { url: up.url, collectorKey: site.pubFile('alice') } } });
    await waitUntil(() => syncProblems(pinnedElsewhere).length > 0, 'a sync problem');
    expect((await up.collector.store.device(id))?.lastSeq).toBeGreaterThan(0);
    expect(syncProblems(pinnedElsewhere)[0]!.code).toMatch(/^SYNC_/);
    expect(pinnedElsewhere.agent.audit.capacity().syncedSeq).toBe(0);
  },
  'audit.sync.ca': async () => {
    const up = await upstream('mtls');
    const tls = up.tls!;
    const withCa = await start({ device: { id: syncingDevice(up) }, audit: { sync: { url: up.url, collectorKey: up.keyFile, ca: tls.ca, cert: tls.clientCert, key: tls.clientKey } } });
    const head = headOf(withCa);
    await waitUntil(() => syncedTo(withCa, head), 'the log to sync over mutual TLS');
    // Without the CA the collector's certificate is not trusted.
    const without = await start({ device: { id: syncingDevice(up) }, audit: { sync: { url: up.url, collectorKey: up.keyFile, cert: tls.clientCert, key: tls.clientKey } } });
    await waitUntil(() => syncProblems(without).length > 0, 'a sync problem');
    expect(syncProblems(without)[0]).toMatchObject({ code: 'SYNC_UNREACHABLE', error: expect.stringMatching(/CERT|SIGNATURE|ISSUER/) });
    expect(without.agent.audit.capacity().syncedSeq).toBe(0);
  },
  'audit.sync.cert': async () => {
    const up = await upstream('mtls');
    const tls = up.tls!;
    const withCert = await start({ device: { id: syncingDevice(up) }, audit: { sync: { url: up.url, collectorKey: up.keyFile, ca: tls.ca, cert: tls.clientCert, key: tls.clientKey } } });
    const head = headOf(withCert);
    await waitUntil(() => syncedTo(withCert, head), 'the log to sync over mutual TLS');
    // The collector asks for a client certificate: without cert and key there is no TLS session.
    const anonymous = await start({ device: { id: syncingDevice(up) }, audit: { sync: { url: up.url, collectorKey: up.keyFile, ca: tls.ca } } });
    await waitUntil(() => syncProblems(anonymous).length > 0, 'a sync problem');
    expect(syncProblems(anonymous)[0]!.code).toBe('SYNC_UNREACHABLE');
    expect(anonymous.agent.audit.capacity().syncedSeq).toBe(0);
  },
  'audit.sync.key': async () => {
    const up = await upstream('mtls');
    const tls = up.tls!;
    const sync = { url: up.url, collectorKey: up.keyFile, ca: tls.ca, cert: tls.clientCert };
    const certKey = await start({ device: { id: syncingDevice(up) }, audit: { sync: { ...sync, key: tls.clientKey } } });
    const head = headOf(certKey);
    await waitUntil(() => syncedTo(certKey, head), 'the log to sync over mutual TLS');
    // The key must be the certificate's: another key is refused when the agent starts.
    await expect(start({ device: { id: syncingDevice(up) }, audit: { sync: { ...sync, key: site.keyFile('alice') } } })).rejects.toMatchObject({
      code: 'SYNC_TLS_FILE',
      message: expect.stringMatching(/key values mismatch/),
    });
  },
  'audit.sync.batchRecords': async () => {
    // 40 records before the start, then the start record and its checkpoint.
    const up = await upstream('http');
    const sync = { url: up.url, collectorKey: up.keyFile };
    const [smallId, plainId] = [syncingDevice(up), syncingDevice(up)];
    const small = await start({ device: { id: smallId }, audit: { sync: { ...sync, batchRecords: 10 } } }, backlog(records(40)));
    const plain = await start({ device: { id: plainId }, audit: { sync } }, backlog(records(40)));
    await waitUntil(() => syncedTo(small, 42) && syncedTo(plain, 42), 'both logs to sync');
    expect(await batchEnds(up, smallId, 42)).toEqual([10, 20, 30, 40, 42]);
    expect(await batchEnds(up, plainId, 42)).toEqual([42]);
  },
  'audit.sync.batchBytes': async () => {
    // Six records of 30 KiB, then the start record and its checkpoint: two of them fit in 64 KiB;
    // the default 4 MiB takes them all at once.
    const up = await upstream('http');
    const sync = { url: up.url, collectorKey: up.keyFile };
    const [smallId, plainId] = [syncingDevice(up), syncingDevice(up)];
    const small = await start({ device: { id: smallId }, audit: { sync: { ...sync, batchBytes: 64 * 1024 } } }, backlog(records(6, 30 * 1024)));
    const plain = await start({ device: { id: plainId }, audit: { sync } }, backlog(records(6, 30 * 1024)));
    await waitUntil(() => syncedTo(small, 8) && syncedTo(plain, 8), 'both logs to sync');
    expect(await batchEnds(up, smallId, 8)).toEqual([2, 4, 8]);
    expect(await batchEnds(up, plainId, 8)).toEqual([8]);
  },
  'audit.sync.inFlight': async () => {
    // Collectors that never answer: the agent sends as many batches as it may have unanswered.
    // More than the HTTPS transport's default socket count, so that sockets cannot be the bound.
    const [six, two] = [await silentCollector(), await silentCollector()];
    const sync = { collectorKey: site.pubFile('root'), batchRecords: 5 };
    await start({ device: { id: syncingDevice() }, audit: { sync: { ...sync, url: six.url, inFlight: 6 } } }, backlog(records(40)));
    await start({ device: { id: syncingDevice() }, audit: { sync: { ...sync, url: two.url } } }, backlog(records(40)));
    await waitUntil(() => six.requests() === 6 && two.requests() === 2, 'batches in flight');
    await sleep(300);
    expect([six.requests(), two.requests()]).toEqual([6, 2]);
  },
  'audit.sync.timeout': async () => {
    const [silentA, silentB] = [await silentCollector(), await silentCollector()];
    const impatient = await start({ device: { id: syncingDevice() }, audit: { sync: { url: silentA.url, collectorKey: site.pubFile('root'), timeout: '200ms' } } });
    const patient = await start({ device: { id: syncingDevice() }, audit: { sync: { url: silentB.url, collectorKey: site.pubFile('root') } } });
    await waitUntil(() => silentA.requests() >= 1 && silentB.requests() >= 1, 'a batch sent to each');
    await waitUntil(() => syncProblems(impatient).length > 0, 'a timeout', 5000);
    expect(syncProblems(impatient)[0]).toMatchObject({ code: 'SYNC_TIMEOUT' });
    await sleep(300);
    // The default waits 30 s for its answer: still waiting, nothing sent again.
    expect(syncProblems(patient)).toEqual([]);
    expect(silentB.requests()).toBe(1);
    expect(patient.agent.status().audit.sync!.inFlight).toBe(1);
  },
  'audit.sync.interval': async () => {
    // Once the log is synced the sync sleeps for the interval; a new record waits for it.
    const up = await upstream('http');
    const sync = { url: up.url, collectorKey: up.keyFile };
    const [quickId, plainId] = [syncingDevice(up), syncingDevice(up)];
    const quick = await start({ device: { id: quickId }, audit: { sync: { ...sync, interval: '100ms' } } });
    const plain = await start({ device: { id: plainId }, audit: { sync } });
    await waitUntil(() => syncedTo(quick, headOf(quick)) && syncedTo(plain, headOf(plain)), 'both logs to sync');
    for (const [running, id] of [[quick, quickId], [plain, plainId]] as const) {
      const before = headOf(running);
      await decide(running, command(site.keys.planner, 'move', { speed: 1 }, { device: id }));
      expect(headOf(running)).toBeGreaterThan(before);
    }
    await waitUntil(() => syncedTo(quick, headOf(quick)), 'the new record to sync', 2000);
    await sleep(500);
    expect(plain.agent.audit.capacity().syncedSeq).toBeLessThan(headOf(plain));
  },
  'audit.sync.backoffMax': async () => {
    // The collector is not there: each attempt fails at once, and the wait before attempt n + 1 is
    // between half and all of min(backoffMax, 1 s · 2^n). Load only lengthens waits, so the
    // bound that must hold under load is the default's lower one.
    const nowhere = `http://127.0.0.1:${await freePort()}`;
    const capped = await start({ device: { id: syncingDevice() }, audit: { sync: { url: nowhere, collectorKey: site.pubFile('root'), backoffMax: '1s' } } });
    const plain = await start({ device: { id: syncingDevice() }, audit: { sync: { url: nowhere, collectorKey: site.pubFile('root') } } });
    const waits = (running: RunningAgent) => syncProblems(running).map((p, i, all) => (i === 0 ? 0 : p.atMs - all[i - 1]!.atMs)).slice(1);
    await waitUntil(() => syncProblems(capped).length >= 4 && syncProblems(plain).length >= 4, 'four failed attempts each', 15_000);
    // The third wait: at most 1 s with the cap, at least 2 s (4 s halved by the jitter) without.
    expect(waits(capped)[2]).toBeLessThan(1500);
    expect(waits(plain)[2]).toBeGreaterThanOrEqual(1990);
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

  it.for(Object.keys(EFFECTS))('%s changes what the agent does', async (option, { skip }) => {
    if (NEEDS_TPM.includes(option) && !withTpm) skip('no TPM tools here (ZTEDGE_TEST_NO_TPM=1)');
    await EFFECTS[option]!();
  });
});
