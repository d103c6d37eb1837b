// The payload codec: deterministic bytes, strict decoding, every bound enforced.
import { describe, expect, it } from 'vitest';
import { BundleError } from '../../src/bundle/errors.js';
import { type BundlePayload, DEFAULT_SETTINGS, decodeBundlePayload, encodeBundlePayload } from '../../src/bundle/format.js';
import { COSE_ALG } from '../../src/crypto/algorithms.js';
import { type CborMap, type CborValue, decodeCbor, encodeCbor } from '../../src/envelope/cbor.js';
import { SOURCE, manifest } from './support.js';

const payload: BundlePayload = {
  manifest: manifest({ revision: 9, notBefore: 1_700_000_000, scope: { sites: ['s1'], devices: ['d1', 'd2'], profiles: [] } }),
  ...SOURCE,
  issuers: [
    {
      kid: Uint8Array.of(1, 2, 3),
      alg: COSE_ALG.EdDSA,
      publicKey: new Uint8Array(32).fill(7),
      principal: 'Operator::"olga"',
      notAfter: 1_800_000_000,
      roles: ['command'],
    },
  ],
  attestation: [{ profile: 'robot', files: [{ path: '/etc/a', sha256: 'ab'.repeat(32) }, { path: '/etc/b', sha256: 'cd'.repeat(32) }], composite: 'ef'.repeat(32) }],
};

function refused(bytes: Uint8Array): BundleError {
  try {
    decodeBundlePayload(bytes);
  } catch (err) {
    if (err instanceof BundleError) return err;
    throw err;
  }
  throw new Error('payload was accepted');
}

/** Re-encodes the payload with `edit` applied to its top-level map. */
function edited(edit: (top: CborMap) => void): Uint8Array {
  const top = decodeCbor(encodeBundlePayload(payload), { maxBytes: 1 << 24, maxDepth: 8 }) as CborMap;
  edit(top);
  return encodeCbor(top);
}

/** Plain objects as the decoder returns them: CBOR maps. */
function encodeAndDecode(value: unknown): CborValue {
  return decodeCbor(encodeCbor(value as CborValue), { maxBytes: 1 << 20, maxDepth: 8 });
}

function at(map: CborMap, key: string): CborMap {
  return map.get(key) as CborMap;
}

describe('bundle payload', () => {
  it('round-trips, keeping list order (policy ids, composite order)', () => {
    const bytes = encodeBundlePayload(payload);
    expect(decodeBundlePayload(bytes)).toEqual(payload);
    expect(decodeBundlePayload(bytes).attestation[0]!.files.map((f) => f.path)).toEqual(['/etc/a', '/etc/b']);
    expect(encodeBundlePayload(decodeBundlePayload(bytes))).toEqual(bytes);
  });

  it('refuses unknown keys at the top level and inside', () => {
    expect(refused(edited((top) => top.set('extra', 1))).message).toMatch(/payload has an unknown key "extra"/);
    expect(refused(edited((top) => at(top, 'manifest').set('owner', 'x'))).message).toMatch(/manifest has an unknown key/);
    expect(refused(edited((top) => at(at(top, 'settings'), 'audit').set('x', 1))).code).toBe('BUNDLE_MALFORMED');
  });

  it('refuses missing keys and a wrong format version', () => {
    expect(refused(edited((top) => top.delete('tests'))).message).toMatch(/payload\.tests is missing/);
    expect(refused(edited((top) => top.set('format', 2))).message).toMatch(/format must be 1/);
  });

  it('refuses duplicate map keys and trailing bytes in the CBOR itself', () => {
    const bytes = encodeBundlePayload(payload);
    // The top-level map (8 entries, header 0xa8) claims one more entry: a second "format".
    const duplicated = Buffer.concat([Buffer.from([bytes[0]! + 1]), bytes.subarray(1), encodeCbor('format'), encodeCbor(1)]);
    expect(refused(duplicated).message).toMatch(/duplicate map key "format"/);
    expect(refused(Buffer.concat([bytes, Buffer.from([0])])).code).toBe('BUNDLE_MALFORMED');
    expect(refused(bytes.subarray(0, bytes.length - 1)).code).toBe('BUNDLE_TRUNCATED');
  });

  it('refuses out-of-range manifests', () => {
    const manifestWith = (key: string, value: CborValue) => refused(edited((top) => at(top, 'manifest').set(key, value)));
    expect(manifestWith('revision', 0).message).toMatch(/revision must be a positive integer/);
    expect(manifestWith('revision', 2n ** 60n).code).toBe('BUNDLE_MALFORMED');
    expect(manifestWith('expires', payload.manifest.created).message).toMatch(/expires must be after/);
    expect(manifestWith('notBefore', payload.manifest.expires).message).toMatch(/notBefore must be before/);
    expect(manifestWith('minAgentVersion', '1.2').message).toMatch(/major\.minor\.patch/);
    expect(manifestWith('id', '../etc').code).toBe('BUNDLE_MALFORMED');
    expect(refused(edited((top) => at(at(top, 'manifest'), 'scope').set('devices', ['d1', 'd1']))).message).toMatch(/twice/);
  });

  it('refuses settings outside their bounds', () => {
    const setting = (key: string, value: CborValue) => refused(edited((top) => at(top, 'settings').set(key, value)));
    expect(setting('replayWindowMs', 0).message).toMatch(/replayWindowMs must be an integer in 1000\.\./);
    expect(setting('clockSkewMs', 2 * 3_600_000).code).toBe('BUNDLE_MALFORMED');
    expect(setting('cacheTtlMs', -1).code).toBe('BUNDLE_MALFORMED');
    expect(DEFAULT_SETTINGS.clockSkewMs).toBe(30_000);
  });

  it('refuses bad issuer, attestation and test entries', () => {
    const issuer = (key: string, value: CborValue) => refused(edited((top) => ((top.get('issuers') as CborMap[])[0]!).set(key, value)));
    expect(issuer('alg', -35).message).toMatch(/not a supported COSE algorithm/);
    expect(issuer('publicKey', new Uint8Array(3)).code).toBe('BUNDLE_MALFORMED');
    expect(issuer('notBefore', 1_900_000_000).message).toMatch(/notAfter must be after/);
    const file = (value: CborValue) =>
      refused(edited((top) => (((top.get('attestation') as CborMap[])[0]!.get('files') as CborMap[])[0]!).set('sha256', value)));
    expect(file('AB'.repeat(32)).message).toMatch(/64 lowercase hex/);
    const test = (key: string, value: CborValue) => refused(edited((top) => ((top.get('tests') as CborMap[])[0]!).set(key, value)));
    expect(test('decision', 'maybe').message).toMatch(/"allow" or "deny"/);
    expect(test('name', 'alice writes').message).toMatch(/tests\[\]\.name lists "alice writes" twice/);
  });

  it('reads reference values: a set of digests per path, symlink targets, an optional composite', () => {
    const references = (attestation: BundlePayload['attestation']) => decodeBundlePayload(encodeBundlePayload({ ...payload, attestation })).attestation;
    const rolling = [{ profile: 'robot', files: [{ path: '/bin/z', sha256: ['ab'.repeat(32), 'cd'.repeat(32)] }, { path: '/etc/l', symlink: '/opt/x' }] }];
    expect(references(rolling)).toEqual(rolling);
    const refuse = (attestation: unknown) => refused(edited((top) => top.set('attestation', encodeAndDecode(attestation))));
    const entry = (file: Record<string, unknown>, extra: Record<string, unknown> = {}) => [{ profile: 'robot', files: [file], ...extra }];
    expect(refuse(entry({ path: '/bin/z', sha256: ['ab'.repeat(32), 'cd'.repeat(32)] }, { composite: 'ef'.repeat(32) })).message).toMatch(/composite pins one state/);
    expect(refuse(entry({ path: '/bin/z', sha256: [] })).message).toMatch(/at least one digest/);
    expect(refuse(entry({ path: '/bin/z', sha256: ['ab'.repeat(32), 'ab'.repeat(32)] })).message).toMatch(/twice/);
    expect(refuse(entry({ path: '/bin/z', sha256: 'ab'.repeat(32), symlink: '/x' })).message).toMatch(/exactly one of sha256 and symlink/);
    expect(refuse(entry({ path: '/bin/z' })).message).toMatch(/exactly one of sha256 and symlink/);
    for (const bad of ['etc/a', '/etc/../a', '/etc//a', '/etc/', '/etc/*.conf']) {
      expect(refuse(entry({ path: bad, sha256: 'ab'.repeat(32) })).message).toMatch(/absolute, normalized path without glob/);
    }
  });

  it('refuses floats anywhere', () => {
    const bytes = edited((top) => at(top, 'settings').set('cacheTtlMs', 1));
    // Replace the integer 1 after "cacheTtlMs" with a half-precision float 1.0 (f9 3c 00).
    const key = Buffer.from(encodeCbor('cacheTtlMs'));
    const i = Buffer.from(bytes).indexOf(key) + key.length;
    const withFloat = Buffer.concat([bytes.subarray(0, i), Buffer.from([0xf9, 0x3c, 0x00]), bytes.subarray(i + 1)]);
    expect(refused(withFloat).message).toMatch(/floating-point/);
  });
});
