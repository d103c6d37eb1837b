// Property tests over ~20,000 hostile inputs: mutations of real policies (byte flips, truncations,
// token insertions, deletions, duplications, deep nesting), token soup and random text. Whatever
// the input, the parser returns policies or throws PolicyParseError with well-formed, correctly
// located diagnostics; accepted policies survive a format round trip; and on inputs it can take,
// the reference parser (cedar-wasm) accepts and rejects the same texts with the same trees.
import { readdirSync, readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { PARSE_ERROR_CODES, PolicyParseError, type Diagnostic } from '../../src/policy/errors.js';
import { formatPolicies, formatPolicy } from '../../src/policy/format.js';
import { parsePolicies } from '../../src/policy/parser.js';
import * as arb from './parser-support/arbitraries.js';
import { stripLocs } from './parser-support/ast-tools.js';
import { normalizePolicy, oracleParse } from './parser-support/cedar-est.js';

const CEDAR_TESTS = new URL('../vectors/cedar/tests/', import.meta.url);
const EXAMPLES = new URL('../../policies/', import.meta.url);

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

const KITCHEN_SINK = `
@id("sink") @approval("2") @safety
forbid (principal is Robot::Operator in Group::"ops", action in [Action::"move", Robot::Action::"jog"], resource == Robot::Arm::"a\\u{1F916}")
when { context.speed > -9223372036854775808 && !(context has override.reason) || context.tags["zone-1"] like "cell-*\\*" }
unless { if principal.level >= 3 then ip(context.src).isInRange(ip("10.0.0.0/8")) else decimal("1.5").lessThan(context.d) }
when { {a: [1, -2, "x"], "b c": User::"u"}.a.containsAny([1]) && principal.hasTag("t") && principal.getTag("t") == 1 + 2 * 3 - --4 }
when { datetime("2024-01-01").offset(duration("1h")).toDate() != context.now && resource is Doc && resource in principal.folders };
`;

function cedarFiles(dir: URL): string[] {
  return readdirSync(dir, { recursive: true, encoding: 'utf8' })
    .filter((f) => f.endsWith('.cedar'))
    .map((f) => readFileSync(new URL(f, dir), 'utf8'));
}

const SEEDS = [
  KITCHEN_SINK,
  ...cedarFiles(CEDAR_TESTS),
  ...cedarFiles(EXAMPLES),
  ...fc.sample(arb.policy, { numRuns: 40, seed: 42 }).map(formatPolicy),
];

/** 1-based line and column of `offset`, counting LF, CRLF and lone CR as line breaks. */
function position(text: string, offset: number): { line: number; column: number } {
  let line = 1;
  let lineStart = 0;
  for (let i = 0; i < offset; i++) {
    const c = text.charCodeAt(i);
    if (c === 10 || (c === 13 && text.charCodeAt(i + 1) !== 10)) {
      line++;
      lineStart = i + 1;
    }
  }
  return { line, column: offset - lineStart + 1 };
}

function checkDiagnostic(text: string, d: Diagnostic): void {
  expect(PARSE_ERROR_CODES).toContain(d.code);
  expect(d.source).toBe('fuzz.cedar');
  expect(d.message.length).toBeGreaterThan(0);
  expect(d.offset).toBeGreaterThanOrEqual(0);
  expect(d.length).toBeGreaterThanOrEqual(0);
  expect(d.offset + d.length).toBeLessThanOrEqual(text.length);
  expect({ line: d.line, column: d.column }).toEqual(position(text, d.offset));
}

/** The parser's contract on any text. */
function checkOutcome(text: string): void {
  let policies;
  try {
    policies = parsePolicies(text, { source: 'fuzz.cedar' });
  } catch (e) {
    if (!(e instanceof PolicyParseError)) throw e;
    expect(e.diagnostics.length).toBeGreaterThan(0);
    expect(e.diagnostics.length).toBeLessThanOrEqual(101);
    for (const d of e.diagnostics) checkDiagnostic(text, d);
    return;
  }
  expect(policies.map((p) => p.id)).toEqual(policies.map((_, i) => `policy${i}`));
  for (const p of policies) {
    expect(p.loc.offset + p.loc.length).toBeLessThanOrEqual(text.length);
    expect(text.slice(p.loc.offset + p.loc.length - 1, p.loc.offset + p.loc.length)).toBe(';');
  }
  expect(stripLocs(parsePolicies(formatPolicies(policies)))).toEqual(stripLocs(policies));
}

describe('parser fuzzing', () => {
  it('mutated real policies: policies or PolicyParseError, nothing else (12,000 cases)', () => {
    fc.assert(fc.property(arb.mutatedText(SEEDS), checkOutcome), { numRuns: 12_000 });
  });

  it('token soup and random text: policies or PolicyParseError, nothing else (6,000 cases)', () => {
    fc.assert(fc.property(arb.tokenSoup, checkOutcome), { numRuns: 4_000 });
    fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 200 }), checkOutcome), { numRuns: 2_000 });
  });

  it('agrees with cedar-wasm on mutated policies and token soup (2,000 cases)', () => {
    // cedar-wasm cannot take lone surrogates (its JSON bridge) and overflows its stack on deep
    // nesting that ztedge refuses cleanly; such inputs are not comparable.
    const comparable = fc.oneof(arb.mutatedText(SEEDS), arb.tokenSoup).filter((t) => !LONE_SURROGATE.test(t) && t.length < 20_000);
    fc.assert(
      fc.property(comparable, (text) => {
        let reference;
        try {
          reference = oracleParse(text);
        } catch (e) {
          if (e instanceof RangeError) return;
          throw e;
        }
        let ours: { ok: true; policies: unknown[] } | { ok: false; codes: string[] };
        try {
          ours = { ok: true, policies: parsePolicies(text).map(normalizePolicy) };
        } catch (e) {
          if (!(e instanceof PolicyParseError)) throw e;
          ours = { ok: false, codes: e.diagnostics.map((d) => d.code) };
        }
        if (reference.ok) {
          // The deliberate difference: the nesting bound (128 levels of tree height, e.g. a long
          // chain of `.attr`), which Cedar does not have.
          const deliberate = ['PARSE_TOO_DEEP'];
          if (!ours.ok && ours.codes.every((c) => deliberate.includes(c))) return;
          expect(ours).toEqual({ ok: true, policies: reference.policies });
        } else {
          expect(ours.ok, reference.message).toBe(false);
        }
      }),
      { numRuns: 2_000 },
    );
  });

  it('cedar-wasm reads formatted policies exactly as they were (500 cases)', () => {
    fc.assert(
      fc.property(arb.policy, (p) => {
        const reference = oracleParse(formatPolicy(p));
        expect(reference).toEqual({ ok: true, policies: [normalizePolicy(p)] });
      }),
      { numRuns: 500 },
    );
  });
});
