// Validation of a bundle source against its Cedar schema (a `*.cedarschema` file in Cedar's human
// format) with Cedar's own validator, cedar-wasm, in strict mode: the policies (a mistyped action
// or entity type, an attribute that does not exist, a comparison of a string with a number), the
// entities, and each embedded test's request. It runs at `bundle build`, on the operator's
// workstation; a device never validates, and never loads cedar-wasm: the module is imported
// lazily, here only.
import type * as CedarWasm from '@cedar-policy/cedar-wasm/nodejs';
import { type JsonValue, JsonError, JsonNumber, PolicyParseError, extensionArityProblems, parseEntityUid, parseJson } from '../policy/index.js';
import type { PolicyAst } from '../policy/index.js';
import { type BuildOptions, type BundleSource, type SchemaSource, checkExtensionArity } from './build.js';
import { compilePolicies } from './content.js';
import { type BundleProblem, BundleError } from './errors.js';

export type { SchemaSource };

export interface SchemaReport {
  /** What the validator warns about (an impossible policy, ...): does not stop a build. */
  readonly warnings: readonly BundleProblem[];
}

type Cedar = typeof CedarWasm;
let cedar: Promise<Cedar> | undefined;

/** cedar-wasm, loaded on first use (it is large, and only a build needs it). */
function loadCedar(): Promise<Cedar> {
  cedar ??= import('@cedar-policy/cedar-wasm/nodejs');
  return cedar;
}

/** `line:column` (1-based) of a UTF-16 offset in `text`. */
function position(text: string, offset: number): string {
  let line = 1;
  let lineStart = 0;
  for (let i = text.indexOf('\n'); i !== -1 && i < offset; i = text.indexOf('\n', i + 1)) {
    line++;
    lineStart = i + 1;
  }
  return `${line}:${offset - lineStart + 1}`;
}

interface Detailed {
  message: string;
  help: string | null;
  sourceLocations?: Array<{ start: number; end: number }>;
}

const withHelp = (e: Detailed): string => (e.help === null || e.help === '' ? e.message : `${e.message} (${e.help})`);

/**
 * JSON read exactly, as a JavaScript value cedar-wasm takes. Integers beyond 2^53 become the
 * nearest safe integer: the validator checks types, and a Long stays a Long.
 */
function toPlain(v: JsonValue): unknown {
  if (typeof v === 'bigint') {
    const max = BigInt(Number.MAX_SAFE_INTEGER);
    return Number(v > max ? max : v < -max ? -max : v);
  }
  if (v instanceof JsonNumber) return Number(v.text);
  if (Array.isArray(v)) return v.map(toPlain);
  if (v instanceof Map) return Object.fromEntries([...v].map(([k, x]) => [k, toPlain(x)]));
  return v;
}

function plainJson(text: string, what: string): unknown {
  try {
    return toPlain(parseJson(text));
  } catch (err) {
    // The source reader has parsed these already; this is a defect if it happens.
    if (err instanceof JsonError) throw new Error(`${what} does not parse: ${err.message}`);
    throw err;
  }
}

function uidOf(text: string): { type: string; id: string } {
  try {
    const uid = parseEntityUid(text);
    return { type: uid.type, id: uid.id };
  } catch (err) {
    if (err instanceof PolicyParseError) return { type: '', id: text }; // the build reports it
    throw err;
  }
}

/**
 * Validates `source` against `schema`; throws BUNDLE_SCHEMA_INVALID when the schema does not
 * parse and BUNDLE_VALIDATION_FAILED listing every validation error (`file:line:col` for
 * policies). Calls to extension functions with the wrong number of arguments are the build's
 * own check, first (so `allowArityErrors` means the same with and without a schema); a policy
 * making such a call is left out of validation, with a warning, as the validator's view of the
 * rest of it is unreliable.
 */
export async function validateBundleSource(source: BundleSource, schema: SchemaSource, options: BuildOptions = {}): Promise<SchemaReport> {
  const wasm = await loadCedar();
  const parsed = wasm.checkParseSchema(schema.text);
  if (parsed.type === 'failure') {
    const problems = parsed.errors.map((e) => {
      const at = e.sourceLocations?.[0];
      return { code: 'SCHEMA_PARSE', message: `${schema.file}${at === undefined ? '' : `:${position(schema.text, at.start)}`}: error: ${withHelp(e)}` };
    });
    throw new BundleError('BUNDLE_SCHEMA_INVALID', `${schema.file} is not a valid Cedar schema: ${parsed.errors[0]!.message}`, { problems });
  }
  const errors: BundleProblem[] = [];
  const warnings: BundleProblem[] = [];

  // Policies, each by its id, with locations mapped back to its file.
  const compiled = compilePolicies(source.policies).policies.map((p) => p.ast);
  checkExtensionArity(compiled, options);
  const texts = new Map(source.policies.map((f) => [f.file, f.text]));
  const policies: PolicyAst[] = [];
  for (const policy of compiled) {
    if (extensionArityProblems([policy]).length === 0) policies.push(policy);
    else {
      const where = `${policy.loc.source}:${policy.loc.line}:${policy.loc.column}`;
      warnings.push({ code: 'VALIDATION_SKIPPED', message: `${where}: warning: policy \`${policy.id}\` is not validated: it calls an extension function with the wrong number of arguments` });
    }
  }
  const byId = new Map<string, PolicyAst>(policies.map((p) => [p.id, p]));
  const answer = wasm.validate({
    schema: schema.text,
    validationSettings: { mode: 'strict' },
    policies: { staticPolicies: Object.fromEntries(policies.map((p) => [p.id, texts.get(p.loc.source)!.slice(p.loc.offset, p.loc.offset + p.loc.length)])) },
  });
  if (answer.type === 'failure') {
    for (const e of answer.errors) errors.push({ code: 'VALIDATION_POLICY', message: `${schema.file}: error: ${withHelp(e)}` });
  } else {
    const locate = (policyId: string, e: Detailed): string => {
      const policy = byId.get(policyId)!;
      const offset = policy.loc.offset + (e.sourceLocations?.[0]?.start ?? 0);
      return `${policy.loc.source}:${position(texts.get(policy.loc.source)!, offset)}`;
    };
    for (const { policyId, error } of answer.validationErrors) {
      errors.push({ code: 'VALIDATION_POLICY', message: `${locate(policyId, error)}: error: ${withHelp(error)}` });
    }
    for (const { policyId, error } of answer.validationWarnings) {
      warnings.push({ code: 'VALIDATION_POLICY', message: `${locate(policyId, error)}: warning: ${withHelp(error)}` });
    }
    for (const e of answer.otherWarnings) warnings.push({ code: 'VALIDATION_POLICY', message: `${schema.file}: warning: ${withHelp(e)}` });
  }

  // Entities.
  const entities = wasm.checkParseEntities({ schema: schema.text, entities: plainJson(source.entities, 'entities.json') as CedarWasm.EntityJson[] });
  if (entities.type === 'failure') for (const e of entities.errors) errors.push({ code: 'VALIDATION_ENTITIES', message: `entities.json: error: ${withHelp(e)}` });

  // Each embedded test's request: known action, principal and resource types it applies to, context.
  for (const test of source.tests) {
    const request = wasm.isAuthorized({
      principal: uidOf(test.principal),
      action: uidOf(test.action),
      resource: uidOf(test.resource),
      context: plainJson(test.context, `the context of test ${test.name}`) as CedarWasm.Context,
      schema: schema.text,
      validateRequest: true,
      policies: { staticPolicies: '' },
      entities: [],
    });
    if (request.type === 'failure') {
      for (const e of request.errors) errors.push({ code: 'VALIDATION_REQUEST', message: `tests.json: test ${JSON.stringify(test.name)}: error: ${withHelp(e)}` });
    }
  }

  if (errors.length > 0) {
    const more = errors.length > 1 ? ` (and ${errors.length - 1} more)` : '';
    throw new BundleError('BUNDLE_VALIDATION_FAILED', `does not validate against ${schema.file}: ${errors[0]!.message}${more}`, { problems: errors });
  }
  return { warnings };
}
