// Fixtures for bundle tests: real root keys written to and read back from key files, a small
// bundle source, and helpers that build, sign and tamper with bundles.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { KeyType } from '../../src/crypto/algorithms.js';
import { readPrivateKeyFile, readPublicKeyFile, writePrivateKeyFile, writePublicKeyFile } from '../../src/crypto/key-files.js';
import { type PrivateKey, generatePrivateKey } from '../../src/crypto/keys.js';
import { type BundleSource, buildBundle } from '../../src/bundle/build.js';
import { type BundleManifest, type BundlePayload, DEFAULT_SETTINGS, encodeBundlePayload } from '../../src/bundle/format.js';
import { signBundle } from '../../src/bundle/sign.js';
import type { RootKey, TrustOptions } from '../../src/bundle/verify.js';

export const REPO_ROOT = path.resolve(new URL('../..', import.meta.url).pathname);
export const EXAMPLES = path.join(REPO_ROOT, 'policies');

/** 2025-03-14T10:00:00Z */
export const NOW_MS = Date.UTC(2025, 2, 14, 10, 0, 0);
export const NOW_S = NOW_MS / 1000;
export const DAY_S = 86_400;

export function tempDir(prefix: string): string {
  return fs.mkdtempSync(path.join(os.tmpdir(), `ztedge-${prefix}-`));
}

export interface KeyFiles {
  key: PrivateKey;
  privatePath: string;
  publicPath: string;
}

/** Generates a key pair as files (0600 private, PEM public) and reads the private key back. */
export function keygen(dir: string, name: string, keyType: KeyType): KeyFiles {
  const privatePath = path.join(dir, `${name}.key`);
  const publicPath = path.join(dir, `${name}.pub`);
  const generated = generatePrivateKey(keyType);
  writePrivateKeyFile(privatePath, generated);
  writePublicKeyFile(publicPath, generated.publicKey);
  return { key: readPrivateKeyFile(privatePath), privatePath, publicPath };
}

export interface Roots {
  dir: string;
  /** Three root keys (Ed25519, P-256, Ed25519). */
  keys: [KeyFiles, KeyFiles, KeyFiles];
  /** A key that is no root. */
  stranger: KeyFiles;
}

export function makeRoots(): Roots {
  const dir = tempDir('roots');
  return {
    dir,
    keys: [keygen(dir, 'root-a', 'ed25519'), keygen(dir, 'root-b', 'p256'), keygen(dir, 'root-c', 'ed25519')],
    stranger: keygen(dir, 'stranger', 'ed25519'),
  };
}

/** 2-of-3 trust in the roots, for device `dev-1` at site `site-1`, profile `robot`. */
export function trustOf(roots: Roots, overrides: Partial<TrustOptions> = {}): TrustOptions {
  const rootKeys: RootKey[] = roots.keys.map((k) => ({ publicKey: readPublicKeyFile(k.publicPath) }));
  return { roots: rootKeys, threshold: 2, device: 'dev-1', site: 'site-1', profile: 'robot', agentVersion: '0.1.0', ...overrides };
}

export const POLICIES = [
  {
    file: '00-read.cedar',
    text: '@id("read-any")\npermit (principal, action == Action::"read", resource);\n',
  },
  {
    file: '10-write.cedar',
    text: '@id("write-admin")\npermit (principal, action == Action::"write", resource)\nwhen { principal.admin };\n',
  },
];

/** A small source: two policy files, an entity with a Long beyond 2^53, three tests. */
export const SOURCE: BundleSource = {
  policies: POLICIES,
  entities: `[
    { "uid": { "type": "User", "id": "alice" }, "attrs": { "admin": true, "serial": 9223372036854775807 }, "parents": [] },
    { "uid": { "type": "User", "id": "bob" }, "attrs": { "admin": false, "serial": -9223372036854775808 }, "parents": [] }
  ]`,
  issuers: [],
  attestation: [],
  settings: DEFAULT_SETTINGS,
  tests: [
    { name: 'alice reads', principal: 'User::"alice"', action: 'Action::"read"', resource: 'Doc::"d"', context: '{}', decision: 'allow', reasons: ['read-any'] },
    { name: 'alice writes', principal: 'User::"alice"', action: 'Action::"write"', resource: 'Doc::"d"', context: '{}', decision: 'allow' },
    { name: 'bob may not write', principal: 'User::"bob"', action: 'Action::"write"', resource: 'Doc::"d"', context: '{}', decision: 'deny' },
  ],
};

export function manifest(overrides: Partial<BundleManifest> = {}): BundleManifest {
  return {
    id: 'test-bundle',
    revision: 1,
    created: NOW_S - 3600,
    expires: NOW_S + 30 * DAY_S,
    scope: { sites: [], devices: [], profiles: [] },
    minAgentVersion: '0.1.0',
    ...overrides,
  };
}

/** Payload bytes through the full build (compile + tests). */
export function buildPayload(overrides: Partial<BundleManifest> = {}, source: BundleSource = SOURCE): Uint8Array {
  return buildBundle(source, manifest(overrides)).bytes;
}

/** Payload bytes with shape checks only: for contents a build would refuse. */
export function rawPayload(overrides: Partial<BundlePayload>, manifestOverrides: Partial<BundleManifest> = {}): Uint8Array {
  return encodeBundlePayload({ manifest: manifest(manifestOverrides), ...SOURCE, ...overrides });
}

export function signWith(payload: Uint8Array, ...signers: PrivateKey[]): Uint8Array {
  let bytes = payload;
  for (const key of signers) bytes = signBundle(bytes, key);
  return bytes;
}

/** A bundle signed by the first two roots (meets 2-of-3). */
export function signedBundle(roots: Roots, overrides: Partial<BundleManifest> = {}): Uint8Array {
  return signWith(buildPayload(overrides), roots.keys[0].key, roots.keys[1].key);
}

/** Index of the first occurrence of `needle` in `bytes`. */
export function indexOf(bytes: Uint8Array, needle: Uint8Array | string): number {
  const n = typeof needle === 'string' ? Buffer.from(needle, 'utf8') : needle;
  const i = Buffer.from(bytes).indexOf(n);
  if (i < 0) throw new Error('needle not found');
  return i;
}

export function flipByte(bytes: Uint8Array, at: number): Uint8Array {
  const copy = Uint8Array.from(bytes);
  copy[at]! ^= 0x01;
  return copy;
}
