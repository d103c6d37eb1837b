// The configuration as every command reads it: the file (if any), ZTEDGE_* variables over it,
// validated whole, with relative paths resolved against the file's directory (or the working
// directory when the configuration comes from the environment alone). `ztedge run`, `ztedge
// config check` and `ztedge bundle rollback --config` share it, so they see the same state
// directory and the same roots.
import fs from 'node:fs';
import path from 'node:path';
import { readPrivateKeyFile, readPublicKeyFile } from '../crypto/key-files.js';
import { ZtedgeError } from '../errors.js';
import { readAdminToken } from './admin-token.js';
import { type AgentConfig, ConfigError, type ConfigProblem, loadConfig } from './config.js';
import { CONFIG_OPTIONS } from './config-options.js';

export function readAgentConfig(file: string | undefined, env: Record<string, string | undefined>): AgentConfig {
  let text: string | undefined;
  if (file !== undefined) {
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch (err) {
      throw new ConfigError([{ option: 'config', message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }]);
    }
  }
  const config = loadConfig(text, env, file ?? 'environment');
  return resolvePaths(config, file === undefined ? process.cwd() : path.dirname(path.resolve(file)));
}

/** Every path option (as config-options.ts describes them) made absolute against `base`. */
export function resolvePaths(config: AgentConfig, base: string): AgentConfig {
  const resolved = structuredClone(config) as unknown as Record<string, unknown>;
  for (const option of CONFIG_OPTIONS) {
    if (option.type.kind !== 'path' && option.type.kind !== 'paths') continue;
    const keys = option.path.split('.');
    const parent = keys.slice(0, -1).reduce<Record<string, unknown> | undefined>((node, key) => node?.[key] as Record<string, unknown> | undefined, resolved);
    if (parent === undefined) continue; // an optional section left out (attestation)
    const leaf = keys.at(-1)!;
    const value = parent[leaf];
    if (typeof value === 'string') parent[leaf] = path.resolve(base, value);
    else if (Array.isArray(value)) parent[leaf] = value.map((p: string) => path.resolve(base, p));
  }
  return resolved as unknown as AgentConfig;
}

/**
 * What `ztedge run` would refuse about the files a valid configuration names: the device key
 * (readable, 0600, a private key), the root keys, the broker's password and TLS files, the admin
 * token file. Every problem is listed; none is fatal here.
 */
export function checkConfigFiles(config: AgentConfig): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const attempt = (option: string, read: () => unknown) => {
    try {
      read();
    } catch (err) {
      if (err instanceof ConfigError) problems.push(...err.problems);
      else if (err instanceof ZtedgeError) problems.push({ option, message: `${err.code}: ${err.message}` });
      else throw err;
    }
  };
  attempt('deviceKey', () => readPrivateKeyFile(config.deviceKey));
  config.roots.keys.forEach((file, i) => attempt(`roots.keys[${i}]`, () => readPublicKeyFile(file)));
  const { broker } = config;
  for (const [option, file] of [['broker.passwordFile', broker.passwordFile], ['broker.ca', broker.ca], ['broker.cert', broker.cert], ['broker.key', broker.key]] as const) {
    if (file !== undefined) attempt(option, () => readable(option, file));
  }
  if (config.http.adminTokenFile !== undefined) attempt('http.adminTokenFile', () => readAdminToken(config.http.adminTokenFile!));
  if (fs.existsSync(config.stateDir) && !fs.statSync(config.stateDir).isDirectory()) problems.push({ option: 'stateDir', message: `${config.stateDir} is not a directory` });
  return problems;
}

function readable(option: string, file: string): void {
  try {
    fs.accessSync(file, fs.constants.R_OK);
  } catch (err) {
    throw new ConfigError([{ option, message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }]);
  }
}
