// Helpers for parser tests: location-free views of the AST, and short-hand parsing.
import { expect } from 'vitest';
import type { Expr, PolicyAst } from '../../../src/policy/ast.js';
import { PolicyParseError, type Diagnostic } from '../../../src/policy/errors.js';
import { parseExpression, parsePolicies, type ParseOptions } from '../../../src/policy/parser.js';

/** A deep copy without `loc` fields, so trees can be compared by shape and values only. */
export function stripLocs<T>(value: T): T {
  if (Array.isArray(value)) return value.map(stripLocs) as T;
  if (value !== null && typeof value === 'object') {
    const out: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(value)) if (k !== 'loc') out[k] = stripLocs(v);
    return out as T;
  }
  return value;
}

export function expr(text: string): Expr {
  return stripLocs(parseExpression(text));
}

export function policy(text: string): PolicyAst {
  const ps = parsePolicies(text);
  expect(ps).toHaveLength(1);
  return stripLocs(ps[0]);
}

/** The diagnostics of a parse that must fail; fails the test if it does not. */
export function diagnosticsOf(run: () => unknown): Diagnostic[] {
  try {
    run();
  } catch (e) {
    if (e instanceof PolicyParseError) return e.diagnostics;
    throw e;
  }
  throw new Error('expected a PolicyParseError');
}

export function policyErrors(text: string, opts?: ParseOptions): Diagnostic[] {
  return diagnosticsOf(() => parsePolicies(text, opts));
}

export function exprErrors(text: string, opts?: ParseOptions): Diagnostic[] {
  return diagnosticsOf(() => parseExpression(text, opts));
}

/** Wraps a condition body into a policy. */
export function when(body: string): string {
  return `permit(principal, action, resource) when { ${body} };`;
}
