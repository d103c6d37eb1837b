// Runs Cedar's integration tests (the JSON format of cedar-policy/cedar's `cedar-testing` crate)
// against ztedge's engine: for every request, the decision, the set of determining policy ids and
// the set of errored policy ids must match.
//
// Every field of the format is accepted. The file: `policies`, `policyFormat` (cedar | json),
// `entities`, `schema`, `schemaFormat` (cedar | json), `shouldValidate`, `requests`; each request:
// `description`, `principal`, `action`, `resource`, `context`, `validateRequest`, `decision`,
// `reason`, `errors`. What the engine does not do is ignored: schemas, `shouldValidate` and
// `validateRequest` (validation is the schema validator's job, not the evaluator's). A file with
// `policyFormat: "json"` (Cedar's JSON policy syntax, which the engine does not read) is skipped
// and counted as skipped. A field the format does not have is an error, as it is for Cedar.
//
//   tsx scripts/cedar-conformance.ts --root DIR FILE.json...
//
// Prints one line per failure and per skipped file, then `N passed, N failed, N skipped`; exits
// 1 on any failure.
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { Entities, PolicySet, isAuthorized, parseJson } from '../src/policy/index.js';
import type { JsonValue } from '../src/policy/index.js';
import { byId, checkTestCase, testCaseFromJson } from '../src/policy/policy-tests.js';

export interface ConformanceFailure {
  file: string;
  description: string;
  expected: string;
  got: string;
}

export interface ConformanceSkip {
  file: string;
  /** Requests in the skipped file. */
  requests: number;
  why: string;
}

export interface ConformanceReport {
  /** Requests checked, passed or not (skipped files not counted). */
  requests: number;
  passed: number;
  failures: ConformanceFailure[];
  skipped: ConformanceSkip[];
}

type ReadText = (file: string) => string;

const field = (obj: JsonValue, key: string): JsonValue | undefined => (obj instanceof Map ? obj.get(key) : undefined);

const FILE_FIELDS = ['policies', 'policyFormat', 'entities', 'schema', 'schemaFormat', 'shouldValidate', 'requests'];
const REQUEST_FIELDS = ['description', 'principal', 'action', 'resource', 'context', 'validateRequest', 'decision', 'reason', 'errors'];
/** Fields whose meaning the runner does not implement: their types are checked, their values unused. */
const IGNORED_TYPES: Record<string, (v: JsonValue) => boolean> = {
  schema: (v) => typeof v === 'string',
  schemaFormat: (v) => v === 'cedar' || v === 'json',
  shouldValidate: (v) => typeof v === 'boolean',
  validateRequest: (v) => typeof v === 'boolean',
};

/** Why `obj` is not a valid object of the format (unknown or ill-typed field), or undefined. */
function shapeProblem(obj: JsonValue, allowed: readonly string[], what: string): string | undefined {
  if (!(obj instanceof Map)) return `${what} is not an object`;
  for (const [key, value] of obj) {
    if (!allowed.includes(key)) return `${what} has a field the format does not have: ${JSON.stringify(key)}`;
    const check = IGNORED_TYPES[key];
    if (check !== undefined && !check(value)) return `${what} field ${JSON.stringify(key)} has the wrong type`;
  }
  return undefined;
}

/** Cedar's request fields, renamed to the shape of a policy test case (ignored ones dropped). */
function asTestCase(request: Map<string, JsonValue>): JsonValue {
  const out = new Map<string, JsonValue>();
  for (const [k, v] of request) {
    if (k === 'description') out.set('name', v);
    else if (k === 'reason') out.set('reasons', v);
    else if (!(k in IGNORED_TYPES)) out.set(k, v);
  }
  return out;
}

function errorText(e: unknown): string {
  if (e instanceof Error) return 'code' in e ? `${e.message} [${String(e.code)}]` : e.message;
  return String(e);
}

/** Checks one integration test file; a file that cannot be loaded fails each of its requests. */
function runFile(root: string, file: string, readText: ReadText, report: ConformanceReport): void {
  const fail = (description: string, expected: string, got: string) => report.failures.push({ file, description, expected, got });
  let doc: JsonValue;
  try {
    doc = parseJson(readText(file));
  } catch (e) {
    report.requests++;
    fail('(file)', 'a readable test file', errorText(e));
    return;
  }
  const requests = field(doc, 'requests');
  const policiesPath = field(doc, 'policies');
  const entitiesPath = field(doc, 'entities');
  const policyFormat = field(doc, 'policyFormat') ?? 'cedar';
  const problem =
    shapeProblem(doc, FILE_FIELDS, 'the test file') ??
    (policyFormat !== 'cedar' && policyFormat !== 'json' ? 'the test file field "policyFormat" has the wrong type' : undefined);
  if (problem !== undefined || !Array.isArray(requests) || typeof policiesPath !== 'string' || typeof entitiesPath !== 'string') {
    report.requests++;
    fail('(file)', 'fields "policies", "entities" (paths) and "requests" (array), and only fields of the format', problem ?? 'a different shape');
    return;
  }
  if (policyFormat === 'json') {
    report.skipped.push({ file, requests: requests.length, why: 'policies in Cedar\'s JSON syntax (the engine reads Cedar text)' });
    return;
  }
  report.requests += requests.length;
  let policies: PolicySet;
  let entities: Entities;
  try {
    policies = PolicySet.fromText(readText(path.resolve(root, policiesPath)), { source: policiesPath });
    // The integration tests read entities with a schema, which lets `{type, id}` denote an entity.
    entities = Entities.fromJson(readText(path.resolve(root, entitiesPath)), { implicitEntityRefs: true });
  } catch (e) {
    for (const r of requests) fail(String(field(r, 'description') ?? '(request)'), 'policies and entities to load', errorText(e));
    return;
  }
  requests.forEach((r, i) => {
    const description = String(field(r, 'description') ?? `request ${i}`);
    const requestProblem = shapeProblem(r, REQUEST_FIELDS, 'the request');
    if (requestProblem !== undefined) {
      fail(description, 'a request with only fields of the format', requestProblem);
      return;
    }
    try {
      const test = testCaseFromJson(asTestCase(r as Map<string, JsonValue>), ['requests', i]);
      // Cedar's expectations always state the reasons and errors; absent means none.
      test.reasons ??= [];
      test.errors ??= [];
      const failure = checkTestCase(test, isAuthorized(policies, entities, test.request), byId);
      if (failure === undefined) report.passed++;
      else fail(description, failure.expected, failure.got);
    } catch (e) {
      fail(description, 'a well-formed request', errorText(e));
    }
  });
}

/** Runs integration test files (paths inside them are relative to `root`). */
export function runCedarConformance(root: string, files: readonly string[], readText: ReadText = (f) => readFileSync(f, 'utf8')): ConformanceReport {
  const report: ConformanceReport = { requests: 0, passed: 0, failures: [], skipped: [] };
  for (const file of files) runFile(root, file, readText, report);
  return report;
}

export function formatFailure(f: ConformanceFailure): string {
  return `FAIL ${f.file}: ${f.description}: expected ${f.expected}, got ${f.got}`;
}

function main(argv: string[]): number {
  let root = '.';
  const files: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    if (argv[i] === '--root') {
      const value = argv[++i];
      if (value === undefined) {
        process.stderr.write('cedar-conformance: --root needs a directory\n');
        return 2;
      }
      root = value;
    } else files.push(argv[i]!);
  }
  if (files.length === 0) {
    process.stderr.write('usage: cedar-conformance --root DIR FILE.json...\n');
    return 2;
  }
  const report = runCedarConformance(root, files);
  for (const f of report.failures) process.stdout.write(formatFailure(f) + '\n');
  for (const s of report.skipped) process.stdout.write(`SKIP ${s.file}: ${s.requests} requests: ${s.why}\n`);
  process.stdout.write(`${report.passed} passed, ${report.failures.length} failed, ${report.skipped.length} files skipped\n`);
  return report.failures.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
