// fast-check arbitraries for the parser tests: well-formed ASTs (every node kind, awkward
// literals, names that need quoting), and the policy texts the fuzz test mutates.
import fc from 'fast-check';
import type { EntityUidLit, Expr, PatternElem, PolicyAst } from '../../../src/policy/ast.js';
import { extensionFunctions } from '../../../src/policy/extensions.js';
import { BUILTIN_METHOD_ARITY } from '../../../src/policy/parser.js';

const RESERVED = new Set(['true', 'false', 'if', 'then', 'else', 'in', 'has', 'like', 'is', '__cedar']);

const identifier = fc.stringMatching(/^[A-Za-z_][A-Za-z0-9_]{0,6}$/).filter((s) => !RESERVED.has(s));

/** Attribute names and string contents: plain names, reserved words, quotes, escapes, stars. */
const text = fc.oneof(
  identifier,
  fc.constantFrom('', 'if', 'in', '__cedar', 'a b', 'x"y', 'back\\slash', 'tab\there', 'nl\nhere', 'nul\0', 'ctl\u0001', '*', 'é🤖'),
  fc.string({ maxLength: 8 }),
);

const typeName = fc.array(identifier, { minLength: 1, maxLength: 3 }).map((parts) => parts.join('::'));

export const entityUid: fc.Arbitrary<EntityUidLit> = fc.record({ type: typeName, id: text });

const actionUid: fc.Arbitrary<EntityUidLit> = fc.record({
  type: fc.constantFrom('Action', 'Robot::Action'),
  id: text,
});

const long = fc.oneof(
  fc.bigInt({ min: -(1n << 63n), max: (1n << 63n) - 1n }),
  fc.constantFrom(0n, 1n, -1n, 5n, -5n, (1n << 63n) - 1n, -(1n << 63n)),
);

/** Patterns as the parser produces them: no empty text, no two text elements in a row. */
const pattern: fc.Arbitrary<PatternElem[]> = fc
  .array(fc.oneof(text.filter((t) => t.length > 0).map((t) => ({ kind: 'text', text: t }) as PatternElem), fc.constant<PatternElem>({ kind: 'wildcard' })), { maxLength: 5 })
  .map((elems) => {
    const merged: PatternElem[] = [];
    for (const e of elems) {
      const last = merged[merged.length - 1];
      if (e.kind === 'text' && last?.kind === 'text') merged[merged.length - 1] = { kind: 'text', text: last.text + e.text };
      else merged.push(e);
    }
    return merged;
  });

// Argument counts as written (a method's receiver not counted); calls get the right count.
const methods: Array<[string, number]> = [
  ...BUILTIN_METHOD_ARITY.entries(),
  ...extensionFunctions().filter((f) => f.style === 'method').map((f): [string, number] => [f.name, f.arity - 1]),
];
const functions = extensionFunctions().filter((f) => f.style === 'function').map((f): [string, number] => [f.name, f.arity]);

/** Expressions without locations (the shape `stripLocs` gives), up to a small depth. */
export const expr: fc.Arbitrary<Expr> = fc.letrec<{ e: Expr }>((tie) => {
  const e = tie('e');
  const node = (value: Record<string, unknown>): Expr => value as unknown as Expr;
  return {
    e: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.boolean().map((value) => node({ kind: 'bool', value })),
      long.map((value) => node({ kind: 'long', value })),
      text.map((value) => node({ kind: 'string', value })),
      fc.constantFrom('principal', 'action', 'resource', 'context').map((name) => node({ kind: 'var', name })),
      entityUid.map((uid) => node({ kind: 'entity', uid })),
      fc.tuple(e, e, e).map(([cond, then, otherwise]) => node({ kind: 'if', cond, then, else: otherwise })),
      fc.tuple(fc.constantFrom('and', 'or'), e, e).map(([kind, left, right]) => node({ kind, left, right })),
      fc.tuple(fc.constantFrom('not', 'neg'), e).map(([kind, arg]) => node({ kind, arg })),
      fc
        .tuple(fc.constantFrom('==', '!=', '<', '<=', '>', '>=', 'in', '+', '-', '*'), e, e)
        .map(([op, left, right]) => node({ kind: 'binary', op, left, right })),
      fc.tuple(e, text).map(([target, attr]) => node({ kind: 'has', target, attr })),
      fc.tuple(e, text).map(([target, attr]) => node({ kind: 'getAttr', target, attr })),
      fc.tuple(e, pattern).map(([target, p]) => node({ kind: 'like', target, pattern: p })),
      fc
        .tuple(e, typeName, fc.option(e, { nil: undefined }))
        .map(([target, entityType, inExpr]) => node(inExpr === undefined ? { kind: 'is', target, entityType } : { kind: 'is', target, entityType, in: inExpr })),
      fc.array(e, { maxLength: 3 }).map((elements) => node({ kind: 'set', elements })),
      fc
        .uniqueArray(fc.tuple(text, e), { maxLength: 3, selector: ([k]) => k })
        .map((entries) => node({ kind: 'record', entries })),
      fc
        .constantFrom(...functions)
        .chain(([fn, arity]) => fc.array(e, { minLength: arity, maxLength: arity }).map((args) => node({ kind: 'call', fn, args }))),
      fc
        .tuple(e, fc.constantFrom(...methods))
        .chain(([target, [method, arity]]) =>
          fc.array(e, { minLength: arity, maxLength: arity }).map((args) => node({ kind: 'method', target, method, args })),
        ),
    ),
  };
}).e;

const scope = fc.oneof(
  fc.constant({ op: 'any' as const }),
  fc.record({ op: fc.constantFrom('==' as const, 'in' as const), entity: entityUid }),
  fc.record({ op: fc.constant('is' as const), entityType: typeName }),
  fc.record({ op: fc.constant('is' as const), entityType: typeName, in: entityUid }),
);

const actionScope = fc.oneof(
  fc.constant({ op: 'any' as const }),
  fc.record({ op: fc.constant('==' as const), entity: actionUid }),
  fc.record({ op: fc.constant('in' as const), entities: fc.array(actionUid, { maxLength: 3 }) }),
);

/** Policies without locations; ids follow the parser's default numbering for one policy. */
export const policy: fc.Arbitrary<PolicyAst> = fc
  .record({
    effect: fc.constantFrom('permit' as const, 'forbid' as const),
    annotations: fc.uniqueArray(fc.record({ key: identifier, value: text }), { maxLength: 3, selector: (a) => a.key }),
    principal: scope,
    action: actionScope,
    resource: scope,
    conditions: fc.array(fc.record({ kind: fc.constantFrom('when' as const, 'unless' as const), body: expr }), { maxLength: 3 }),
  })
  .map((p) => ({ id: 'policy0', ...p }) as unknown as PolicyAst);

// ---- mutated policy texts --------------------------------------------------------------------

/** Fragments worth splicing into policy text: every token kind, keywords, escapes, edge literals. */
export const FRAGMENTS = [
  '(', ')', '[', ']', '{', '}', '"', '\\', '::', ':', '.', ',', ';', '@', '?principal', '?x',
  '==', '!=', '<', '<=', '>', '>=', '||', '&&', '+', '-', '*', '/', '%', '!', '=', '&', '|',
  'if', 'then', 'else', 'has', 'like', 'is', 'in', 'true', 'false', '__cedar', 'when', 'unless',
  'permit', 'forbid', 'principal', 'action', 'resource', 'context', 'Action::"a"', 'User::"u"',
  'ip("1.2.3.4")', '.contains(', '.isEmpty()', '.foo()', 'decimal(', '9223372036854775808',
  '-9223372036854775808', '00000000000000000000001', '"\\u{', '"\\*"', '"\\u{D800}"', '"a*b"',
  '//', '\n', '\r', '\t', ' ', '\u00a0', '\ufeff', '🤖', '\0', '#', '$', '@id("x")', 'when {', '};',
];

const NESTING_OPENERS = ['(', '[', '{a: ', '!', '-', '!(', '-(', 'if ', 'if true then ', 'context.a.', 'ip(', '[].contains(', '1 + ', 'true || '];

type Mutation = (text: string) => string;

const position = (text: string, at: number): number => (text.length === 0 ? 0 : at % (text.length + 1));

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  // replace one character
  fc.tuple(fc.nat(), fc.oneof(fc.string({ unit: 'grapheme-ascii', minLength: 1, maxLength: 1 }), fc.string({ unit: 'binary', minLength: 1, maxLength: 1 }), fc.constantFrom('"', '\\', '(', ')', ';', '*', '\n'))).map(
    ([at, c]) => (t: string) => {
      const i = position(t, at);
      return t.slice(0, i) + c + t.slice(i + 1);
    },
  ),
  // truncate
  fc.nat().map((at) => (t: string) => t.slice(0, position(t, at))),
  // insert a fragment
  fc.tuple(fc.nat(), fc.constantFrom(...FRAGMENTS)).map(([at, f]) => (t: string) => {
    const i = position(t, at);
    return t.slice(0, i) + f + t.slice(i);
  }),
  // delete a range
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 40 })).map(([at, n]) => (t: string) => {
    const i = position(t, at);
    return t.slice(0, i) + t.slice(i + n);
  }),
  // duplicate a range
  fc.tuple(fc.nat(), fc.integer({ min: 1, max: 60 })).map(([at, n]) => (t: string) => {
    const i = position(t, at);
    return t.slice(0, i + n) + t.slice(i);
  }),
  // deep nesting spliced in, closed or not
  fc.tuple(fc.nat(), fc.constantFrom(...NESTING_OPENERS), fc.integer({ min: 1, max: 3000 }), fc.boolean()).map(
    ([at, opener, depth, close]) =>
      (t: string) => {
        const i = position(t, at);
        const closer = opener.includes('(') ? ')' : opener.startsWith('[') ? ']' : opener.startsWith('{') ? '}' : '';
        return t.slice(0, i) + opener.repeat(depth) + (close ? closer.repeat(depth) : '') + t.slice(i);
      },
  ),
);

/** A seed text with one to four mutations applied. */
export function mutatedText(seeds: readonly string[]): fc.Arbitrary<string> {
  return fc
    .tuple(fc.constantFrom(...seeds), fc.array(mutation, { minLength: 1, maxLength: 4 }))
    .map(([seed, mutations]) => mutations.reduce((t, m) => m(t), seed));
}

/** Token soup: grammar fragments and names joined by random blanks. */
export const tokenSoup: fc.Arbitrary<string> = fc
  .array(fc.tuple(fc.oneof(fc.constantFrom(...FRAGMENTS), identifier), fc.constantFrom('', ' ', '\n')), { maxLength: 40 })
  .map((parts) => parts.map(([token, blank]) => token + blank).join(''));
