// `ztedge keygen`: a new signing key pair on disk (PREFIX.key PKCS#8, mode 0600; PREFIX.pub SPKI).
import { existsSync } from 'node:fs';
import { isKeyType } from '../crypto/algorithms.js';
import { toHex } from '../crypto/bytes.js';
import { CryptoError } from '../crypto/errors.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../crypto/key-files.js';
import { generatePrivateKey } from '../crypto/keys.js';
import { UsageError, defineCommand, requireFlag } from './command.js';

const USAGE = `Usage: ztedge keygen --alg ed25519|p256 --out PREFIX

Writes PREFIX.key (PKCS#8 PEM, mode 0600) and PREFIX.pub (SPKI PEM) and prints the key id:
hex of the first 16 bytes of SHA-256 over the raw public key. Existing files are never
overwritten.`;

export const keygenCommand = defineCommand({
  name: 'keygen',
  summary: 'generate an Ed25519 or P-256 signing key pair',
  usage: USAGE,
  options: { alg: { type: 'string' }, out: { type: 'string' } },
  run: (parsed, io) => {
    const alg = requireFlag(parsed, 'alg').toLowerCase();
    if (!isKeyType(alg)) throw new UsageError(`--alg must be ed25519 or p256, not '${alg}'`);
    const prefix = requireFlag(parsed, 'out');
    const keyPath = `${prefix}.key`;
    const pubPath = `${prefix}.pub`;
    // Checked up front so that a clash on .pub does not leave a fresh, orphaned .key behind.
    for (const path of [keyPath, pubPath]) {
      if (existsSync(path)) throw new CryptoError('KEY_FILE_EXISTS', `${path} already exists; refusing to overwrite a key`);
    }
    const key = generatePrivateKey(alg);
    writePrivateKeyFile(keyPath, key);
    writePublicKeyFile(pubPath, key.publicKey);
    io.stdout(toHex(key.publicKey.kid));
    return 0;
  },
});
