// Turns the text inside a bundle payload into engine objects — the compiled policy set, the
// entity store, the issuers' public keys — and runs the embedded tests against them. Build (on
// the operator's machine) and verification (on the device) share this module, so a bundle
// that builds is exactly a bundle that a device accepts.
import { type CoseAlgorithm, algorithmInfo } from '../crypto/algorithms.js';
import { toHex } from '../crypto/bytes.js';
import { CryptoError } from '../crypto/errors.js';
import { type PublicKey, publicKeyFromRaw } from '../crypto/keys.js';
import {
  Entities,
  EntitiesError,
  EntityUid,
  PolicyParseError,
  PolicySet,
  PolicySetError,
  RequestError,
  enforce,
  formatDiagnostic,
  idsFromAnnotations,
  parseEntityUid,
  parsePolicies,
  requestFromJson,
} from '../policy/index.js';
import type { PolicyAst } from '../policy/index.js';
import { type BundleProblem, BundleError } from './errors.js';
import { BUNDLE_LIMITS, type BundleTest, type Decision, type IssuerEntry, type PolicyFile } from './format.js';
import { readObligations } from './obligations.js';

/** An issuer whose key imported and whose principal parsed. */
export interface BundleIssuer {
  readonly kid: Uint8Array;
  readonly kidHex: string;
  readonly alg: CoseAlgorithm;
  readonly key: PublicKey;
  readonly principal: EntityUid;
  /** Milliseconds since the epoch. */
  readonly notBeforeMs?: number;
  readonly notAfterMs?: number;
  readonly roles: readonly string[];
}

export function compileIssuers(entries: readonly IssuerEntry[]): BundleIssuer[] {
  const problems: BundleProblem[] = [];
  const seen = new Set<string>();
  const issuers: BundleIssuer[] = [];
  entries.forEach((entry, i) => {
    const at = `issuers[${i}]`;
    const kidHex = toHex(entry.kid);
    if (seen.has(kidHex)) problems.push({ code: 'ISSUER_DUPLICATE_KID', message: `${at}: kid ${kidHex} is used twice` });
    seen.add(kidHex);
    let key: PublicKey;
    let principal: EntityUid;
    try {
      key = publicKeyFromRaw(algorithmInfo(entry.alg)!.keyType, entry.publicKey);
    } catch (err) {
      if (!(err instanceof CryptoError)) throw err;
      problems.push({ code: err.code, message: `${at}.publicKey: ${err.message}` });
      return;
    }
    try {
      const uid = parseEntityUid(entry.principal);
      principal = new EntityUid(uid.type, uid.id);
    } catch (err) {
      if (!(err instanceof PolicyParseError)) throw err;
      problems.push({ code: err.diagnostics[0]!.code, message: `${at}.principal ${JSON.stringify(entry.principal)}: ${err.diagnostics[0]!.message}` });
      return;
    }
    issuers.push({
      kid: entry.kid,
      kidHex,
      alg: entry.alg,
      key,
      principal,
      ...(entry.notBefore === undefined ? {} : { notBeforeMs: entry.notBefore * 1000 }),
      ...(entry.notAfter === undefined ? {} : { notAfterMs: entry.notAfter * 1000 }),
      roles: entry.roles ?? [],
    });
  });
  if (problems.length > 0) {
    throw new BundleError('BUNDLE_ISSUERS_INVALID', `${problems.length} invalid issuer entr${problems.length === 1 ? 'y' : 'ies'}: ${problems[0]!.message}`, { problems });
  }
  return issuers;
}

export function compileEntities(text: string, source = 'entities.json'): Entities {
  try {
    return Entities.fromJson(text, { maxLength: BUNDLE_LIMITS.maxEntitiesLength });
  } catch (err) {
    if (!(err instanceof EntitiesError)) throw err;
    const where = err.line === undefined ? err.path : `${err.line}:${err.column} (${err.path})`;
    const message = `${source}:${where}: ${err.message} [${err.code}]`;
    throw new BundleError('BUNDLE_ENTITIES_INVALID', message, { problems: [{ code: err.code, message }] });
  }
}

/**
 * Parses every file (collecting the diagnostics of all of them, as `file:line:col`), names each
 * policy by its `@id` (the positional id `policyN`, counted across files in file order, where it
 * has none), then compiles the set. An id used twice is refused, naming both places.
 */
export function compilePolicies(files: readonly PolicyFile[]): PolicySet {
  const asts: PolicyAst[] = [];
  const problems: BundleProblem[] = [];
  for (const { file, text } of files) {
    try {
      // The format bounds text in UTF-16 units; one unit is at most 3 UTF-8 bytes.
      asts.push(...parsePolicies(text, { source: file, startIndex: asts.length, maxBytes: BUNDLE_LIMITS.maxPolicyTextLength * 3 }));
    } catch (err) {
      if (!(err instanceof PolicyParseError)) throw err;
      problems.push(...err.diagnostics.map((d) => ({ code: d.code, message: formatDiagnostic(d) })));
    }
  }
  problems.push(...annotationProblems(asts));
  if (problems.length === 0) {
    const named = idsFromAnnotations(asts);
    problems.push(...named.problems.map((d) => ({ code: d.code, message: formatDiagnostic(d) })));
    if (problems.length === 0) {
      try {
        return PolicySet.fromPolicies(named.policies);
      } catch (err) {
        if (err instanceof PolicyParseError) problems.push(...err.diagnostics.map((d) => ({ code: d.code, message: formatDiagnostic(d) })));
        else if (err instanceof PolicySetError) problems.push({ code: err.code, message: err.message });
        else throw err;
      }
    }
  }
  const more = problems.length > 1 ? ` (and ${problems.length - 1} more)` : '';
  throw new BundleError('BUNDLE_POLICY_INVALID', `${problems[0]!.message}${more}`, { problems });
}

/**
 * The agent's annotations (obligations.ts) are checked here, located, so that a bundle whose
 * policies ask for something the agent cannot enforce exactly as written — a malformed value, an
 * annotation it does not support — is refused at build and at activation, never enforced as if
 * it said something else: an operator reading the policy must be able to trust every annotation
 * in it.
 */
function annotationProblems(asts: readonly PolicyAst[]): BundleProblem[] {
  const problems: BundleProblem[] = [];
  for (const ast of asts) {
    const annotations = Object.fromEntries(ast.annotations.map((a) => [a.key, a.value]));
    for (const problem of readObligations({ id: ast.id, annotations }).problems) {
      const { loc } = ast.annotations.find((a) => a.key === problem.annotation)!;
      problems.push({ code: problem.code, message: `${loc.source}:${loc.line}:${loc.column}: error: @${problem.annotation} ${problem.message} [${problem.code}]` });
    }
  }
  return problems;
}

export interface TestOutcome {
  readonly name: string;
  readonly passed: boolean;
  readonly expected: Decision;
  /** Undefined when the request itself was invalid. */
  readonly actual?: Decision;
  /** Determining policies, by id (`@id` when present). */
  readonly reasons: readonly string[];
  /** Policies whose evaluation errored, by id. */
  readonly errors: readonly string[];
  /** Why the case failed, in words. */
  readonly problem?: string;
}

/** Runs each case with strict enforcement (an erroring forbid denies). */
export function runBundleTests(policies: PolicySet, entities: Entities, tests: readonly BundleTest[]): TestOutcome[] {
  return tests.map((test) => runTest(policies, entities, test));
}

/** Throws BUNDLE_TEST_FAILED naming every failing case. */
export function requireTestsPass(outcomes: readonly TestOutcome[]): void {
  const failed = outcomes.filter((o) => !o.passed);
  if (failed.length === 0) return;
  const problems = failed.map((o) => ({ code: 'TEST_FAILED', message: `${o.name}: ${o.problem}` }));
  throw new BundleError(
    'BUNDLE_TEST_FAILED',
    `${failed.length} of ${outcomes.length} embedded test${outcomes.length === 1 ? '' : 's'} failed: ${failed.map((o) => JSON.stringify(o.name)).join(', ')}`,
    { failedTests: failed.map((o) => o.name), problems },
  );
}

function runTest(policies: PolicySet, entities: Entities, test: BundleTest): TestOutcome {
  const base = { name: test.name, expected: test.decision };
  let requestText: string;
  try {
    requestText = `{"principal":${uidJson(test.principal)},"action":${uidJson(test.action)},"resource":${uidJson(test.resource)},"context":${test.context}}`;
  } catch (err) {
    if (!(err instanceof PolicyParseError)) throw err;
    return { ...base, passed: false, reasons: [], errors: [], problem: `invalid entity uid: ${err.diagnostics[0]!.message}` };
  }
  let request;
  try {
    request = requestFromJson(requestText);
  } catch (err) {
    if (!(err instanceof RequestError)) throw err;
    return { ...base, passed: false, reasons: [], errors: [], problem: `invalid request: ${err.message}` };
  }
  const decision = enforce(policies, entities, request, { strict: true });
  const reasons = decision.determining.map((p) => p.id);
  const errors = decision.errors.map((e) => e.policyId);
  const ran = { ...base, actual: decision.decision, reasons, errors };
  if (decision.decision !== test.decision) {
    return { ...ran, passed: false, problem: `expected ${test.decision}, got ${decision.decision}${reasons.length > 0 ? ` (by ${reasons.join(', ')})` : ''}` };
  }
  if (test.reasons !== undefined && !sameSet(test.reasons, reasons)) {
    return { ...ran, passed: false, problem: `expected reasons [${test.reasons.join(', ')}], got [${reasons.join(', ')}]` };
  }
  if (test.errors !== undefined && !sameSet(test.errors, errors)) {
    return { ...ran, passed: false, problem: `expected errors in [${test.errors.join(', ')}], got [${errors.join(', ')}]` };
  }
  return { ...ran, passed: true };
}

function uidJson(text: string): string {
  const uid = parseEntityUid(text);
  return JSON.stringify({ type: uid.type, id: uid.id });
}

function sameSet(a: readonly string[], b: readonly string[]): boolean {
  const left = new Set(a);
  const right = new Set(b);
  return left.size === right.size && [...left].every((x) => right.has(x));
}
