// Attestation end to end: an agent measuring a temp tree against the references in its signed
// bundle, over a real broker (Mosquitto when installed). A changed critical file flips posture
// within 2 s without waiting for the interval, policy then forbids motion but not the @safety
// e-stop, the change is audited with paths and digests and shown in status and metrics, and
// restoring the file restores trust. Challenges over MQTT and POST /v1/attest return evidence
// that `ztedge attest verify` accepts, and refuses stale, forged, tampered or foreign evidence
// with distinct exit codes. With swtpm, the same through a TPM quote.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { readChallengeReply } from '../../src/attest/challenge.js';
import { verifyEvidence } from '../../src/attest/evidence.js';
import { buildBundle } from '../../src/bundle/build.js';
import { DEFAULT_SETTINGS } from '../../src/bundle/format.js';
import { signBundle } from '../../src/bundle/sign.js';
import { COSE_ALG } from '../../src/crypto/algorithms.js';
import { toHex } from '../../src/crypto/bytes.js';
import { writePublicKeyFile } from '../../src/crypto/key-files.js';
import type { PrivateKey } from '../../src/crypto/keys.js';
import { CborTagged, type CborMap, type CborValue, decodeCbor, encodeCbor } from '../../src/envelope/cbor.js';
import { CELL_ENTITIES, CELL_POLICIES } from '../agent/fixture.js';
import { type TestBroker, startBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { startSwtpm, tpmToolsAvailable } from '../support/swtpm.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { auditTrail, brokerArgs, cli, command, DEVICE, makeSite, Operator, PREFIX, type Site, SITE, startAgent, startArm, untilOnlineWithBundle } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

const FILES: Record<string, string> = {
  '/etc/ztedge/agent.yaml': 'device: arm-01\n',
  '/etc/robot/controller.conf': 'gain=3\n',
  '/etc/robot/safety-zones.conf': 'zone A: 0,0 - 100,100\n',
};
const PROFILE = {
  profile: 'robot-arm',
  measure: [
    { path: '/etc/ztedge/agent.yaml', critical: true },
    { path: '/etc/robot/controller.conf', critical: true },
    { path: '/etc/robot/safety-zones.conf', critical: true },
  ],
  interval: '1h',
  executors: { estop: { kind: 'mqtt', timeout: '2s' } },
};
/** Motion is forbidden on an untrusted controller; the @safety e-stop is not. */
const POLICIES = `${CELL_POLICIES}
@id("forbid-untrusted")
forbid (principal, action, resource) when { context.posture == "untrusted" } unless { action == Action::"estop" };

@id("forbid-unverified-safety-zones")
forbid (principal, action == Action::"move", resource)
when { context has attestation && context.attestation.mismatches.contains("/etc/robot/safety-zones.conf") };
`;

const sha = (text: string) => createHash('sha256').update(text).digest('hex');

function issuer(key: PrivateKey, principal: string) {
  return { kid: key.publicKey.kid, alg: key.keyType === 'ed25519' ? COSE_ALG.EdDSA : COSE_ALG.ES256, publicKey: key.publicKey.raw, principal };
}

/** The cell bundle with reference values for robot-arm computed from FILES. */
function attestedBundle(site: Site): string {
  const now = Math.floor(Date.now() / 1000);
  const built = buildBundle(
    {
      policies: [{ file: 'cell.cedar', text: POLICIES }],
      entities: CELL_ENTITIES,
      issuers: [issuer(site.keys.planner, 'Agent::"planner"')],
      attestation: [{ profile: 'robot-arm', files: Object.entries(FILES).map(([p, content]) => ({ path: p, sha256: sha(content) })) }],
      settings: DEFAULT_SETTINGS,
      tests: [],
    },
    { id: 'cell-attest', revision: 1, created: now - 60, expires: now + 86_400, scope: { sites: [SITE], devices: [DEVICE], profiles: ['robot-arm'] }, minAgentVersion: '0.1.0' },
  );
  const file = path.join(site.dir, 'bundle-attest.cbor');
  fs.writeFileSync(file, signBundle(built.bytes, site.keys.root));
  return file;
}

async function setup(attestation: Record<string, unknown> = {}) {
  const broker: TestBroker = await startBroker();
  cleanups.push(() => broker.stop());
  const site = makeSite();
  cleanups.push(() => site.remove());
  const root = path.join(site.dir, 'device-root');
  for (const [p, content] of Object.entries(FILES)) {
    fs.mkdirSync(path.dirname(path.join(root, p)), { recursive: true });
    fs.writeFileSync(path.join(root, p), content, { mode: 0o644 });
  }
  const profiles = path.join(site.dir, 'profiles');
  fs.mkdirSync(profiles);
  fs.writeFileSync(path.join(profiles, 'robot-arm.json'), JSON.stringify(PROFILE));
  const config = site.config(broker.url, {
    device: { id: DEVICE, site: SITE, profile: 'robot-arm' },
    bundleFile: attestedBundle(site),
    attestation: { profiles, measureRoot: root, ...attestation },
  });
  const running = await startAgent(config);
  cleanups.push(() => running.stop());
  const { agent } = running;
  await untilOnlineWithBundle(agent);
  const arm = await startArm(broker);
  cleanups.push(() => arm.stop());
  const operator = await Operator.connect(broker, site);
  cleanups.push(() => operator.close());
  return { broker, site, root, agent, arm, operator, file: (p: string) => path.join(root, p) };
}

describe('attestation in the agent', () => {
  it('a changed critical file: untrusted within 2 s, motion forbidden, e-stop allowed, audited and shown; restored: trusted', async () => {
    const { broker, site, agent, arm, operator, file } = await setup();
    expect(agent.status()).toMatchObject({ posture: 'trusted', attestation: { posture: 'trusted', profile: 'robot-arm', referenced: true, mismatches: [], rootOfTrust: 'software-only' } });
    const moved = await operator.result(await operator.send(command(site.keys.planner, 'move', { speed: 50, x: 10 })));
    expect(moved).toMatchObject({ decision: 'allow', outcome: 'executed' });

    const status = await MqttPeer.connect(broker);
    cleanups.push(() => status.close());
    await status.subscribe(`${PREFIX}status`);

    const changedAt = Date.now();
    fs.writeFileSync(file('/etc/robot/safety-zones.conf'), 'zone A: everywhere\n');
    await waitUntil(() => agent.status().posture === 'untrusted', 'posture untrusted', 2000);
    expect(Date.now() - changedAt).toBeLessThan(2000);

    const denied = await operator.result(await operator.send(command(site.keys.planner, 'move', { speed: 50, x: 20 })));
    expect(denied).toMatchObject({ decision: 'deny', outcome: 'not_executed' });
    // Both forbids determine it, named by their @id.
    expect(denied.policies.sort()).toEqual(['forbid-untrusted', 'forbid-unverified-safety-zones']);
    const estop = await operator.result(await operator.send(command(site.keys.planner, 'estop')));
    expect(estop).toMatchObject({ decision: 'allow', outcome: 'executed' });
    expect(arm.executed.map((e) => e.action)).toEqual(['move', 'estop']);

    const audited = auditTrail(agent).filter(({ record }) => record.kind === 'attestation').map(({ body }) => body);
    const last = audited.at(-1)!;
    expect([last.get('trigger'), last.get('from'), last.get('posture')]).toEqual(['watch', 'trusted', 'untrusted']);
    expect(audited.at(-1)!.get('mismatches')).toEqual([
      new Map<string, unknown>([
        ['path', '/etc/robot/safety-zones.conf'],
        ['reason', 'digest'],
        ['critical', true],
        ['expected', [`sha256:${sha(FILES['/etc/robot/safety-zones.conf']!)}`]],
        ['found', `sha256:${sha('zone A: everywhere\n')}`],
      ]),
    ]);
    expect(agent.audit.verify()).toBeUndefined();

    const port = agent.httpPort();
    const httpStatus = (await (await fetch(`http://127.0.0.1:${port}/v1/status`)).json()) as { posture: string; attestation: { mismatches: unknown[] } };
    expect(httpStatus.posture).toBe('untrusted');
    expect(httpStatus.attestation.mismatches).toEqual([{ path: '/etc/robot/safety-zones.conf', reason: 'digest', critical: true }]);
    const metrics = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
    expect(metrics).toContain('ztedge_attestation_posture{posture="untrusted"} 1');
    expect(metrics).toContain('ztedge_attestation_mismatches 1');
    await waitUntil(() => status.received.some((m) => JSON.parse(m.payload.toString()).posture === 'untrusted'), 'status message with posture untrusted');

    fs.writeFileSync(file('/etc/robot/safety-zones.conf'), FILES['/etc/robot/safety-zones.conf']!);
    await waitUntil(() => agent.status().posture === 'trusted', 'posture trusted again', 2000);
    const again = await operator.result(await operator.send(command(site.keys.planner, 'move', { speed: 50, x: 30 })));
    // Policy allows it again (the simulated arm itself stays latched by the e-stop above).
    expect(again).toMatchObject({ decision: 'allow', policies: ['operators-move'] });
  });

  it('challenge → evidence over MQTT → attest verify; stale, forged, tampered and foreign evidence refused with distinct codes', async () => {
    const { broker, site, agent } = await setup();
    const out = path.join(site.dir, 'evidence.cbor');
    const challenged = await cli(['attest', 'challenge', ...brokerArgs(broker), '--device-key', site.pubFile('device'), '--out', out]);
    expect(challenged.stderr).toEqual([]);
    expect(challenged.code).toBe(0);
    const printed = JSON.parse(challenged.stdout.join('\n'));
    expect(printed).toMatchObject({ valid: true, device: DEVICE, profile: 'robot-arm', posture: 'trusted', files: 3, rootOfTrust: 'software-only', bundle: { revision: 1 } });
    const verify = (file: string, nonce: string, key = site.pubFile('device')) => cli(['attest', 'verify', file, '--device-key', key, '--nonce', nonce]);
    const ok = await verify(out, printed.nonce);
    expect(ok.code, ok.stderr.join('\n')).toBe(0);

    // Stale: evidence answered an earlier challenge.
    const out2 = path.join(site.dir, 'evidence2.cbor');
    const second = await cli(['attest', 'challenge', ...brokerArgs(broker), '--device-key', site.pubFile('device'), '--out', out2]);
    expect(second.code).toBe(0);
    expect((await verify(out, JSON.parse(second.stdout.join('\n')).nonce)).code).toBe(14);
    // Forged signature.
    const bytes = fs.readFileSync(out);
    const forged = Uint8Array.from(bytes);
    forged[forged.length - 3]! ^= 1;
    fs.writeFileSync(path.join(site.dir, 'forged.cbor'), forged);
    expect((await verify(path.join(site.dir, 'forged.cbor'), printed.nonce)).code).toBe(12);
    // Tampered measurement.
    const message = (decodeCbor(bytes, { maxBytes: 1 << 22, maxDepth: 8, allowRootTag: true }) as CborTagged).value as CborValue[];
    const claims = decodeCbor(message[2] as Uint8Array, { maxBytes: 1 << 22, maxDepth: 6 }) as CborMap;
    (claims.get('measurements') as CborMap[])[1]!.set('sha256', Buffer.from(sha('gain=99\n'), 'hex'));
    fs.writeFileSync(path.join(site.dir, 'tampered.cbor'), encodeCbor(new CborTagged(18, [message[0]!, message[1]!, encodeCbor(claims), message[3]!])));
    const tampered = await verify(path.join(site.dir, 'tampered.cbor'), printed.nonce);
    expect(tampered.code).toBe(13);
    expect(tampered.stderr[0]).toMatch(/^ATTEST_MEASUREMENT_TAMPERED: /);
    // Another device: this evidence is not from the device whose key the verifier holds.
    const stranger = await verify(out, printed.nonce, site.pubFile('stranger'));
    expect(stranger.code).toBe(11);
    expect(stranger.stderr[0]).toMatch(/^ATTEST_WRONG_DEVICE: /);

    // POST /v1/attest: evidence for a nonce, once.
    const url = `http://127.0.0.1:${agent.httpPort()}/v1/attest`;
    const post = (body: unknown) => fetch(url, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify(body) });
    const nonce = 'a1'.repeat(16);
    const answered = await post({ nonce });
    expect(answered.status).toBe(200);
    const { evidence, posture } = (await answered.json()) as { evidence: string; posture: string };
    expect(posture).toBe('trusted');
    expect(verifyEvidence(Buffer.from(evidence, 'base64'), { deviceKey: site.keys.device.publicKey, nonce: Buffer.from(nonce, 'hex'), now: Date.now() }).deviceId).toBe(DEVICE);
    expect((await post({ nonce })).status).toBe(409);
    expect((await post({ nonce: 'abcd' })).status).toBe(400);
    expect((await post({ nonce, extra: 1 })).status).toBe(400);

    // A repeated nonce over MQTT is refused with an answer, not ignored.
    const peer = await MqttPeer.connect(broker);
    cleanups.push(() => peer.close());
    await peer.subscribe(`${PREFIX}attest/evidence/#`);
    await peer.publish(`${PREFIX}attest/challenge`, Buffer.from(nonce, 'hex'), { qos: 1 });
    await waitUntil(() => peer.received.length > 0, 'refusal');
    expect(readChallengeReply(peer.received[0]!.payload)).toMatchObject({ kind: 'refusal', code: 'ATTEST_NONCE_REUSED' });
  });

  it.runIf(tpmToolsAvailable())('with a TPM (swtpm): challenge with the AK pinned verifies the quote', async () => {
    const swtpm = await startSwtpm();
    cleanups.push(() => swtpm.stop());
    const { broker, site, agent } = await setup({ tpm: swtpm.tcti });
    const akFile = path.join(site.dir, 'ak.pub');
    writePublicKeyFile(akFile, agent.attestation!.ak!);
    const challenged = await cli(['attest', 'challenge', ...brokerArgs(broker), '--device-key', site.pubFile('device'), '--ak', akFile]);
    expect(challenged.code, challenged.stderr.join('\n')).toBe(0);
    expect(JSON.parse(challenged.stdout.join('\n'))).toMatchObject({ rootOfTrust: 'tpm2', tpm: { pcr: 23, ak: toHex(agent.attestation!.ak!.kid), logLength: 1 } });
    expect(agent.status().attestation).toMatchObject({ rootOfTrust: 'tpm2', tpm: { pcr: 23, logLength: 1, akKid: toHex(agent.attestation!.ak!.kid), ak: fs.readFileSync(akFile, 'utf8') } });
  });
});
