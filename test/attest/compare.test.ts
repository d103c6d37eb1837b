// Posture from records and references: every rule of compare.ts, without a disk.
import { describe, expect, it } from 'vitest';
import { assess } from '../../src/attest/compare.js';
import { type DevicePath, parseDevicePath } from '../../src/attest/glob.js';
import { type MeasurementRecord, canonicalRecord, compositeDigest, extend, ZERO_DIGEST } from '../../src/attest/record.js';
import { sha256 } from '../../src/crypto/hash.js';
import { toHex } from '../../src/crypto/bytes.js';
import { decodeCbor } from '../../src/envelope/cbor.js';

const dp = (text: string): DevicePath => parseDevicePath(text) as DevicePath;
const D = (c: string) => c.repeat(64);
const file = (path: string, digest: string, mode = 0o644): MeasurementRecord => ({ path, state: 'file', sha256: digest, size: 10, mode, uid: 0, gid: 0 });
const patterns = [
  { path: dp('/etc/critical.conf'), critical: true },
  { path: dp('/etc/minor.conf'), critical: false },
  { path: dp('/etc/zones/*.conf'), critical: true },
];
const records = [file('/etc/critical.conf', D('a')), file('/etc/minor.conf', D('b')), file('/etc/zones/z1.conf', D('c'))];
const references = {
  profile: 'p',
  files: [
    { path: '/etc/critical.conf', sha256: D('a') },
    { path: '/etc/minor.conf', sha256: D('b') },
    { path: '/etc/zones/z1.conf', sha256: D('c') },
  ],
};

describe('assess', () => {
  it('trusted when everything matches; degraded without references', () => {
    expect(assess(records, patterns, references)).toMatchObject({ posture: 'trusted', mismatches: [], referenced: true, compositeMatches: null });
    expect(assess(records, patterns, null)).toMatchObject({ posture: 'degraded', mismatches: [], referenced: false });
  });

  it('a non-critical mismatch degrades, a critical one makes the device untrusted', () => {
    const minor = assess([records[0]!, file('/etc/minor.conf', D('f')), records[2]!], patterns, references);
    expect(minor.posture).toBe('degraded');
    expect(minor.mismatches).toEqual([{ path: '/etc/minor.conf', reason: 'digest', critical: false, expected: [`sha256:${D('b')}`], found: `sha256:${D('f')}` }]);
    const major = assess([file('/etc/critical.conf', D('f')), records[1]!, records[2]!], patterns, references);
    expect(major.posture).toBe('untrusted');
    // Files matched by a critical glob are critical.
    expect(assess([records[0]!, records[1]!, file('/etc/zones/z1.conf', D('f'))], patterns, references).posture).toBe('untrusted');
  });

  it('accepts any digest of a set (rolling update)', () => {
    const rolling = { ...references, files: [{ path: '/etc/critical.conf', sha256: [D('a'), D('9')] }, ...references.files.slice(1)] };
    expect(assess(records, patterns, rolling).posture).toBe('trusted');
    expect(assess([file('/etc/critical.conf', D('9')), records[1]!, records[2]!], patterns, rolling).posture).toBe('trusted');
    const other = assess([file('/etc/critical.conf', D('8')), records[1]!, records[2]!], patterns, rolling);
    expect(other.mismatches[0]!.expected).toEqual([`sha256:${D('a')}`, `sha256:${D('9')}`]);
  });

  it('a measured path without a reference, and a referenced glob file that is gone', () => {
    const extra = assess([...records, file('/etc/zones/z2.conf', D('d'))], patterns, references);
    expect(extra.mismatches).toEqual([{ path: '/etc/zones/z2.conf', reason: 'unreferenced', critical: true, expected: [], found: `sha256:${D('d')}` }]);
    expect(extra.posture).toBe('untrusted');
    const gone = assess(records.slice(0, 2), patterns, references);
    expect(gone.mismatches).toEqual([{ path: '/etc/zones/z1.conf', reason: 'missing', critical: true, expected: [`sha256:${D('c')}`], found: 'missing' }]);
  });

  it('a reference for a path this profile does not measure degrades', () => {
    const verdict = assess(records, patterns, { ...references, files: [...references.files, { path: '/opt/other', sha256: D('e') }] });
    expect(verdict.posture).toBe('degraded');
    expect(verdict.mismatches).toEqual([{ path: '/opt/other', reason: 'unmeasured', critical: false, expected: [`sha256:${D('e')}`], found: null }]);
  });

  it('a pinned composite must match too (it covers mode and owner)', () => {
    const composite = toHex(compositeDigest(records));
    expect(assess(records, patterns, { ...references, composite })).toMatchObject({ posture: 'trusted', compositeMatches: true });
    const chowned = records.map((r, i) => (i === 1 ? { ...r, uid: 1000 } : r));
    expect(assess(chowned, patterns, { ...references, composite })).toMatchObject({ posture: 'degraded', compositeMatches: false, mismatches: [] });
  });

  it('without references, world-writable and unreadable files are still reported (at most degraded)', () => {
    const verdict = assess([file('/etc/critical.conf', D('a'), 0o666), records[1]!], patterns, null);
    expect(verdict.posture).toBe('degraded');
    expect(verdict.mismatches).toEqual([expect.objectContaining({ path: '/etc/critical.conf', reason: 'world-writable', critical: true })]);
  });
});

describe('records', () => {
  it('canonical CBOR: sorted keys, digest as bytes, absent fields left out', () => {
    const bytes = canonicalRecord({ path: '/a', state: 'file', sha256: D('a'), size: 1, mode: 0o644, uid: 0, gid: 0 });
    const map = decodeCbor(bytes, { maxBytes: 1024, maxDepth: 2 }) as Map<string, unknown>;
    // Deterministic order: shorter keys first, then bytewise.
    expect([...map.keys()]).toEqual(['gid', 'uid', 'mode', 'path', 'size', 'state', 'sha256']);
    expect(map.get('sha256')).toEqual(Uint8Array.from(Buffer.from(D('a'), 'hex')));
    expect(canonicalRecord({ path: '/a', state: 'missing' })).toEqual(canonicalRecord({ state: 'missing', path: '/a' }));
  });

  it('composite = PCR-style extend in UTF-8 path order', () => {
    const a = file('/a', D('1'));
    const b = file('/b', D('2'));
    const expected = extend(extend(ZERO_DIGEST, sha256(canonicalRecord(a))), sha256(canonicalRecord(b)));
    expect(compositeDigest([b, a])).toEqual(expected);
    expect(toHex(compositeDigest([]))).toBe('00'.repeat(32));
    // UTF-8 order, not UTF-16: U+FF5E sorts before U+1F600 by code point and byte order.
    const wide = [file('/\u{1F600}', D('3')), file('/\uFF5E', D('4'))];
    expect(compositeDigest(wide)).toEqual(extend(extend(ZERO_DIGEST, sha256(canonicalRecord(wide[1]!))), sha256(canonicalRecord(wide[0]!))));
  });
});
