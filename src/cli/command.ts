// How a `ztedge` command is declared: a group (`bundle`, `policy`, …) of sub-commands, or a group
// that is one command (`keygen`, `run`). Each command names every option it takes; the arguments
// are parsed strictly (node:util parseArgs, strict): an unknown or misspelled option, a missing
// value, a repeated single-valued option or a stray argument is a usage error (exit 2) that names
// it, suggests the closest known option, and prints that command's usage. `--help` (or `-h`) at
// any level prints the usage of that level.
import { parseArgs as parseNodeArgs } from 'node:util';
import { ZtedgeError } from '../errors.js';

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Reads all of standard input (used when a file argument is `-`). */
  readStdin: () => Promise<Buffer>;
}

export interface CommandGroup {
  readonly name: string;
  /** One line shown by `ztedge --help`. */
  readonly summary: string;
  /** Usage text shown by `ztedge <group> --help`. */
  readonly usage: string;
  /** Its sub-commands; a one-command group holds itself. */
  readonly commands: readonly CommandSpec[];
  /** Runs the group with the arguments after its name; returns the exit code. Throws ZtedgeError. */
  run: (args: string[], io: CliIo) => Promise<number>;
}

export type UsageErrorCode = 'USAGE';

/** Wrong command-line usage: printed with the usage of the command concerned, exit code 2. */
export class UsageError extends ZtedgeError<UsageErrorCode> {
  /** `ztedge bundle build`: set by the command that parsed the arguments. */
  command: string | undefined;
  /** The usage text to print after the message. */
  usage: string | undefined;

  constructor(message: string) {
    super('USAGE', message);
  }
}

export type CliErrorCode =
  | 'RESULT_TIMEOUT'
  | 'FILE_NOT_FOUND'
  | 'FILE_UNREADABLE'
  | 'FILE_IS_DIRECTORY'
  | 'FILE_TOO_LARGE'
  | 'POLICY_NONE'
  | 'PUSH_NO_OUTCOME'
  | 'PUSH_REFUSED'
  | 'APPROVAL_NO_ANSWER';

/** A command's own failure (no result in time, an unreadable input file): exit code 1. */
export class CliError extends ZtedgeError<CliErrorCode> {}

export type OptionSpec = { type: 'string'; multiple?: boolean } | { type: 'boolean' };
export type OptionSpecs = Readonly<Record<string, OptionSpec>>;

export interface ParsedArgs {
  positionals: string[];
  /** Option values in the order given; a boolean option holds 'true'. */
  flags: Map<string, string[]>;
}

export interface CommandSpec {
  /** The sub-command's name; for a one-command group, the group's name. */
  readonly name: string;
  readonly summary: string;
  /** Usage text (synopsis and description), printed for `--help` and after a usage error. */
  readonly usage: string;
  readonly options: OptionSpecs;
  /** How many positional arguments the command takes (default none). */
  readonly positionals?: { readonly min: number; readonly max: number; readonly name: string };
  /** Exit codes for error codes this command treats differently from the default (see exitCodeOf). */
  readonly exitCodes?: Readonly<Record<string, number>>;
  run(parsed: ParsedArgs, io: CliIo): Promise<number> | number;
}

export interface GroupSpec {
  readonly name: string;
  readonly summary: string;
  /** Text between the command list and the footer (e.g. shared options), optional. */
  readonly footer?: string;
  readonly commands: readonly CommandSpec[];
}

const HELP_FLAGS = new Set(['--help', '-h']);

/** A group of sub-commands: `ztedge <group> <sub> [options]`. */
export function defineGroup(spec: GroupSpec): CommandGroup {
  const byName = new Map(spec.commands.map((c) => [c.name, c]));
  const width = Math.max(...spec.commands.map((c) => c.name.length));
  const usage = [
    `Usage: ztedge ${spec.name} <command> [options]`,
    '',
    'Commands:',
    ...spec.commands.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    `Run \`ztedge ${spec.name} <command> --help\` for the options of a command.`,
    ...(spec.footer === undefined ? [] : ['', spec.footer]),
  ].join('\n');
  return {
    name: spec.name,
    summary: spec.summary,
    usage,
    commands: spec.commands,
    run: async (args, io) => {
      const [sub, ...rest] = args;
      if (sub === undefined) throw withUsage(new UsageError('missing command'), `ztedge ${spec.name}`, usage);
      if (HELP_FLAGS.has(sub) || sub === 'help') {
        const topic = sub === 'help' ? rest[0] : undefined;
        const text = topic === undefined ? usage : byName.get(topic)?.usage;
        if (text === undefined) throw withUsage(unknownCommand(topic!, [...byName.keys()]), `ztedge ${spec.name}`, usage);
        io.stdout(text);
        return 0;
      }
      const command = byName.get(sub);
      if (command === undefined) throw withUsage(unknownCommand(sub, [...byName.keys()]), `ztedge ${spec.name}`, usage);
      return runCommand(command, `ztedge ${spec.name} ${sub}`, rest, io);
    },
  };
}

/** A group that is a single command: `ztedge keygen [options]`. */
export function defineCommand(spec: CommandSpec): CommandGroup {
  return {
    name: spec.name,
    summary: spec.summary,
    usage: spec.usage,
    commands: [spec],
    run: (args, io) => runCommand(spec, `ztedge ${spec.name}`, args, io),
  };
}

/** The command an error came from, for its declared exit codes. */
const raisedBy = new WeakMap<ZtedgeError, CommandSpec>();

async function runCommand(command: CommandSpec, label: string, args: string[], io: CliIo): Promise<number> {
  const end = args.indexOf('--');
  if ((end === -1 ? args : args.slice(0, end)).some((a) => HELP_FLAGS.has(a))) {
    io.stdout(command.usage);
    return 0;
  }
  let parsed: ParsedArgs;
  try {
    parsed = parseStrict(args, command.options, command.positionals);
  } catch (err) {
    if (err instanceof UsageError) throw withUsage(err, label, command.usage);
    throw err;
  }
  try {
    return await command.run(parsed, io);
  } catch (err) {
    if (err instanceof UsageError) throw withUsage(err, label, command.usage);
    if (err instanceof ZtedgeError) raisedBy.set(err, command);
    throw err;
  }
}

function withUsage(err: UsageError, command: string, usage: string): UsageError {
  err.command ??= command;
  err.usage ??= usage;
  return err;
}

function unknownCommand(name: string, known: string[]): UsageError {
  const near = closest(name, known);
  return new UsageError(`unknown command '${name}' ${near === undefined ? `(the commands are ${known.join(', ')})` : `(did you mean '${near}'?)`}`);
}

/**
 * Parses `args` against the declared options: node:util parseArgs in strict mode, after a pass
 * over its tokens that turns each kind of mistake into a message naming the option.
 */
export function parseStrict(
  args: string[],
  options: OptionSpecs,
  positionals: CommandSpec['positionals'] = { min: 0, max: 0, name: 'argument' },
): ParsedArgs {
  const known = Object.keys(options);
  const { tokens } = parseNodeArgs({ args, options: { ...options }, strict: false, allowPositionals: true, tokens: true });
  const counts = new Map<string, number>();
  for (const token of tokens) {
    if (token.kind !== 'option') continue;
    const spec = options[token.name];
    if (spec === undefined || token.rawName !== `--${token.name}`) {
      const near = closest(token.name, known);
      const hint = near !== undefined ? `did you mean --${near}?` : known.length === 0 ? 'this command takes no options' : `this command takes ${known.map((k) => `--${k}`).join(', ')}`;
      throw new UsageError(`unknown option ${token.rawName} (${hint})`);
    }
    if (spec.type === 'string') {
      if (token.value === undefined) throw new UsageError(`option --${token.name} needs a value`);
      // As parseArgs' strict mode: `--key --out x` is a forgotten value, not a key named "--out".
      if (!token.inlineValue && token.value.length > 1 && token.value.startsWith('-')) {
        throw new UsageError(`option --${token.name} needs a value, not '${token.value}' (write --${token.name}=${token.value} if that is the value)`);
      }
    } else if (token.value !== undefined) {
      throw new UsageError(`option --${token.name} takes no value`);
    }
    const count = (counts.get(token.name) ?? 0) + 1;
    counts.set(token.name, count);
    if (count > 1 && !(spec.type === 'string' && spec.multiple === true)) throw new UsageError(`option --${token.name} is given more than once`);
  }
  const { values, positionals: rest } = parseNodeArgs({ args, options: { ...options }, strict: true, allowPositionals: true });
  if (rest.length < positionals.min) throw new UsageError(positionals.min === 1 && positionals.max === 1 ? `expected ${positionals.name}` : `expected at least ${positionals.min} ${positionals.name}`);
  if (rest.length > positionals.max) throw new UsageError(`unexpected argument '${rest[positionals.max]}'`);
  const flags = new Map<string, string[]>();
  for (const [name, value] of Object.entries(values)) {
    if (value === undefined) continue;
    flags.set(name, Array.isArray(value) ? value.map(String) : [String(value)]);
  }
  return { positionals: rest, flags };
}

/** The known name nearest to `name` (edit distance, swaps counted once), if any is near enough. */
export function closest(name: string, known: readonly string[]): string | undefined {
  let best: string | undefined;
  let bestDistance = Infinity;
  for (const candidate of known) {
    const d = editDistance(name, candidate);
    if (d < bestDistance) {
      best = candidate;
      bestDistance = d;
    }
  }
  // A prefix (`--thresh`) or a few typos; beyond that a suggestion would be noise.
  if (best !== undefined && (best.startsWith(name) || bestDistance <= Math.max(2, Math.floor(name.length / 3)))) return best;
  return undefined;
}

function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i]![j] = Math.min(d[i - 1]![j]! + 1, d[i]![j - 1]! + 1, d[i - 1]![j - 1]! + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i]![j] = Math.min(d[i]![j]!, d[i - 2]![j - 2]! + 1);
    }
  }
  return d[a.length]![b.length]!;
}

export function flag(parsed: ParsedArgs, name: string): string | undefined {
  const list = parsed.flags.get(name);
  return list === undefined ? undefined : list[list.length - 1];
}

export function requireFlag(parsed: ParsedArgs, name: string): string {
  const value = flag(parsed, name);
  if (value === undefined) throw new UsageError(`missing required option --${name}`);
  return value;
}

export function flagList(parsed: ParsedArgs, name: string): string[] {
  return parsed.flags.get(name) ?? [];
}

export function hasFlag(parsed: ParsedArgs, name: string): boolean {
  return parsed.flags.has(name);
}

/**
 * The exit code for an error, in one place: 2 when the invocation itself is refused (usage, an
 * invalid configuration), 1 when the operation ran and failed or was refused; a command may
 * declare other codes for some errors (`run` exits 2 on a refused key file: part of its
 * configuration).
 */
export function exitCodeOf(err: ZtedgeError): number {
  const own = raisedBy.get(err)?.exitCodes?.[err.code];
  if (own !== undefined) return own;
  if (err instanceof UsageError || err.code === 'CONFIG_INVALID') return 2;
  return 1;
}

/** `CODE: message` (and the usage after a usage error) on standard error; returns the exit code. */
export function reportError(err: ZtedgeError, io: CliIo): number {
  if (err instanceof UsageError) {
    io.stderr(`${err.command ?? 'ztedge'}: ${err.message}${err.usage === undefined ? '' : `\n\n${err.usage}`}`);
    return exitCodeOf(err);
  }
  io.stderr([`${err.code}: ${err.message}`, ...err.details().map((line) => `  ${line}`)].join('\n'));
  return exitCodeOf(err);
}

type OptionValue<S extends OptionSpec> = S extends { type: 'boolean' } ? boolean | undefined : S extends { multiple: true } ? string[] | undefined : string | undefined;

/** The parsed options as one typed record, shaped like node:util parseArgs' `values`. */
export function optionValues<O extends OptionSpecs>(parsed: ParsedArgs, options: O): { [K in keyof O]: OptionValue<O[K]> } {
  const out: Record<string, unknown> = {};
  for (const [name, spec] of Object.entries(options)) {
    const list = parsed.flags.get(name);
    if (list === undefined) continue;
    out[name] = spec.type === 'boolean' ? true : 'multiple' in spec && spec.multiple === true ? [...list] : list[list.length - 1];
  }
  return out as { [K in keyof O]: OptionValue<O[K]> };
}
