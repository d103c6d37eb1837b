// The attestation service on a temp tree: a change is noticed by the file watches (the interval
// is an hour, so only they can notice it), posture follows, events carry path, expected and
// found digests, bundle activation re-measures, and challenges get signed evidence once.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { ReferenceValues } from '../../src/attest/compare.js';
import { verifyEvidence } from '../../src/attest/evidence.js';
import { parseProfile } from '../../src/attest/profile.js';
import { type AttestationEvent, AttestationService } from '../../src/attest/service.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { waitUntil } from '../support/wait.js';
import { profileText, sha256Hex, tempDir, writeTree } from './support.js';

const FILES = {
  '/etc/ztedge/agent.yaml': 'device: arm-01\n',
  '/etc/robot/safety-zones.conf': 'zone A: 0,0 - 100,100\n',
  '/etc/robot/controller.conf': 'gain=3\n',
  '/etc/robot/tools/gripper.json': '{"force": 40}\n',
};
const PROFILE = parseProfile(
  profileText('robot-arm', [
    { path: '/etc/ztedge/agent.yaml', critical: true },
    { path: '/etc/robot/safety-zones.conf', critical: true },
    { path: '/etc/robot/controller.conf', critical: true },
    { path: '/etc/robot/tools/*.json', critical: false, limit: 4 },
  ]),
);

function references(files: Record<string, string> = FILES): ReferenceValues {
  return { profile: 'robot-arm', files: Object.entries(files).map(([p, content]) => ({ path: p, sha256: sha256Hex(content) })) };
}

const running: AttestationService[] = [];
afterEach(async () => {
  for (const service of running.splice(0)) await service.stop();
});

async function startService(over: Partial<ConstructorParameters<typeof AttestationService>[0]> = {}) {
  const root = tempDir();
  writeTree(root, FILES);
  const key = generatePrivateKey('ed25519');
  const service = new AttestationService({ deviceId: 'arm-01', profile: PROFILE, root, key, agentVersion: '0.1.0', intervalMs: 3_600_000, ...over });
  const events: AttestationEvent[] = [];
  service.on((e) => events.push(e));
  service.setReferences(references(), { revision: 4, digest: 'ab'.repeat(32) });
  await service.start();
  running.push(service);
  return { root, key, service, events, file: (p: string) => path.join(root, p) };
}

describe('AttestationService', () => {
  it('is untrusted before its first measurement, trusted after it when everything matches', async () => {
    const key = generatePrivateKey('ed25519');
    const idle = new AttestationService({ deviceId: 'd', profile: PROFILE, root: tempDir(), key, agentVersion: '0.1.0' });
    expect(idle.posture).toBe('untrusted');
    expect(idle.facts().error).toBe('ATTEST_NOT_READY');
    const { service, events } = await startService();
    expect(service.posture).toBe('trusted');
    expect(service.facts()).toMatchObject({ posture: 'trusted', mismatches: [], referenced: true, rootOfTrust: 'software-only', error: null });
    expect(events).toEqual([expect.objectContaining({ kind: 'changed', trigger: 'start', previous: null, posture: 'trusted' })]);
  });

  it('a changed critical file flips posture to untrusted within 2 s without the interval; restoring it restores trusted', async () => {
    const { service, events, file } = await startService();
    const started = Date.now();
    fs.writeFileSync(file('/etc/robot/safety-zones.conf'), 'zone A: everywhere\n');
    await waitUntil(() => service.posture === 'untrusted', 'posture untrusted', 2000);
    expect(Date.now() - started).toBeLessThan(2000);
    const change = events.at(-1)!;
    expect(change).toMatchObject({ kind: 'changed', trigger: 'watch', previous: 'trusted', posture: 'untrusted' });
    expect(change.kind === 'changed' && change.mismatches).toEqual([
      {
        path: '/etc/robot/safety-zones.conf',
        reason: 'digest',
        critical: true,
        expected: [`sha256:${sha256Hex(FILES['/etc/robot/safety-zones.conf'])}`],
        found: `sha256:${sha256Hex('zone A: everywhere\n')}`,
      },
    ]);
    expect(service.facts().mismatches).toEqual(['/etc/robot/safety-zones.conf']);

    fs.writeFileSync(file('/etc/robot/safety-zones.conf'), FILES['/etc/robot/safety-zones.conf']);
    await waitUntil(() => service.posture === 'trusted', 'posture trusted again', 2000);
    expect(events.at(-1)).toMatchObject({ kind: 'changed', previous: 'untrusted', posture: 'trusted', mismatches: [] });
  });

  it('notices a file replaced by rename, deleted, made world-writable, and a new file under a glob', async () => {
    const { service, file } = await startService();
    const replacement = `${file('/etc/robot/controller.conf')}.new`;
    fs.writeFileSync(replacement, 'gain=30\n');
    fs.renameSync(replacement, file('/etc/robot/controller.conf'));
    await waitUntil(() => service.facts().mismatches.includes('/etc/robot/controller.conf'), 'rename noticed', 2000);
    fs.writeFileSync(file('/etc/robot/controller.conf'), FILES['/etc/robot/controller.conf']);
    await waitUntil(() => service.posture === 'trusted', 'restored', 2000);

    fs.rmSync(file('/etc/ztedge/agent.yaml'));
    await waitUntil(() => service.state?.assessment.mismatches[0]?.reason === 'missing', 'deletion noticed', 2000);
    fs.writeFileSync(file('/etc/ztedge/agent.yaml'), FILES['/etc/ztedge/agent.yaml']);
    await waitUntil(() => service.posture === 'trusted', 'recreated', 2000);

    fs.chmodSync(file('/etc/robot/controller.conf'), 0o666);
    await waitUntil(() => service.state?.assessment.mismatches[0]?.reason === 'world-writable', 'chmod noticed', 2000);
    expect(service.posture).toBe('untrusted');
    fs.chmodSync(file('/etc/robot/controller.conf'), 0o644);
    await waitUntil(() => service.posture === 'trusted', 'chmod back', 2000);

    fs.writeFileSync(file('/etc/robot/tools/welder.json'), '{}');
    await waitUntil(() => service.state?.assessment.mismatches[0]?.reason === 'unreferenced', 'new glob file noticed', 2000);
    expect(service.posture).toBe('degraded'); // the tools glob is not critical
  });

  it('re-measures on bundle activation and judges against the new references', async () => {
    const { service, events } = await startService();
    const seq = service.state!.seq;
    service.setReferences(references({ ...FILES, '/etc/robot/controller.conf': 'gain=4\n' }), { revision: 5, digest: 'cd'.repeat(32) });
    await waitUntil(() => service.state!.seq > seq, 'bundle measurement', 2000);
    expect(service.state!.trigger).toBe('bundle');
    expect(service.posture).toBe('untrusted');
    expect(events.at(-1)).toMatchObject({ trigger: 'bundle', posture: 'untrusted' });
    service.setReferences(null, null);
    await waitUntil(() => service.state!.seq > seq + 1, 'measured without references', 2000);
    expect(service.facts()).toMatchObject({ posture: 'degraded', referenced: false });
  });

  it('re-measures on the interval (the backstop for missed events)', async () => {
    const { service } = await startService({ intervalMs: 200, watch: false });
    const seq = service.state!.seq;
    await waitUntil(() => service.state!.seq >= seq + 2, 'two interval measurements', 3000);
    expect(service.state!.trigger).toBe('interval');
  });

  it('a glob over its limit: untrusted, with the error', async () => {
    const { service, file } = await startService();
    for (let i = 0; i < 5; i++) fs.writeFileSync(file(`/etc/robot/tools/t${i}.json`), '{}');
    await waitUntil(() => service.facts().error === 'ATTEST_GLOB_LIMIT', 'glob limit', 2000);
    expect(service.posture).toBe('untrusted');
    expect(service.status().error?.message).toMatch(/glob \/etc\/robot\/tools\/\*\.json matches more than 4 entries/);
  });

  it('evidence: signed, verifiable, each nonce answered once, challenges rate-limited, nonce 8-64 bytes', async () => {
    const { service, key } = await startService({ challenges: { limit: 3, windowMs: 60_000 } });
    const nonce = new Uint8Array(16).fill(7);
    const verified = verifyEvidence(await service.evidence(nonce), { deviceKey: key.publicKey, nonce, now: Date.now(), references: [references()] });
    expect(verified).toMatchObject({ deviceId: 'arm-01', profile: 'robot-arm', posture: 'trusted', rootOfTrust: 'software-only', bundle: { revision: 4, digest: 'ab'.repeat(32) }, agentVersion: '0.1.0' });
    expect(verified.records.map((r) => r.path)).toEqual(Object.keys(FILES).sort());
    await expect(service.evidence(nonce)).rejects.toMatchObject({ code: 'ATTEST_NONCE_REUSED' });
    await expect(service.evidence(new Uint8Array(7))).rejects.toMatchObject({ code: 'ATTEST_NONCE_INVALID' });
    await expect(service.evidence(new Uint8Array(65))).rejects.toMatchObject({ code: 'ATTEST_NONCE_INVALID' });
    await service.evidence(new Uint8Array(8).fill(1));
    await service.evidence(new Uint8Array(64).fill(2));
    await expect(service.evidence(new Uint8Array(8).fill(3))).rejects.toMatchObject({ code: 'ATTEST_RATE_LIMITED' });
  });
});
