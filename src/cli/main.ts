// The `ztedge` command: dispatches to one command group per subcommand.
import { AGENT_VERSION } from '../version.js';
import { type CliIo, type CommandGroup, UsageError } from './command.js';

export const VERSION = AGENT_VERSION;

/** Command groups by name. Each group lives in its own module under src/cli/. */
const COMMANDS: Record<string, () => Promise<CommandGroup>> = {
  approve: async () => (await import('./approve.js')).approveCommand,
  bundle: async () => (await import('./bundle.js')).bundleCommand,
  cmd: async () => (await import('./cmd.js')).cmdCommand,
  collector: async () => (await import('./collector.js')).collectorCommand,
  envelope: async () => (await import('./envelope.js')).envelopeCommand,
  keygen: async () => (await import('./keys.js')).keygenCommand,
  policy: async () => (await import('./policy.js')).policyCommand,
  run: async () => (await import('./run.js')).runCommand,
};

async function topUsage(): Promise<string> {
  const names = Object.keys(COMMANDS).sort();
  const groups = await Promise.all(names.map((name) => COMMANDS[name]!()));
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
    'Run `ztedge <command> --help` for the options of a command.',
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
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    io.stdout(await topUsage());
    return name === undefined ? 2 : 0;
  }
  if (name === '--version' || name === 'version') {
    io.stdout(VERSION);
    return 0;
  }
  const load = COMMANDS[name];
  if (load === undefined) {
    io.stderr(`ztedge: unknown command '${name}'\n\n${await topUsage()}`);
    return 2;
  }
  const group = await load();
  if (rest[0] === '--help' || rest[0] === '-h') {
    io.stdout(group.usage);
    return 0;
  }
  try {
    return await group.run(rest, io);
  } catch (err) {
    if (err instanceof UsageError) {
      io.stderr(`ztedge ${name}: ${err.message}\n\n${group.usage}`);
      return 2;
    }
    throw err;
  }
}
