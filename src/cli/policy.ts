// `ztedge policy`: evaluate a request, run policy tests, and check or format Cedar policy files.
// Policies load exactly as a bundle's do (bundle/content.ts): named by their `@id`, ids unique.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fsyncDirectory } from '../bundle/atomic-file.js';
import { compileEntities, compilePolicies } from '../bundle/content.js';
import { BundleError } from '../bundle/errors.js';
import { readBundleFile } from '../bundle/file-source.js';
import { DEFAULT_BUNDLE_MAX_BYTES } from '../bundle/format.js';
import { readUnverifiedBundle } from '../bundle/sign.js';
import {
  Entities,
  EntitiesError,
  JsonError,
  type JsonValue,
  PolicyParseError,
  type PolicySet,
  RequestError,
  enforce,
  extensionArityProblems,
  formatDiagnostic,
  idsFromAnnotations,
  parseEntityUid,
  parseJson,
  parsePolicies,
  requestFromJson,
} from '../policy/index.js';
import type { AuthzRequest, PolicyAst } from '../policy/index.js';
import { formatPolicyText } from '../policy/format-text.js';
import { PolicyTestsError, runPolicyTests, testCasesFromJson } from '../policy/policy-tests.js';
import { ZtedgeError } from '../errors.js';
import { type CliIo, type ParsedArgs, UsageError, defineGroup, flag, requireFlag } from './command.js';
import { unifiedDiff } from './text-diff.js';

const EVAL_USAGE = `Usage: ztedge policy eval SOURCE REQUEST [--no-strict] [--fail-on-deny]
       ztedge policy eval --policies PATH --entities FILE REQUEST [--no-strict] [--fail-on-deny]

Decides one request; prints {decision, reasons, determining, errors} as JSON. SOURCE is a
bundle source directory (*.cedar, entities.json) or a built bundle file (its signatures are not
checked: \`ztedge bundle verify\` does that). PATH is a .cedar file or a directory of them (read
in file-name order). REQUEST is --request FILE (JSON {principal, action, resource, context}; -
for stdin) or --principal UID --action UID --resource UID [--context JSON], UIDs written as in
policies, e.g. 'User::"alice"'. Policies are named by their @id (policyN where there is none).
Strict mode (the agent's default) denies when a matching forbid fails to evaluate; --no-strict
gives Cedar's plain decision. --fail-on-deny exits 3 when the decision is deny (as \`ztedge cmd
send\` does).`;

const TEST_USAGE = `Usage: ztedge policy test DIR
       ztedge policy test --policies PATH --entities FILE --tests FILE

Runs test cases (tests.json: [{name, principal, action, resource, context?, decision, reasons?,
errors?}]) as the agent decides them; DIR is a bundle source directory (*.cedar, entities.json,
tests.json). reasons and errors name policies by id. Prints each failure, then "N passed, N
failed"; exits 1 if any failed.`;

const FMT_USAGE = `Usage: ztedge policy fmt [--write | --diff] PATH...
       ztedge policy fmt --check [--diff] [--allow-arity-errors] PATH...

Formats Cedar policy files (a directory means its *.cedar files), keeping comments. By default
prints the formatted text; --write rewrites each file that changes, in place and atomically;
--diff prints a unified diff of what would change. --check changes nothing: it reports every
problem as file:line:col (parse errors; policy ids used twice, the files given read as one
policy set; extension calls with the wrong number of arguments, which Cedar loads but which fail
whenever evaluated) and names every file whose formatting would change; exit 1 if there is any.
--allow-arity-errors reports those calls as warnings.`;

/** Policy, entity, request and test files are read whole; refuse anything absurdly large. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;
/** The exit code of a deny under --fail-on-deny, the one `cmd send` uses. */
const DENY_EXIT = 3;

/** A failure: `CODE: message`, then each problem (`details`); exit code 1. */
class CliFailure extends ZtedgeError {
  constructor(
    code: string,
    message: string,
    private readonly lines: readonly string[] = [],
  ) {
    super(code, message);
  }

  override details(): readonly string[] {
    return this.lines;
  }
}

const REQUEST_OPTIONS = {
  request: { type: 'string' },
  principal: { type: 'string' },
  action: { type: 'string' },
  resource: { type: 'string' },
  context: { type: 'string' },
} as const;

export const policyCommand = defineGroup({
  name: 'policy',
  summary: 'evaluate requests, run policy tests, check and format Cedar policies',
  commands: [
    {
      name: 'eval',
      summary: 'decide one request against a bundle source, a built bundle or policy files',
      usage: EVAL_USAGE,
      options: { policies: { type: 'string' }, entities: { type: 'string' }, ...REQUEST_OPTIONS, 'no-strict': { type: 'boolean' }, 'fail-on-deny': { type: 'boolean' } },
      positionals: { min: 0, max: 1, name: 'SOURCE' },
      run: failingWith(evalCommand),
    },
    {
      name: 'test',
      summary: "run a bundle source's test cases",
      usage: TEST_USAGE,
      options: { policies: { type: 'string' }, entities: { type: 'string' }, tests: { type: 'string' } },
      positionals: { min: 0, max: 1, name: 'DIR' },
      run: failingWith(testCommand),
    },
    {
      name: 'fmt',
      summary: 'format Cedar policy files (keeping comments), or check them',
      usage: FMT_USAGE,
      options: { check: { type: 'boolean' }, write: { type: 'boolean' }, diff: { type: 'boolean' }, 'allow-arity-errors': { type: 'boolean' } },
      positionals: { min: 1, max: Infinity, name: 'PATH' },
      run: failingWith(fmtCommand),
    },
  ],
});

/** Runs a command, reporting a bundle's located problems as one failure with every problem. */
function failingWith(command: (parsed: ParsedArgs, io: CliIo) => number | Promise<number>) {
  return async (parsed: ParsedArgs, io: CliIo): Promise<number> => {
    try {
      return await command(parsed, io);
    } catch (err) {
      throw asFailure(err) ?? err;
    }
  };
}

/** Maps typed errors to failures; anything else is a defect and rethrown. */
function asFailure(err: unknown): CliFailure | undefined {
  if (err instanceof CliFailure) return err;
  if (err instanceof BundleError) {
    if (err.problems.length === 0) return new CliFailure(err.code, err.message);
    const count = err.problems.length;
    const what = err.code === 'BUNDLE_POLICY_INVALID' ? 'in the policies' : err.code === 'BUNDLE_ENTITIES_INVALID' ? 'in the entities' : 'in the bundle';
    const code = err.code === 'BUNDLE_POLICY_INVALID' ? 'POLICY_INVALID' : err.code;
    return new CliFailure(code, `${count} error${count === 1 ? '' : 's'} ${what}`, err.problems.map((p) => p.message));
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// Files.

function readText(file: string, what: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    throw fileFailure(err, file, what);
  }
  if (stat.isDirectory()) throw new CliFailure('FILE_IS_DIRECTORY', `${what} ${file} is a directory`);
  if (stat.size > MAX_FILE_BYTES) throw new CliFailure('FILE_TOO_LARGE', `${what} ${file} is larger than ${MAX_FILE_BYTES} bytes`);
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw fileFailure(err, file, what);
  }
}

function fileFailure(err: unknown, file: string, what: string): CliFailure {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new CliFailure('FILE_NOT_FOUND', `${what} ${file} does not exist`);
  return new CliFailure('FILE_UNREADABLE', `cannot read ${what} ${file}: ${(err as Error).message}`);
}

/** A file's text, or standard input for `-`. */
async function readInput(file: string, what: string, io: CliIo): Promise<string> {
  if (file !== '-') return readText(file, what);
  const data = await io.readStdin();
  if (data.length > MAX_FILE_BYTES) throw new CliFailure('FILE_TOO_LARGE', `${what} on standard input is larger than ${MAX_FILE_BYTES} bytes`);
  return data.toString('utf8');
}

function statOf(target: string, what: string): fs.Stats {
  try {
    return fs.statSync(target);
  } catch (err) {
    throw fileFailure(err, target, what);
  }
}

/** A .cedar file, or every *.cedar file directly in a directory, in file-name order. */
function policyFiles(target: string): string[] {
  if (!statOf(target, 'policy path').isDirectory()) return [target];
  const files = fs
    .readdirSync(target)
    .filter((f) => f.endsWith('.cedar'))
    .sort()
    .map((f) => path.join(target, f));
  if (files.length === 0) throw new CliFailure('POLICY_NONE', `no *.cedar files in ${target}`);
  return files;
}

/** Policies as a bundle loads them, files named by the paths given. */
function loadPolicies(target: string): PolicySet {
  return compilePolicies(policyFiles(target).map((file) => ({ file, text: readText(file, 'policy file') })));
}

function loadEntities(text: string, file: string): Entities {
  try {
    return Entities.fromJson(text);
  } catch (err) {
    if (err instanceof EntitiesError) throw new CliFailure(err.code, `${file}: ${err.message}`);
    throw err;
  }
}

interface Loaded {
  policies: PolicySet;
  entities: Entities;
}

/** A bundle source directory (its entities.json may be left out), or a built bundle file. */
async function loadSource(source: string, io: CliIo): Promise<Loaded> {
  if (statOf(source, 'bundle source').isDirectory()) {
    const entitiesFile = path.join(source, 'entities.json');
    return {
      policies: loadPolicies(source),
      entities: fs.existsSync(entitiesFile) ? loadEntities(readText(entitiesFile, 'entities file'), entitiesFile) : Entities.empty(),
    };
  }
  const { payload } = readUnverifiedBundle(await readBundleFile(source, DEFAULT_BUNDLE_MAX_BYTES));
  io.stderr(`note: ${source} is read as a bundle; its signatures are not checked (use \`ztedge bundle verify\`)`);
  return { policies: compilePolicies(payload.policies), entities: compileEntities(payload.entities, `${source}: entities`) };
}

// ---------------------------------------------------------------------------------------------
// Commands.

function noPositionals(parsed: ParsedArgs): void {
  if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
}

const REQUEST_FLAGS = ['principal', 'action', 'resource', 'context'] as const;

/** The request from --request, or from --principal/--action/--resource/--context. */
async function requestOf(parsed: ParsedArgs, io: CliIo, stdinTaken: boolean): Promise<AuthzRequest> {
  const requestFile = flag(parsed, 'request');
  const given = REQUEST_FLAGS.filter((name) => flag(parsed, name) !== undefined);
  if (requestFile !== undefined) {
    if (given.length > 0) throw new UsageError(`give either --request or --principal/--action/--resource/--context, not both (--${given[0]})`);
    if (requestFile === '-' && stdinTaken) throw new UsageError('only one of --entities and --request can read standard input');
    try {
      return requestFromJson(await readInput(requestFile, 'request file', io));
    } catch (err) {
      if (err instanceof RequestError) throw new CliFailure(err.code, `${requestFile}: ${err.message}`);
      throw err;
    }
  }
  if (given.length === 0) throw new UsageError('missing the request: --request FILE, or --principal, --action and --resource');
  const request = new Map<string, JsonValue>();
  for (const name of ['principal', 'action', 'resource'] as const) {
    const text = flag(parsed, name);
    if (text === undefined) throw new UsageError(`missing required option --${name}`);
    try {
      const uid = parseEntityUid(text);
      request.set(name, new Map<string, JsonValue>([['type', uid.type], ['id', uid.id]]));
    } catch (err) {
      if (!(err instanceof PolicyParseError)) throw err;
      throw new UsageError(`--${name} must be an entity uid written as in policies, e.g. 'User::"alice"' (${err.diagnostics[0]!.message})`);
    }
  }
  const context = flag(parsed, 'context');
  if (context !== undefined) {
    try {
      // Read exactly: integers beyond 2^53 keep their digits.
      request.set('context', parseJson(context));
    } catch (err) {
      if (err instanceof JsonError) throw new UsageError(`--context is not valid JSON: ${err.message}`);
      throw err;
    }
  }
  try {
    return requestFromJson(request);
  } catch (err) {
    if (err instanceof RequestError) throw new CliFailure(err.code, `the request: ${err.message}`);
    throw err;
  }
}

async function evalCommand(parsed: ParsedArgs, io: CliIo): Promise<number> {
  let loaded: Loaded;
  let entitiesFile: string | undefined;
  if (parsed.positionals.length > 0) {
    if (parsed.positionals.length > 1) throw new UsageError(`unexpected argument '${parsed.positionals[1]}'`);
    const mixed = ['policies', 'entities'].find((name) => flag(parsed, name) !== undefined);
    if (mixed !== undefined) throw new UsageError(`give either SOURCE or --policies/--entities, not both (--${mixed})`);
    loaded = await loadSource(parsed.positionals[0]!, io);
  } else {
    const policiesPath = flag(parsed, 'policies');
    if (policiesPath === undefined) throw new UsageError('missing the policies: SOURCE, or --policies PATH --entities FILE');
    entitiesFile = requireFlag(parsed, 'entities');
    const policies = loadPolicies(policiesPath);
    loaded = { policies, entities: loadEntities(await readInput(entitiesFile, 'entities file', io), entitiesFile) };
  }
  const request = await requestOf(parsed, io, entitiesFile === '-');
  const strict = flag(parsed, 'no-strict') === undefined;
  const { decision, reasons, determining, errors } = enforce(loaded.policies, loaded.entities, request, { strict });
  io.stdout(JSON.stringify({ decision, reasons, determining, errors }, null, 2));
  return decision === 'deny' && flag(parsed, 'fail-on-deny') !== undefined ? DENY_EXIT : 0;
}

function testCommand(parsed: ParsedArgs, io: CliIo): number {
  let policiesPath: string;
  let entitiesFile: string | undefined;
  let testsFile: string;
  if (parsed.positionals.length > 0) {
    if (parsed.positionals.length > 1) throw new UsageError(`unexpected argument '${parsed.positionals[1]}'`);
    if (parsed.flags.size > 0) throw new UsageError('give either a bundle source directory or --policies/--entities/--tests');
    const dir = parsed.positionals[0]!;
    policiesPath = dir;
    testsFile = path.join(dir, 'tests.json');
    // A bundle source may leave entities out (no entities).
    entitiesFile = fs.existsSync(path.join(dir, 'entities.json')) ? path.join(dir, 'entities.json') : undefined;
  } else {
    policiesPath = requireFlag(parsed, 'policies');
    entitiesFile = requireFlag(parsed, 'entities');
    testsFile = requireFlag(parsed, 'tests');
  }
  const policies = loadPolicies(policiesPath);
  const entities = entitiesFile === undefined ? Entities.empty() : loadEntities(readText(entitiesFile, 'entities file'), entitiesFile);
  let tests;
  try {
    tests = testCasesFromJson(readText(testsFile, 'tests file'));
  } catch (err) {
    if (err instanceof PolicyTestsError) throw new CliFailure(err.code, `${testsFile}: ${err.message}`);
    throw err;
  }
  const report = runPolicyTests(policies, entities, tests);
  for (const f of report.failures) io.stdout(`FAIL ${f.name}: expected ${f.expected}, got ${f.got}`);
  io.stdout(`${report.passed} passed, ${report.failures.length} failed`);
  return report.failures.length === 0 ? 0 : 1;
}

const plural = (n: number, noun: string, nouns = `${noun}s`) => `${n} ${n === 1 ? noun : nouns}`;

function fmtCommand(parsed: ParsedArgs, io: CliIo): number {
  if (parsed.positionals.length === 0) throw new UsageError('fmt needs at least one policy file or directory');
  const check = flag(parsed, 'check') !== undefined;
  const write = flag(parsed, 'write') !== undefined;
  const diff = flag(parsed, 'diff') !== undefined;
  const allowArityErrors = flag(parsed, 'allow-arity-errors') !== undefined;
  if (write && (check || diff)) throw new UsageError('--write cannot be combined with --check or --diff');
  if (allowArityErrors && !check) throw new UsageError('--allow-arity-errors goes with --check');
  const files = parsed.positionals.flatMap(policyFiles);
  let errors = 0;
  const report = (line: string) => {
    io.stderr(line);
    errors++;
  };
  const parsedPolicies: PolicyAst[] = [];
  const changed: string[] = [];
  const printed: string[] = [];
  for (const file of files) {
    const text = readText(file, 'policy file');
    let formatted: string;
    try {
      formatted = formatPolicyText(text, { source: file });
    } catch (err) {
      if (!(err instanceof PolicyParseError)) throw err;
      for (const d of err.diagnostics) report(formatDiagnostic(d));
      continue;
    }
    if (check) parsedPolicies.push(...parsePolicies(text, { source: file, startIndex: parsedPolicies.length }));
    if (formatted !== text) changed.push(file);
    if (diff && formatted !== text) io.stdout(unifiedDiff(text, formatted, file, `${file} (formatted)`).trimEnd());
    else if (write && formatted !== text) replaceFile(file, formatted);
    else if (!check && !write) printed.push(files.length > 1 ? `// ${file}\n${formatted}` : formatted);
  }
  if (check) {
    for (const d of idsFromAnnotations(parsedPolicies).problems) report(formatDiagnostic(d));
    for (const d of extensionArityProblems(parsedPolicies)) {
      if (allowArityErrors) io.stderr(formatDiagnostic(d, 'warning'));
      else report(formatDiagnostic(d));
    }
    if (!diff) for (const file of changed) io.stderr(`${file}: not formatted (\`ztedge policy fmt --write\` formats it)`);
  }
  if (printed.length > 0) io.stdout(printed.join('\n').trimEnd());
  if (write) io.stdout(`${plural(files.length, 'file')}: ${changed.length} formatted${changed.map((f) => `\n  ${f}`).join('')}`);
  const unformatted = check ? changed.length : 0;
  if (errors > 0 || unformatted > 0) {
    const parts = [...(errors > 0 ? [plural(errors, 'error')] : []), ...(unformatted > 0 ? [`${plural(unformatted, 'file')} not formatted`] : [])];
    io.stderr(`POLICY_CHECK: ${parts.join(', ')} in ${plural(files.length, 'file')}`);
    return 1;
  }
  if (check) io.stdout(`${plural(files.length, 'file')}, ${plural(parsedPolicies.length, 'policy', 'policies')}: ok`);
  return 0;
}

/**
 * Replaces `file` with `text` atomically (a temporary sibling written, synced and renamed over
 * it, then the directory synced), keeping its mode: an interrupted run leaves the old file or
 * the new one, never half.
 */
function replaceFile(file: string, text: string): void {
  const mode = fs.statSync(file).mode & 0o7777;
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.fmt-${randomBytes(4).toString('hex')}`);
  try {
    const fd = fs.openSync(temp, 'wx', mode);
    try {
      fs.writeFileSync(fd, text);
      fs.fchmodSync(fd, mode);
      fs.fsyncSync(fd);
    } finally {
      fs.closeSync(fd);
    }
    fs.renameSync(temp, file);
    fsyncDirectory(fs, path.dirname(file));
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw new CliFailure('FILE_UNWRITABLE', `cannot write ${file}: ${(err as Error).message}`);
  }
}
