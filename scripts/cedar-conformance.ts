// Runs Cedar's integration tests (cedar-policy/cedar-integration-tests JSON format) against
// ztedge's engine: for every request, the decision, the set of determining policy ids and the
// set of errored policy ids must match. Schemas and `shouldValidate` are ignored.
//
//   tsx scripts/cedar-conformance.ts --root DIR FILE.json...
//
// Prints one line per failure, then `N passed, N failed`; exits 1 on any failure.
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

export interface ConformanceReport {
  /** Requests checked, passed or not. */
  requests: number;
  passed: number;
  failures: ConformanceFailure[];
}

type ReadText = (file: string) => string;

const field = (obj: JsonValue, key: string): JsonValue | undefined => (obj instanceof Map ? obj.get(key) : undefined);

/** Cedar's request fields, renamed to the shape of a policy test case. */
function asTestCase(request: JsonValue): JsonValue {
  if (!(request instanceof Map)) return request;
  const out = new Map<string, JsonValue>();
  for (const [k, v] of request) {
    if (k === 'description') out.set('name', v);
    else if (k === 'reason') out.set('reasons', v);
    else out.set(k, v);
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
  if (!Array.isArray(requests) || typeof policiesPath !== 'string' || typeof entitiesPath !== 'string') {
    report.requests++;
    fail('(file)', 'fields "policies", "entities" (paths) and "requests" (array)', 'a different shape');
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
    try {
      const test = testCaseFromJson(asTestCase(r), ['requests', i]);
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
  const report: ConformanceReport = { requests: 0, passed: 0, failures: [] };
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
  process.stdout.write(`${report.passed} passed, ${report.failures.length} failed\n`);
  return report.failures.length === 0 ? 0 : 1;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  process.exitCode = main(process.argv.slice(2));
}
