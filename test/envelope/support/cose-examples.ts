// Loads the COSE working group examples (test/vectors/cose).
import { readFileSync, readdirSync } from 'node:fs';
import { type PublicKey, publicKeyFromRaw } from '../../../src/crypto/keys.js';

export const coseExamplesRoot = new URL('../../vectors/cose/', import.meta.url);

export interface ExampleKey {
  kty: string;
  crv: string;
  x?: string;
  y?: string;
  x_hex?: string;
  y_hex?: string;
}

export interface CoseExample {
  title: string;
  fail?: boolean;
  input: { sign0: { key: ExampleKey; external?: string } };
  output: { cbor: string };
}

export function loadCoseExamples(): { path: string; example: CoseExample; bytes: Uint8Array }[] {
  return readdirSync(coseExamplesRoot, { withFileTypes: true })
    .filter((entry) => entry.isDirectory())
    .flatMap((entry) =>
      readdirSync(new URL(`${entry.name}/`, coseExamplesRoot))
        .filter((file) => file.endsWith('.json'))
        .map((file) => {
          const example = JSON.parse(readFileSync(new URL(`${entry.name}/${file}`, coseExamplesRoot), 'utf8')) as CoseExample;
          return { path: `${entry.name}/${file}`, example, bytes: new Uint8Array(Buffer.from(example.output.cbor, 'hex')) };
        }),
    );
}

function coordinate(b64url: string | undefined, hex: string | undefined): Uint8Array {
  return new Uint8Array(hex !== undefined ? Buffer.from(hex, 'hex') : Buffer.from(b64url!, 'base64url'));
}

/** The example's public key (its JSON gives coordinates as base64url or hex). */
export function exampleKey(key: ExampleKey): PublicKey {
  const x = coordinate(key.x, key.x_hex);
  if (key.kty === 'OKP') return publicKeyFromRaw('ed25519', x);
  return publicKeyFromRaw('p256', Uint8Array.from([4, ...x, ...coordinate(key.y, key.y_hex)]));
}
