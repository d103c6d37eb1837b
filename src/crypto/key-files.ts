// Key files on disk. A private key file is created with mode 0600 in the same open() call
// (never chmod'ed afterwards, which would leave a window where it is readable), and a
// private key file that the group or others can read is refused.
import { closeSync, fstatSync, openSync, readFileSync, writeSync } from 'node:fs';
import { CryptoError } from './errors.js';
import { type PrivateKey, type PublicKey, privateKeyFromPem, privateKeyToPem, publicKeyFromPem, publicKeyToPem } from './keys.js';

const PRIVATE_KEY_MODE = 0o600;
const PUBLIC_KEY_MODE = 0o644;
const GROUP_OR_WORLD = 0o077;
/** A PEM key is well under 1 KiB; anything much larger is not a key file. */
const MAX_KEY_FILE_BYTES = 16 * 1024;

export function writePrivateKeyFile(path: string, key: PrivateKey): void {
  writeNewFile(path, privateKeyToPem(key), PRIVATE_KEY_MODE);
}

export function writePublicKeyFile(path: string, key: PublicKey): void {
  writeNewFile(path, publicKeyToPem(key), PUBLIC_KEY_MODE);
}

/** Reads a PKCS#8 PEM private key, refusing files readable by the group or others. */
export function readPrivateKeyFile(path: string): PrivateKey {
  const fd = openKeyFile(path);
  try {
    const { mode } = fstatSync(fd);
    if ((mode & GROUP_OR_WORLD) !== 0) {
      throw new CryptoError(
        'KEY_FILE_PERMISSIONS',
        `private key file ${path} has mode ${(mode & 0o777).toString(8).padStart(4, '0')}; it must not be accessible by group or others (chmod 600)`,
      );
    }
    return privateKeyFromPem(readBounded(fd, path));
  } finally {
    closeSync(fd);
  }
}

/** Reads an SPKI PEM public key. */
export function readPublicKeyFile(path: string): PublicKey {
  const fd = openKeyFile(path);
  try {
    return publicKeyFromPem(readBounded(fd, path));
  } finally {
    closeSync(fd);
  }
}

function writeNewFile(path: string, text: string, mode: number): void {
  let fd: number;
  try {
    fd = openSync(path, 'wx', mode);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw new CryptoError('KEY_FILE_EXISTS', `${path} already exists; refusing to overwrite a key`);
    throw new CryptoError('KEY_FILE_UNWRITABLE', `cannot create ${path}: ${code ?? String(err)}`);
  }
  try {
    writeSync(fd, text);
  } finally {
    closeSync(fd);
  }
}

function openKeyFile(path: string): number {
  try {
    return openSync(path, 'r');
  } catch (err) {
    throw new CryptoError('KEY_FILE_UNREADABLE', `cannot open ${path}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function readBounded(fd: number, path: string): string {
  if (fstatSync(fd).size > MAX_KEY_FILE_BYTES) {
    throw new CryptoError('KEY_INVALID', `${path} is larger than ${MAX_KEY_FILE_BYTES} bytes; not a key file`);
  }
  return readFileSync(fd, 'utf8');
}
