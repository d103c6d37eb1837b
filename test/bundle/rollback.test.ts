// The rollback instruction format: k-of-n root signatures as for bundles, its own signed content
// type (a bundle can never pass for an instruction, nor the reverse), a strict payload, scope and
// expiry at trusted time.
import fs from 'node:fs';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleError } from '../../src/bundle/errors.js';
import { type RollbackInstruction, decodeRollbackPayload, encodeRollbackPayload, signRollback, verifyRollback } from '../../src/bundle/rollback.js';
import { verifyBundle } from '../../src/bundle/verify.js';
import { encodeCbor } from '../../src/envelope/cbor.js';
import { NOW_MS, NOW_S, type Roots, makeRoots, signWith, signedBundle, trustOf } from './support.js';

let roots: Roots;
beforeAll(() => (roots = makeRoots()));
afterAll(() => fs.rmSync(roots.dir, { recursive: true, force: true }));

const INSTRUCTION: RollbackInstruction = {
  device: 'dev-1',
  site: 'site-1',
  from: { revision: 7, digest: 'ab'.repeat(32) },
  to: { revision: 6, digest: 'cd'.repeat(32) },
  created: NOW_S - 60,
  expires: NOW_S + 3600,
  reason: 'sensor regression',
};

function codeOf(run: () => unknown): string {
  try {
    run();
  } catch (err) {
    if (err instanceof BundleError) return err.code;
    throw err;
  }
  return 'OK';
}

const signedBy = (count: number, instruction = INSTRUCTION) =>
  roots.keys.slice(0, count).reduce((file, root) => signRollback(file, root.key), encodeRollbackPayload(instruction));

describe('rollback instructions', () => {
  it('round-trip and verify with k of n root signatures', () => {
    const verified = verifyRollback(signedBy(2), { ...trustOf(roots), now: NOW_MS });
    expect(verified.instruction).toEqual(INSTRUCTION);
    expect(verified.signers).toHaveLength(2);
    expect(codeOf(() => verifyRollback(signedBy(1), { ...trustOf(roots), now: NOW_MS }))).toBe('BUNDLE_THRESHOLD');
    expect(codeOf(() => verifyRollback(encodeRollbackPayload(INSTRUCTION), { ...trustOf(roots), now: NOW_MS }))).toBe('BUNDLE_UNSIGNED');
    expect(codeOf(() => signRollback(signedBy(1), roots.keys[0].key))).toBe('BUNDLE_ALREADY_SIGNED');
  });

  it('are refused for another device or site, and after they expire', () => {
    const trust = trustOf(roots);
    expect(codeOf(() => verifyRollback(signedBy(2), { ...trust, device: 'dev-2', now: NOW_MS }))).toBe('BUNDLE_SCOPE');
    expect(codeOf(() => verifyRollback(signedBy(2), { ...trust, site: 'site-2', now: NOW_MS }))).toBe('BUNDLE_SCOPE');
    expect(codeOf(() => verifyRollback(signedBy(2), { ...trust, now: (NOW_S + 3600) * 1000 }))).toBe('ROLLBACK_EXPIRED');
  });

  it('never pass for a bundle, nor a bundle for an instruction', () => {
    const trust = trustOf(roots);
    expect(codeOf(() => verifyBundle(signedBy(2), { ...trust, now: NOW_MS }))).toBe('BUNDLE_MALFORMED');
    expect(codeOf(() => verifyRollback(signedBundle(roots), { ...trust, now: NOW_MS }))).toBe('BUNDLE_MALFORMED');
    // The payload of an instruction signed as if it were a bundle: the signed content type says bundle.
    expect(codeOf(() => verifyRollback(signWith(encodeRollbackPayload(INSTRUCTION), roots.keys[0].key, roots.keys[1].key), { ...trust, now: NOW_MS }))).toBe('BUNDLE_MALFORMED');
  });

  it('have a strict payload', () => {
    const bad = (edit: (m: Map<string, unknown>) => void) => {
      const m = new Map<string, unknown>([
        ['device', 'dev-1'],
        ['site', 'site-1'],
        ['from', new Map<string, unknown>([['revision', 7], ['digest', new Uint8Array(32)]])],
        ['to', new Map<string, unknown>([['revision', 6], ['digest', new Uint8Array(32)]])],
        ['created', NOW_S],
        ['expires', NOW_S + 60],
      ]);
      edit(m);
      return codeOf(() => decodeRollbackPayload(encodeCbor(m as never)));
    };
    expect(bad(() => {})).toBe('OK');
    expect(bad((m) => m.set('colour', 'blue'))).toBe('BUNDLE_MALFORMED');
    expect(bad((m) => m.delete('to'))).toBe('BUNDLE_MALFORMED');
    expect(bad((m) => m.set('to', new Map<string, unknown>([['revision', 8], ['digest', new Uint8Array(32)]])))).toBe('BUNDLE_MALFORMED');
    expect(bad((m) => m.set('expires', NOW_S + 8 * 86_400))).toBe('BUNDLE_MALFORMED');
    expect(bad((m) => m.set('device', 'a/b'))).toBe('BUNDLE_MALFORMED');
    expect(bad((m) => m.set('from', new Map<string, unknown>([['revision', 7], ['digest', new Uint8Array(31)]])))).toBe('BUNDLE_MALFORMED');
  });
});
