// Shared pieces of the audit tests: a state database in a temp dir, device keys, and the
// RFC 9162 tree computed the slow way over a log's record hashes.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStateDb } from '../../src/store/state-db.js';
import { generatePrivateKey, type PrivateKey } from '../../src/crypto/keys.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../../src/crypto/key-files.js';
import { leafHash, nodeHash } from '../../src/audit/merkle.js';
import { sha256 } from '../../src/crypto/hash.js';

export const T0 = 1_760_000_000_000;

export function tempStateDir(prefix = 'ztedge-audit-'): { dir: string; dbPath: string; open: () => ReturnType<typeof openStateDb>; remove: () => void } {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  const dbPath = path.join(dir, 'state.db');
  return { dir, dbPath, open: () => openStateDb(dbPath), remove: () => fs.rmSync(dir, { recursive: true, force: true }) };
}

export function deviceKey(type: 'ed25519' | 'p256' = 'ed25519'): PrivateKey {
  return generatePrivateKey(type);
}

/** Writes `name.key` (0600) and `name.pub` into `dir`; returns their paths. */
export function writeKeyFiles(dir: string, name: string, key: PrivateKey): { privatePath: string; publicPath: string } {
  const privatePath = path.join(dir, `${name}.key`);
  const publicPath = path.join(dir, `${name}.pub`);
  writePrivateKeyFile(privatePath, key);
  writePublicKeyFile(publicPath, key.publicKey);
  return { privatePath, publicPath };
}

export const body = (s: string) => new TextEncoder().encode(s);

/** MTH over leaves whose data are `hashes` (the record hashes), straight from RFC 9162. */
export function naiveRoot(hashes: readonly Uint8Array[]): Uint8Array {
  if (hashes.length === 0) return sha256(new Uint8Array(0));
  if (hashes.length === 1) return leafHash(hashes[0]!);
  let k = 1;
  while (k * 2 < hashes.length) k *= 2;
  return nodeHash(naiveRoot(hashes.slice(0, k)), naiveRoot(hashes.slice(k)));
}
