// Every Cedar operator: results, short-circuiting, and the evaluation error each misuse raises.
import { describe, expect, it } from 'vitest';
import { CedarRecord, CedarSet, Entities, EntityUid, I64_MAX, I64_MIN } from '../../src/policy/index.js';
import type { Value } from '../../src/policy/index.js';
import { evalError, evaluate, expectError, expectValue } from './evaluator-harness.js';

const uid = (type: string, id: string) => new EntityUid(type, id);
const set = (...xs: Value[]) => CedarSet.of(xs);

// alice -> staff -> everyone; bob -> ops; the Doc d1 has attributes and tags.
const entities = Entities.fromJson(`[
  {"uid": {"type": "User", "id": "alice"}, "attrs": {"name": "Alice", "level": 5, "groups": [{"__entity": {"type": "Group", "id": "ops"}}]},
   "parents": [{"type": "Group", "id": "staff"}], "tags": {"clearance": "high", "shift": 2}},
  {"uid": {"type": "User", "id": "bob"}, "attrs": {}, "parents": [{"type": "Group", "id": "ops"}]},
  {"uid": {"type": "Group", "id": "staff"}, "attrs": {}, "parents": [{"type": "Group", "id": "everyone"}]},
  {"uid": {"type": "Group", "id": "everyone"}, "attrs": {}, "parents": []},
  {"uid": {"type": "Doc", "id": "d1"}, "attrs": {"owner": {"__entity": {"type": "User", "id": "alice"}}, "size": 10}, "parents": []}
]`);
const withStore = { entities };

describe('literals and variables', () => {
  it('evaluates literals and request variables', () => {
    expectValue('true', true);
    expectValue('-9223372036854775808', I64_MIN);
    expectValue('"a\\"b"', 'a"b');
    expectValue('principal', uid('User', 'alice'));
    expectValue('resource', uid('Doc', 'd1'));
    expectValue('User::"a\\"b"', uid('User', 'a"b'));
    expectValue('context', CedarRecord.fromEntries([['a', 1n]]), { context: { a: 1 } });
  });
});

describe('== and !=', () => {
  it('compares by value across all types, never failing', () => {
    expectValue('1 == 1', true);
    expectValue('1 == "1"', false);
    expectValue('1 != "1"', true);
    expectValue('User::"a" == User::"a"', true);
    expectValue('User::"a" == Group::"a"', false);
    expectValue('[1, 2] == [2, 1, 1]', true);
    expectValue('[1, 2] == [1, 2, 3]', false);
    expectValue('{a: 1, b: [2]} == {b: [2], a: 1}', true);
    expectValue('{a: 1} == {a: 1, b: 2}', false);
    expectValue('{a: 1} == {a: "1"}', false);
    expectValue('[[1, 2]] == [[2, 1]]', true);
    expectValue('decimal("1.0") == decimal("1.0000")', true);
    expectValue('decimal("1.0") == 1', false);
    expectValue('ip("10.0.0.1") == ip("10.0.0.1/32")', true);
    expectValue('ip("10.0.0.1/24") == ip("10.0.0.0/24")', false);
    expectValue('datetime("2024-01-01") == datetime("2024-01-01T00:00:00Z")', true);
    expectValue('duration("1h") == duration("60m")', true);
    expectValue('duration("1h") == datetime("1970-01-01T01:00:00Z")', false);
    expectValue('9007199254740993 == 9007199254740992', false);
  });

  it('still evaluates both sides, so their errors surface', () => {
    expectError('1 == 1 + "a"', 'EVAL_TYPE');
  });
});

describe('&&, ||, !, if-then-else', () => {
  it('short-circuits', () => {
    expectValue('false && (1 + "a" == 2)', false);
    expectValue('true || (1 + "a" == 2)', true);
    expectValue('if true then 1 else 1 + "a"', 1n);
    expectValue('if false then 1 + "a" else 2', 2n);
    expectValue('true && false && 1', false);
  });

  it('requires booleans', () => {
    expectError('true && 1', 'EVAL_TYPE');
    expectError('1 && true', 'EVAL_TYPE');
    expectError('false || 1', 'EVAL_TYPE');
    expectError('1 || true', 'EVAL_TYPE');
    expectError('!1', 'EVAL_TYPE');
    expectError('if 1 then true else false', 'EVAL_TYPE');
    expect(evalError('true && "yes"').message).toContain('expected bool, got string');
  });

  it('computes the boolean results', () => {
    expectValue('!false', true);
    expectValue('true && true', true);
    expectValue('false || false', false);
    expectValue('if 1 < 2 then "lt" else "ge"', 'lt');
  });
});

describe('Long arithmetic', () => {
  it('is exact across the whole i64 range', () => {
    expectValue('1 + 2 * 3 - 4', 3n);
    expectValue('9223372036854775807 + -1', I64_MAX - 1n);
    expectValue('9007199254740993 - 1', 9007199254740992n);
    expectValue('3037000499 * 3037000499', 9223372030926249001n);
    expectValue('-9223372036854775807 - 1', I64_MIN);
    expectValue('-(9223372036854775807)', -I64_MAX);
    expectValue('-(-5)', 5n);
  });

  it('fails on overflow at both edges', () => {
    expectError('9223372036854775807 + 1', 'EVAL_OVERFLOW');
    expectError('-9223372036854775808 - 1', 'EVAL_OVERFLOW');
    expectError('-9223372036854775808 + -1', 'EVAL_OVERFLOW');
    expectError('9223372036854775807 * 2', 'EVAL_OVERFLOW');
    expectError('-9223372036854775808 * -1', 'EVAL_OVERFLOW');
    expectError('3037000500 * 3037000500', 'EVAL_OVERFLOW');
    expectError('-(-9223372036854775808)', 'EVAL_OVERFLOW');
    expectError('context.n + 1', 'EVAL_OVERFLOW', { context: { n: 9223372036854775807n } });
  });

  it('accepts only Longs', () => {
    expectError('1 + "a"', 'EVAL_TYPE');
    expectError('"a" + "b"', 'EVAL_TYPE');
    expectError('duration("1h") + duration("1h")', 'EVAL_TYPE');
    expectError('true * 2', 'EVAL_TYPE');
    expectError('-"a"', 'EVAL_TYPE');
  });
});

describe('< <= > >=', () => {
  it('orders Longs, datetimes and durations', () => {
    expectValue('1 < 2', true);
    expectValue('2 <= 2', true);
    expectValue('3 > 2', true);
    expectValue('2 >= 3', false);
    expectValue('9007199254740993 > 9007199254740992', true);
    expectValue('-9223372036854775808 < 9223372036854775807', true);
    expectValue('datetime("2024-01-01") < datetime("2024-01-01T00:00:00.001Z")', true);
    expectValue('datetime("2024-06-01T08:30:00+0200") >= datetime("2024-06-01T06:30:00Z")', true);
    expectValue('duration("1h") > duration("59m")', true);
    expectValue('duration("-1d") <= duration("0ms")', true);
  });

  it('refuses other types and mixed kinds', () => {
    expectError('"a" < "b"', 'EVAL_TYPE');
    expectError('decimal("1.0") < decimal("2.0")', 'EVAL_TYPE');
    expectError('datetime("2024-01-01") < duration("1h")', 'EVAL_TYPE');
    expectError('1 < duration("1h")', 'EVAL_TYPE');
    expectError('duration("1h") < 1', 'EVAL_TYPE');
    expectError('true >= false', 'EVAL_TYPE');
    expectError('[1] < [2]', 'EVAL_TYPE');
  });
});

describe('in', () => {
  it('is reflexive and transitive over the entity hierarchy', () => {
    expectValue('User::"alice" in User::"alice"', true, withStore);
    expectValue('User::"alice" in Group::"staff"', true, withStore);
    expectValue('User::"alice" in Group::"everyone"', true, withStore);
    expectValue('Group::"everyone" in User::"alice"', false, withStore);
    expectValue('User::"bob" in Group::"staff"', false, withStore);
    expectValue('User::"alice" in [Group::"ops", Group::"everyone"]', true, withStore);
    expectValue('User::"alice" in [Group::"ops"]', false, withStore);
    expectValue('User::"alice" in []', false, withStore);
  });

  it('treats an entity missing from the store as in itself only', () => {
    expectValue('User::"ghost" in User::"ghost"', true, withStore);
    expectValue('User::"ghost" in Group::"staff"', false, withStore);
    expectValue('User::"alice" in Group::"staff"', false);
  });

  it('takes dynamic right-hand sides', () => {
    expectValue('principal in principal.groups', false, withStore);
    expectValue('User::"bob" in User::"alice".groups', true, withStore);
    expectValue('principal in context.g', true, { ...withStore, context: { g: { __entity: { type: 'Group', id: 'everyone' } } } });
    expectValue('principal in context.gs', true, {
      ...withStore,
      context: { gs: [{ __entity: { type: 'Group', id: 'x' } }, { __entity: { type: 'Group', id: 'staff' } }] },
    });
  });

  it('requires an entity on the left and an entity or a set of entities on the right', () => {
    expectError('1 in Group::"staff"', 'EVAL_TYPE', withStore);
    expectError('User::"alice" in 1', 'EVAL_TYPE', withStore);
    expectError('User::"alice" in "staff"', 'EVAL_TYPE', withStore);
    // Every element is checked, wherever the match is.
    expectError('User::"alice" in [User::"alice", 1]', 'EVAL_TYPE', withStore);
    expectError('User::"alice" in [1, Group::"staff"]', 'EVAL_TYPE', withStore);
    expectError('principal in context.mixed', 'EVAL_TYPE', {
      ...withStore,
      context: { mixed: [{ __entity: { type: 'Group', id: 'staff' } }, 'staff'] },
    });
  });
});

describe('has and attribute access', () => {
  it('tests record and entity attributes; a missing entity has none', () => {
    expectValue('{a: 1} has a', true);
    expectValue('{a: 1} has b', false);
    expectValue('{"odd key": 1} has "odd key"', true);
    expectValue('User::"alice" has name', true, withStore);
    expectValue('User::"alice" has missing', false, withStore);
    expectValue('User::"ghost" has name', false, withStore);
    expectValue('context has a.b', true, { context: { a: { b: 1 } } });
    expectValue('context has a.c', false, { context: { a: { b: 1 } } });
    expectValue('context has x.y', false, { context: {} });
  });

  it('does not see tags as attributes', () => {
    expectValue('User::"alice" has clearance', false, withStore);
  });

  it('reads attributes through records and entity references', () => {
    expectValue('{a: {b: true}}.a.b', true);
    expectValue('{"a b": 1}["a b"]', 1n);
    expectValue('resource.owner.name', 'Alice', withStore);
    expectValue('resource.owner.level * 2', 10n, withStore);
    expectValue('context.args.speed', 9223372036854775807n, { context: { args: { speed: 9223372036854775807n } } });
  });

  it('fails on missing attributes, missing entities and non-records', () => {
    expectError('{a: 1}.b', 'EVAL_MISSING_ATTR');
    expectError('context.nope', 'EVAL_MISSING_ATTR', { context: {} });
    expectError('User::"alice".missing', 'EVAL_MISSING_ATTR', withStore);
    expectError('User::"ghost".name', 'EVAL_ENTITY_NOT_FOUND', withStore);
    expectError('"s".length', 'EVAL_TYPE');
    expectError('1 has a', 'EVAL_TYPE');
    expectError('[1] has a', 'EVAL_TYPE');
    expect(evalError('User::"ghost".name', withStore).message).toContain('User::"ghost"');
  });

  it('reads the request principal and resource the same way', () => {
    const ghost = { ...withStore, principal: uid('User', 'ghost'), resource: uid('Doc', 'ghost') };
    expectValue('principal.name', 'Alice', withStore);
    expectValue('principal has name', true, withStore);
    expectValue('resource has name', false, withStore);
    expectValue('principal has name', false, ghost);
    expectValue('resource has size', false, ghost);
    expectError('principal.name', 'EVAL_ENTITY_NOT_FOUND', ghost);
    expectError('resource.size', 'EVAL_ENTITY_NOT_FOUND', ghost);
    expectError('resource.name', 'EVAL_MISSING_ATTR', withStore);
    expect(evalError('principal.name', ghost).message).toContain('User::"ghost"');
  });
});

describe('like', () => {
  it('matches * wildcards and escaped stars', () => {
    expectValue('"abc" like "a*c"', true);
    expectValue('"abc" like "a*b"', false);
    expectValue('"abc" like "abc"', true);
    expectValue('"abc" like "ab"', false);
    expectValue('"" like "*"', true);
    expectValue('"" like ""', true);
    expectValue('"a" like ""', false);
    expectValue('"a*c" like "a\\*c"', true);
    expectValue('"abc" like "a\\*c"', false);
    expectValue('"aXbXc" like "*b*"', true);
    expectValue('"aaa" like "a*a*a*a"', false);
    expectValue('"aaaa" like "a*a*a*a"', true);
    expectValue('"aba" like "a*ba"', true);
    expectValue('"ab" like "a**b"', true);
    expectValue('"ABC" like "abc"', false);
    expectValue('"héllo wörld" like "h*o w*d"', true);
    expectValue('"😀x" like "*x"', true);
    expectValue('"x😀" like "x*"', true);
  });

  it('handles inputs that make backtracking matchers explode', () => {
    const s = 'a'.repeat(20_000);
    expectValue(`"${s}b" like "*a*a*a*a*a*a*a*a*a*a*a*a*c"`, false);
    expectValue(`"${s}c" like "*a*a*a*a*a*a*a*a*a*a*a*a*c"`, true);
  });

  it('requires a string', () => {
    expectError('1 like "1"', 'EVAL_TYPE');
    expectError('User::"a" like "*"', 'EVAL_TYPE');
  });
});

describe('is', () => {
  it('tests entity types, optionally with in', () => {
    expectValue('User::"a" is User', true);
    expectValue('User::"a" is Group', false);
    expectValue('Robot::Arm::"x" is Robot::Arm', true);
    expectValue('Robot::Arm::"x" is Arm', false);
    expectValue('User::"alice" is User in Group::"everyone"', true, withStore);
    expectValue('User::"bob" is User in Group::"staff"', false, withStore);
    expectValue('User::"alice" is User in [Group::"ops", Group::"staff"]', true, withStore);
  });

  it('only evaluates the in part for the right type', () => {
    expectValue('User::"a" is Group in 1', false);
    expectError('User::"a" is User in 1', 'EVAL_TYPE');
  });

  it('requires an entity', () => {
    expectError('1 is User', 'EVAL_TYPE');
    expectError('{} is User', 'EVAL_TYPE');
  });
});

describe('sets and records', () => {
  it('builds sets with Cedar equality and tests membership', () => {
    expectValue('[1, 1, 2]', set(1n, 2n));
    expectValue('[1, 1, 2].contains(2)', true);
    expectValue('[1].contains("1")', false);
    expectValue('[1, "1"].contains("1")', true);
    expectValue('[[1, 2]].contains([2, 1])', true);
    expectValue('[{a: 1}].contains({a: 1})', true);
    expectValue('[decimal("1.0")].contains(decimal("1.00"))', true);
    expectValue('[ip("10.0.0.1")].contains(ip("10.0.0.1/32"))', true);
    expectValue('[User::"a"].contains(User::"a")', true);
    expectValue('[principal].contains(User::"alice")', true);
    expectValue('[1, 2].containsAll([1])', true);
    expectValue('[1].containsAll([1, 2])', false);
    expectValue('[1].containsAll([])', true);
    expectValue('[1, 2].containsAny([3, 2])', true);
    expectValue('[1, 2].containsAny([3])', false);
    expectValue('[].containsAny([])', false);
    expectValue('[].isEmpty()', true);
    expectValue('[1].isEmpty()', false);
    expectValue('context.tags.contains("b")', true, { context: { tags: ['a', 'b'] } });
  });

  it('refuses non-sets', () => {
    expectError('1.contains(1)', 'EVAL_TYPE');
    expectError('"abc".contains("a")', 'EVAL_TYPE');
    expectError('[1].containsAll(1)', 'EVAL_TYPE');
    expectError('[1].containsAny("a")', 'EVAL_TYPE');
    expectError('{}.isEmpty()', 'EVAL_TYPE');
  });

  it('builds records, evaluating every value', () => {
    expectValue('{a: 1, b: {c: true}}.b.c', true);
    expectValue('{a: principal}.a', uid('User', 'alice'));
    expectError('{a: 1, b: 1 + "x"}', 'EVAL_TYPE');
    expectError('[1, 1 + "x"]', 'EVAL_TYPE');
  });
});

describe('entity tags', () => {
  it('reads tags; a missing entity has none', () => {
    expectValue('User::"alice".hasTag("clearance")', true, withStore);
    expectValue('User::"alice".hasTag("name")', false, withStore);
    expectValue('User::"alice".getTag("clearance")', 'high', withStore);
    expectValue('User::"alice".getTag("shift") + 1', 3n, withStore);
    expectValue('User::"bob".hasTag("clearance")', false, withStore);
    expectValue('User::"ghost".hasTag("clearance")', false, withStore);
    expectValue('principal.hasTag(context.t)', true, { ...withStore, context: { t: 'shift' } });
  });

  it('fails on missing tags, missing entities and wrong types', () => {
    expectError('User::"alice".getTag("nope")', 'EVAL_MISSING_TAG', withStore);
    expectError('User::"ghost".getTag("clearance")', 'EVAL_ENTITY_NOT_FOUND', withStore);
    expectError('1.hasTag("a")', 'EVAL_TYPE', withStore);
    expectError('{a: 1}.getTag("a")', 'EVAL_TYPE', withStore);
    expectError('User::"alice".hasTag(1)', 'EVAL_TYPE', withStore);
    expectError('User::"alice".getTag(principal)', 'EVAL_TYPE', withStore);
  });
});

describe('a compiled expression', () => {
  it('gives each request its own answer', () => {
    const results = ['alice', 'bob', 'ghost'].map((id) =>
      evaluate('principal in Group::"staff"', { entities, principal: uid('User', id) }),
    );
    expect(results).toEqual([true, false, false]);
  });
});
