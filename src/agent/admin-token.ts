// The admin token file (`http.adminTokenFile`): the secret that admin endpoints of the local API
// (`GET /v1/audit`, `GET /v1/approvals`) require as `Authorization: Bearer <token>`. Read once at start and refused,
// like a private key, when others can read it; a configured token that cannot be used stops the
// start instead of leaving the endpoints unprotected or silently off.
import fs from 'node:fs';
import { ConfigError } from './config.js';

const GROUP_OR_WORLD = 0o077;
const MAX_TOKEN_FILE_BYTES = 4096;
/** At least 128 bits of a random token written as hex or base64. */
const MIN_TOKEN_LENGTH = 24;

export function readAdminToken(file: string): Uint8Array {
  const refuse = (message: string): never => {
    throw new ConfigError([{ option: 'http.adminTokenFile', message }]);
  };
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    return refuse(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (!stat.isFile()) refuse(`${file} is not a regular file`);
  if ((stat.mode & GROUP_OR_WORLD) !== 0) {
    refuse(`${file} has mode ${(stat.mode & 0o777).toString(8).padStart(4, '0')}; it must not be accessible by group or others (chmod 600)`);
  }
  if (stat.size > MAX_TOKEN_FILE_BYTES) refuse(`${file} is larger than ${MAX_TOKEN_FILE_BYTES} bytes`);
  const token = fs.readFileSync(file, 'utf8').trim();
  if (!/^[\x21-\x7e]+$/.test(token)) refuse(`${file} must hold one token of printable characters without spaces`);
  if (token.length < MIN_TOKEN_LENGTH) refuse(`the token in ${file} is shorter than ${MIN_TOKEN_LENGTH} characters`);
  return Buffer.from(token, 'utf8');
}
