import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Expr } from '../../src/policy/ast.js';
import { formatExpr, formatPolicies, formatPolicy } from '../../src/policy/format.js';
import { parseExpression, parsePolicies } from '../../src/policy/parser.js';
import * as arb from './parser-support/arbitraries.js';
import { stripLocs } from './parser-support/ast-tools.js';

const CEDAR_TESTS = new URL('../vectors/cedar/tests/', import.meta.url);

function roundTrips(text: string): void {
  const first = parsePolicies(text);
  const formatted = formatPolicies(first);
  expect(stripLocs(parsePolicies(formatted)), formatted).toEqual(stripLocs(first));
  expect(formatPolicies(parsePolicies(formatted))).toBe(formatted);
}

describe('formatPolicy', () => {
  it('writes canonical text', () => {
    const [p] = parsePolicies(
      '@id("arm \\"fast\\" moves") @safety forbid(principal in Group::"ops",action in [Action::"move",Robot::Action::"jog"],resource is Robot::Arm in Robot::Cell::"c1") when{context.speed>5&&!(context has override)}unless{principal.level>=3};',
    );
    expect(formatPolicy(p)).toBe(
      [
        '@id("arm \\"fast\\" moves")',
        '@safety',
        'forbid (',
        '  principal in Group::"ops",',
        '  action in [Action::"move", Robot::Action::"jog"],',
        '  resource is Robot::Arm in Robot::Cell::"c1"',
        ')',
        'when { context.speed > 5 && !(context has override) }',
        'unless { principal.level >= 3 };',
      ].join('\n'),
    );
  });

  it('writes a one-element action list without brackets and separates policies by a blank line', () => {
    const text = 'permit(principal, action in [Action::"a"], resource); permit(principal == U::"u", action == Action::"b", resource);';
    expect(formatPolicies(parsePolicies(text))).toBe(
      'permit (\n  principal,\n  action in Action::"a",\n  resource\n);\n\npermit (\n  principal == U::"u",\n  action == Action::"b",\n  resource\n);\n',
    );
    expect(formatPolicies([])).toBe('');
  });

  it('round-trips every conformance policy file', () => {
    const files = readdirSync(CEDAR_TESTS, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.cedar'));
    for (const f of files) roundTrips(readFileSync(new URL(f, CEDAR_TESTS), 'utf8'));
  });

  it('round-trips generated policies', () => {
    fc.assert(
      fc.property(arb.policy, (p) => {
        const text = formatPolicy(p);
        expect(stripLocs(parsePolicies(text)), text).toEqual([p]);
      }),
      { numRuns: 1000 },
    );
  });
});

describe('formatExpr', () => {
  it.each([
    ['1 + 2 * 3', '1 + 2 * 3'],
    ['(1 + 2) * 3', '(1 + 2) * 3'],
    ['1 - (2 - 3)', '1 - (2 - 3)'],
    ['(1 - 2) - 3', '1 - 2 - 3'],
    ['context.a || (context.b || context.c)', 'context.a || (context.b || context.c)'],
    ['(context.a || context.b) && context.c', '(context.a || context.b) && context.c'],
    ['(1 < 2) == true', '(1 < 2) == true'],
    ['-(5)', '-(5)'],
    ['--5', '-(-5)'],
    ['(-5).x', '(-5).x'],
    ['-5.x', '-5.x'],
    ['!(-5)', '!(-5)'],
    ['-(!context.a)', '-(!context.a)'],
    ['-(-(-(-(-context.a))))', '----(-context.a)'],
    ['!!!!(!context.a)', '!!!!(!context.a)'],
    ['-9223372036854775808', '-9223372036854775808'],
    ['(if context.a then 1 else 2) + 3', '(if context.a then 1 else 2) + 3'],
    ['if context.a then if context.b then 1 else 2 else 3', 'if context.a then if context.b then 1 else 2 else 3'],
    ['[if context.a then 1 else 2]', '[if context.a then 1 else 2]'],
    ['context["if"]["a b"].c', 'context["if"]["a b"].c'],
    ['context has "in" && context has a', 'context has "in" && context has a'],
    ['context has a.b', 'context has a && context.a has b'],
    ['(context has a.b) == true', '(context has a && context.a has b) == true'],
    ['{"if": 1, "a b": 2, c: 3}', '{"if": 1, "a b": 2, c: 3}'],
    ['context.s like "a\\*b*\\\\"', 'context.s like "a\\*b*\\\\"'],
    ['"\\u{1}\\x7f\\0\\t"', '"\\u{1}\\u{7f}\\0\\t"'],
    ['(principal is User) == true', '(principal is User) == true'],
    ['principal is User in (Group::"a")', 'principal is User in Group::"a"'],
    ['principal is User in (context.a + 1)', 'principal is User in context.a + 1'],
    ['ip("1.2.3.4").isLoopback()', 'ip("1.2.3.4").isLoopback()'],
    ['(context.a + 1).b', '(context.a + 1).b'],
    ['5.x', '5.x'],
  ])('%s  →  %s', (input, expected) => {
    const e = parseExpression(input);
    expect(formatExpr(e)).toBe(expected);
    expect(stripLocs(parseExpression(expected))).toEqual(stripLocs(e));
  });

  it('writes trees the parser cannot produce directly in a form that parses back to them', () => {
    const five = { kind: 'long', value: 5n } as Expr;
    const neg = (arg: Expr): Expr => ({ kind: 'neg', arg }) as Expr;
    for (const tree of [neg(five), neg(neg(neg(neg(neg(five))))), { kind: 'not', arg: neg(five) } as Expr]) {
      expect(stripLocs(parseExpression(formatExpr(tree))), formatExpr(tree)).toEqual(tree);
    }
  });

  it('round-trips generated expressions', () => {
    fc.assert(
      fc.property(arb.expr, (e) => {
        const text = formatExpr(e);
        expect(stripLocs(parseExpression(text)), text).toEqual(e);
      }),
      { numRuns: 3000 },
    );
  });
});
