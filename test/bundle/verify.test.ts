// verifyBundle as a pure function: each refusal has its own code, and the order of checks keeps
// untrusted policy text away from the compiler.
import { createHash } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleError, type BundleErrorCode } from '../../src/bundle/errors.js';
import { BUNDLE_CONTENT_TYPE } from '../../src/bundle/format.js';
import { type VerifyOptions, verifyBundle } from '../../src/bundle/verify.js';
import { COSE_ALG } from '../../src/crypto/algorithms.js';
import { getVerifier } from '../../src/crypto/verifier.js';
import { CborTagged, encodeCbor } from '../../src/envelope/cbor.js';
import { COSE_SIGN_TAG, HEADER, addSignSignature, signSign } from '../../src/envelope/cose.js';
import { EntityUid } from '../../src/policy/index.js';
import fs from 'node:fs';
import {
  NOW_MS,
  SOURCE,
  NOW_S,
  DAY_S,
  type Roots,
  buildPayload,
  flipByte,
  indexOf,
  makeRoots,
  rawPayload,
  signWith,
  signedBundle,
  trustOf,
} from './support.js';

let roots: Roots;
let options: VerifyOptions;

beforeAll(() => {
  roots = makeRoots();
  options = { ...trustOf(roots), now: NOW_MS };
});

afterAll(() => {
  fs.rmSync(roots.dir, { recursive: true, force: true });
});

function refusal(bytes: Uint8Array, overrides: Partial<VerifyOptions> = {}): BundleError {
  try {
    verifyBundle(bytes, { ...options, ...overrides });
  } catch (err) {
    if (err instanceof BundleError) return err;
    throw err;
  }
  throw new Error('bundle was accepted');
}

function expectCode(bytes: Uint8Array, code: BundleErrorCode, overrides: Partial<VerifyOptions> = {}): BundleError {
  const err = refusal(bytes, overrides);
  expect(err.code, err.message).toBe(code);
  return err;
}

describe('verifyBundle accepts', () => {
  it('a 2-of-3 signed bundle and returns its compiled content', () => {
    const bytes = signedBundle(roots, { revision: 7 });
    const bundle = verifyBundle(bytes, options);
    expect(bundle.manifest.revision).toBe(7);
    expect(bundle.digest).toBe(createHash('sha256').update(bytes).digest('hex'));
    expect(bundle.signers.map((s) => Buffer.from(s.kid).toString('hex'))).toEqual(
      [roots.keys[0], roots.keys[1]].map((k) => Buffer.from(k.key.publicKey.kid).toString('hex')),
    );
    expect(bundle.policies.size).toBe(2);
    // Policies are named by their @id: the positional id is used only where there is none.
    expect(bundle.policies.get('write-admin')?.position).toBe(1);
    expect(bundle.policies.get('policy1')).toBeUndefined();
    expect(bundle.expired).toBe(false);
  });

  it('keeps Long attributes beyond 2^53 exact', () => {
    const bundle = verifyBundle(signedBundle(roots), options);
    expect(bundle.entities.get(new EntityUid('User', 'alice'))?.attrs.get('serial')).toBe(9223372036854775807n);
    expect(bundle.entities.get(new EntityUid('User', 'bob'))?.attrs.get('serial')).toBe(-9223372036854775808n);
  });

  it('with the portable verifier too', () => {
    expect(verifyBundle(signedBundle(roots), { ...options, verifier: getVerifier('noble') }).manifest.revision).toBe(1);
  });

  it('an expired bundle only when told to (re-verifying the enforced bundle), marked expired', () => {
    const bytes = signedBundle(roots, { expires: NOW_S - 1 });
    expectCode(bytes, 'BUNDLE_EXPIRED');
    expect(verifyBundle(bytes, { ...options, allowExpired: true }).expired).toBe(true);
  });
});

describe('verifyBundle refuses', () => {
  it('a bare payload and a COSE_Sign without signatures as unsigned', () => {
    const payload = buildPayload();
    expectCode(payload, 'BUNDLE_UNSIGNED');
    const header = encodeCbor(new Map([[HEADER.contentType, BUNDLE_CONTENT_TYPE]]));
    expectCode(encodeCbor(new CborTagged(COSE_SIGN_TAG, [header, new Map(), payload, []])), 'BUNDLE_UNSIGNED');
  });

  it('one signature when the threshold is 2', () => {
    expectCode(signWith(buildPayload(), roots.keys[2].key), 'BUNDLE_THRESHOLD');
  });

  it('the same key counted twice', () => {
    const once = signWith(buildPayload(), roots.keys[0].key);
    // signBundle refuses a second signature by the same key; a hostile file need not ask it.
    const twice = addSignSignature(once, { signer: { key: roots.keys[0].key }, maxBytes: 1 << 24 });
    expectCode(twice, 'BUNDLE_THRESHOLD');
    // The same key configured twice as a root is still one key.
    const dup = trustOf(roots);
    expectCode(once, 'BUNDLE_THRESHOLD', { roots: [dup.roots[0]!, dup.roots[0]!, dup.roots[1]!], threshold: 2 });
  });

  it('a signature by an unknown key as unknown signer, but not when a root also signed', () => {
    expectCode(signWith(buildPayload(), roots.stranger.key), 'BUNDLE_UNKNOWN_SIGNER', { threshold: 1 });
    expectCode(signWith(buildPayload(), roots.stranger.key, roots.keys[0].key), 'BUNDLE_THRESHOLD');
  });

  it('a byte flipped in the payload', () => {
    const bytes = signedBundle(roots);
    expectCode(flipByte(bytes, indexOf(bytes, 'read-any')), 'BUNDLE_BAD_SIGNATURE');
  });

  it('a byte flipped in the protected body header', () => {
    const bytes = signedBundle(roots);
    expectCode(flipByte(bytes, indexOf(bytes, 'ztedge-bundle')), 'BUNDLE_BAD_SIGNATURE');
  });

  it('a byte flipped in a signature', () => {
    const bytes = signedBundle(roots);
    expectCode(flipByte(bytes, bytes.length - 1), 'BUNDLE_BAD_SIGNATURE');
  });

  it('a signature with an algorithm the root is not pinned to', () => {
    const trust = trustOf(roots);
    const pinned = [{ ...trust.roots[0]!, alg: COSE_ALG.Ed25519 }, trust.roots[1]!, trust.roots[2]!];
    expectCode(signedBundle(roots), 'BUNDLE_BAD_SIGNATURE', { roots: pinned });
  });

  it('a revision equal to or below the active one, or at or below the floor', () => {
    const bytes = signedBundle(roots, { revision: 5 });
    expectCode(bytes, 'BUNDLE_ROLLBACK', { activeRevision: 5 });
    expectCode(bytes, 'BUNDLE_ROLLBACK', { activeRevision: 6 });
    expectCode(bytes, 'BUNDLE_ROLLBACK', { activeRevision: 2, revisionFloor: 5 });
    expect(verifyBundle(bytes, { ...options, activeRevision: 4, revisionFloor: 4 }).manifest.revision).toBe(5);
  });

  it('an expired bundle and one not yet valid', () => {
    expectCode(signedBundle(roots, { expires: NOW_S }), 'BUNDLE_EXPIRED');
    expectCode(signedBundle(roots, { notBefore: NOW_S + 60 }), 'BUNDLE_NOT_YET_VALID');
    expect(verifyBundle(signedBundle(roots, { notBefore: NOW_S }), options).manifest.notBefore).toBe(NOW_S);
  });

  it('a bundle scoped to another device, site or profile (mix-and-match)', () => {
    const scope = (s: Partial<{ sites: string[]; devices: string[]; profiles: string[] }>) =>
      signedBundle(roots, { scope: { sites: [], devices: [], profiles: [], ...s } });
    expectCode(scope({ devices: ['dev-2'] }), 'BUNDLE_SCOPE');
    expectCode(scope({ sites: ['site-2', 'site-3'] }), 'BUNDLE_SCOPE');
    expectCode(scope({ profiles: ['plc'] }), 'BUNDLE_SCOPE');
    // A device that does not know its site cannot satisfy a site-scoped bundle.
    expectCode(scope({ sites: ['site-1'] }), 'BUNDLE_SCOPE', { site: undefined });
    const mine = scope({ devices: ['dev-0', 'dev-1'], sites: ['site-1'], profiles: ['robot'] });
    expect(verifyBundle(mine, options).manifest.scope.devices).toEqual(['dev-0', 'dev-1']);
  });

  it('a bundle whose attestation references name no profile of this device', () => {
    const withReferences = (...profiles: string[]) =>
      signWith(
        buildPayload({}, { ...SOURCE, attestation: profiles.map((profile) => ({ profile, files: [{ path: '/etc/a', sha256: 'ab'.repeat(32) }] })) }),
        roots.keys[0].key,
        roots.keys[1].key,
      );
    expect(expectCode(withReferences('robot-controller'), 'BUNDLE_ATTESTATION_PROFILE').message).toMatch(/robot-controller; this device's profile is robot/);
    expectCode(withReferences('robot'), 'BUNDLE_ATTESTATION_PROFILE', { profile: undefined });
    // References for several device classes are fine as long as one is this device's.
    expect(verifyBundle(withReferences('plc', 'robot'), options).attestation.map((a) => a.profile)).toEqual(['plc', 'robot']);
    // No references at all: accepted (posture stays degraded until a bundle brings some).
    expect(verifyBundle(signedBundle(roots), options).attestation).toEqual([]);
  });

  it('a bundle for a newer agent', () => {
    expectCode(signedBundle(roots, { minAgentVersion: '0.10.0' }), 'BUNDLE_AGENT_VERSION');
    expect(verifyBundle(signedBundle(roots, { minAgentVersion: '0.1.0' }), { ...options, agentVersion: '0.1.0' })).toBeDefined();
  });

  it('an oversize bundle before decoding it', () => {
    const bytes = signedBundle(roots);
    expectCode(bytes, 'BUNDLE_TOO_LARGE', { maxBytes: bytes.length - 1 });
  });

  it('a truncated bundle', () => {
    const bytes = signedBundle(roots);
    expectCode(bytes.subarray(0, bytes.length - 10), 'BUNDLE_TRUNCATED');
    expectCode(bytes.subarray(0, 3), 'BUNDLE_TRUNCATED');
  });

  it('trailing bytes and foreign CBOR as malformed', () => {
    const bytes = signedBundle(roots);
    expectCode(Buffer.concat([bytes, Buffer.from([0])]), 'BUNDLE_MALFORMED');
    expectCode(encodeCbor(['not', 'a', 'bundle']), 'BUNDLE_MALFORMED');
  });

  it('a correctly signed COSE_Sign of another content type', () => {
    const foreign = signSign({
      payload: buildPayload(),
      signers: [{ key: roots.keys[0].key }, { key: roots.keys[1].key }],
      protectedHeader: new Map([[HEADER.contentType, 'application/cwt']]),
    });
    expectCode(foreign, 'BUNDLE_MALFORMED');
  });

  it('a policy that does not compile, with file:line:col diagnostics', () => {
    const broken = rawPayload({
      policies: [
        { file: 'ok.cedar', text: 'permit (principal, action, resource);\n' },
        { file: 'bad.cedar', text: 'permit (principal, action, resource)\nwhen { principal.x == };\n' },
      ],
      tests: [],
    }, { revision: 3 });
    const err = expectCode(signWith(broken, roots.keys[0].key, roots.keys[1].key), 'BUNDLE_POLICY_INVALID');
    expect(err.problems[0]!.message).toMatch(/^bad\.cedar:2:\d+: error: /);
    expect(err.revision).toBe(3);
  });

  it('invalid entity JSON and invalid issuer keys', () => {
    const entities = rawPayload({ entities: '[{"uid": {"type": "User", "id": "a"}, "attrs": {}, "parents": [], "extra": 1}]', tests: [] });
    expectCode(signWith(entities, roots.keys[0].key, roots.keys[1].key), 'BUNDLE_ENTITIES_INVALID');
    const issuers = rawPayload({
      issuers: [{ kid: new Uint8Array([1]), alg: COSE_ALG.EdDSA, publicKey: new Uint8Array(32), principal: 'User::"alice"' }],
    });
    expectCode(signWith(issuers, roots.keys[0].key, roots.keys[1].key), 'BUNDLE_ISSUERS_INVALID');
  });

  it('an embedded test that fails, naming it', () => {
    const failing = rawPayload({
      tests: [
        { name: 'bob writes', principal: 'User::"bob"', action: 'Action::"write"', resource: 'Doc::"d"', context: '{}', decision: 'allow' },
        { name: 'alice reads', principal: 'User::"alice"', action: 'Action::"read"', resource: 'Doc::"d"', context: '{}', decision: 'allow' },
      ],
    });
    const err = expectCode(signWith(failing, roots.keys[0].key, roots.keys[1].key), 'BUNDLE_TEST_FAILED');
    expect(err.failedTests).toEqual(['bob writes']);
  });

  it('checks signatures before reading policies: unsigned junk policies are never compiled', () => {
    const broken = rawPayload({ policies: [{ file: 'bad.cedar', text: 'permit (' }], tests: [] });
    expectCode(signWith(broken, roots.stranger.key), 'BUNDLE_UNKNOWN_SIGNER', { threshold: 1 });
    expectCode(signWith(broken, roots.keys[0].key), 'BUNDLE_THRESHOLD');
  });

  it('a verifier configuration that would accept too little', () => {
    const bytes = signedBundle(roots);
    expectCode(bytes, 'BUNDLE_VERIFIER_CONFIG', { threshold: 0 });
    expectCode(bytes, 'BUNDLE_VERIFIER_CONFIG', { threshold: 4 });
    expectCode(bytes, 'BUNDLE_VERIFIER_CONFIG', { roots: [] });
    expectCode(bytes, 'BUNDLE_VERIFIER_CONFIG', { agentVersion: 'latest' });
  });

  it('expiry is checked against the given trusted time, not the wall clock', () => {
    const bytes = signedBundle(roots, { expires: NOW_S + DAY_S });
    expect(verifyBundle(bytes, options).expired).toBe(false);
    expectCode(bytes, 'BUNDLE_EXPIRED', { now: NOW_MS + DAY_S * 1000 });
  });
});
