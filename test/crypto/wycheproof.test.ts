// Project Wycheproof vectors on both verifiers: every `valid` signature verifies and every
// `invalid` one is rejected. `acceptable` vectors (legacy encodings a library may or may not
// allow) are not decided by the vectors, so for them both verifiers must simply agree: the
// agent must not accept on one runtime what it rejects on another. A key the import refuses
// (not a canonical, full-order point) counts as a rejection of all its signatures.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { CryptoError } from '../../src/crypto/errors.js';
import { derToP1363 } from '../../src/crypto/ecdsa-der.js';
import { type PublicKey, publicKeyFromRaw } from '../../src/crypto/keys.js';
import { VERIFIER_NAMES, getVerifier } from '../../src/crypto/verifier.js';

interface WycheproofTest {
  tcId: number;
  comment: string;
  flags: string[];
  msg: string;
  sig: string;
  result: 'valid' | 'invalid' | 'acceptable';
}
interface WycheproofGroup {
  publicKey: { pk?: string; uncompressed?: string };
  tests: WycheproofTest[];
}

function load(name: string): WycheproofGroup[] {
  const url = new URL(`../vectors/wycheproof/${name}`, import.meta.url);
  return (JSON.parse(readFileSync(url, 'utf8')) as { testGroups: WycheproofGroup[] }).testGroups;
}

const hex = (text: string) => new Uint8Array(Buffer.from(text, 'hex'));

function importKey(keyType: 'ed25519' | 'p256', raw: string): PublicKey | undefined {
  try {
    return publicKeyFromRaw(keyType, hex(raw));
  } catch (err) {
    if (err instanceof CryptoError && err.code === 'KEY_INVALID') return undefined;
    throw err;
  }
}

function rawSignature(encoding: 'raw' | 'der', sig: string): Uint8Array | undefined {
  if (encoding === 'raw') return hex(sig);
  try {
    return derToP1363(hex(sig));
  } catch (err) {
    if (err instanceof CryptoError && err.code === 'SIGNATURE_ENCODING_INVALID') return undefined;
    throw err;
  }
}

const suites = [
  { file: 'ed25519_test.json', keyType: 'ed25519', encoding: 'raw' },
  { file: 'ecdsa_secp256r1_sha256_p1363_test.json', keyType: 'p256', encoding: 'raw' },
  { file: 'ecdsa_secp256r1_sha256_test.json', keyType: 'p256', encoding: 'der' },
] as const;

for (const suite of suites) {
  describe(suite.file, () => {
    const groups = load(suite.file);
    const cases = groups.flatMap((group, groupIndex) => {
      const key = importKey(suite.keyType, suite.keyType === 'ed25519' ? group.publicKey.pk! : group.publicKey.uncompressed!);
      return group.tests.map((test) => ({ ...test, key, name: `group ${groupIndex} tcId ${test.tcId} ${test.result} ${test.comment}` }));
    });

    it('has vectors of both outcomes', () => {
      expect(cases.filter((c) => c.result === 'valid').length).toBeGreaterThan(50);
      expect(cases.filter((c) => c.result === 'invalid').length).toBeGreaterThan(50);
    });

    for (const name of VERIFIER_NAMES) {
      describe(name, () => {
        const verifier = getVerifier(name);
        it.each(cases)('$name', (test) => {
          const signature = rawSignature(suite.encoding, test.sig);
          const accepted = test.key !== undefined && signature !== undefined && verifier.verify(test.key, hex(test.msg), signature);
          if (test.result === 'acceptable') {
            const other = getVerifier(name === 'native' ? 'noble' : 'native');
            const otherAccepted = test.key !== undefined && signature !== undefined && other.verify(test.key, hex(test.msg), signature);
            expect(accepted).toBe(otherAccepted);
          } else {
            expect(accepted).toBe(test.result === 'valid');
          }
        });

        // The agent's hot path checks on the thread pool: it must give the very same verdicts.
        it(`verifyAsync agrees with verify on all ${cases.length} vectors`, async () => {
          const withKey = cases.map((test) => ({ test, signature: rawSignature(suite.encoding, test.sig) })).filter((c) => c.test.key !== undefined && c.signature !== undefined);
          const asynchronous = await Promise.all(withKey.map(({ test, signature }) => verifier.verifyAsync(test.key!, hex(test.msg), signature!)));
          const synchronous = withKey.map(({ test, signature }) => verifier.verify(test.key!, hex(test.msg), signature!));
          expect(asynchronous).toEqual(synchronous);
          expect(asynchronous.filter(Boolean).length).toBeGreaterThan(50);
          expect(asynchronous.filter((ok) => !ok).length).toBeGreaterThan(10);
        });
      });
    }
  });
}
