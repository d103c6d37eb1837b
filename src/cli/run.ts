// `ztedge run`: the agent in the foreground, logging JSON lines to standard output, until SIGINT
// or SIGTERM. The configuration is checked whole before anything starts.
import fs from 'node:fs';
import path from 'node:path';
import { type AgentConfig, ConfigError, loadConfig } from '../agent/config.js';
import { Agent, jsonLogger } from '../agent/runtime.js';
import { CryptoError } from '../crypto/errors.js';
import { type CliIo, type CommandGroup, UsageError, flag, parseArgs } from './command.js';
import { preferStateDirForAddons } from './native-addon.js';

const USAGE = `Usage: ztedge run [--config FILE]

Runs the agent until SIGINT or SIGTERM, then stops cleanly (exit 0). FILE is YAML or JSON;
ZTEDGE_* environment variables override its options (ZTEDGE_BROKER_URL sets broker.url, ...).
Without --config the file named by ZTEDGE_CONFIG is read, and without that the configuration
comes from the environment alone. Relative paths in FILE are relative to FILE's directory.
Exit status: 0 after a clean stop, 2 when the configuration or a key file is refused (every
configuration problem is listed), 1 when the agent fails to start or stop.`;

export const runCommand: CommandGroup = {
  summary: 'run the agent',
  usage: USAGE,
  run: async (args, io) => {
    const parsed = parseArgs(args);
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    let agent: Agent;
    try {
      const config = readAgentConfig(flag(parsed, 'config') ?? process.env.ZTEDGE_CONFIG, process.env);
      // The single executable writes its SQLite addon under the agent's own state directory.
      preferStateDirForAddons(config.stateDir);
      agent = new Agent({ config, logger: jsonLogger(io.stdout) });
    } catch (err) {
      io.stderr(`${codeOf(err)}: ${(err as Error).message}`);
      return err instanceof ConfigError || err instanceof CryptoError ? 2 : 1;
    }
    const signals = untilSignal(io);
    try {
      await agent.start();
    } catch (err) {
      signals.dispose();
      io.stderr(`${codeOf(err)}: agent failed to start: ${(err as Error).message}`);
      return err instanceof ConfigError ? 2 : 1;
    }
    const signal = await signals.first;
    try {
      await agent.stop();
    } catch (err) {
      io.stderr(`${codeOf(err)}: agent failed to stop cleanly after ${signal}: ${(err as Error).message}`);
      return 1;
    } finally {
      signals.dispose();
    }
    return 0;
  },
};

/** Reads the file (if any), overlays ZTEDGE_* variables, validates, resolves relative paths. */
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

function resolvePaths(config: AgentConfig, base: string): AgentConfig {
  const at = (p: string) => path.resolve(base, p);
  const maybe = (p: string | undefined) => (p === undefined ? undefined : at(p));
  return {
    ...config,
    stateDir: at(config.stateDir),
    deviceKey: at(config.deviceKey),
    roots: { ...config.roots, keys: config.roots.keys.map(at) },
    broker: { ...config.broker, passwordFile: maybe(config.broker.passwordFile), ca: maybe(config.broker.ca), cert: maybe(config.broker.cert), key: maybe(config.broker.key) },
    http: { ...config.http, adminTokenFile: maybe(config.http.adminTokenFile) },
    bundleFile: maybe(config.bundleFile),
    ...(config.attestation === undefined
      ? {}
      : { attestation: { ...config.attestation, measureRoot: at(config.attestation.measureRoot), profiles: maybe(config.attestation.profiles) } }),
  };
}

/**
 * The first SIGINT or SIGTERM. A second one while stopping ends the process at once (exit 130),
 * for an operator who will not wait for commands in progress.
 */
function untilSignal(io: CliIo): { first: Promise<NodeJS.Signals>; dispose: () => void } {
  // Signal listeners do not keep the event loop alive; an agent with neither broker nor API would exit.
  const keepAlive = setInterval(() => {}, 1 << 30);
  let received: NodeJS.Signals | null = null;
  let resolve!: (signal: NodeJS.Signals) => void;
  const first = new Promise<NodeJS.Signals>((r) => (resolve = r));
  const onSignal = (signal: NodeJS.Signals) => {
    if (received !== null) {
      io.stderr(`${signal} again: exiting without waiting for the agent to stop`);
      process.exit(130);
    }
    received = signal;
    clearInterval(keepAlive);
    resolve(signal);
  };
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  return {
    first,
    dispose: () => {
      clearInterval(keepAlive);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
    },
  };
}

function codeOf(err: unknown): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : 'AGENT_ERROR';
}
