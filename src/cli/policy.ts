// `ztedge policy`: evaluate a request, run policy tests, and check or format Cedar policy files.
import fs from 'node:fs';
import path from 'node:path';
import {
  Entities,
  EntitiesError,
  PolicyParseError,
  PolicySet,
  RequestError,
  enforce,
  formatDiagnostic,
  parsePolicies,
  requestFromJson,
} from '../policy/index.js';
import type { PolicyAst } from '../policy/index.js';
import { formatPolicy } from '../policy/format.js';
import { PolicyTestsError, runPolicyTests, testCasesFromJson } from '../policy/policy-tests.js';
import { CliError, type CliIo, type ParsedArgs, UsageError, defineGroup, flag, requireFlag } from './command.js';

const EVAL_USAGE = `Usage: ztedge policy eval --policies PATH --entities FILE --request FILE [--no-strict]

Decides one request; prints {decision, reasons, determining, errors} as JSON. PATH is a .cedar
file or a directory of them (read in file-name order). FILE may be - for stdin. Strict mode
(the agent's default) denies when a matching forbid fails to evaluate; --no-strict gives
Cedar's plain decision.`;

const TEST_USAGE = `Usage: ztedge policy test --policies PATH --entities FILE --tests FILE
       ztedge policy test DIR

Runs test cases (tests.json: [{name, principal, action, resource, context?, decision,
reasons?, errors?}]) as the agent decides them; DIR is a bundle source directory (*.cedar,
entities.json, tests.json). Prints each failure, then "N passed, N failed"; exits 1 if any
failed.`;

const FMT_USAGE = `Usage: ztedge policy fmt [--check] PATH...

--check: reports every parse error as file:line:col and exits 1 if there is any.
Otherwise prints the policies in canonical form (comments are not kept).`;

/** Policy, entity, request and test files are read whole; refuse anything absurdly large. */
const MAX_FILE_BYTES = 64 * 1024 * 1024;

export const policyCommand = defineGroup({
  name: 'policy',
  summary: 'evaluate requests, run policy tests, check and format Cedar policies',
  commands: [
    {
      name: 'eval',
      summary: 'decide one request against policies and entities',
      usage: EVAL_USAGE,
      options: { policies: { type: 'string' }, entities: { type: 'string' }, request: { type: 'string' }, 'no-strict': { type: 'boolean' } },
      run: evalCommand,
    },
    {
      name: 'test',
      summary: "run a bundle source's test cases",
      usage: TEST_USAGE,
      options: { policies: { type: 'string' }, entities: { type: 'string' }, tests: { type: 'string' } },
      positionals: { min: 0, max: 1, name: 'DIR' },
      run: testCommand,
    },
    {
      name: 'fmt',
      summary: 'check or print Cedar policy files in canonical form',
      usage: FMT_USAGE,
      options: { check: { type: 'boolean' } },
      positionals: { min: 1, max: Infinity, name: 'PATH' },
      run: fmtCommand,
    },
  ],
});

// ---------------------------------------------------------------------------------------------
// Files.

function readText(file: string, what: string): string {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(file);
  } catch (err) {
    throw fileFailure(err, file, what);
  }
  if (stat.isDirectory()) throw new CliError('FILE_IS_DIRECTORY', `${what} ${file} is a directory`);
  if (stat.size > MAX_FILE_BYTES) throw new CliError('FILE_TOO_LARGE', `${what} ${file} is larger than ${MAX_FILE_BYTES} bytes`);
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw fileFailure(err, file, what);
  }
}

function fileFailure(err: unknown, file: string, what: string): CliError {
  const code = (err as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') return new CliError('FILE_NOT_FOUND', `${what} ${file} does not exist`);
  return new CliError('FILE_UNREADABLE', `cannot read ${what} ${file}: ${(err as Error).message}`);
}

/** A file's text, or standard input for `-`. */
async function readInput(file: string, what: string, io: CliIo): Promise<string> {
  if (file !== '-') return readText(file, what);
  const data = await io.readStdin();
  if (data.length > MAX_FILE_BYTES) throw new CliError('FILE_TOO_LARGE', `${what} on standard input is larger than ${MAX_FILE_BYTES} bytes`);
  return data.toString('utf8');
}

/** A .cedar file, or every *.cedar file directly in a directory, in file-name order. */
function policyFiles(target: string): string[] {
  let stat: fs.Stats;
  try {
    stat = fs.statSync(target);
  } catch (err) {
    throw fileFailure(err, target, 'policy path');
  }
  if (!stat.isDirectory()) return [target];
  const files = fs
    .readdirSync(target)
    .filter((f) => f.endsWith('.cedar'))
    .sort()
    .map((f) => path.join(target, f));
  if (files.length === 0) throw new CliError('POLICY_NONE', `no *.cedar files in ${target}`);
  return files;
}

function loadPolicies(target: string): PolicySet {
  return PolicySet.fromSources(policyFiles(target).map((file) => ({ text: readText(file, 'policy file'), source: file })));
}

function loadEntities(text: string, file: string): Entities {
  try {
    return Entities.fromJson(text);
  } catch (err) {
    if (err instanceof EntitiesError) throw new EntitiesError(err.code, `${file}: ${err.message}`, err.path, err.line, err.column);
    throw err;
  }
}

// ---------------------------------------------------------------------------------------------
// Commands.

async function evalCommand(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const entitiesFile = requireFlag(parsed, 'entities');
  const requestFile = requireFlag(parsed, 'request');
  if (entitiesFile === '-' && requestFile === '-') throw new UsageError('only one of --entities and --request can read standard input');
  const policies = loadPolicies(requireFlag(parsed, 'policies'));
  const entities = loadEntities(await readInput(entitiesFile, 'entities file', io), entitiesFile);
  let request;
  try {
    request = requestFromJson(await readInput(requestFile, 'request file', io));
  } catch (err) {
    if (err instanceof RequestError) throw new RequestError(err.code, `${requestFile}: ${err.message}`, err.path, err.line, err.column);
    throw err;
  }
  const { decision, reasons, determining, errors } = enforce(policies, entities, request, { strict: flag(parsed, 'no-strict') === undefined });
  io.stdout(JSON.stringify({ decision, reasons, determining, errors }, null, 2));
  return 0;
}

function testCommand(parsed: ParsedArgs, io: CliIo): number {
  let policiesPath: string;
  let entitiesFile: string | undefined;
  let testsFile: string;
  if (parsed.positionals.length > 0) {
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
    if (err instanceof PolicyTestsError) throw new PolicyTestsError(err.code, `${testsFile}: ${err.message}`, err.path);
    throw err;
  }
  const report = runPolicyTests(policies, entities, tests);
  for (const f of report.failures) io.stdout(`FAIL ${f.name}: expected ${f.expected}, got ${f.got}`);
  io.stdout(`${report.passed} passed, ${report.failures.length} failed`);
  return report.failures.length === 0 ? 0 : 1;
}

function fmtCommand(parsed: ParsedArgs, io: CliIo): number {
  const check = flag(parsed, 'check') !== undefined;
  const files = parsed.positionals.flatMap(policyFiles);
  let problems = 0;
  let policyCount = 0;
  const formatted: string[] = [];
  for (const file of files) {
    let policies: PolicyAst[];
    try {
      policies = parsePolicies(readText(file, 'policy file'), { source: file });
    } catch (err) {
      if (!(err instanceof PolicyParseError)) throw err;
      for (const d of err.diagnostics) io.stderr(formatDiagnostic(d));
      problems += err.diagnostics.length;
      continue;
    }
    policyCount += policies.length;
    const text = policies.map(formatPolicy).join('\n\n');
    formatted.push(files.length > 1 ? `// ${file}\n${text}` : text);
  }
  if (problems > 0) {
    io.stderr(`POLICY_PARSE: ${problems} error${problems === 1 ? '' : 's'} in ${files.length} file${files.length === 1 ? '' : 's'}`);
    return 1;
  }
  if (check) io.stdout(`${files.length} file${files.length === 1 ? '' : 's'}, ${policyCount} polic${policyCount === 1 ? 'y' : 'ies'}: ok`);
  else io.stdout(formatted.join('\n\n'));
  return 0;
}
