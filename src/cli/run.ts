// `ztedge run`: the agent in the foreground, logging JSON lines to standard output, until SIGINT
// or SIGTERM. The configuration is checked whole before anything starts.
import { readAgentConfig } from '../agent/config-file.js';
import { AgentError } from '../agent/errors.js';
import { type AgentLogger, Agent, jsonLogger } from '../agent/runtime.js';
import { ZtedgeError } from '../errors.js';
import { type CliIo, defineCommand, flag } from './command.js';
import { preferStateDirForAddons } from './native-addon.js';
import { reportStartTiming } from './start-timing.js';

const USAGE = `Usage: ztedge run [--config FILE]

Runs the agent until SIGINT or SIGTERM, then stops cleanly (exit 0). FILE is YAML or JSON;
ZTEDGE_* environment variables override its options (ZTEDGE_BROKER_URL sets broker.url, ...).
Without --config the file named by ZTEDGE_CONFIG is read, and without that the configuration
comes from the environment alone. Relative paths in FILE are relative to FILE's directory.
SIGHUP is ignored (logged): the configuration is read once, at start. One agent runs on a
state directory at a time: a second one exits with STATE_DIR_LOCKED before touching it.
Exit status: 0 after a clean stop, 2 when the configuration or a key file is refused (every
configuration problem is listed), 1 when the agent fails to start or stop.`;

export const runCommand = defineCommand({
  name: 'run',
  summary: 'run the agent',
  usage: USAGE,
  options: { config: { type: 'string' } },
  // A key file the configuration names is part of the configuration.
  exitCodes: { KEY_FILE_PERMISSIONS: 2, KEY_FILE_UNREADABLE: 2, KEY_INVALID: 2, KEY_TYPE_UNSUPPORTED: 2 },
  run: async (parsed, io) => {
    performance.mark('ztedge:command-loaded');
    const config = readAgentConfig(flag(parsed, 'config') ?? process.env.ZTEDGE_CONFIG, process.env);
    performance.mark('ztedge:config-read');
    // The single executable writes its SQLite addon under the agent's own state directory.
    preferStateDirForAddons(config.stateDir);
    const logger = jsonLogger(io.stdout);
    const agent = new Agent({ config, logger });
    performance.mark('ztedge:agent-constructed');
    const signals = untilSignal(io, logger);
    try {
      await agent.start();
    } catch (err) {
      signals.dispose();
      throw asAgentError(err, 'AGENT_START_FAILED', 'agent failed to start');
    }
    reportStartTiming();
    const signal = await signals.first;
    try {
      await agent.stop();
    } catch (err) {
      throw asAgentError(err, 'AGENT_STOP_FAILED', `agent failed to stop cleanly after ${signal}`);
    } finally {
      signals.dispose();
    }
    return 0;
  },
});

/** A typed error passes through; anything else (a port in use, ...) is reported as a start or stop failure. */
function asAgentError(err: unknown, code: 'AGENT_START_FAILED' | 'AGENT_STOP_FAILED', what: string): unknown {
  if (err instanceof ZtedgeError) return err;
  const detail = (err as NodeJS.ErrnoException | null)?.code;
  return new AgentError(code, `${what}: ${detail === undefined ? '' : `${detail}: `}${(err as Error).message}`, { cause: err });
}

/**
 * The first SIGINT or SIGTERM. A second one while stopping ends the process at once (exit 130),
 * for an operator who will not wait for commands in progress. SIGHUP (which would otherwise end
 * the process: a closed terminal, or a reload sent by habit) is ignored with a log line until the
 * agent can reload its configuration.
 */
function untilSignal(io: CliIo, logger: AgentLogger): { first: Promise<NodeJS.Signals>; dispose: () => void } {
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
  const onHangup = () => logger.warn('SIGHUP ignored: the agent does not reload its configuration; restart it to apply changes');
  process.on('SIGINT', onSignal);
  process.on('SIGTERM', onSignal);
  process.on('SIGHUP', onHangup);
  return {
    first,
    dispose: () => {
      clearInterval(keepAlive);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      process.off('SIGHUP', onHangup);
    },
  };
}
