// The COSE signature algorithms ztedge accepts and the key type each one requires.
//
// IANA "COSE Algorithms" registry: EdDSA (-8) and ES256 (-7) from RFC 9053 are polymorphic;
// RFC 9864 adds fully-specified ids for the same operations, Ed25519 (-19) and ESP256 (-9,
// ECDSA on P-256 with SHA-256). Both forms are accepted for the same key type.

export type KeyType = 'ed25519' | 'p256';

/** Raw signature length for both key types: Ed25519 R||S, ECDSA P-256 r||s. */
export const SIGNATURE_LENGTH = 64;

export const COSE_ALG = {
  ES256: -7,
  EdDSA: -8,
  ESP256: -9,
  Ed25519: -19,
} as const;

export type CoseAlgorithm = (typeof COSE_ALG)[keyof typeof COSE_ALG];

export interface AlgorithmInfo {
  readonly id: CoseAlgorithm;
  readonly name: keyof typeof COSE_ALG;
  readonly keyType: KeyType;
}

const ALGORITHMS: ReadonlyMap<number, AlgorithmInfo> = new Map<number, AlgorithmInfo>([
  [COSE_ALG.ES256, { id: COSE_ALG.ES256, name: 'ES256', keyType: 'p256' }],
  [COSE_ALG.EdDSA, { id: COSE_ALG.EdDSA, name: 'EdDSA', keyType: 'ed25519' }],
  [COSE_ALG.ESP256, { id: COSE_ALG.ESP256, name: 'ESP256', keyType: 'p256' }],
  [COSE_ALG.Ed25519, { id: COSE_ALG.Ed25519, name: 'Ed25519', keyType: 'ed25519' }],
]);

/** Every algorithm this build supports; a verifier's allow-list is a subset of it. */
export const SUPPORTED_ALGORITHMS: readonly CoseAlgorithm[] = [...ALGORITHMS.keys()] as CoseAlgorithm[];

/** The algorithm with this COSE id, or undefined when ztedge does not support it. */
export function algorithmInfo(id: unknown): AlgorithmInfo | undefined {
  return typeof id === 'number' ? ALGORITHMS.get(id) : undefined;
}

/**
 * The id ztedge puts in envelopes it signs: the polymorphic forms, which every deployed COSE
 * library verifies (the fully-specified ones are accepted on input).
 */
export function defaultAlgorithm(keyType: KeyType): CoseAlgorithm {
  return keyType === 'ed25519' ? COSE_ALG.EdDSA : COSE_ALG.ES256;
}

export function isKeyType(value: string): value is KeyType {
  return value === 'ed25519' || value === 'p256';
}
