// Shared shape of a CLI command group and small argument helpers.

export interface CliIo {
  stdout: (text: string) => void;
  stderr: (text: string) => void;
  /** Reads all of standard input (used when a file argument is `-`). */
  readStdin: () => Promise<Buffer>;
}

export interface CommandGroup {
  /** One line shown by `ztedge --help`. */
  summary: string;
  /** Usage text shown by `ztedge <group> --help`. */
  usage: string;
  /** Runs the group with the arguments after its name; returns the exit code. */
  run: (args: string[], io: CliIo) => Promise<number>;
}

/** Raised for wrong command-line usage; printed with the usage text, exit code 2. */
export class UsageError extends Error {
  override name = 'UsageError';
}

export interface ParsedArgs {
  positionals: string[];
  /** Flag values; repeated flags keep every value in order. Boolean flags hold 'true'. */
  flags: Map<string, string[]>;
}

/**
 * Parses `--name value`, `--name=value` and boolean `--name` flags.
 * `booleans` lists the flags that take no value.
 */
export function parseArgs(args: string[], booleans: readonly string[] = []): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Map<string, string[]>();
  const add = (name: string, value: string) => {
    const list = flags.get(name) ?? [];
    list.push(value);
    flags.set(name, list);
  };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i]!;
    if (arg === '--') {
      positionals.push(...args.slice(i + 1));
      break;
    }
    if (arg.startsWith('--') && arg.length > 2) {
      const eq = arg.indexOf('=');
      const name = eq === -1 ? arg.slice(2) : arg.slice(2, eq);
      if (eq !== -1) add(name, arg.slice(eq + 1));
      else if (booleans.includes(name)) add(name, 'true');
      else {
        const value = args[i + 1];
        if (value === undefined) throw new UsageError(`option --${name} needs a value`);
        add(name, value);
        i++;
      }
    } else {
      positionals.push(arg);
    }
  }
  return { positionals, flags };
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
