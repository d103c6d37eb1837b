// `policy fmt` on whole files: canonical layout, comments kept where they belong, and formatting
// twice changes nothing.
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { formatPolicies } from '../../src/policy/format.js';
import { formatPolicyText } from '../../src/policy/format-text.js';
import { Lexer } from '../../src/policy/lexer.js';
import { parsePolicies } from '../../src/policy/parser.js';
import * as arb from './parser-support/arbitraries.js';
import { stripLocs } from './parser-support/ast-tools.js';

const EXAMPLES = new URL('../../policies/', import.meta.url);
const CEDAR_TESTS = new URL('../vectors/cedar/tests/', import.meta.url);

/** Formatting keeps the policies, is idempotent, and keeps every comment exactly once. */
function checkFormat(text: string, comments: readonly string[] = []): string {
  const formatted = formatPolicyText(text);
  expect(stripLocs(parsePolicies(formatted)), formatted).toEqual(stripLocs(parsePolicies(text)));
  expect(formatPolicyText(formatted), formatted).toBe(formatted);
  for (const c of comments) expect(formatted.split(c).length - 1, `${c} in\n${formatted}`).toBe(1);
  return formatted;
}

describe('formatPolicyText', () => {
  it('keeps comments above, inside and after policies', () => {
    const text = [
      '// file header',
      '',
      '',
      '// about the first policy',
      '@id("a") // the name',
      'permit(principal, // anyone',
      '  // only these actions:',
      '  action in [Action::"x", // first',
      '    Action::"y"], resource)',
      'when { context.a // a is set',
      '  && context.b };  // after the first',
      '// about the second policy',
      'forbid(principal, action, resource) unless {',
      '  // why',
      '  context.c',
      '};',
      '',
      '// the end',
    ].join('\n');
    expect(checkFormat(text)).toBe(
      [
        '// file header',
        '',
        '// about the first policy',
        '@id("a") // the name',
        'permit (',
        '  principal, // anyone',
        '  // only these actions:',
        '  action in [Action::"x", Action::"y"], // first',
        '  resource',
        ')',
        'when {',
        '  context.a && // a is set',
        '  context.b',
        '}; // after the first',
        '',
        '// about the second policy',
        'forbid (',
        '  principal,',
        '  action,',
        '  resource',
        ')',
        'unless {',
        '  // why',
        '  context.c',
        '};',
        '',
        '// the end',
        '',
      ].join('\n'),
    );
  });

  it('breaks a condition longer than a line into one operand per line, and leaves a short one whole', () => {
    const long = 'permit(principal, action, resource) when { context.first_attribute == "one" && context.second_attribute == "two" || context.third };';
    expect(checkFormat(long).split('\n').slice(5)).toEqual([
      'when {',
      '  context.first_attribute == "one" && context.second_attribute == "two" ||',
      '  context.third',
      '};',
      '',
    ]);
    expect(checkFormat('permit(principal, action, resource) when { context.a && context.b };')).toContain('when { context.a && context.b };');
  });

  it('formats text without policies, and empty text', () => {
    expect(checkFormat('// only a comment\n\n\n// and another\n')).toBe('// only a comment\n\n// and another\n');
    expect(formatPolicyText('')).toBe('');
    expect(formatPolicyText(' \n\n')).toBe('');
  });

  it('leaves the example policies as they are', () => {
    for (const dir of ['robot-cell', 'plc-gateway']) {
      for (const f of readdirSync(new URL(`${dir}/`, EXAMPLES)).filter((n) => n.endsWith('.cedar'))) {
        const text = readFileSync(new URL(`${dir}/${f}`, EXAMPLES), 'utf8');
        expect(formatPolicyText(text), `${dir}/${f}`).toBe(text);
      }
    }
  });

  it('formats every conformance policy file stably', () => {
    const files = readdirSync(CEDAR_TESTS, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.cedar'));
    for (const f of files) checkFormat(readFileSync(new URL(f, CEDAR_TESTS), 'utf8'));
  });

  it('keeps comments put anywhere between the tokens of generated policies (1,000 cases)', () => {
    const withComments = fc
      .tuple(fc.array(arb.policy, { minLength: 1, maxLength: 3 }), fc.array(fc.tuple(fc.nat(), fc.boolean()), { maxLength: 8 }))
      .map(([policies, places]) => {
        const text = formatPolicies(policies);
        const tokens: number[][] = [];
        const lexer = new Lexer(text, () => undefined);
        for (let t = lexer.next(); t.kind !== 'eof'; t = lexer.next()) tokens.push([t.offset, t.offset + t.length]);
        // Insert from the end so earlier offsets stay valid.
        const edits = places.map(([n, ownLine], i) => {
          const [start, end] = tokens[n % tokens.length]!;
          const marker = `// note-${i}-zq`;
          return ownLine ? { at: start, insert: `\n${marker}\n` } : { at: end, insert: ` ${marker}\n` };
        });
        let out = text;
        for (const e of [...edits].sort((a, b) => b.at - a.at)) out = out.slice(0, e.at) + e.insert + out.slice(e.at);
        return { text: out, comments: places.map((_, i) => `// note-${i}-zq`) };
      });
    fc.assert(
      fc.property(withComments, ({ text, comments }) => {
        checkFormat(text, comments);
      }),
      { numRuns: 1000 },
    );
  });
});
