// Policy test cases: a request with the decision it must get, and optionally the exact set of
// determining policies and of policies whose condition errored. Used by `ztedge policy test`
// (tests.json of a bundle source) and by the Cedar conformance runner.
//
// tests.json is an array of
//   { "name", "principal", "action", "resource", "context"?, "decision", "reasons"?, "errors"? }
// with uids as `{type, id}` or `Type::"id"`, context in Cedar's JSON value format, and `reasons` / `errors`
// naming policies by their `@id` annotation, or by policy id when they have none.
import type { AuthzRequest, Decision } from './authorizer.js';
import { enforce } from './enforce.js';
import type { Entities } from './entities.js';
import { PolicyParseError } from './errors.js';
import { JsonError, formatJsonPath, parseJson } from './json.js';
import type { JsonObject, JsonValue } from './json.js';
import { parseEntityUid } from './parser.js';
import type { PolicySet } from './policy-set.js';
import { RequestError, requestFromJson } from './request.js';
import { ZtedgeError } from '../errors.js';

export type PolicyTestsErrorCode = 'TESTS_SHAPE' | 'TESTS_TOO_MANY' | JsonError['code'] | RequestError['code'];

export class PolicyTestsError extends ZtedgeError<PolicyTestsErrorCode> {
  constructor(
    code: PolicyTestsErrorCode,
    message: string,
    /** JSON path of the offending value, e.g. `$[2].decision`. */
    readonly path: string,
  ) {
    super(code, message);
  }
}

export interface PolicyTestCase {
  name: string;
  request: AuthzRequest;
  decision: 'allow' | 'deny';
  /** Expected determining policies (as a set); unchecked when absent. */
  reasons?: string[];
  /** Expected errored policies (as a set); unchecked when absent. */
  errors?: string[];
}

export interface PolicyTestFailure {
  name: string;
  expected: string;
  got: string;
}

export interface PolicyTestReport {
  passed: number;
  failures: PolicyTestFailure[];
}

const MAX_CASES = 100_000;
const REQUEST_FIELDS = ['principal', 'action', 'resource', 'context'];
const CASE_FIELDS = ['name', 'decision', 'reasons', 'errors', ...REQUEST_FIELDS];

function shapeError(message: string, path: Array<string | number>): PolicyTestsError {
  return new PolicyTestsError('TESTS_SHAPE', `${message} at ${formatJsonPath(path)}`, formatJsonPath(path));
}

function stringList(v: JsonValue, path: Array<string | number>): string[] {
  if (!Array.isArray(v) || v.some((x) => typeof x !== 'string')) throw shapeError('expected an array of strings', path);
  return v as string[];
}

/** A uid written as Cedar text, `Type::"id"`, in the JSON form requests take. */
function uidTextToJson(text: string, path: Array<string | number>): JsonObject {
  try {
    const uid = parseEntityUid(text);
    return new Map([
      ['type', uid.type],
      ['id', uid.id],
    ]);
  } catch (e) {
    if (e instanceof PolicyParseError) throw shapeError(`invalid entity uid: ${e.diagnostics[0]!.message}`, path);
    throw e;
  }
}

/** Reads one case object; `path` locates it in the document for error messages. */
export function testCaseFromJson(obj: JsonValue, path: Array<string | number>): PolicyTestCase {
  if (!(obj instanceof Map)) throw shapeError('a test case must be an object', path);
  for (const key of obj.keys()) {
    if (!CASE_FIELDS.includes(key)) throw shapeError('unexpected field', [...path, key]);
  }
  const name = obj.get('name');
  if (typeof name !== 'string') throw shapeError('"name" must be a string', [...path, 'name']);
  const decision = obj.get('decision');
  if (decision !== 'allow' && decision !== 'deny') {
    throw shapeError('"decision" must be "allow" or "deny"', [...path, 'decision']);
  }
  const requestJson: JsonObject = new Map();
  for (const key of REQUEST_FIELDS) {
    const v = obj.get(key);
    if (v !== undefined) requestJson.set(key, key !== 'context' && typeof v === 'string' ? uidTextToJson(v, [...path, key]) : v);
  }
  let request: AuthzRequest;
  try {
    request = requestFromJson(requestJson);
  } catch (e) {
    if (!(e instanceof RequestError)) throw e;
    // The request's paths start at its own root; re-root them at this case.
    const where = formatJsonPath(path) + e.path.slice(1);
    throw new PolicyTestsError(e.code, `${e.message.replace(` at ${e.path}`, '')} at ${where}`, where);
  }
  const test: PolicyTestCase = { name, request, decision };
  const reasons = obj.get('reasons');
  if (reasons !== undefined) test.reasons = stringList(reasons, [...path, 'reasons']);
  const errors = obj.get('errors');
  if (errors !== undefined) test.errors = stringList(errors, [...path, 'errors']);
  return test;
}

/** Reads tests.json text (exactly: big integers keep their digits). Throws PolicyTestsError. */
export function testCasesFromJson(text: string): PolicyTestCase[] {
  let doc: JsonValue;
  try {
    doc = parseJson(text);
  } catch (e) {
    if (e instanceof JsonError) throw new PolicyTestsError(e.code, e.message, e.path);
    throw e;
  }
  if (!Array.isArray(doc)) throw shapeError('tests must be an array of test cases', []);
  if (doc.length > MAX_CASES) {
    throw new PolicyTestsError('TESTS_TOO_MANY', `more than ${MAX_CASES} test cases`, formatJsonPath([]));
  }
  return doc.map((c, i) => testCaseFromJson(c, [i]));
}

/** How a policy is named in expected reasons and errors. */
export type PolicyLabel = (policyId: string, policyName: string | undefined) => string;

/** The `@id` annotation when there is one, else the policy id. */
export const byNameOrId: PolicyLabel = (id, name) => name ?? id;
/** Cedar's policy ids (`policy0`, ...), as Cedar's own test data uses. */
export const byId: PolicyLabel = (id) => id;

const setText = (xs: readonly string[]) => `[${[...new Set(xs)].sort().join(', ')}]`;

/** Compares a decision with a case's expectations; returns the failure, or undefined. */
export function checkTestCase(test: PolicyTestCase, got: Decision, label: PolicyLabel): PolicyTestFailure | undefined {
  const gotReasons = got.determining.map((d) => label(d.id, d.name));
  const gotErrors = got.errors.map((e) => label(e.policyId, e.policyName));
  const expectedParts: string[] = [test.decision];
  const gotParts: string[] = [got.decision];
  let ok = got.decision === test.decision;
  if (test.reasons !== undefined) {
    expectedParts.push(`reasons ${setText(test.reasons)}`);
    gotParts.push(`reasons ${setText(gotReasons)}`);
    ok &&= setText(test.reasons) === setText(gotReasons);
  }
  if (test.errors !== undefined) {
    expectedParts.push(`errors ${setText(test.errors)}`);
    gotParts.push(`errors ${setText(gotErrors)}`);
    ok &&= setText(test.errors) === setText(gotErrors);
  }
  if (ok) return undefined;
  if (test.errors === undefined && gotErrors.length > 0) gotParts.push(`errors ${setText(gotErrors)}`);
  return { name: test.name, expected: expectedParts.join(' '), got: gotParts.join(' ') };
}

export interface RunTestsOptions {
  /** Strict enforcement (an errored forbid denies), as the agent decides. Default true. */
  strict?: boolean;
  label?: PolicyLabel;
}

/** Runs test cases against a policy set and entities, as the agent would decide them. */
export function runPolicyTests(
  policies: PolicySet,
  entities: Entities,
  tests: readonly PolicyTestCase[],
  { strict = true, label = byNameOrId }: RunTestsOptions = {},
): PolicyTestReport {
  const failures: PolicyTestFailure[] = [];
  for (const test of tests) {
    const failure = checkTestCase(test, enforce(policies, entities, test.request, { strict }), label);
    if (failure !== undefined) failures.push(failure);
  }
  return { passed: tests.length - failures.length, failures };
}

