// The README's wire format example stays true: the block in the README is exactly what
// scripts/wire-example.ts produces, and its envelope decodes and verifies — by node:crypto alone
// over the documented Sig_structure, and by the agent's own verifier.
import { createPublicKey, verify } from 'node:crypto';
import fs from 'node:fs';
import { describe, expect, it } from 'vitest';
import { EXAMPLE, readmeBlock } from '../../scripts/wire-example.js';
import { fromHex, toHex } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { publicKeyFromRaw } from '../../src/crypto/keys.js';
import { CborTagged, decodeCbor, encodeCbor } from '../../src/envelope/cbor.js';
import { verifyCommand } from '../../src/envelope/command.js';

const README = fs.readFileSync(new URL('../../README.md', import.meta.url), 'utf8');

/** The hex under `label:` in the README block (lines indented below it), joined. */
function field(label: string): Uint8Array {
  const start = README.indexOf(`\n${label}`);
  expect(start, `README has "${label}"`).toBeGreaterThan(0);
  const lines = README.slice(README.indexOf('\n', start + 1) + 1).split('\n');
  const hex = lines.slice(0, lines.findIndex((l) => !l.startsWith('  '))).join('').replace(/\s/g, '');
  return fromHex(hex)!;
}

describe('README wire format example', () => {
  it('is exactly what scripts/wire-example.ts generates', () => {
    const start = README.indexOf('<!-- wire-example');
    const end = README.indexOf('<!-- /wire-example -->');
    expect(start).toBeGreaterThan(0);
    expect(README.slice(start, end + '<!-- /wire-example -->'.length)).toBe(readmeBlock());
  });

  it('decodes and verifies from the README\'s bytes alone, as a sender in another language would check it', () => {
    const publicKey = field('public key (raw, 32 bytes):');
    const kid = field('kid = SHA-256(public key)[0..16]:');
    const aad = field('external_aad = CBOR ["arm-1", "cmd"]:');
    const envelope = field('envelope = COSE_Sign1, tag 18:');
    expect(toHex(kid)).toBe(toHex(sha256(publicKey).subarray(0, 16)));
    expect(toHex(aad)).toBe('826561726d2d3163636d64');

    const outer = decodeCbor(envelope, { maxBytes: 1 << 16, maxDepth: 8, allowRootTag: true }) as CborTagged;
    expect(outer.tag).toBe(18);
    const [protectedBytes, unprotected, payload, signature] = outer.value as [Uint8Array, Map<number, unknown>, Uint8Array, Uint8Array];
    expect(decodeCbor(protectedBytes, { maxBytes: 1024, maxDepth: 2 })).toEqual(new Map<number, unknown>([[1, -8], [4, kid]]));
    expect(unprotected.size).toBe(0);
    expect(toHex(payload)).toBe(toHex(field('payload (claims;')));
    // Sig_structure (RFC 9052 §4.4), checked with node:crypto directly.
    const toBeSigned = encodeCbor(['Signature1', protectedBytes, aad, payload]);
    const jwk = { kty: 'OKP', crv: 'Ed25519', x: Buffer.from(publicKey).toString('base64url') };
    expect(verify(null, toBeSigned, createPublicKey({ key: jwk, format: 'jwk' }), signature)).toBe(true);

    // And by the agent, at the example's time, with the key bound to its principal.
    const key = publicKeyFromRaw('ed25519', publicKey);
    const verified = verifyCommand(envelope, {
      keyResolver: (k) => (toHex(k) === toHex(kid) ? { key, issuer: EXAMPLE.issuer } : undefined),
      deviceId: EXAMPLE.deviceId,
      topic: EXAMPLE.topic,
      now: EXAMPLE.iat * 1000 + 1000,
    });
    expect(verified.claims).toMatchObject({ iss: 'Agent::"planner-7"', aud: 'arm-1', act: 'move', res: 'Arm::"arm-1"', iatMs: EXAMPLE.iat * 1000, expMs: (EXAMPLE.iat + 60) * 1000 });
    expect({ ...verified.claims.args }).toEqual({ speed: 250, zone: 'A', job: 5_000_000_000 });
    // The same integer as a float (what cbor-x writes for JS numbers above 2^32) is refused.
    const asFloat = Buffer.from(payload).toString('hex').replace('1b000000012a05f200', 'fb41f2a05f20000000');
    expect(() => decodeCbor(fromHex(asFloat)!, { maxBytes: 1024, maxDepth: 8 })).toThrow(/float/i);
  });
});
