// Evidence (EAT in COSE_Sign1) signed and verified: every refusal has its own code, checked in
// a fixed order; with a software TPM the quote, the log and the AK are checked too.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestError } from '../../src/attest/errors.js';
import { type EvidenceInput, type VerifyEvidenceOptions, signEvidence, verifyEvidence } from '../../src/attest/evidence.js';
import { parseProfile } from '../../src/attest/profile.js';
import { type MeasurementRecord, compositeDigest } from '../../src/attest/record.js';
import { AttestationService } from '../../src/attest/service.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { CborTagged, type CborMap, type CborValue, decodeCbor, encodeCbor } from '../../src/envelope/cbor.js';
import { type TestTpm, startSwtpm, tpmToolsAvailable } from '../support/swtpm.js';
import { profileText, sha256Hex, tempDir, writeTree } from './support.js';

const deviceKey = generatePrivateKey('ed25519');
const otherKey = generatePrivateKey('ed25519');
const NOW = Date.UTC(2026, 5, 1, 12, 0, 0);
const NONCE = Uint8Array.from({ length: 32 }, (_, i) => i + 1);
const records: MeasurementRecord[] = [
  { path: '/etc/a', state: 'file', sha256: sha256Hex('a'), size: 1, mode: 0o644, uid: 0, gid: 0 },
  { path: '/etc/b', state: 'symlink', target: '/opt/b', uid: 0, gid: 0 },
];
const REFERENCES = [{ profile: 'p', files: [{ path: '/etc/a', sha256: sha256Hex('a') }, { path: '/etc/b', symlink: '/opt/b' }] }];

function input(over: Partial<EvidenceInput> = {}): EvidenceInput {
  return {
    key: deviceKey,
    deviceId: 'arm-01',
    nonce: NONCE,
    now: NOW,
    profile: 'p',
    records,
    composite: compositeDigest(records),
    measuredAtMs: NOW - 1000,
    posture: 'trusted',
    mismatches: [],
    bundle: { revision: 3, digest: 'ab'.repeat(32) },
    agentVersion: '0.1.0',
    ...over,
  };
}

const options = (over: Partial<VerifyEvidenceOptions> = {}): VerifyEvidenceOptions => ({ deviceKey: deviceKey.publicKey, nonce: NONCE, now: NOW, ...over });

function code(bytes: Uint8Array, over: Partial<VerifyEvidenceOptions> = {}): string {
  try {
    verifyEvidence(bytes, options(over));
  } catch (err) {
    if (err instanceof AttestError) return err.code;
    throw err;
  }
  return 'ACCEPTED';
}

/** Re-encodes the COSE_Sign1 with `edit` applied to its claims, keeping the old signature. */
function editClaims(bytes: Uint8Array, edit: (claims: CborMap) => void): Uint8Array {
  const message = (decodeCbor(bytes, { maxBytes: 1 << 22, maxDepth: 8, allowRootTag: true }) as CborTagged).value as CborValue[];
  const claims = decodeCbor(message[2] as Uint8Array, { maxBytes: 1 << 22, maxDepth: 6 }) as CborMap;
  edit(claims);
  return encodeCbor(new CborTagged(18, [message[0]!, message[1]!, encodeCbor(claims), message[3]!]));
}

describe('software-only evidence', () => {
  it('verifies, with the claims as signed', async () => {
    const verified = verifyEvidence(await signEvidence(input()), options({ references: REFERENCES }));
    expect(verified).toMatchObject({
      deviceId: 'arm-01',
      iatMs: NOW,
      profile: 'p',
      records,
      composite: Buffer.from(compositeDigest(records)).toString('hex'),
      posture: 'trusted',
      bundle: { revision: 3, digest: 'ab'.repeat(32) },
      agentVersion: '0.1.0',
      rootOfTrust: 'software-only',
    });
    expect(verified.assessment?.posture).toBe('trusted');
  });

  it('refuses each problem with its own code', async () => {
    const good = await signEvidence(input());
    expect(code(good)).toBe('ACCEPTED');
    // A stale nonce: evidence made for an earlier challenge.
    expect(code(good, { nonce: new Uint8Array(32).fill(9) })).toBe('ATTEST_NONCE_MISMATCH');
    // A forged signature.
    const forged = Uint8Array.from(good);
    forged[forged.length - 5]! ^= 1;
    expect(code(forged)).toBe('ATTEST_BAD_SIGNATURE');
    // A tampered measurement (the composite claim no longer follows from the records).
    const tampered = editClaims(good, (claims) => {
      const list = claims.get('measurements') as CborMap[];
      list[0]!.set('sha256', new Uint8Array(32).fill(1));
    });
    expect(code(tampered)).toBe('ATTEST_MEASUREMENT_TAMPERED');
    // Records and composite tampered together: only the signature can tell.
    const both = editClaims(good, (claims) => {
      const changed = [{ ...records[0]!, sha256: sha256Hex('evil') }, records[1]!];
      (claims.get('measurements') as CborMap[])[0]!.set('sha256', Buffer.from(sha256Hex('evil'), 'hex'));
      claims.set('composite', compositeDigest(changed));
    });
    expect(code(both)).toBe('ATTEST_BAD_SIGNATURE');
    // Evidence from another device (its own key, its own claims).
    expect(code(await signEvidence(input({ key: otherKey, deviceId: 'arm-02' })))).toBe('ATTEST_WRONG_DEVICE');
    // Too old, or from the future.
    expect(code(good, { now: NOW + 10 * 60_000 })).toBe('ATTEST_EXPIRED');
    expect(code(good, { now: NOW - 10 * 60_000 })).toBe('ATTEST_EXPIRED');
    // A pinned AK needs a quote.
    expect(code(good, { ak: generatePrivateKey('p256').publicKey })).toBe('ATTEST_NO_QUOTE');
    // Measurements that differ from the references.
    expect(code(good, { references: [{ profile: 'p', files: [{ path: '/etc/a', sha256: sha256Hex('A') }, { path: '/etc/b', symlink: '/opt/b' }] }] })).toBe('ATTEST_REFERENCE_MISMATCH');
    expect(code(good, { references: [{ profile: 'other', files: [] }] })).toBe('ATTEST_REFERENCE_MISMATCH');
    // Not evidence at all; unknown claims.
    expect(code(Uint8Array.of(1, 2, 3))).toBe('ATTEST_MALFORMED');
    expect(code(editClaims(good, (claims) => claims.set('extra', 1)))).toBe('ATTEST_MALFORMED');
  });

  it('refuses to sign for a nonce outside 8-64 bytes', () => {
    expect(() => signEvidence(input({ nonce: new Uint8Array(7) }))).toThrow(expect.objectContaining({ code: 'ATTEST_NONCE_INVALID' }));
  });
});

describe.runIf(tpmToolsAvailable())('evidence with a TPM quote (swtpm)', () => {
  let swtpm: TestTpm;
  let service: AttestationService;
  const root = tempDir();
  const key = generatePrivateKey('p256');

  beforeAll(async () => {
    swtpm = await startSwtpm();
    writeTree(root, { '/etc/a.conf': 'a', '/etc/b.conf': 'b' });
    service = new AttestationService({
      deviceId: 'gw-1',
      profile: parseProfile(profileText('edge-gateway', [{ path: '/etc/*.conf', critical: true }])),
      root,
      key,
      agentVersion: '0.1.0',
      tpm: { tcti: swtpm.tcti, stateDir: tempDir() },
      watch: false,
    });
    await service.start();
  });
  afterAll(async () => {
    await service?.stop();
    await swtpm?.stop();
  });

  const verify = (bytes: Uint8Array, nonce: Uint8Array, over: Partial<VerifyEvidenceOptions> = {}) =>
    verifyEvidence(bytes, { deviceKey: key.publicKey, nonce, now: Date.now(), ak: service.ak!, ...over });

  it('the quote verifies against the pinned AK, and its log ends with the reported composite', async () => {
    const nonce = new Uint8Array(20).fill(1);
    const verified = verify(await service.evidence(nonce), nonce);
    expect(verified.rootOfTrust).toBe('tpm2');
    expect(verified.tpm).toMatchObject({ pcr: 23, logLength: 1 });
    // A change is extended; the log grows by one.
    writeTree(root, { '/etc/a.conf': 'changed' });
    await service.measureNow();
    const nonce2 = new Uint8Array(20).fill(2);
    const again = verify(await service.evidence(nonce2), nonce2);
    expect(again.tpm?.logLength).toBe(2);
    expect(again.composite).not.toBe(verified.composite);
    // Another AK pinned.
    const nonce3 = new Uint8Array(20).fill(3);
    expect(() => verify(Buffer.from([]), nonce3)).toThrow(expect.objectContaining({ code: 'ATTEST_MALFORMED' }));
    const other = generatePrivateKey('p256').publicKey;
    const evidence3 = await service.evidence(nonce3);
    expect(() => verify(evidence3, nonce3, { ak: other })).toThrow(expect.objectContaining({ code: 'ATTEST_AK_MISMATCH' }));
  });

  it('a quote replayed with an old nonce in fresh evidence is refused', async () => {
    const oldNonce = new Uint8Array(16).fill(4);
    const old = await service.evidence(oldNonce);
    // A compromised agent signs new evidence for a new nonce but reuses the old quote.
    const message = (decodeCbor(old, { maxBytes: 1 << 22, maxDepth: 8, allowRootTag: true }) as CborTagged).value as CborValue[];
    const claims = decodeCbor(message[2] as Uint8Array, { maxBytes: 1 << 22, maxDepth: 6 }) as CborMap;
    const tpmClaim = claims.get('tpm') as CborMap;
    const newNonce = new Uint8Array(16).fill(5);
    const state = service.state!;
    const replayed = await signEvidence({
      key,
      deviceId: 'gw-1',
      nonce: newNonce,
      now: Date.now(),
      profile: 'edge-gateway',
      records: state.records,
      composite: Buffer.from(state.assessment.composite, 'hex'),
      measuredAtMs: state.measuredAtMs,
      posture: state.assessment.posture,
      mismatches: [],
      bundle: null,
      agentVersion: '0.1.0',
      tpm: {
        quote: { attest: tpmClaim.get('quote') as Uint8Array, signature: tpmClaim.get('signature') as Uint8Array, pcr: 23 },
        log: tpmClaim.get('log') as Uint8Array[],
        ak: service.ak!,
      },
    });
    expect(() => verify(replayed, newNonce)).toThrow(expect.objectContaining({ code: 'ATTEST_QUOTE_NONCE' }));
  });

  it('a PCR extended out of band: the verifier reports a PCR mismatch against the replayed log', async () => {
    await new Promise<void>((resolve, reject) => {
      const child = spawn('tpm2_pcrextend', [`23:sha256=${'ee'.repeat(32)}`], { env: { ...process.env, TPM2TOOLS_TCTI: swtpm.tcti }, stdio: 'ignore' });
      child.on('exit', (c) => (c === 0 ? resolve() : reject(new Error(`tpm2_pcrextend exited ${c}`))));
    });
    const nonce = new Uint8Array(16).fill(6);
    expect(() => verify(Buffer.from([]), nonce)).toThrow();
    const evidence = await service.evidence(nonce);
    expect(() => verify(evidence, nonce)).toThrow(expect.objectContaining({ code: 'ATTEST_PCR_MISMATCH' }));
  });
});
