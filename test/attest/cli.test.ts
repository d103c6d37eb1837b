// `ztedge attest measure | references | verify` in-process on temp trees and real key files:
// output, strict options, and one exit code per reason a verification fails.
import fs from 'node:fs';
import path from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { signEvidence } from '../../src/attest/evidence.js';
import { compositeDigest, type MeasurementRecord } from '../../src/attest/record.js';
import { readBundleSource } from '../../src/bundle/build.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../../src/crypto/key-files.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { toHex } from '../../src/crypto/bytes.js';
import { CborTagged, type CborMap, type CborValue, decodeCbor, encodeCbor } from '../../src/envelope/cbor.js';
import { profileText, sha256Hex, tempDir, writeTree, ztedge } from './support.js';

const dir = tempDir();
const root = path.join(dir, 'root');
const profile = path.join(dir, 'cell.json');
const FILES = { '/etc/robot/controller.conf': 'gain=3\n', '/etc/robot/zones/a.conf': 'A\n', '/etc/robot/zones/b.conf': 'B\n' };

beforeAll(() => {
  writeTree(root, FILES);
  fs.symlinkSync('/opt/fw/v1', path.join(root, 'etc/robot/firmware'));
  fs.writeFileSync(
    profile,
    profileText('cell', [
      { path: '/etc/robot/controller.conf', critical: true },
      { path: '/etc/robot/firmware', critical: true },
      { path: '/etc/robot/zones/*.conf', critical: true, limit: 2 },
    ]),
  );
});

describe('ztedge attest measure', () => {
  it('prints records and the composite; --json for machines', async () => {
    const human = await ztedge('attest', 'measure', '--profile', profile, '--root', root);
    expect(human.code, human.stderr).toBe(0);
    expect(human.stdout).toContain(`${sha256Hex('gain=3\n')}  /etc/robot/controller.conf`);
    expect(human.stdout).toContain('-> /opt/fw/v1  /etc/robot/firmware');
    const json = JSON.parse((await ztedge('attest', 'measure', '--profile', profile, '--root', root, '--json')).stdout);
    expect(json.records.map((r: MeasurementRecord) => r.path)).toEqual(['/etc/robot/controller.conf', '/etc/robot/firmware', '/etc/robot/zones/a.conf', '/etc/robot/zones/b.conf']);
    expect(json.composite).toBe(toHex(compositeDigest(json.records)));
    expect(human.stdout).toContain(`composite ${json.composite} (4 files, profile cell)`);
  });

  it('measures a shipped profile by name: its missing files are recorded, not skipped', async () => {
    const json = JSON.parse((await ztedge('attest', 'measure', '--profile', 'robot-arm', '--root', root, '--json')).stdout);
    expect(json.records).toContainEqual({ path: '/etc/ztedge/agent.yaml', state: 'missing' });
  });

  it('refuses unknown flags, missing options, a bad root and an over-limit glob', async () => {
    const unknown = await ztedge('attest', 'measure', '--profile', profile, '--roots', root);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toMatch(/unknown option --roots \(did you mean --root\?\)/);
    expect((await ztedge('attest', 'measure', '--root', root)).stderr).toMatch(/missing required option --profile/);
    expect((await ztedge('attest', 'measure', '--profile', 'no-such-profile')).stderr).toMatch(/^PROFILE_NOT_FOUND: /);
    expect((await ztedge('attest', 'measure', '--profile', profile, '--root', path.join(dir, 'nope'))).stderr).toMatch(/^ATTEST_ROOT_INVALID: /);
    expect((await ztedge('attest', 'frob')).code).toBe(2);
    const crowded = tempDir();
    writeTree(crowded, { ...FILES, '/etc/robot/zones/c.conf': 'C\n' });
    const over = await ztedge('attest', 'measure', '--profile', profile, '--root', crowded);
    expect(over.code).toBe(1);
    expect(over.stderr).toMatch(/^ATTEST_GLOB_LIMIT: glob \/etc\/robot\/zones\/\*\.conf matches more than 2 entries/);
  });
});

describe('ztedge attest references', () => {
  it('writes an attestation.json a bundle source accepts', async () => {
    const out = await ztedge('attest', 'references', '--profile', profile, '--root', root);
    expect(out.code, out.stderr).toBe(0);
    const source = tempDir();
    fs.writeFileSync(path.join(source, 'attestation.json'), out.stdout);
    fs.writeFileSync(path.join(source, 'p.cedar'), 'permit (principal, action, resource);');
    expect(readBundleSource(source).attestation).toEqual([
      {
        profile: 'cell',
        files: [
          { path: '/etc/robot/controller.conf', sha256: sha256Hex('gain=3\n') },
          { path: '/etc/robot/firmware', symlink: '/opt/fw/v1' },
          { path: '/etc/robot/zones/a.conf', sha256: sha256Hex('A\n') },
          { path: '/etc/robot/zones/b.conf', sha256: sha256Hex('B\n') },
        ],
      },
    ]);
  });

  it('refuses a device that is not known-good (missing or world-writable files)', async () => {
    const bad = tempDir();
    writeTree(bad, { '/etc/robot/controller.conf': 'x', '/etc/robot/zones/a.conf': 'A' });
    fs.chmodSync(path.join(bad, 'etc/robot/zones/a.conf'), 0o666);
    const out = await ztedge('attest', 'references', '--profile', profile, '--root', bad);
    expect(out.code).toBe(1);
    expect(out.stderr).toMatch(/^REFERENCES_INVALID: .*\/etc\/robot\/firmware \(missing\), \/etc\/robot\/zones\/a\.conf \(world-writable\)/);
  });
});

describe('ztedge attest verify', () => {
  const device = generatePrivateKey('ed25519');
  const other = generatePrivateKey('ed25519');
  const keys = tempDir();
  const devicePub = path.join(keys, 'device.pub');
  const nonce = Uint8Array.from({ length: 16 }, (_, i) => 100 + i);
  const records: MeasurementRecord[] = [{ path: '/etc/robot/controller.conf', state: 'file', sha256: sha256Hex('gain=3\n'), size: 7, mode: 0o644, uid: 0, gid: 0 }];
  const evidence = (over: Partial<Parameters<typeof signEvidence>[0]> = {}) =>
    signEvidence({
      key: device,
      deviceId: 'arm-01',
      nonce,
      now: Date.now(),
      profile: 'cell',
      records,
      composite: compositeDigest(records),
      measuredAtMs: Date.now(),
      posture: 'trusted',
      mismatches: [],
      bundle: null,
      agentVersion: '0.1.0',
      ...over,
    });
  const file = (name: string, bytes: Uint8Array | string) => {
    const f = path.join(keys, name);
    fs.writeFileSync(f, bytes);
    return f;
  };
  const verify = (f: string, ...extra: string[]) => ztedge('attest', 'verify', f, '--device-key', devicePub, '--nonce', toHex(nonce), ...extra);

  beforeAll(() => {
    writePublicKeyFile(devicePub, device.publicKey);
    writePrivateKeyFile(path.join(keys, 'device.key'), device);
  });

  it('accepts good evidence (binary or hex) and prints what it says', async () => {
    const bytes = await evidence();
    const ok = await verify(file('good.cbor', bytes));
    expect(ok.code, ok.stderr).toBe(0);
    expect(JSON.parse(ok.stdout)).toMatchObject({ valid: true, device: 'arm-01', profile: 'cell', posture: 'trusted', rootOfTrust: 'software-only', files: 1 });
    expect((await verify(file('good.hex', toHex(bytes)))).code).toBe(0);
  });

  it('exits with a distinct code for each reason', async () => {
    const bytes = await evidence();
    const refs = file('refs.json', JSON.stringify({ cell: { files: [{ path: '/etc/robot/controller.conf', sha256: sha256Hex('gain=4\n') }] } }));
    const message = (decodeCbor(bytes, { maxBytes: 1 << 20, maxDepth: 8, allowRootTag: true }) as CborTagged).value as CborValue[];
    const claims = decodeCbor(message[2] as Uint8Array, { maxBytes: 1 << 20, maxDepth: 6 }) as CborMap;
    (claims.get('measurements') as CborMap[])[0]!.set('sha256', new Uint8Array(32));
    const tampered = encodeCbor(new CborTagged(18, [message[0]!, message[1]!, encodeCbor(claims), message[3]!]));
    const forged = Uint8Array.from(bytes);
    forged[forged.length - 1]! ^= 0x80;
    const cases: Array<[string, Promise<{ code: number; stderr: string }>, number]> = [
      ['malformed', verify(file('junk', 'not evidence at all')), 10],
      ['another device', verify(file('other.cbor', await evidence({ key: other, deviceId: 'arm-02' }))), 11],
      ['forged signature', verify(file('forged.cbor', forged)), 12],
      ['tampered measurement', verify(file('tampered.cbor', tampered)), 13],
      ['stale nonce', verify(file('stale.cbor', await evidence({ nonce: new Uint8Array(16).fill(1) }))), 14],
      ['too old', verify(file('old.cbor', await evidence({ now: Date.now() - 3_600_000 }))), 15],
      ['reference mismatch', verify(file('good2.cbor', bytes), '--references', refs), 16],
      ['no quote for a pinned AK', verify(file('good3.cbor', bytes), '--ak', devicePub), 20],
    ];
    for (const [name, run, exit] of cases) {
      const result = await run;
      expect(result.code, `${name}: ${result.stderr}`).toBe(exit);
      expect(result.stderr, name).toMatch(/^ATTEST_[A-Z_]+: /);
    }
  });

  it('refuses unknown flags and a bad nonce as usage errors', async () => {
    const f = file('good4.cbor', await evidence());
    expect((await verify(f, '--max-age', '1m')).code).toBe(2);
    expect((await ztedge('attest', 'verify', f, '--device-key', devicePub, '--nonce', 'xyz')).stderr).toMatch(/--nonce must be hex/);
    expect((await ztedge('attest', 'verify', f, '--nonce', toHex(nonce))).stderr).toMatch(/missing required option --device-key/);
    expect((await ztedge('attest', 'verify', f, 'extra', '--device-key', devicePub, '--nonce', toHex(nonce))).stderr).toMatch(/unexpected argument 'extra'/);
  });
});
