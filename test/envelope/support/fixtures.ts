// Keys, a trusted-key resolver and envelope builders shared by the envelope tests.
import type { CoseAlgorithm } from '../../../src/crypto/algorithms.js';
import { bytesEqual } from '../../../src/crypto/bytes.js';
import { type PrivateKey, generatePrivateKey } from '../../../src/crypto/keys.js';
import { sign } from '../../../src/crypto/signer.js';
import { type CborMap, type CborMapKey, type CborValue, CborTagged, type Encodable, decodeCbor, encodeCbor } from '../../../src/envelope/cbor.js';
import { contextAad } from '../../../src/envelope/claims.js';
import { type SignCommandInput, signCommand } from '../../../src/envelope/command.js';
import { EnvelopeError } from '../../../src/envelope/errors.js';
import type { EnvelopeVerifyOptions } from '../../../src/envelope/signed-claims.js';

export const DEVICE = 'robot-1';
export const TOPIC = 'cmd';
export const ISSUER = 'User::"alice"';
/** A fixed verification time (2026-01-01T00:00:00Z), whole seconds. */
export const NOW = Date.UTC(2026, 0, 1);

export const edKey = generatePrivateKey('ed25519');
export const ecKey = generatePrivateKey('p256');
/** Signs validly but is not in the trusted set. */
export const strangerKey = generatePrivateKey('ed25519');

export const trustedKeys = [edKey, ecKey];

export function resolveTrusted(kid: Uint8Array) {
  return trustedKeys.find((k) => bytesEqual(k.publicKey.kid, kid))?.publicKey;
}

export function verifyOptions(overrides: Partial<EnvelopeVerifyOptions> = {}): EnvelopeVerifyOptions {
  return { keyResolver: resolveTrusted, deviceId: DEVICE, topic: TOPIC, now: NOW, clockSkewMs: 30_000, maxLifetimeMs: 300_000, ...overrides };
}

export function command(overrides: Partial<SignCommandInput> = {}): Uint8Array {
  return signCommand({
    key: edKey,
    issuer: ISSUER,
    deviceId: DEVICE,
    topic: TOPIC,
    action: 'move',
    resource: 'Robot::"arm-1"',
    args: { speed: 10, axis: 'x' },
    now: NOW,
    lifetimeMs: 60_000,
    ...overrides,
  });
}

/** The claims signCommand would write, as a Map to edit. */
export function standardClaims(): Map<CborMapKey, Encodable> {
  const s = NOW / 1000;
  return new Map<CborMapKey, Encodable>([
    [1, ISSUER],
    [3, DEVICE],
    [4, s + 60],
    [6, s],
    [7, new Uint8Array(16).fill(7)],
    ['act', 'move'],
    ['res', 'Robot::"arm-1"'],
    ['args', { speed: 10 }],
  ]);
}

export interface CraftOptions {
  key?: PrivateKey;
  protectedHeader?: CborMap;
  /** Raw protected header bytes, used as is (e.g. with duplicate keys). */
  protectedBytes?: Uint8Array;
  unprotectedHeader?: CborMap;
  /** Claims map, or raw payload bytes used as is. */
  payload?: ReadonlyMap<CborMapKey, Encodable> | Uint8Array;
  aad?: Uint8Array;
  tag?: number | null;
  alg?: CoseAlgorithm;
}

/** A correctly signed COSE_Sign1 with any headers, payload and tag: reaches the checks after the signature. */
export function craft(options: CraftOptions = {}): Uint8Array {
  const key = options.key ?? edKey;
  const protectedBytes =
    options.protectedBytes ??
    encodeCbor(options.protectedHeader ?? new Map<number, CborValue>([[1, options.alg ?? (key.keyType === 'ed25519' ? -8 : -7)], [4, key.publicKey.kid]]));
  const payload = options.payload instanceof Uint8Array ? options.payload : encodeCbor(options.payload ?? standardClaims());
  const aad = options.aad ?? contextAad(DEVICE, TOPIC);
  const signature = sign(key, encodeCbor(['Signature1', protectedBytes, aad, payload]));
  const message = [protectedBytes, options.unprotectedHeader ?? new Map(), payload, signature];
  return options.tag === null ? encodeCbor(message) : encodeCbor(new CborTagged(options.tag ?? 18, message));
}

/** The four parts of a tagged COSE_Sign1. */
export function parts(bytes: Uint8Array): [Uint8Array, CborMap, Uint8Array, Uint8Array] {
  const tagged = decodeCbor(bytes, { maxBytes: 1 << 20, maxDepth: 16, allowRootTag: true }) as CborTagged;
  return tagged.value as [Uint8Array, CborMap, Uint8Array, Uint8Array];
}

export function assemble(p: [Uint8Array, CborMap, Uint8Array, Uint8Array], tag = 18): Uint8Array {
  return encodeCbor(new CborTagged(tag, p));
}

/** 'ok' or the EnvelopeError code; anything else thrown fails the test. */
export function outcome(run: () => unknown): string {
  try {
    run();
    return 'ok';
  } catch (err) {
    if (err instanceof EnvelopeError) return err.code;
    throw err;
  }
}
