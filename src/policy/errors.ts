// Diagnostics for Cedar policy text, and the one error type the lexer and parser throw.
import { ZtedgeError } from '../errors.js';

/**
 * Stable diagnostic codes. Callers (CLI, bundle activation, tests) match on these, never on
 * messages.
 *
 * Size and shape bounds:
 * - PARSE_TOO_LARGE            text over `maxBytes`, or an expression whose desugared form would
 *                              exceed the node budget (nested multi-level `has`)
 * - PARSE_TOO_DEEP             brackets nested, or an expression tree taller, than `maxDepth`
 * - PARSE_TOO_MANY_ERRORS      parsing stopped after this many diagnostics
 * Lexical:
 * - PARSE_UNEXPECTED_CHAR      a character that starts no token (`#`, a lone `&`, a BOM, ...)
 * - PARSE_UNTERMINATED_STRING  a string literal without its closing quote
 * - PARSE_INVALID_ESCAPE       an escape Cedar does not know (`\q`, `\u{D800}`, `\*` outside `like`),
 *                              or a raw carriage return inside a string literal
 * - PARSE_INTEGER_OVERFLOW     an integer literal outside the signed 64-bit range
 * Syntax:
 * - PARSE_EXPECTED_TOKEN       a specific token was required (`;`, `)`, `then`, ...)
 * - PARSE_UNEXPECTED_TOKEN     a token that cannot appear here (`!-x`, `1 + if ...`, `?foo`)
 * - PARSE_UNSUPPORTED_OPERATOR `/`, `%` or `=`, which Cedar does not have
 * - PARSE_CHAINED_RELATION     `a == b == c`: relations are non-associative
 * - PARSE_TOO_MANY_UNARY       more than four `!` or `-` in a row
 * Policy structure:
 * - PARSE_INVALID_EFFECT       neither `permit` nor `forbid`
 * - PARSE_INVALID_SCOPE        a malformed `principal` / `action` / `resource` constraint
 * - PARSE_EMPTY_CONDITION      `when {}`
 * - PARSE_DUPLICATE_ANNOTATION the same annotation key twice on one policy
 * - PARSE_TEMPLATE_UNSUPPORTED a template slot (`?principal`, `?resource`): static policies only
 * Expressions:
 * - PARSE_RESERVED_IDENTIFIER  a reserved word (`if`, `in`, `__cedar`, ...) used as a name
 * - PARSE_UNKNOWN_VARIABLE     a bare name that is not `principal|action|resource|context`
 * - PARSE_UNKNOWN_FUNCTION     a call to a function Cedar does not define
 * - PARSE_INVALID_CALL         a call on something that is not a function name
 * - PARSE_INVALID_METHOD       an unknown method name, or the wrong number of arguments to a
 *                              built-in method (`contains`, `isEmpty`, ...); a wrong count to an
 *                              extension function or method parses and fails when evaluated, as
 *                              in Cedar (`lintPolicies` reports it)
 * - PARSE_INVALID_ATTRIBUTE    `e[x]` without a string literal, a record key that is not an
 *                              identifier or string
 * - PARSE_DUPLICATE_KEY        the same key twice in a record literal
 * - PARSE_INVALID_HAS          `has` not followed by an attribute name, a dotted path or a string
 * - PARSE_INVALID_PATTERN      `like` not followed by a string literal
 * - PARSE_INVALID_TYPE         `is` not followed by an entity type name
 * - PARSE_INVALID_ENTITY       an entity literal that is not `Type::"id"` (`User::{...}`)
 */
export const PARSE_ERROR_CODES = [
  'PARSE_TOO_LARGE',
  'PARSE_TOO_DEEP',
  'PARSE_TOO_MANY_ERRORS',
  'PARSE_UNEXPECTED_CHAR',
  'PARSE_UNTERMINATED_STRING',
  'PARSE_INVALID_ESCAPE',
  'PARSE_INTEGER_OVERFLOW',
  'PARSE_EXPECTED_TOKEN',
  'PARSE_UNEXPECTED_TOKEN',
  'PARSE_UNSUPPORTED_OPERATOR',
  'PARSE_CHAINED_RELATION',
  'PARSE_TOO_MANY_UNARY',
  'PARSE_INVALID_EFFECT',
  'PARSE_INVALID_SCOPE',
  'PARSE_EMPTY_CONDITION',
  'PARSE_DUPLICATE_ANNOTATION',
  'PARSE_TEMPLATE_UNSUPPORTED',
  'PARSE_RESERVED_IDENTIFIER',
  'PARSE_UNKNOWN_VARIABLE',
  'PARSE_UNKNOWN_FUNCTION',
  'PARSE_INVALID_CALL',
  'PARSE_INVALID_METHOD',
  'PARSE_INVALID_ATTRIBUTE',
  'PARSE_DUPLICATE_KEY',
  'PARSE_INVALID_HAS',
  'PARSE_INVALID_PATTERN',
  'PARSE_INVALID_TYPE',
  'PARSE_INVALID_ENTITY',
] as const;

export type ParseErrorCode = (typeof PARSE_ERROR_CODES)[number];

/** One problem in policy text, located like the AST's `Loc`: 1-based line/column, 0-based offset. */
export interface Diagnostic<Code extends string = ParseErrorCode> {
  code: Code;
  message: string;
  source: string;
  line: number;
  column: number;
  /** Offset in the text (UTF-16 code units). */
  offset: number;
  /** Length of the offending range (UTF-16 code units); 0 at end of input. */
  length: number;
}

/** `file.cedar:3:14: error: expected `;` [PARSE_EXPECTED_TOKEN]` */
export function formatDiagnostic(d: Diagnostic<string>, severity: 'error' | 'warning' = 'error'): string {
  return `${d.source}:${d.line}:${d.column}: ${severity}: ${d.message} [${d.code}]`;
}

/** Policy text that could not be parsed. Carries every diagnostic found, in source order. */
export class PolicyParseError extends ZtedgeError<'POLICY_PARSE'> {
  readonly diagnostics: Diagnostic[];

  constructor(diagnostics: Diagnostic[]) {
    if (diagnostics.length === 0) throw new RangeError('PolicyParseError needs at least one diagnostic');
    const more = diagnostics.length > 1 ? ` (and ${diagnostics.length - 1} more)` : '';
    super('POLICY_PARSE', formatDiagnostic(diagnostics[0]) + more);
    this.diagnostics = diagnostics;
  }
}
