// The public API of the Cedar engine.
export type * from './ast.js';
export { parsePolicies, parseExpression, parseEntityUid } from './parser.js';
export { extensionArityProblems } from './lint.js';
export { idsFromAnnotations } from './policy-ids.js';
export type { NamedPolicies, PolicyIdCode } from './policy-ids.js';
export type { LintCode, LintDiagnostic } from './lint.js';
export type { ParseOptions } from './parser.js';
export { PolicyParseError, formatDiagnostic } from './errors.js';
export type { Diagnostic, ParseErrorCode } from './errors.js';

export {
  CedarRecord,
  CedarSet,
  Datetime,
  Decimal,
  Duration,
  EntityUid,
  I64_MAX,
  I64_MIN,
  IpAddr,
  displayValue,
  quoteString,
  typeName,
  valueEquals,
  valueKey,
} from './value.js';
export type { ExtensionValue, TypeName, Value } from './value.js';

export { JsonError, JsonNumber, parseJson, jsonFromValue } from './json.js';
export type { JsonErrorCode, JsonLimits, JsonObject, JsonValue } from './json.js';
export { CedarJsonError, valueFromJson } from './cedar-json.js';
export type { CedarJsonErrorCode, CedarJsonOptions } from './cedar-json.js';
export { Entities, EntitiesError, isActionType } from './entities.js';
export type { EntitiesErrorCode, EntitiesOptions, Entity } from './entities.js';
export { RequestError, requestFromJson } from './request.js';
export type { RequestErrorCode, RequestOptions } from './request.js';

export { EvalError } from './eval-error.js';
export type { EvalErrorCode } from './eval-error.js';
export { compileExpression, evalEnv } from './compile-expr.js';
export type { EvalEnv, Evaluator } from './compile-expr.js';
export { compilePolicy } from './compile.js';
export type { CompiledPolicy, ScopeTest } from './compile.js';
export type { ContextReads } from './context-reads.js';
export { PolicySet, PolicySetError } from './policy-set.js';
export { isAuthorized, isAuthorizedUnindexed } from './authorizer.js';
export type { AuthzRequest, Decision, DeterminingPolicy, PolicyError } from './authorizer.js';
export { enforce } from './enforce.js';
export type { EnforceOptions, EnforcedDecision, ReasonCode } from './enforce.js';
