// The `ztedge` command: dispatches to one command group per subcommand, and maps every
// ZtedgeError a command raises to `CODE: message` and an exit code (command.ts, reportError).
import { ZtedgeError } from '../errors.js';
import { AGENT_VERSION } from '../version.js';
import { type CliIo, type CommandGroup, UsageError, closest, reportError } from './command.js';

export const VERSION = AGENT_VERSION;

/** Command groups by name. Each group lives in its own module under src/cli/. */
const COMMANDS: Record<string, () => Promise<CommandGroup>> = {
  approve: async () => (await import('./approve.js')).approveCommand,
  attest: async () => (await import('./attest.js')).attestCommand,
  audit: async () => (await import('./audit.js')).auditCommand,
  bundle: async () => (await import('./bundle.js')).bundleCommand,
  cmd: async () => (await import('./cmd.js')).cmdCommand,
  collector: async () => (await import('./collector.js')).collectorCommand,
  config: async () => (await import('./config.js')).configCommand,
  envelope: async () => (await import('./envelope.js')).envelopeCommand,
  keygen: async () => (await import('./keys.js')).keygenCommand,
  policy: async () => (await import('./policy.js')).policyCommand,
  run: async () => (await import('./run.js')).runCommand,
};

/** Every command group, by name. */
export async function commandGroups(): Promise<CommandGroup[]> {
  return Promise.all(Object.keys(COMMANDS).sort().map((name) => COMMANDS[name]!()));
}

async function topUsage(): Promise<string> {
  const names = Object.keys(COMMANDS).sort();
  const groups = await commandGroups();
  const width = Math.max(...names.map((n) => n.length));
  const lines = names.map((name, i) => `  ${name.padEnd(width)}  ${groups[i]!.summary}`);
  return [
    `ztedge ${VERSION} — zero-trust enforcement agent for edge devices`,
    '',
    'Usage: ztedge <command> [options]',
    '',
    'Commands:',
    ...lines,
    '',
    'Run `ztedge <command> --help` (or `ztedge <command> <sub-command> --help`) for the options of a command.',
    'Exit status: 0 done; 1 the operation failed or was refused (CODE: message on standard error);',
    '2 the invocation was refused (unknown or missing option, invalid configuration).',
  ].join('\n');
}

export const defaultIo: CliIo = {
  stdout: (text) => process.stdout.write(text.endsWith('\n') ? text : text + '\n'),
  stderr: (text) => process.stderr.write(text.endsWith('\n') ? text : text + '\n'),
  readStdin: async () => {
    const chunks: Buffer[] = [];
    for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
    return Buffer.concat(chunks);
  },
};

export async function main(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined || name === '--help' || name === '-h') {
    io.stdout(await topUsage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === 'version') {
    if (rest.length === 0) io.stdout(VERSION);
    else if (rest.length === 1 && rest[0] === '--verbose') io.stdout(await (await import('./program.js')).versionReport(VERSION));
    else {
      io.stderr(`ztedge --version: unexpected argument '${rest[0]}' (only --verbose is accepted)`);
      return 2;
    }
    return 0;
  }
  try {
    // `ztedge help bundle build` is `ztedge bundle build --help`.
    if (name === 'help') {
      if (rest.length === 0) {
        io.stdout(await topUsage());
        return 0;
      }
      return await (await group(rest[0]!)).run([...rest.slice(1), '--help'], io);
    }
    return await (await group(name)).run(rest, io);
  } catch (err) {
    if (err instanceof UsageError && err.usage === undefined) err.usage = await topUsage();
    if (err instanceof ZtedgeError) return reportError(err, io);
    throw err;
  }
}

async function group(name: string): Promise<CommandGroup> {
  const load = COMMANDS[name];
  if (load === undefined) {
    const near = closest(name, Object.keys(COMMANDS));
    throw new UsageError(`unknown command '${name}' ${near === undefined ? `(the commands are ${Object.keys(COMMANDS).join(', ')})` : `(did you mean '${near}'?)`}`);
  }
  return load();
}
