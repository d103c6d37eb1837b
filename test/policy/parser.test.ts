import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import type { Expr } from '../../src/policy/ast.js';
import { PARSE_ERROR_CODES, PolicyParseError, formatDiagnostic } from '../../src/policy/errors.js';
import { parseEntityUid, parseExpression, parsePolicies } from '../../src/policy/parser.js';
import { diagnosticsOf, expr, exprErrors, policy, policyErrors, stripLocs, when } from './parser-support/ast-tools.js';

const CEDAR = new URL('../vectors/cedar/', import.meta.url);

const long = (value: bigint): Expr => ({ kind: 'long', value }) as Expr;
const str = (value: string): Expr => ({ kind: 'string', value }) as Expr;
const v = (name: string): Expr => ({ kind: 'var', name }) as Expr;
const attr = (target: Expr, name: string): Expr => ({ kind: 'getAttr', target, attr: name }) as Expr;
const bin = (op: string, left: Expr, right: Expr): Expr => ({ kind: 'binary', op, left, right }) as Expr;
const entity = (type: string, id: string): Expr => ({ kind: 'entity', uid: { type, id } }) as Expr;

/** Removes the `‸` marker from `text` and returns where it was (1-based line/column). */
function marked(text: string): { text: string; line: number; column: number; offset: number } {
  const offset = text.indexOf('‸');
  if (offset < 0) throw new Error('no marker');
  const before = text.slice(0, offset);
  const line = before.split('\n').length;
  const column = offset - (before.lastIndexOf('\n') + 1) + 1;
  return { text: before + text.slice(offset + 1), line, column, offset };
}

describe('policies', () => {
  it('parses every policy file of the Cedar conformance tests, with the ids their requests name', () => {
    const testDir = new URL('tests/', CEDAR);
    const cases = readdirSync(testDir, { recursive: true, encoding: 'utf8' }).filter((f) => f.endsWith('.json'));
    expect(cases.length).toBeGreaterThan(20);
    for (const file of cases) {
      const spec = JSON.parse(readFileSync(new URL(file, testDir), 'utf8')) as {
        policies: string;
        requests: Array<{ reason: string[] }>;
      };
      const policies = parsePolicies(readFileSync(new URL(spec.policies, CEDAR), 'utf8'), { source: spec.policies });
      const ids = new Set(policies.map((p) => p.id));
      expect(policies.length).toBeGreaterThan(0);
      for (const request of spec.requests) for (const id of request.reason) expect(ids, `${file}: ${id}`).toContain(id);
    }
  });

  it('numbers policies from idPrefix and startIndex, in source order', () => {
    const text = 'permit(principal, action, resource);\nforbid(principal, action, resource);';
    expect(parsePolicies(text).map((p) => [p.id, p.effect])).toEqual([['policy0', 'permit'], ['policy1', 'forbid']]);
    expect(parsePolicies(text, { idPrefix: 'cell.', startIndex: 7 }).map((p) => p.id)).toEqual(['cell.7', 'cell.8']);
  });

  it('accepts empty text, whitespace, comments and CRLF line ends', () => {
    expect(parsePolicies('')).toEqual([]);
    expect(parsePolicies(' \t\r\n// nothing here\r\n')).toEqual([]);
    expect(parsePolicies('// a\r\npermit(principal, action, resource) // b\r\n;').map((p) => p.id)).toEqual(['policy0']);
  });

  it('reads annotations with and without values, in source order', () => {
    const p = policy('@approval("2") @safety @rate("20/60s") @if("reserved words are fine as keys") permit(principal, action, resource);');
    expect(p.annotations).toEqual([
      { key: 'approval', value: '2' },
      { key: 'safety', value: '' },
      { key: 'rate', value: '20/60s' },
      { key: 'if', value: 'reserved words are fine as keys' },
    ]);
    expect(policy('@note("tab\\there \\u{1F916}") forbid(principal, action, resource);').annotations[0].value).toBe('tab\there 🤖');
  });

  it('reads every scope form', () => {
    expect(policy('permit(principal, action, resource);')).toMatchObject({
      principal: { op: 'any' },
      action: { op: 'any' },
      resource: { op: 'any' },
    });
    expect(policy('permit(principal == User::"alice", action == Action::"view", resource == Photo::"p.jpg");')).toMatchObject({
      principal: { op: '==', entity: { type: 'User', id: 'alice' } },
      action: { op: '==', entity: { type: 'Action', id: 'view' } },
      resource: { op: '==', entity: { type: 'Photo', id: 'p.jpg' } },
    });
    expect(policy('permit(principal in Group::"ops", action in Robot::Action::"move", resource in Robot::Cell::"c1");')).toMatchObject({
      principal: { op: 'in', entity: { type: 'Group', id: 'ops' } },
      action: { op: 'in', entities: [{ type: 'Robot::Action', id: 'move' }] },
      resource: { op: 'in', entity: { type: 'Robot::Cell', id: 'c1' } },
    });
    expect(policy('permit(principal is User, action in [Action::"a", Action::"b",], resource is Robot::Arm in Robot::Cell::"c1");')).toMatchObject({
      principal: { op: 'is', entityType: 'User' },
      action: { op: 'in', entities: [{ type: 'Action', id: 'a' }, { type: 'Action', id: 'b' }] },
      resource: { op: 'is', entityType: 'Robot::Arm', in: { type: 'Robot::Cell', id: 'c1' } },
    });
    expect(policy('permit(principal, action in [], resource,);').action).toEqual({ op: 'in', entities: [] });
    expect(policy('permit(principal == (User::"a"), action, resource);').principal).toMatchObject({ op: '==' });
    expect(policy('permit(principal is User, action, resource);').principal).not.toHaveProperty('in');
  });

  it('keeps conditions in order', () => {
    const p = policy('forbid(principal, action, resource) when { true } unless { false } when { 1 < 2 };');
    expect(p.conditions.map((c) => c.kind)).toEqual(['when', 'unless', 'when']);
    expect(p.conditions.map((c) => c.body.kind)).toEqual(['bool', 'bool', 'binary']);
  });
});

describe('expressions', () => {
  it('reads literals', () => {
    expect(expr('true')).toEqual({ kind: 'bool', value: true });
    expect(expr('false')).toEqual({ kind: 'bool', value: false });
    expect(expr('007')).toEqual(long(7n));
    expect(expr('9223372036854775807')).toEqual(long(9223372036854775807n));
    expect(expr('-9223372036854775808')).toEqual(long(-9223372036854775808n));
    expect(expr('- 42')).toEqual(long(-42n));
    expect(expr('"say \\"hi\\"\\n\\r\\t\\0\\\\\\\'\\x41\\u{1F600}\\u{0_1}"')).toEqual(str('say "hi"\n\r\t\0\\\'A😀\u0001'));
    expect(expr('"line\nbreak"')).toEqual(str('line\nbreak'));
  });

  it('reads variables, entity literals and extension calls', () => {
    for (const name of ['principal', 'action', 'resource', 'context']) expect(expr(name)).toEqual(v(name));
    expect(expr('Robot::Arm::"a\\"1"')).toEqual(entity('Robot::Arm', 'a"1'));
    expect(expr('principal::"p"')).toEqual(entity('principal', 'p'));
    expect(expr('permit::"x"')).toEqual(entity('permit', 'x'));
    expect(expr('ip("10.0.0.1")')).toEqual({ kind: 'call', fn: 'ip', args: [str('10.0.0.1')] });
    expect(expr('decimal("1.5",)')).toEqual({ kind: 'call', fn: 'decimal', args: [str('1.5')] });
    expect(expr('datetime("2024-01-01")')).toMatchObject({ kind: 'call', fn: 'datetime' });
    expect(expr('duration("1h")')).toMatchObject({ kind: 'call', fn: 'duration' });
  });

  it('reads sets and records, trailing commas allowed', () => {
    expect(expr('[]')).toEqual({ kind: 'set', elements: [] });
    expect(expr('[1, [2], ]')).toEqual({ kind: 'set', elements: [long(1n), { kind: 'set', elements: [long(2n)] }] });
    expect(expr('{}')).toEqual({ kind: 'record', entries: [] });
    expect(expr('{ b: 1, "a key": "x", principal: true, }')).toEqual({
      kind: 'record',
      entries: [['b', long(1n)], ['a key', str('x')], ['principal', { kind: 'bool', value: true }]],
    });
  });

  it('reads member access, indexing and methods', () => {
    expect(expr('context.args["max speed"].value')).toEqual(attr(attr(attr(v('context'), 'args'), 'max speed'), 'value'));
    expect(expr('principal["if"]')).toEqual(attr(v('principal'), 'if'));
    expect(expr('principal.contains')).toEqual(attr(v('principal'), 'contains'));
    expect(expr('[1].containsAll([1, 2])')).toEqual({
      kind: 'method',
      target: { kind: 'set', elements: [long(1n)] },
      method: 'containsAll',
      args: [{ kind: 'set', elements: [long(1n), long(2n)] }],
    });
    expect(expr('context.ip.isLoopback()')).toEqual({ kind: 'method', target: attr(v('context'), 'ip'), method: 'isLoopback', args: [] });
    expect(expr('ip("1.2.3.4").isInRange(ip("1.0.0.0/8"))')).toMatchObject({ kind: 'method', method: 'isInRange', target: { kind: 'call' } });
    expect(expr('principal.getTag("zone")')).toMatchObject({ kind: 'method', method: 'getTag', args: [str('zone')] });
  });

  it('checks method names, and the argument counts of built-in methods only', () => {
    const builtins: Array<[string, number]> = [['contains', 1], ['containsAll', 1], ['containsAny', 1], ['isEmpty', 0], ['hasTag', 1], ['getTag', 1]];
    for (const [name, arity] of builtins) {
      const args = Array.from({ length: arity }, () => 'context.x');
      expect(expr(`context.v.${name}(${args.join(', ')})`)).toMatchObject({ kind: 'method', method: name });
      const wrong = Array.from({ length: arity + 1 }, () => 'context.x');
      expect(exprErrors(`context.v.${name}(${wrong.join(', ')})`).map((d) => d.code)).toEqual(['PARSE_INVALID_METHOD']);
    }
    // Extension methods parse with any count, as in Cedar: a wrong count fails when evaluated.
    const extensions = ['isIpv4', 'isIpv6', 'isLoopback', 'isMulticast', 'isInRange', 'lessThan', 'lessThanOrEqual', 'greaterThan',
      'greaterThanOrEqual', 'offset', 'durationSince', 'toDate', 'toTime', 'toMilliseconds', 'toSeconds', 'toMinutes', 'toHours', 'toDays'];
    for (const name of extensions) {
      for (const count of [0, 1, 3]) {
        const args = Array.from({ length: count }, () => 'context.x');
        expect(expr(`context.v.${name}(${args.join(', ')})`)).toMatchObject({ kind: 'method', method: name, args: args.map(() => ({ kind: 'getAttr' })) });
      }
    }
    expect(exprErrors('context.v.size()').map((d) => d.code)).toEqual(['PARSE_INVALID_METHOD']);
    expect(exprErrors('context.v.ip("x")')[0].message).toContain('is a function, not a method');
    expect(exprErrors('lessThan(1, 2)')[0].message).toContain('is a method');
  });

  it('parses extension function calls with any argument count, as Cedar does', () => {
    expect(expr('ip()')).toMatchObject({ kind: 'call', fn: 'ip', args: [] });
    expect(expr('duration("1h", 2)')).toMatchObject({ kind: 'call', fn: 'duration', args: [str('1h'), long(2n)] });
  });

  it('desugars multi-level has into a left-nested conjunction', () => {
    const p = v('principal');
    const has = (target: Expr, name: string): Expr => ({ kind: 'has', target, attr: name }) as Expr;
    expect(expr('principal has a')).toEqual(has(p, 'a'));
    expect(expr('principal has "a b"')).toEqual(has(p, 'a b'));
    expect(expr('principal has a.b.c')).toEqual({
      kind: 'and',
      left: { kind: 'and', left: has(p, 'a'), right: has(attr(p, 'a'), 'b') },
      right: has(attr(attr(p, 'a'), 'b'), 'c'),
    });
    expect(expr('principal has context.permit')).toMatchObject({ kind: 'and', left: has(p, 'context') });
  });

  it('reads like patterns: `*` is a wildcard, `\\*` a literal star', () => {
    const like = (text: string) => (expr(`context.s like ${text}`) as Extract<Expr, { kind: 'like' }>).pattern;
    expect(like('"*.jpg"')).toEqual([{ kind: 'wildcard' }, { kind: 'text', text: '.jpg' }]);
    expect(like('"a\\*b*c\\\\*"')).toEqual([
      { kind: 'text', text: 'a*b' },
      { kind: 'wildcard' },
      { kind: 'text', text: 'c\\' },
      { kind: 'wildcard' },
    ]);
    expect(like('""')).toEqual([]);
    expect(like('"**"')).toEqual([{ kind: 'wildcard' }, { kind: 'wildcard' }]);
    // As in Cedar, only the `\*` spelling is literal: an escaped code point for `*` is a wildcard.
    expect(like('"\\u{2a}"')).toEqual([{ kind: 'wildcard' }]);
  });

  it('reads is and is-in', () => {
    expect(expr('principal is Robot::Arm')).toEqual({ kind: 'is', target: v('principal'), entityType: 'Robot::Arm' });
    expect(expr('resource is Doc in Folder::"f" + 1')).toEqual({
      kind: 'is',
      target: v('resource'),
      entityType: 'Doc',
      in: bin('+', entity('Folder', 'f'), long(1n)),
    });
  });

  it('reads unary runs of up to four and folds a minus into an integer literal', () => {
    const t = { kind: 'bool', value: true } as Expr;
    expect(expr('!!!!true')).toEqual({ kind: 'not', arg: { kind: 'not', arg: { kind: 'not', arg: { kind: 'not', arg: t } } } });
    expect(expr('--9223372036854775808')).toEqual({ kind: 'neg', arg: long(-9223372036854775808n) });
    expect(expr('-(5)')).toEqual({ kind: 'neg', arg: long(5n) });
    expect(expr('-5.x')).toEqual({ kind: 'neg', arg: attr(long(5n), 'x') });
    expect(expr('-context.x')).toEqual({ kind: 'neg', arg: attr(v('context'), 'x') });
    expect(expr('1 - -1')).toEqual(bin('-', long(1n), long(-1n)));
  });

  it('reads if-then-else, nested anywhere a full expression is allowed', () => {
    expect(expr('if context.a then 1 else if context.b then 2 else 3')).toEqual({
      kind: 'if',
      cond: attr(v('context'), 'a'),
      then: long(1n),
      else: { kind: 'if', cond: attr(v('context'), 'b'), then: long(2n), else: long(3n) },
    });
    expect(expr('[if true then 1 else 2]')).toMatchObject({ kind: 'set', elements: [{ kind: 'if' }] });
    expect(expr('if if true then false else true then 1 else 2')).toMatchObject({ kind: 'if', cond: { kind: 'if' } });
  });

  // Each pair must parse to the same tree: the left side relies on precedence/associativity.
  it.each([
    ['1 + 2 * 3', '1 + (2 * 3)'],
    ['1 * 2 + 3', '(1 * 2) + 3'],
    ['1 - 2 - 3', '(1 - 2) - 3'],
    ['1 * 2 * 3', '(1 * 2) * 3'],
    ['1 + 2 - 3 + 4', '((1 + 2) - 3) + 4'],
    ['context.a || context.b && context.c', 'context.a || (context.b && context.c)'],
    ['context.a && context.b || context.c', '(context.a && context.b) || context.c'],
    ['context.a || context.b || context.c', '(context.a || context.b) || context.c'],
    ['context.a && context.b && context.c', '(context.a && context.b) && context.c'],
    ['1 + 2 < 3 * 4', '(1 + 2) < (3 * 4)'],
    ['1 < 2 && 3 == 4', '(1 < 2) && (3 == 4)'],
    ['principal in context.g || context.b', '(principal in context.g) || context.b'],
    ['context.x has a && context.y like "*"', '(context.x has a) && (context.y like "*")'],
    ['1 + 2 has a', '(1 + 2) has a'],
    ['principal is User in context.g && true', '(principal is User in context.g) && true'],
    ['!context.a.b', '!(context.a.b)'],
    ['-context.a * 2', '(-(context.a)) * 2'],
    ['!context.a && context.b', '(!context.a) && context.b'],
    ['if context.a then 1 else 2 + 3', 'if context.a then 1 else (2 + 3)'],
    ['if context.a then context.b else context.c || context.d', 'if context.a then context.b else (context.c || context.d)'],
  ])('%s  ≡  %s', (implicit, explicit) => {
    expect(expr(implicit)).toEqual(expr(explicit));
  });

  it('calls only extension functions by name', () => {
    for (const text of ['(principal.contains)(1)', '"a"(1)', 'principal(1)', 'principal.contains(1)(2)', 'context["f"](1)']) {
      expect(exprErrors(text).map((d) => d.code), text).toEqual(['PARSE_INVALID_CALL']);
    }
    expect(exprErrors('Robot::move(1)').map((d) => d.code)).toEqual(['PARSE_UNKNOWN_FUNCTION']);
    expect(exprErrors('contains(1)')[0].message).toContain('is a method');
  });

  it('treats relations as non-associative', () => {
    for (const text of ['1 == 2 == 3', '1 < 2 == true', 'principal in A::"a" in A::"b"', 'principal has a has b', 'principal is A is B', 'principal like "x" == true', 'principal is A == true']) {
      expect(exprErrors(text).map((d) => d.code), text).toEqual(['PARSE_CHAINED_RELATION']);
    }
    expect(expr('(1 == 2) == true')).toEqual(bin('==', bin('==', long(1n), long(2n)), { kind: 'bool', value: true } as Expr));
  });

  it('rejects reserved identifiers where Cedar does, and accepts them where Cedar does', () => {
    for (const text of ['principal.if', 'principal.true', 'principal.in', 'principal.is', 'principal.__cedar', 'principal has then', 'principal has a.like', '{if: 1}', '{__cedar: 1}', 'is::"a"', 'X::__cedar::"a"', 'principal is __cedar', '__cedar::ip("a")']) {
      expect(exprErrors(text).map((d) => d.code), text).toContain('PARSE_RESERVED_IDENTIFIER');
    }
    for (const text of ['principal["if"]', 'principal has "__cedar"', '{"in": 1}', 'principal.principal', 'principal has permit', 'A::__cedar_x::"a"', 'principal is principal', '{when: 1}']) {
      expect(() => parseExpression(text), text).not.toThrow();
    }
  });
});

describe('locations', () => {
  const text = [
    '// header',
    '@id("rule")',
    'permit (',
    '  principal == User::"a",',
    '  action,',
    '  resource',
    ')',
    'when { principal.level >= 3 && context.ok };',
  ].join('\n');
  const [p] = parsePolicies(text, { source: 'cell.cedar' });
  const slice = (loc: { offset: number; length: number }): string => text.slice(loc.offset, loc.offset + loc.length);

  it('spans the policy from its first annotation to the semicolon', () => {
    expect(p.loc).toMatchObject({ source: 'cell.cedar', line: 2, column: 1 });
    expect(slice(p.loc)).toBe(text.slice(text.indexOf('@id'), text.lastIndexOf(';') + 1));
    expect(slice(p.annotations[0].loc)).toBe('@id("rule")');
  });

  it('locates scope constraints, conditions and every expression node', () => {
    if (p.principal.op !== '==') throw new Error('expected principal ==');
    expect(p.principal.loc).toMatchObject({ line: 4, column: 3 });
    expect(slice(p.principal.loc)).toBe('principal == User::"a"');
    expect(slice(p.conditions[0].loc)).toBe('when { principal.level >= 3 && context.ok }');
    const body = p.conditions[0].body as Extract<Expr, { kind: 'and' }>;
    expect(body.loc).toMatchObject({ line: 8, column: 8 });
    expect(slice(body.loc)).toBe('principal.level >= 3 && context.ok');
    expect(slice(body.left.loc)).toBe('principal.level >= 3');
    expect(slice((body.left as Extract<Expr, { kind: 'binary' }>).left.loc)).toBe('principal.level');
    expect(slice(body.right.loc)).toBe('context.ok');
  });

  it('includes parentheses and folded signs in the spans of the nodes they delimit', () => {
    const e = parseExpression('(1 + 2) * -3') as Extract<Expr, { kind: 'binary' }>;
    expect(e.loc).toMatchObject({ offset: 0, length: 12 });
    expect(e.right.loc).toMatchObject({ offset: 10, length: 2 });
  });
});

describe('errors', () => {
  // One text per diagnostic code; `‸` marks where the diagnostic must point.
  const CASES: Array<[string, string]> = [
    ['PARSE_UNEXPECTED_CHAR', 'permit(principal, action, resource)\nwhen { 1 ‸# 2 };'],
    ['PARSE_UNTERMINATED_STRING', 'permit(principal, action, resource);\npermit(principal == User::‸"abc, action, resource);'],
    ['PARSE_INVALID_ESCAPE', 'permit(principal, action, resource)\nwhen { context.a == "ok\\n but ‸\\q" };'],
    ['PARSE_INTEGER_OVERFLOW', 'permit(principal, action, resource) when {\n  context.n < ‸9223372036854775808 };'],
    ['PARSE_EXPECTED_TOKEN', 'permit(principal, action, resource)\nwhen { true }\n‸'],
    ['PARSE_UNEXPECTED_TOKEN', 'permit(principal, action, resource) when { ‸) };'],
    ['PARSE_UNSUPPORTED_OPERATOR', 'permit(principal, action, resource) when { context.a ‸/ 2 == 1 };'],
    ['PARSE_CHAINED_RELATION', 'permit(principal, action, resource) when { 1 < 2 ‸< 3 };'],
    ['PARSE_TOO_MANY_UNARY', 'permit(principal, action, resource) when { !!!!‸!context.a };'],
    ['PARSE_INVALID_EFFECT', '@id("x")\n‸allow(principal, action, resource);'],
    ['PARSE_INVALID_SCOPE', 'permit(\n  principal ‸< User::"a",\n  action,\n  resource\n);'],
    ['PARSE_EMPTY_CONDITION', 'permit(principal, action, resource) when {‸};'],
    ['PARSE_DUPLICATE_ANNOTATION', '@a("1")\n@‸a("2")\npermit(principal, action, resource);'],
    ['PARSE_TEMPLATE_UNSUPPORTED', 'permit(principal == ‸?principal, action, resource);'],
    ['PARSE_RESERVED_IDENTIFIER', 'permit(principal, action, resource) when { context.‸then };'],
    ['PARSE_UNKNOWN_VARIABLE', 'permit(principal, action, resource) when { ‸user.name == "a" };'],
    ['PARSE_UNKNOWN_FUNCTION', 'permit(principal, action, resource) when { ‸ipaddr("1.2.3.4") };'],
    ['PARSE_INVALID_CALL', 'permit(principal, action, resource) when { context["f"]‸(1) };'],
    ['PARSE_INVALID_METHOD', 'permit(principal, action, resource) when { context.s.‸startsWith("a") };'],
    ['PARSE_INVALID_ATTRIBUTE', 'permit(principal, action, resource) when { context[‸0] };'],
    ['PARSE_DUPLICATE_KEY', 'permit(principal, action, resource) when { {a: 1, ‸"a": 2} == context };'],
    ['PARSE_INVALID_HAS', 'permit(principal, action, resource) when { context has ‸1 };'],
    ['PARSE_INVALID_PATTERN', 'permit(principal, action, resource) when { context.s like ‸context.p };'],
    ['PARSE_INVALID_TYPE', 'permit(principal, action, resource) when { principal is ‸"User" };'],
    ['PARSE_INVALID_ENTITY', 'permit(principal, action, resource) when { principal == User::‸{id: "a"} };'],
    ['PARSE_TOO_DEEP', `permit(principal, action, resource) when { ${'('.repeat(128)}‸(1${')'.repeat(129)} };`],
  ];

  it.each(CASES)('%s', (code, source) => {
    const m = marked(source);
    const diagnostics = policyErrors(m.text, { source: 'test.cedar' });
    expect(diagnostics.map((d) => d.code)).toEqual([code]);
    expect(diagnostics[0]).toMatchObject({ source: 'test.cedar', line: m.line, column: m.column, offset: m.offset });
    expect(diagnostics[0].length).toBeGreaterThanOrEqual(0);
  });

  it('has a case for every documented code', () => {
    const covered = new Set(CASES.map(([code]) => code));
    covered.add('PARSE_TOO_LARGE').add('PARSE_TOO_MANY_ERRORS'); // tested below
    expect([...PARSE_ERROR_CODES].filter((c) => !covered.has(c))).toEqual([]);
  });

  it('formats diagnostics as file:line:column and sums up the rest in the message', () => {
    const text = 'permit(principal, action, resource) when { context.a == 1 }\npermit(principal, action, resource);\nforbid(principal, actoin, resource);';
    let error: unknown;
    try {
      parsePolicies(text, { source: 'cell.cedar' });
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PolicyParseError);
    const err = error as PolicyParseError;
    expect(err.code).toBe('POLICY_PARSE');
    expect(err.diagnostics).toHaveLength(2);
    expect(formatDiagnostic(err.diagnostics[0])).toBe('cell.cedar:2:1: error: expected `when`, `unless` or `;`, found `permit` [PARSE_EXPECTED_TOKEN]');
    expect(err.message).toBe(`${formatDiagnostic(err.diagnostics[0])} (and 1 more)`);
    expect(err.diagnostics[1]).toMatchObject({ code: 'PARSE_INVALID_SCOPE', line: 3, column: 19 });
  });

  it('recovers at the next semicolon and reports every broken policy, in source order', () => {
    const text = [
      'permit(principal, action, resource) when { 1 + };',
      'permit(principal, action, resource);',
      'forbid(principal == User::"a", action, resource) when { {a: 1, a: 2} == context.r && context.s.trim() };',
      'permit(principal, action, resource) when { context.a == "x\\q" };',
      'permit(principal, action, resource) when { context.ok };',
      '@a @a allow(principal, action, resource);',
    ].join('\n');
    const diagnostics = policyErrors(text);
    expect(diagnostics.map((d) => [d.line, d.code])).toEqual([
      [1, 'PARSE_UNEXPECTED_TOKEN'],
      [3, 'PARSE_DUPLICATE_KEY'],
      [3, 'PARSE_INVALID_METHOD'],
      [4, 'PARSE_INVALID_ESCAPE'],
      [6, 'PARSE_DUPLICATE_ANNOTATION'],
      [6, 'PARSE_INVALID_EFFECT'],
    ]);
  });

  it('reports a stray semicolon and an unterminated policy', () => {
    expect(policyErrors(';').map((d) => d.code)).toEqual(['PARSE_EXPECTED_TOKEN']);
    expect(policyErrors('permit(principal, action, resource)')).toMatchObject([{ code: 'PARSE_EXPECTED_TOKEN', line: 1, column: 36, length: 0 }]);
  });

  it('explains scope mistakes', () => {
    const scope = (text: string): string[] => policyErrors(text).map((d) => `${d.code}: ${d.message}`);
    expect(scope('permit();')).toEqual(['PARSE_INVALID_SCOPE: the policy scope is missing `principal`']);
    expect(scope('permit(principal, action);')).toEqual(['PARSE_INVALID_SCOPE: the policy scope is missing `resource`']);
    expect(scope('permit(action, principal, resource);')[0]).toContain('expected `principal` in the policy scope, found `action`');
    expect(scope('permit(principal, action, resource, context);')[0]).toContain('exactly principal, action and resource');
    expect(scope('permit(principal: User, action, resource);')[0]).toContain('`:`');
    expect(scope('permit(principal in [User::"a"], action, resource);')[0]).toContain('found a set');
    expect(scope('permit(principal == principal, action, resource);')[0]).toContain('found an expression');
    expect(scope('permit(principal is User == User::"a", action, resource);')[0]).toContain('`is` cannot be combined with `==`');
    expect(scope('permit(principal, action is Action, resource);')[0]).toContain('`is` cannot appear in the action scope');
    expect(scope('permit(principal, action == [Action::"a"], resource);')[0]).toContain('one entity literal');
    expect(scope('permit(principal, action in [Action::"a", 1], resource);')[0]).toContain('an entity literal or a list');
    expect(scope('permit(principal, action == User::"a", resource);')[0]).toContain('found type `User`');
  });

  it('refuses text over maxBytes before lexing, counting UTF-8 bytes', () => {
    const text = 'permit(principal, action, resource) when { context.name == "ééé" };';
    expect(() => parsePolicies(text, { maxBytes: Buffer.byteLength(text) })).not.toThrow();
    const d = policyErrors(text, { maxBytes: text.length });
    expect(d).toEqual([{ code: 'PARSE_TOO_LARGE', message: expect.stringContaining(`${text.length} bytes`), source: '<policy>', line: 1, column: 1, offset: 0, length: 0 }]);
    expect(policyErrors('#'.repeat(2_000_000)).map((x) => x.code)).toEqual(['PARSE_TOO_LARGE']);
  });

  it('stops after 100 diagnostics', () => {
    const d = policyErrors('x;'.repeat(500));
    expect(d).toHaveLength(101);
    expect(d.slice(0, 100).every((x) => x.code === 'PARSE_INVALID_EFFECT' || x.code === 'PARSE_EXPECTED_TOKEN')).toBe(true);
    expect(d[100].code).toBe('PARSE_TOO_MANY_ERRORS');
  });

  it('validates its options', () => {
    expect(() => parsePolicies('', { maxDepth: 0 })).toThrow(RangeError);
    expect(() => parsePolicies('', { maxDepth: 100_000 })).toThrow(RangeError);
    expect(() => parsePolicies('', { startIndex: -1 })).toThrow(RangeError);
    expect(() => parsePolicies('', { maxBytes: Number.NaN })).toThrow(RangeError);
  });
});

describe('nesting bounds', () => {
  const N = 100_000;
  const deep: Array<[string, string]> = [
    ['parentheses', '('.repeat(N) + '1' + ')'.repeat(N)],
    ['sets', '['.repeat(N) + ']'.repeat(N)],
    ['records', '{a: '.repeat(N) + '1' + '}'.repeat(N)],
    ['negations', '!('.repeat(N) + 'true' + ')'.repeat(N)],
    ['if chains', 'if '.repeat(N) + 'true'],
    ['method arguments', 'context.contains('.repeat(N) + '1' + ')'.repeat(N)],
    ['call arguments', 'ip('.repeat(N) + '"a"' + ')'.repeat(N)],
    ['unclosed openers', '(['.repeat(N)],
    ['|| chains', Array.from({ length: N }, () => 'context.a').join(' || ')],
    ['&& chains', Array.from({ length: N }, () => 'true').join('&&')],
    ['+ chains', Array.from({ length: N }, () => '1').join(' + ')],
    ['attribute chains', 'context' + '.a'.repeat(N)],
    ['index chains', 'context' + '["a"]'.repeat(N)],
    ['has paths', 'context has ' + Array.from({ length: N }, () => 'a').join('.')],
  ];

  it.each(deep)('refuses deep %s with PARSE_TOO_DEEP, without exhausting the stack', (_name, body) => {
    const d = policyErrors(when(body), { maxBytes: 16 * 1024 * 1024 });
    expect(d.map((x) => x.code)).toEqual(['PARSE_TOO_DEEP']);
  });

  it('accepts nesting up to maxDepth and refuses one more', () => {
    const nested = (n: number): string => '['.repeat(n) + ']'.repeat(n);
    expect(() => parseExpression(nested(10), { maxDepth: 10 })).not.toThrow();
    expect(diagnosticsOf(() => parseExpression(nested(11), { maxDepth: 10 })).map((d) => d.code)).toEqual(['PARSE_TOO_DEEP']);
    const chain = (n: number): string => Array.from({ length: n + 1 }, () => '1').join(' + ');
    expect(() => parseExpression(chain(10), { maxDepth: 10 })).not.toThrow();
    expect(diagnosticsOf(() => parseExpression(chain(11), { maxDepth: 10 })).map((d) => d.code)).toEqual(['PARSE_TOO_DEEP']);
  });

  it('accepts the deepest nesting the ceiling allows', () => {
    const body = '('.repeat(500) + '1' + ')'.repeat(500);
    expect(parseExpression(body, { maxDepth: 512 })).toEqual(expect.objectContaining({ kind: 'long', value: 1n }));
  });

  it('turns stack exhaustion on a host with a small stack into PARSE_TOO_DEEP', () => {
    const parser = fileURLToPath(new URL('../../src/policy/parser.ts', import.meta.url));
    const script = `
      const { parseExpression } = await import(${JSON.stringify(parser)});
      try {
        parseExpression('{a: '.repeat(500) + '1' + '}'.repeat(500), { maxDepth: 512 });
        console.log('parsed');
      } catch (e) {
        console.log(e.diagnostics.map((d) => d.code).join(','));
      }`;
    const out = execFileSync(process.execPath, ['--stack-size=250', '--import', 'tsx', '--input-type=module', '-e', script], {
      encoding: 'utf8',
    });
    expect(out.trim()).toBe('PARSE_TOO_DEEP');
  });

  it('bounds the size multi-level has would expand to', () => {
    // Each level repeats its target once per path step, so nesting multiplies the tree size.
    let text = 'context';
    for (let i = 0; i < 8; i++) text = `(${text} has a.b.c.d.e.f.g.h)`;
    expect(exprErrors(text).map((d) => d.code)).toEqual(['PARSE_TOO_LARGE']);
  });

  it('keeps going after a too-deep policy', () => {
    const text = when('('.repeat(1000) + '1' + ')'.repeat(1000)) + '\npermit(principal, action, resource) when { context.x.y() };';
    expect(policyErrors(text).map((d) => [d.line, d.code])).toEqual([[1, 'PARSE_TOO_DEEP'], [2, 'PARSE_INVALID_METHOD']]);
  });
});

describe('parseExpression and parseEntityUid', () => {
  it('parses a whole expression and nothing more', () => {
    expect(expr('context.speed <= 5')).toEqual(bin('<=', attr(v('context'), 'speed'), long(5n)));
    expect(exprErrors('1 2')).toMatchObject([{ code: 'PARSE_UNEXPECTED_TOKEN', source: '<expression>', column: 3 }]);
    expect(exprErrors('')).toMatchObject([{ code: 'PARSE_UNEXPECTED_TOKEN' }]);
  });

  it('parses entity uids', () => {
    expect(parseEntityUid('User::"alice"')).toEqual({ type: 'User', id: 'alice' });
    expect(parseEntityUid('  Robot::Arm::"a\\"1" ')).toEqual({ type: 'Robot::Arm', id: 'a"1' });
    expect(parseEntityUid('Action::"\\u{1F916}"')).toEqual({ type: 'Action', id: '🤖' });
  });

  it.each([
    ['User', 'PARSE_EXPECTED_TOKEN'],
    ['"alice"', 'PARSE_INVALID_ENTITY'],
    ['User::"a" extra', 'PARSE_UNEXPECTED_TOKEN'],
    ['if::"a"', 'PARSE_RESERVED_IDENTIFIER'],
    ['User::{}', 'PARSE_EXPECTED_TOKEN'],
    ['User::"\\q"', 'PARSE_INVALID_ESCAPE'],
    ['', 'PARSE_INVALID_ENTITY'],
  ])('refuses %j with %s', (text, code) => {
    const d = diagnosticsOf(() => parseEntityUid(text));
    expect(d.map((x) => x.code)).toEqual([code]);
    expect(d[0].source).toBe('<entity-uid>');
  });
});

describe('the tree', () => {
  it('is plain data: no shared mutable state between parses', () => {
    const a = parsePolicies(when('context.x == 1'));
    const b = parsePolicies(when('context.x == 1'));
    expect(stripLocs(a)).toEqual(stripLocs(b));
    expect(a[0]).not.toBe(b[0]);
  });
});
