import { createHash } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { COSE_ALG } from '../../src/crypto/algorithms.js';
import { VERIFIER_NAMES, getVerifier } from '../../src/crypto/verifier.js';
import { signApproval, verifyApproval } from '../../src/envelope/approval.js';
import type { CborMapKey, Encodable } from '../../src/envelope/cbor.js';
import { contextAad } from '../../src/envelope/claims.js';
import { verifyCommand, verifyCommandAsync } from '../../src/envelope/command.js';
import { EnvelopeError } from '../../src/envelope/errors.js';
import { signResult, signResultAsync, verifyResult } from '../../src/envelope/result.js';
import { DEVICE, ISSUER, NOW, TOPIC, command, craft, ecKey, edKey, outcome, standardClaims, verifyOptions } from './support/fixtures.js';

describe('command envelope', () => {
  for (const name of VERIFIER_NAMES) {
    it.each([
      ['Ed25519', edKey],
      ['P-256', ecKey],
    ] as const)(`round-trips with a %s key (${name})`, (_label, key) => {
      const bytes = command({ key, args: { speed: 10, axis: 'x' } });
      const verified = verifyCommand(bytes, verifyOptions({ verifier: getVerifier(name) }));
      expect(verified.issuer).toBe(ISSUER);
      expect(verified.kid).toEqual(key.publicKey.kid);
      expect(verified.alg).toBe(key.keyType === 'ed25519' ? COSE_ALG.EdDSA : COSE_ALG.ES256);
      expect(verified.claims).toMatchObject({ iss: ISSUER, aud: DEVICE, act: 'move', res: 'Robot::"arm-1"', iatMs: NOW, expMs: NOW + 60_000 });
      expect({ ...verified.claims.args }).toEqual({ speed: 10, axis: 'x' });
      expect(verified.claims.cti).toHaveLength(16);
      expect(Buffer.from(verified.digest)).toEqual(createHash('sha256').update(bytes).digest());
    });
  }

  /** The code an async check rejects with (or 'ok'). */
  const asyncOutcome = (p: Promise<unknown>) => p.then(() => 'ok', (err: unknown) => (err instanceof EnvelopeError ? err.code : `not an EnvelopeError: ${String(err)}`));

  for (const name of VERIFIER_NAMES) {
    it.each([
      ['Ed25519', edKey],
      ['P-256', ecKey],
    ] as const)(`verifyCommandAsync (the agent's path) gives verifyCommand's answers, %s key (${name})`, async (_label, key) => {
      const options = verifyOptions({ verifier: getVerifier(name) });
      const bytes = command({ key, args: { speed: 10 } });
      const [sync, async] = [verifyCommand(bytes, options), await verifyCommandAsync(bytes, options)];
      expect(async).toEqual(sync);
      const flipped = Uint8Array.from(bytes);
      flipped[flipped.length - 1]! ^= 1; // the signature's last byte
      expect(await asyncOutcome(verifyCommandAsync(flipped, options))).toBe('ENVELOPE_BAD_SIGNATURE');
      expect(await asyncOutcome(verifyCommandAsync(bytes, { ...options, deviceId: 'other-device' }))).toBe('ENVELOPE_BAD_SIGNATURE');
      expect(await asyncOutcome(verifyCommandAsync(bytes, { ...options, keyResolver: () => undefined }))).toBe('ENVELOPE_KID_UNKNOWN');
      expect(await asyncOutcome(verifyCommandAsync(bytes, { ...options, now: NOW + 3_600_000 }))).toBe('ENVELOPE_EXPIRED');
      expect(await asyncOutcome(verifyCommandAsync(bytes.subarray(0, 20), options))).toBe('ENVELOPE_TRUNCATED');
    });
  }

  it('uses a fresh random cti for every command', () => {
    const a = verifyCommand(command(), verifyOptions()).claims.cti;
    const b = verifyCommand(command(), verifyOptions()).claims.cti;
    expect(Buffer.from(a).equals(Buffer.from(b))).toBe(false);
  });

  it('binds [deviceId, topic] as the CBOR external_aad', () => {
    expect(Buffer.from(contextAad('robot-1', 'cmd')).toString('hex')).toBe('82' + '67' + Buffer.from('robot-1').toString('hex') + '63' + Buffer.from('cmd').toString('hex'));
  });

  it('keeps args exact: 64-bit integers, nesting, records without a prototype', () => {
    const bytes = command({ args: { max: 9223372036854775807n, min: -9223372036854775808n, list: [1, 'a', true], rec: { inner: { deep: 'x' } }, toString: 'plain' } });
    const { args } = verifyCommand(bytes, verifyOptions()).claims;
    expect(args.max).toBe(9223372036854775807n);
    expect(args.min).toBe(-9223372036854775808n);
    expect(args.list).toEqual([1, 'a', true]);
    expect(Object.getPrototypeOf(args)).toBeNull();
    expect(Object.getPrototypeOf(args.rec)).toBeNull();
    expect(args.toString).toBe('plain');
  });

  it.each(['__proto__', 'constructor', 'prototype'])('refuses the reserved args key %s at any depth', (name) => {
    const at = (value: Map<CborMapKey, Encodable>) => {
      const claims = standardClaims();
      claims.set('args', value);
      return outcome(() => verifyCommand(craft({ payload: claims }), verifyOptions()));
    };
    const reserved = new Map<CborMapKey, Encodable>([[name, 'p']]);
    expect(at(reserved)).toBe('ENVELOPE_ARGS_RESERVED_KEY');
    expect(at(new Map<CborMapKey, Encodable>([['rec', reserved]]))).toBe('ENVELOPE_ARGS_RESERVED_KEY');
    expect(at(new Map<CborMapKey, Encodable>([['list', [1, reserved]]]))).toBe('ENVELOPE_ARGS_RESERVED_KEY');
  });

  it('reads an empty args record when the claim is absent, and nbf when present', () => {
    const claims = standardClaims();
    claims.delete('args');
    claims.set(5, NOW / 1000 - 1);
    const verified = verifyCommand(craft({ payload: claims }), verifyOptions());
    expect(Object.keys(verified.claims.args)).toEqual([]);
    expect(verified.claims.nbfMs).toBe(NOW - 1000);
  });

  it.each([
    ['args not a map', (c: Map<unknown, unknown>) => c.set('args', [1]), 'ENVELOPE_CLAIM_INVALID'],
    ['args with an integer key', (c: Map<unknown, unknown>) => c.set('args', new Map([[1, 2]])), 'ENVELOPE_CLAIM_INVALID'],
    ['args with bytes', (c: Map<unknown, unknown>) => c.set('args', { b: new Uint8Array(1) }), 'ENVELOPE_CLAIM_INVALID'],
    ['args with null', (c: Map<unknown, unknown>) => c.set('args', { n: null }), 'ENVELOPE_CLAIM_INVALID'],
    ['args beyond int64', (c: Map<unknown, unknown>) => c.set('args', { n: 1n << 63n }), 'ENVELOPE_CLAIM_INVALID'],
    ['res not an entity uid', (c: Map<unknown, unknown>) => c.set('res', 'arm-1'), 'ENVELOPE_CLAIM_INVALID'],
    ['act missing', (c: Map<unknown, unknown>) => c.delete('act'), 'ENVELOPE_CLAIM_MISSING'],
    ['act empty', (c: Map<unknown, unknown>) => c.set('act', ''), 'ENVELOPE_CLAIM_INVALID'],
    ['iss missing', (c: Map<unknown, unknown>) => c.delete(1), 'ENVELOPE_CLAIM_MISSING'],
    ['aud not text', (c: Map<unknown, unknown>) => c.set(3, ['robot-1']), 'ENVELOPE_CLAIM_INVALID'],
    ['exp missing', (c: Map<unknown, unknown>) => c.delete(4), 'ENVELOPE_CLAIM_MISSING'],
    ['exp negative', (c: Map<unknown, unknown>) => c.set(4, -5), 'ENVELOPE_CLAIM_INVALID'],
    ['exp a bigint', (c: Map<unknown, unknown>) => c.set(4, 1n << 60n), 'ENVELOPE_CLAIM_INVALID'],
    ['iat missing', (c: Map<unknown, unknown>) => c.delete(6), 'ENVELOPE_CLAIM_MISSING'],
    ['exp not after iat', (c: Map<unknown, unknown>) => c.set(4, NOW / 1000 + 10).set(6, NOW / 1000 + 10), 'ENVELOPE_CLAIM_INVALID'],
  ])('refuses %s', (_name, edit, code) => {
    const claims = standardClaims();
    edit(claims as Map<unknown, unknown>);
    expect(outcome(() => verifyCommand(craft({ payload: claims }), verifyOptions()))).toBe(code);
  });

  it('binds a kid to its issuer when the resolver says whose key it is', () => {
    const bound = verifyOptions({ keyResolver: (kid) => (Buffer.from(kid).equals(Buffer.from(edKey.publicKey.kid)) ? { key: edKey.publicKey, issuer: ISSUER } : undefined) });
    expect(verifyCommand(command(), bound).issuer).toBe(ISSUER);
    expect(outcome(() => verifyCommand(command({ issuer: 'User::"admin"' }), bound))).toBe('ENVELOPE_ISSUER_MISMATCH');
    // No iss: the key's issuer. Without a binding an iss is required.
    expect(verifyCommand(command({ issuer: undefined }), bound).issuer).toBe(ISSUER);
    expect(outcome(() => verifyCommand(command({ issuer: undefined }), verifyOptions()))).toBe('ENVELOPE_CLAIM_MISSING');
  });

  it('accepts the RFC 9864 fully-specified algorithm ids', () => {
    expect(verifyCommand(command({ alg: COSE_ALG.Ed25519 }), verifyOptions()).alg).toBe(-19);
    expect(verifyCommand(command({ key: ecKey, alg: COSE_ALG.ESP256 }), verifyOptions()).alg).toBe(-9);
  });
});

describe('approval envelope', () => {
  const digest = verifyCommand(command(), verifyOptions()).digest;
  const approval = (overrides: Partial<Parameters<typeof signApproval>[0]> = {}) =>
    signApproval({ key: ecKey, issuer: 'User::"bob"', deviceId: DEVICE, topic: 'approve', commandDigest: digest, decision: 'approve', now: NOW, lifetimeMs: 120_000, ...overrides });

  it('round-trips and names the command by digest', () => {
    const verified = verifyApproval(approval(), verifyOptions({ topic: 'approve' }));
    expect(verified.claims).toMatchObject({ iss: 'User::"bob"', dec: 'approve', iatMs: NOW, expMs: NOW + 120_000 });
    expect(verified.claims.cmd).toEqual(digest);
    expect(verifyApproval(approval({ decision: 'reject' }), verifyOptions({ topic: 'approve' })).claims.dec).toBe('reject');
  });

  it('is bound to its topic and expires', () => {
    expect(outcome(() => verifyApproval(approval(), verifyOptions({ topic: 'cmd' })))).toBe('ENVELOPE_BAD_SIGNATURE');
    expect(outcome(() => verifyApproval(approval(), verifyOptions({ topic: 'approve', now: NOW + 200_000 })))).toBe('ENVELOPE_EXPIRED');
  });

  it('refuses a decision other than approve or reject, and a digest of the wrong size', () => {
    const claims = new Map<string | number, unknown>([[1, 'User::"bob"'], [4, NOW / 1000 + 60], [6, NOW / 1000], [7, new Uint8Array(16)], ['cmd', digest], ['dec', 'maybe']]);
    expect(outcome(() => verifyApproval(craft({ payload: claims as never, aad: contextAad(DEVICE, 'approve') }), verifyOptions({ topic: 'approve' })))).toBe('ENVELOPE_CLAIM_INVALID');
    claims.set('dec', 'approve').set('cmd', digest.subarray(0, 16));
    expect(outcome(() => verifyApproval(craft({ payload: claims as never, aad: contextAad(DEVICE, 'approve') }), verifyOptions({ topic: 'approve' })))).toBe('ENVELOPE_CLAIM_INVALID');
  });
});

describe('result envelope', () => {
  const digest = verifyCommand(command(), verifyOptions()).digest;
  const result = () =>
    signResult({ key: edKey, deviceId: DEVICE, topic: 'cmd/result', commandDigest: digest, decision: 'allow', policies: ['p1'], reasons: [], outcome: 'executed', now: NOW });

  it('round-trips, signed by the device', () => {
    const verified = verifyResult(result(), verifyOptions({ topic: 'cmd/result' }));
    expect(verified.claims).toMatchObject({ iss: DEVICE, decision: 'allow', policies: ['p1'], reasons: [], outcome: 'executed', iatMs: NOW });
    expect(verified.claims.cmd).toEqual(digest);
  });

  it('signs on the thread pool (signResultAsync) with either key type, verifiable like signResult', async () => {
    for (const key of [edKey, ecKey]) {
      const signed = await signResultAsync({ key, deviceId: DEVICE, topic: 'cmd/result', commandDigest: digest, decision: 'deny', policies: [], reasons: ['NO_PERMIT'], outcome: 'not_executed', now: NOW });
      const verified = verifyResult(signed, verifyOptions({ topic: 'cmd/result', keyResolver: () => key.publicKey }));
      expect(verified.claims).toMatchObject({ iss: DEVICE, decision: 'deny', reasons: ['NO_PERMIT'], outcome: 'not_executed' });
    }
    const short = signResultAsync({ key: edKey, deviceId: DEVICE, topic: 'cmd/result', commandDigest: digest.subarray(1), decision: 'allow', policies: [], reasons: [], outcome: 'executed', now: NOW });
    await expect(short).rejects.toMatchObject({ code: 'ENVELOPE_CLAIM_INVALID' });
  });

  it('refuses a result whose issuer is not the device, or one moved to another topic', () => {
    const claims = new Map<string | number, unknown>([[1, 'robot-2'], [6, NOW / 1000], [7, new Uint8Array(16)], ['cmd', digest], ['decision', 'allow'], ['policies', []], ['reasons', []], ['outcome', 'executed']]);
    const forged = craft({ payload: claims as never, aad: contextAad(DEVICE, 'cmd/result') });
    expect(outcome(() => verifyResult(forged, verifyOptions({ topic: 'cmd/result' })))).toBe('ENVELOPE_CLAIM_INVALID');
    expect(outcome(() => verifyResult(result(), verifyOptions({ topic: TOPIC })))).toBe('ENVELOPE_BAD_SIGNATURE');
  });
});
