// The ztedge demo: one command, no setup. It starts an in-process MQTT broker, makes fresh keys
// (two policy roots, the device, and the people and AI agents of the robot-cell example), builds
// and 2-of-2 signs the robot-cell bundle from policies/robot-cell, pushes it over MQTT, starts
// the agent and a simulated robot arm, and then plays a short story of signed commands — allowed,
// denied by policy, forged, replayed, approved by two supervisors — printing what the agent
// decided and whether its signed result verifies.
//
//   npm run demo            (add -- --keep to leave everything running afterwards)
//
// Its keys and state live in a temporary directory that is deleted when the demo ends, however it
// ends. With --keep it keeps running until Ctrl-C, with every key written there and the commands
// to try it printed ready to paste; Ctrl-C stops it and deletes the directory.
import fs from 'node:fs';
import { createServer, type AddressInfo } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { Aedes } from 'aedes';
import mqtt from 'mqtt';
import { Agent } from '../src/agent/runtime.js';
import { loadConfig } from '../src/agent/config.js';
import { buildBundle, readBundleSource } from '../src/bundle/build.js';
import { signBundle } from '../src/bundle/sign.js';
import { COSE_ALG } from '../src/crypto/algorithms.js';
import { toHex } from '../src/crypto/bytes.js';
import { readPublicKeyFile, writePrivateKeyFile, writePublicKeyFile } from '../src/crypto/key-files.js';
import { sha256 } from '../src/crypto/hash.js';
import { generatePrivateKey, type PrivateKey } from '../src/crypto/keys.js';
import { signApproval } from '../src/envelope/approval.js';
import { signCommand } from '../src/envelope/command.js';
import { RESULT_TOPIC, verifyResult } from '../src/envelope/result.js';
import { deviceTopics } from '../src/transport/topics.js';
import { UsageError, parseStrict } from '../src/cli/command.js';
import { startSimArm } from './sim-arm.js';

const SITE = 'plant-north';
const DEVICE = 'arm-1';
const say = (text: string) => process.stdout.write(text + '\n');
/** What Ctrl-C does now: stop a kept demo cleanly; otherwise (unset) end the process. */
let onInterrupt: (() => void) | null = null;

const USAGE = `Usage: npm run demo [-- --keep]

Plays the demo story against a fresh agent and deletes its keys and state afterwards. --keep
leaves it running (Ctrl-C to stop), with the keys on disk and commands to try printed.`;

async function main(keep: boolean, dir: string): Promise<void> {
  const broker = await startAedes();
  say(`ztedge demo — state in ${dir}, in-process MQTT broker (aedes, MQTT 3.1.1) at ${broker.url}\n`);

  // Keys: two policy roots (2-of-2), the device, and one key per person or AI agent.
  const keyFile = (name: string, key: PrivateKey) => {
    writePrivateKeyFile(path.join(dir, `${name}.key`), key);
    writePublicKeyFile(path.join(dir, `${name}.pub`), key.publicKey);
    return key;
  };
  const roots = [keyFile('root-a', generatePrivateKey('ed25519')), keyFile('root-b', generatePrivateKey('p256'))];
  keyFile('device', generatePrivateKey('ed25519'));
  const people: Record<string, PrivateKey> = {};
  for (const who of ['Agent::planner-7', 'Operator::olga', 'Operator::sam', 'Operator::sara', 'Operator::sven']) {
    // With --keep, on disk too, so that the printed commands can sign with them.
    people[who] = keep ? keyFile(who.split('::')[1]!, generatePrivateKey('ed25519')) : generatePrivateKey('ed25519');
  }
  const rogue = generatePrivateKey('ed25519');

  // The robot-cell bundle, with this run's issuer keys, signed by both roots.
  const source = readBundleSource(path.resolve(import.meta.dirname, '../policies/robot-cell'));
  const issuers = Object.entries(people).map(([who, key]) => {
    const [type, id] = who.split('::') as [string, string];
    return { kid: key.publicKey.kid, alg: COSE_ALG.EdDSA, publicKey: key.publicKey.raw, principal: `${type}::"${id}"` };
  });
  const now = Math.floor(Date.now() / 1000);
  const built = buildBundle(
    { ...source, issuers },
    { id: 'robot-cell', revision: 1, created: now - 60, expires: now + 7 * 86_400, scope: { sites: [SITE], devices: [], profiles: [] }, minAgentVersion: '0.1.0' },
  );
  const bundle = signBundle(signBundle(built.bytes, roots[0]!), roots[1]!);
  say(`bundle robot-cell r1: ${built.policyCount} policies, ${built.testOutcomes.length} embedded tests passed, signed 2-of-2`);

  const topics = deviceTopics({ site: SITE, device: DEVICE });
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 4, clientId: 'demo-operator' });
  await client.publishAsync(topics.bundle, Buffer.from(bundle), { qos: 1, retain: true });

  const config = loadConfig(
    JSON.stringify({
      device: { id: DEVICE, site: SITE, profile: 'robot-arm' },
      stateDir: path.join(dir, 'state'),
      deviceKey: path.join(dir, 'device.key'),
      roots: { keys: [path.join(dir, 'root-a.pub'), path.join(dir, 'root-b.pub')], threshold: 2 },
      broker: { url: broker.url },
      http: { port: 0 },
      // No attestation evidence in the demo: the operator vouches for the controller.
      posture: 'trusted',
      executors: Object.fromEntries(['move', 'grip', 'release', 'estop', 'stop', 'override_limits'].map((a) => [a, { kind: 'mqtt', timeout: '2s' }])),
    }),
    {},
  );
  const quiet = { info: () => {}, warn: (m: string, f?: Record<string, unknown>) => say(`  [agent] ${m} ${f ? JSON.stringify(f) : ''}`) };
  const agent = new Agent({ config, logger: quiet });
  await agent.start();
  const arm = await startSimArm({ url: broker.url, prefix: topics.prefix });
  await waitFor(() => agent.bundles.current !== null && agent.status().online, 'the agent to load the bundle');
  say(`agent ${DEVICE} online, local API on http://127.0.0.1:${agent.httpPort()}, bundle r${agent.status().bundle?.revision}\n`);

  // Results arrive on cmd/result (MQTT 3.1.1 has no correlation data); each names the SHA-256 of
  // the envelope it answers, and every one must verify with the device's public key.
  type Result = ReturnType<typeof verifyResult>;
  const results = new Map<string, Array<(r: Result) => void>>();
  await client.subscribeAsync(topics.cmdResult, { qos: 1 });
  const deviceKey = readPublicKeyFile(path.join(dir, 'device.pub'));
  client.on('message', (topic, payload) => {
    if (topic !== topics.cmdResult) return;
    const result = verifyResult(payload, { keyResolver: (kid) => (toHex(kid) === toHex(deviceKey.kid) ? deviceKey : undefined), deviceId: DEVICE, topic: RESULT_TOPIC, now: Date.now() });
    if (process.env.DEMO_DEBUG) say(`  [result] ${toHex(result.claims.cmd).slice(0, 8)} ${result.claims.decision} ${result.claims.reasons.join(',')}`);
    results.get(toHex(result.claims.cmd))?.shift()?.(result);
  });
  const resultFor = (envelope: Uint8Array) =>
    new Promise<Result>((resolve) => {
      const key = toHex(sha256(envelope));
      results.set(key, [...(results.get(key) ?? []), resolve]);
    });

  let step = 0;
  const send = async (label: string, who: PrivateKey, act: string, res: string, args: Record<string, string | number> = {}, bytes?: Uint8Array) => {
    const envelope = bytes ?? signCommand({ key: who, deviceId: DEVICE, topic: 'cmd', action: act, resource: res, args, now: Date.now(), lifetimeMs: 60_000 });
    const waiting = resultFor(envelope);
    await client.publishAsync(topics.cmd, Buffer.from(envelope), { qos: 1 });
    step++;
    const r = await withTimeout(waiting, 5000, label);
    say(`${step}. ${label}\n   → ${describe(r.claims)}  (result signed by the device ✓)`);
    return envelope;
  };
  const names = new Map(agent.bundles.current!.policies.policies.map((p) => [p.id, p.name ?? p.id]));
  const describe = (c: { decision: string; outcome: string; policies: string[]; reasons: string[] }) =>
    `${c.decision.toUpperCase()} (${c.outcome}) policies=[${c.policies.map((id) => names.get(id) ?? id).join(', ')}] reasons=[${c.reasons.join(', ')}]`;

  const planner = people['Agent::planner-7']!;
  const first = await send('planner-7 moves arm-1 to zone A at 300 mm/s', planner, 'move', 'Arm::"arm-1"', { speed: 300, zone: 'A' });
  await send('planner-7 moves arm-1 at 2000 mm/s (over the arm\'s rated speed)', planner, 'move', 'Arm::"arm-1"', { speed: 2000, zone: 'A' });
  await send('planner-7 moves arm-1 into zone C (a human work area)', planner, 'move', 'Arm::"arm-1"', { speed: 100, zone: 'C' });
  await send('an unknown agent (key not in the bundle) moves arm-1', rogue, 'move', 'Arm::"arm-1"', { speed: 100, zone: 'A' });
  // A captured command replayed through the local API: the replay guard refuses it. (Over MQTT the
  // same bytes are treated as an at-least-once redelivery: answered with the first result, never
  // executed twice.)
  const replay = await fetch(`http://127.0.0.1:${agent.httpPort()}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/cose' }, body: first });
  const replayed = (await replay.json()) as { decision: string; outcome: string; policies: string[]; reasons: string[] };
  say(`${++step}. the first command, captured and replayed to the local API\n   → HTTP ${replay.status} ${describe(replayed)}`);

  // Two-person rule: sam asks to lift arm-1's limits; it is held until two other supervisors approve.
  const override = signCommand({ key: people['Operator::sam']!, deviceId: DEVICE, topic: 'cmd', action: 'override_limits', resource: 'Arm::"arm-1"', args: {}, now: Date.now(), lifetimeMs: 120_000 });
  const pending = resultFor(override);
  await client.publishAsync(topics.cmd, Buffer.from(override), { qos: 1 });
  const held = await withTimeout(pending, 5000, 'override');
  say(`${++step}. supervisor sam asks to override arm-1's limits (two-person rule)\n   → ${describe(held.claims)}`);
  const digest = held.claims.cmd;
  const approve = async (who: string) => {
    await client.publishAsync(topics.approve, Buffer.from(signApproval({ key: people[who]!, deviceId: DEVICE, topic: 'approve', commandDigest: digest, decision: 'approve', now: Date.now(), lifetimeMs: 60_000 })), { qos: 1 });
    await sleep(200);
  };
  const settled = resultFor(override);
  await approve('Operator::olga');
  say(`   olga (an operator, not a supervisor) approves → not counted`);
  await approve('Operator::sara');
  say(`   sara (supervisor) approves → 1 of 2`);
  await approve('Operator::sven');
  const final = await withTimeout(settled, 5000, 'override settled');
  say(`   sven (supervisor) approves → ${describe(final.claims)}`);
  await send('operator olga presses the e-stop (allowed even in fail-closed mode: @safety)', people['Operator::olga']!, 'estop', 'Arm::"arm-1"');
  await send('planner-7 tries to move arm-1 while the e-stop is latched', planner, 'move', 'Arm::"arm-1"', { speed: 100, zone: 'B' });

  await sleep(200);
  const status = agent.status();
  const check = agent.audit.verify();
  say(`\nthe arm executed ${arm.executed.length} commands: ${arm.executed.map((e) => e.action).join(', ')}`);
  say(`audit log: ${status.audit.headSeq} hash-chained records, chain ${check === undefined ? 'verifies ✓' : `BROKEN at ${check.seq}`}`);
  say(`status: bundle r${status.bundle?.revision}, posture ${status.posture}, online ${status.online}`);

  if (keep) {
    const at = (name: string) => path.join(dir, name);
    const target = `--mqtt ${broker.url} --site ${SITE} --device ${DEVICE}`;
    // The story ends with the e-stop latched; reset at the arm, as a technician on site would.
    arm.state.estop = false;
    say(`\nstill running (the e-stop reset at the arm): broker ${broker.url}, API http://127.0.0.1:${agent.httpPort()}/v1/status`);
    say(`keys in ${dir} (planner-7, olga, sam, sara, sven, device); Ctrl-C stops the demo and deletes them. Try:\n`);
    say(`npx ztedge cmd send ${target} --key ${at('planner-7.key')} --act move --res 'Arm::"arm-1"' --args '{"speed":300,"zone":"A"}' --device-key ${at('device.pub')}`);
    say(`npx ztedge cmd send ${target} --key ${at('sam.key')} --act override_limits --res 'Arm::"arm-1"' --device-key ${at('device.pub')} --no-wait`);
    say(`npx ztedge approve ${target} --key ${at('sara.key')} --command DIGEST --device-key ${at('device.pub')}    # DIGEST: the "command" of the pending result; then again with sven.key`);
    say(`curl http://127.0.0.1:${agent.httpPort()}/v1/status`);
    await new Promise<void>((resolve) => (onInterrupt = resolve));
  }
  await arm.stop();
  await client.endAsync();
  await agent.stop();
  await broker.stop();
}

async function startAedes(): Promise<{ url: string; stop: () => Promise<void> }> {
  const aedes = await Aedes.createBroker();
  const server = createServer(aedes.handle);
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `mqtt://127.0.0.1:${port}`,
    stop: () =>
      new Promise<void>((resolve) => {
        aedes.close(() => server.close(() => resolve()));
      }),
  };
}

async function waitFor(condition: () => boolean, what: string, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(50);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  return Promise.race([p, sleep(ms).then(() => Promise.reject(new Error(`no result for "${what}" within ${ms} ms`)))]);
}

function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

let keep: boolean;
try {
  keep = parseStrict(process.argv.slice(2), { keep: { type: 'boolean' } }).flags.has('keep');
} catch (err) {
  if (!(err instanceof UsageError)) throw err;
  process.stderr.write(`demo: ${err.message}\n\n${USAGE}\n`);
  process.exit(2);
}
const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-demo-'));
// Private keys never outlive the demo: removed on success, failure and a second Ctrl-C alike.
const cleanUp = () => fs.rmSync(dir, { recursive: true, force: true });
process.once('exit', cleanUp);
process.on('SIGINT', () => {
  const stop = onInterrupt;
  onInterrupt = null;
  if (stop === null) process.exit(130);
  else stop();
});
process.on('SIGTERM', () => process.exit(143));
main(keep, dir).then(
  () => process.exit(0),
  (err: unknown) => {
    process.stderr.write(`demo failed: ${(err as Error).stack ?? String(err)}\n`);
    process.exit(1);
  },
);
