// The activation pipeline on a real on-disk store: every attack is refused with its own code and
// leaves the enforced bundle, the store's active/last-known-good bundles and the floor exactly as
// they were; restarts, deleted state, expiry and rollback behave as the design says.
import { createHash } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { type BundleEvent, BundleManager, isStale } from '../../src/bundle/activation.js';
import { BundleError, type BundleErrorCode } from '../../src/bundle/errors.js';
import { addSignSignature } from '../../src/envelope/cose.js';
import { BundleStore } from '../../src/bundle/store.js';
import type { TrustOptions } from '../../src/bundle/verify.js';
import {
  DAY_S,
  NOW_MS,
  NOW_S,
  type Roots,
  buildPayload,
  flipByte,
  indexOf,
  makeRoots,
  rawPayload,
  signWith,
  signedBundle,
  tempDir,
  trustOf,
} from './support.js';

let roots: Roots;
let dir: string;
let now: number;
let events: BundleEvent[];

const clock = {
  now: () => now,
  observed: [] as number[],
  observe(ms: number) {
    this.observed.push(ms);
  },
};

beforeAll(() => {
  roots = makeRoots();
});

afterAll(() => {
  fs.rmSync(roots.dir, { recursive: true, force: true });
});

beforeEach(() => {
  dir = tempDir('bundles');
  now = NOW_MS;
  events = [];
  clock.observed = [];
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function startManager(trust: TrustOptions = trustOf(roots)): BundleManager {
  const manager = new BundleManager({ store: new BundleStore(dir), trust, clock });
  manager.on((event) => events.push(event));
  manager.start();
  return manager;
}

function sha256(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function refusal(run: () => unknown): BundleError {
  try {
    run();
  } catch (err) {
    if (err instanceof BundleError) return err;
    throw err;
  }
  throw new Error('expected a BundleError');
}

/** Everything that decides what is enforced, now and after a restart. */
function snapshot(manager: BundleManager) {
  const store = new BundleStore(dir);
  const status = store.open().status;
  return {
    current: manager.current,
    active: status.active,
    lkg: status.lkg,
    floor: status.floor,
    activeBytes: sha256(store.readActive()!.bytes),
  };
}

describe('activation', () => {
  it('activates a verified bundle: stored, swapped, announced, trusted time advanced', () => {
    const manager = startManager();
    expect(manager.current).toBeNull();
    const bytes = signedBundle(roots, { revision: 5 });
    const result = manager.activate(bytes);
    expect(result.status).toBe('activated');
    expect(manager.current?.manifest.revision).toBe(5);
    expect(snapshot(manager)).toMatchObject({ active: { revision: 5, digest: sha256(bytes) }, lkg: null, floor: 5 });
    expect(events.at(-1)).toMatchObject({ kind: 'activated', revision: 5, digest: sha256(bytes), previousRevision: null });
    expect(clock.observed).toEqual([(NOW_S - 3600) * 1000]);

    const next = signedBundle(roots, { revision: 6 });
    manager.activate(next);
    expect(snapshot(manager)).toMatchObject({ active: { revision: 6 }, lkg: { revision: 5 }, floor: 6 });
    // The same bytes again (a retained message redelivered) change nothing and record nothing.
    expect(manager.activate(next).status).toBe('unchanged');
    expect(manager.status().lastRejection).toBeNull();
  });

  it('the swap is one reference: a reader holding `current` keeps a consistent bundle', () => {
    const manager = startManager();
    manager.activate(signedBundle(roots, { revision: 1 }));
    const held = manager.current!;
    manager.activate(signedBundle(roots, { revision: 2 }));
    expect(held.manifest.revision).toBe(1);
    expect(held.policies).not.toBe(manager.current!.policies);
    expect(manager.current!.manifest.revision).toBe(2);
  });
});

describe('attack table: each refused with its own code, nothing changes', () => {
  let manager: BundleManager;
  const GOOD_REVISION = 5;

  const signed = (overrides = {}) => signedBundle(roots, { revision: GOOD_REVISION + 1, ...overrides });
  const byBoth = (payload: Uint8Array) => signWith(payload, roots.keys[0].key, roots.keys[1].key);

  const cases: Array<{ name: string; code: BundleErrorCode; bytes: () => Uint8Array; digestRecorded?: boolean }> = [
    { name: 'unsigned', code: 'BUNDLE_UNSIGNED', bytes: () => buildPayload({ revision: 6 }) },
    { name: 'one signature, threshold 2', code: 'BUNDLE_THRESHOLD', bytes: () => signWith(buildPayload({ revision: 6 }), roots.keys[0].key) },
    {
      name: 'the same key counted twice',
      code: 'BUNDLE_THRESHOLD',
      bytes: () => addSignSignature(signWith(buildPayload({ revision: 6 }), roots.keys[1].key), { signer: { key: roots.keys[1].key }, maxBytes: 1 << 24 }),
    },
    { name: 'signed by an unknown key', code: 'BUNDLE_UNKNOWN_SIGNER', bytes: () => signWith(buildPayload({ revision: 6 }), roots.stranger.key) },
    { name: 'a byte flipped in the payload', code: 'BUNDLE_BAD_SIGNATURE', bytes: () => { const b = signed(); return flipByte(b, indexOf(b, 'read-any')); } },
    { name: 'a byte flipped in the protected header', code: 'BUNDLE_BAD_SIGNATURE', bytes: () => { const b = signed(); return flipByte(b, indexOf(b, 'ztedge-bundle')); } },
    { name: 'the active revision again', code: 'BUNDLE_ROLLBACK', bytes: () => signedBundle(roots, { revision: GOOD_REVISION, id: 'other' }) },
    { name: 'a lower revision', code: 'BUNDLE_ROLLBACK', bytes: () => signedBundle(roots, { revision: GOOD_REVISION - 1 }) },
    { name: 'expired', code: 'BUNDLE_EXPIRED', bytes: () => signed({ expires: NOW_S - 60 }) },
    { name: 'not yet valid', code: 'BUNDLE_NOT_YET_VALID', bytes: () => signed({ notBefore: NOW_S + 3600 }) },
    { name: 'scoped to another device', code: 'BUNDLE_SCOPE', bytes: () => signed({ scope: { sites: [], devices: ['dev-9'], profiles: [] } }) },
    { name: 'scoped to another site', code: 'BUNDLE_SCOPE', bytes: () => signed({ scope: { sites: ['site-9'], devices: [], profiles: [] } }) },
    { name: 'for a newer agent', code: 'BUNDLE_AGENT_VERSION', bytes: () => signed({ minAgentVersion: '9.0.0' }) },
    {
      name: 'a policy that does not compile',
      code: 'BUNDLE_POLICY_INVALID',
      bytes: () => byBoth(rawPayload({ policies: [{ file: 'bad.cedar', text: 'permit (principal, action, resource) when { 1 + };' }], tests: [] }, { revision: 6 })),
    },
    {
      name: 'an embedded test that fails',
      code: 'BUNDLE_TEST_FAILED',
      bytes: () =>
        byBoth(rawPayload({ tests: [{ name: 'bob writes', principal: 'User::"bob"', action: 'Action::"write"', resource: 'Doc::"d"', context: '{}', decision: 'allow' }] }, { revision: 6 })),
    },
    { name: 'a truncated file', code: 'BUNDLE_TRUNCATED', bytes: () => { const b = signed(); return b.subarray(0, b.length - 100); } },
    { name: 'oversize', code: 'BUNDLE_TOO_LARGE', bytes: () => new Uint8Array(2 * 1024 * 1024), digestRecorded: false },
  ];

  beforeEach(() => {
    manager = startManager(trustOf(roots, { maxBytes: 1024 * 1024 }));
    manager.activate(signedBundle(roots, { revision: GOOD_REVISION }));
    events = [];
  });

  it.each(cases)('$name → $code', ({ code, bytes, digestRecorded }) => {
    const attack = bytes();
    const before = snapshot(manager);
    const err = refusal(() => manager.activate(attack));
    expect(err.code, err.message).toBe(code);
    expect(snapshot(manager)).toEqual(before);
    expect(manager.current).toBe(before.current);

    const digest = digestRecorded === false ? null : sha256(attack);
    expect(manager.status().lastRejection).toEqual({ code, digest, revision: err.revision ?? null, atMs: NOW_MS });
    expect(events).toEqual([{ kind: 'rejected', atMs: NOW_MS, code, message: err.message, revision: err.revision ?? null, digest }]);
  });

  it('records the revision of a signed bundle refused after its manifest was read', () => {
    refusal(() => manager.activate(signed({ expires: NOW_S - 60 })));
    expect(manager.status().lastRejection).toMatchObject({ code: 'BUNDLE_EXPIRED', revision: GOOD_REVISION + 1 });
  });

  it('records a repeated refusal of the same bytes once', () => {
    const attack = signWith(buildPayload({ revision: 6 }), roots.keys[0].key);
    refusal(() => manager.activate(attack));
    refusal(() => manager.activate(attack));
    expect(new BundleStore(dir).open().status.rejections).toHaveLength(1);
    expect(events.filter((e) => e.kind === 'rejected')).toHaveLength(1);
  });
});

describe('rollback protection survives restarts', () => {
  it('refuses an equal or lower revision after a restart', () => {
    startManager().activate(signedBundle(roots, { revision: 5 }));
    const restarted = startManager();
    expect(restarted.current?.manifest.revision).toBe(5);
    expect(events.some((e) => e.kind === 'loaded' && e.revision === 5)).toBe(true);
    expect(refusal(() => restarted.activate(signedBundle(roots, { revision: 5, id: 'replayed' }))).code).toBe('BUNDLE_ROLLBACK');
    expect(refusal(() => restarted.activate(signedBundle(roots, { revision: 3 }))).code).toBe('BUNDLE_ROLLBACK');
    expect(restarted.current?.manifest.revision).toBe(5);
  });

  it('refuses older revisions after the state file is deleted, because the floor is kept', () => {
    const first = startManager();
    first.activate(signedBundle(roots, { revision: 4 }));
    first.activate(signedBundle(roots, { revision: 5 }));
    fs.unlinkSync(path.join(dir, 'state.json'));

    const restarted = startManager();
    expect(restarted.current).toBeNull();
    expect(events.find((e) => e.kind === 'store-recovered')).toBeDefined();
    expect(restarted.status().floor).toBe(5);
    expect(refusal(() => restarted.activate(signedBundle(roots, { revision: 4 }))).code).toBe('BUNDLE_ROLLBACK');
    expect(refusal(() => restarted.activate(signedBundle(roots, { revision: 5, id: 'again' }))).code).toBe('BUNDLE_ROLLBACK');
    expect(restarted.current).toBeNull();
    expect(restarted.activate(signedBundle(roots, { revision: 6 })).status).toBe('activated');
  });

  it('refuses an older signed bundle planted under a newer revision in the store, and falls back', () => {
    const first = startManager();
    const old = signedBundle(roots, { revision: 2 });
    first.activate(signedBundle(roots, { revision: 3 }));
    first.activate(signedBundle(roots, { revision: 4 }));
    // Plant revision 2's bytes as the active blob and claim it is revision 4.
    fs.writeFileSync(path.join(dir, 'blobs', sha256(old)), old);
    const statePath = path.join(dir, 'state.json');
    const state = JSON.parse(fs.readFileSync(statePath, 'utf8'));
    state.active = { revision: 4, digest: sha256(old) };
    fs.writeFileSync(statePath, JSON.stringify(state));

    const restarted = startManager();
    expect(events.find((e) => e.kind === 'rejected')).toMatchObject({ code: 'BUNDLE_ROLLBACK', revision: 2 });
    expect(events.find((e) => e.kind === 'rolled-back')).toMatchObject({ reason: 'active-invalid', revision: 3 });
    expect(restarted.current?.manifest.revision).toBe(3);
  });
});

describe('expiry while enforcing', () => {
  it('keeps enforcing the active bundle past expiry, marked stale, also across restart', () => {
    const manager = startManager();
    manager.activate(signedBundle(roots, { revision: 1, expires: NOW_S + DAY_S }));
    const bundle = manager.current!;
    expect(manager.status().active?.stale).toBe(false);
    expect(isStale(bundle, now)).toBe(false);

    now = NOW_MS + 2 * DAY_S * 1000;
    expect(manager.current).toBe(bundle);
    expect(manager.status().active).toMatchObject({ revision: 1, stale: true });
    expect(isStale(bundle, now)).toBe(true);

    const restarted = startManager();
    expect(restarted.current?.manifest.revision).toBe(1);
    expect(events.at(-1)).toMatchObject({ kind: 'loaded', revision: 1, stale: true });

    // A new bundle must still be unexpired; a fresh one replaces the stale one.
    expect(refusal(() => restarted.activate(signedBundle(roots, { revision: 2, expires: NOW_S + DAY_S }))).code).toBe('BUNDLE_EXPIRED');
    expect(restarted.current?.manifest.revision).toBe(1);
    restarted.activate(signedBundle(roots, { revision: 3, expires: NOW_S + 10 * DAY_S }));
    expect(restarted.status().active).toMatchObject({ revision: 3, stale: false });
  });
});

describe('rollback', () => {
  it('rolls back to last-known-good on operator demand, once, and keeps the floor', () => {
    const manager = startManager();
    manager.activate(signedBundle(roots, { revision: 5 }));
    manager.activate(signedBundle(roots, { revision: 6 }));
    const back = manager.rollback();
    expect(back.manifest.revision).toBe(5);
    expect(manager.current).toBe(back);
    expect(manager.status()).toMatchObject({ active: { revision: 5 }, lkg: null, floor: 6, rolledBack: true });
    expect(events.at(-1)).toMatchObject({ kind: 'rolled-back', reason: 'operator', fromRevision: 6, revision: 5 });

    expect(refusal(() => manager.rollback()).code).toBe('BUNDLE_NO_LKG');
    // The rolled-back revision cannot come back; a newer one can.
    expect(refusal(() => manager.activate(signedBundle(roots, { revision: 6, id: 'again' }))).code).toBe('BUNDLE_ROLLBACK');
    expect(manager.activate(signedBundle(roots, { revision: 7 })).status).toBe('activated');

    const restarted = startManager();
    expect(restarted.current?.manifest.revision).toBe(7);
  });

  it('re-verifies the last-known-good bundle first and leaves everything unchanged if it fails', () => {
    const manager = startManager();
    manager.activate(signedBundle(roots, { revision: 5, scope: { sites: [], devices: ['dev-1'], profiles: [] } }));
    manager.activate(signedBundle(roots, { revision: 6 }));
    // The device was renamed: the old bundle no longer applies to it.
    const renamed = startManager(trustOf(roots, { device: 'dev-2' }));
    const before = snapshot(renamed);
    expect(refusal(() => renamed.rollback()).code).toBe('BUNDLE_SCOPE');
    expect(snapshot(renamed)).toEqual(before);
    expect(renamed.status().lastRejection).toMatchObject({ code: 'BUNDLE_SCOPE', revision: 5 });
  });

  it('falls back to last-known-good at start when the active bundle no longer verifies', () => {
    const upgraded = startManager(trustOf(roots, { agentVersion: '0.2.0' }));
    upgraded.activate(signedBundle(roots, { revision: 5 }));
    upgraded.activate(signedBundle(roots, { revision: 6, minAgentVersion: '0.2.0' }));

    const downgraded = startManager(trustOf(roots, { agentVersion: '0.1.0' }));
    expect(downgraded.current?.manifest.revision).toBe(5);
    expect(events.filter((e) => e.kind === 'rejected').at(-1)).toMatchObject({ code: 'BUNDLE_AGENT_VERSION', revision: 6 });
    expect(events.at(-1)).toMatchObject({ kind: 'rolled-back', reason: 'active-invalid', fromRevision: 6, revision: 5 });
    expect(downgraded.status()).toMatchObject({ active: { revision: 5 }, lkg: null, floor: 6 });
  });

  it('enforces nothing when neither the active nor the last-known-good bundle verifies', () => {
    const manager = startManager();
    manager.activate(signedBundle(roots, { revision: 5 }));
    manager.activate(signedBundle(roots, { revision: 6 }));
    const otherRoots = makeRoots();
    try {
      const rotated = startManager(trustOf(otherRoots));
      expect(rotated.current).toBeNull();
      expect(events.filter((e) => e.kind === 'rejected').map((e) => (e as { code: string }).code)).toEqual([
        'BUNDLE_UNKNOWN_SIGNER',
        'BUNDLE_UNKNOWN_SIGNER',
      ]);
    } finally {
      fs.rmSync(otherRoots.dir, { recursive: true, force: true });
    }
  });
});
