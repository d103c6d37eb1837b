// Edge inputs checked against cedar-wasm: tricky policy texts and malformed entity data must be
// accepted or refused exactly as Cedar does, except where ztedge is deliberately stricter (each
// such case is pinned below, with Cedar's behaviour asserted too so a change on either side shows).
import { describe, expect, it } from 'vitest';
import { Entities, EntitiesError, PolicyParseError, PolicySet, isAuthorized, parsePolicies, requestFromJson } from '../../src/policy/index.js';
import { OracleFailure, oracleErrors, oracleIsAuthorized, oracleParseErrors } from './support/cedar-wasm.js';
import type { EntityJson } from './support/cedar-wasm.js';

const when = (condition: string) => `permit(principal, action, resource) when { ${condition} };`;

function ourParseCodes(text: string): string[] {
  try {
    parsePolicies(text);
    return [];
  } catch (e) {
    if (e instanceof PolicyParseError) return e.diagnostics.map((d) => d.code);
    throw e;
  }
}

/** Texts on which both parsers must agree (accept or refuse). */
const PARSE_PARITY: string[] = [
  when('- 9223372036854775808 == 0'),
  when('--9223372036854775808 == 0'),
  when('-(9223372036854775808) == 0'),
  when('9223372036854775808 == 1'),
  when('-9223372036854775809 == 1'),
  when('!!!!!true'),
  when('!!!!true'),
  when('-----1 == 1'),
  when('----1 == 1'),
  when('principal.if'),
  when('context.true'),
  when('context.is'),
  when('context.principal'),
  when('context.__cedar'),
  when('context.café'),
  when('{if: 1} == {}'),
  when('{principal: 1} == {}'),
  when('{"": 1} == {}'),
  when('{ "a": 1, "a": 2 } == {}'),
  when('{ a: 1, "a": 2 } == {}'),
  when('principal has "if"'),
  when('principal has if'),
  when('principal has a.if'),
  when('principal has "a".b'),
  when('context has a.b.c.d'),
  when('[1,2,] == [1]'),
  when('{a:1,} == {}'),
  when('context.x like "\\*"'),
  when('"a" like "\\\\*"'),
  when('"a" like "\\u{2a}"'),
  when('"\\u{110000}" == ""'),
  when('"\\u{D800}" == ""'),
  when("'single' == \"\""),
  when('User::"a"::"b" == principal'),
  when('User :: "a" == principal'),
  when('principal.contains()'),
  when('context.a.contains(1, 2)'),
  when('principal.getTag()'),
  when('principal.hasTag("a", "b")'),
  when('"1.0".decimal()'),
  when('foo("x")'),
  when('ip'),
  when('ip("a").isIpv4'),
  when('context.a(1)'),
  when('context.a.b.c()'),
  when('1 < 2 < 3'),
  when('1 == 1 == true'),
  when('principal is User is User'),
  when('principal in principal in principal'),
  when('principal has a has b'),
  when('principal is if'),
  when('principal is User::"a"'),
  when('principal is __cedar::X'),
  when('principal is User in'),
  when('if true then true'),
  when('true && if true then true else false'),
  when('!if true then true else false'),
  when('1 - -1 == 2'),
  when('1 --1 == 2'),
  when('1 - - - 1 == 0'),
  when('0x10 == 16'),
  when('1.5 == 1'),
  when('1_000 == 1000'),
  when('00012 == 12'),
  when('principal."a"'),
  when('(1).contains(1)'),
  when('principal == ?principal'),
  'permit(principal,action,resource,);',
  'permit(principal, action, resource) when {true} when {false};',
  '@id("a") @id("b") permit(principal,action,resource);',
  '@a @a permit(principal,action,resource);',
  '@if("x") permit(principal,action,resource);',
  '@a::b("x") permit(principal, action, resource);',
  '@id() permit(principal, action, resource);',
  '@a("\\u{1F600}") permit(principal,action,resource);',
  '@a("\\*") permit(principal,action,resource);',
  'permit(principal in [User::"a"], action, resource);',
  'permit(action, principal, resource);',
  'permit(principal is User in [Group::"a"], action, resource);',
  'forbid(principal, action in [], resource);',
  'permit(principal, action, resource) unless {};',
  'PERMIT(principal, action, resource);',
  '/* c */ permit(principal,action,resource);',
  'permit(principal == ?principal, action, resource);',
  'permit(principal is Action, action, resource);',
  'permit(principal, action is Action, resource);',
  'permit(principal == if::"a", action, resource);',
  'permit(principal == __cedar::User::"a", action, resource);',
  'permit(principal, action, resource) when { true }',
  'permit(principal, action);',
  'permit(principal, action, resource, context);',
  'permit(principal, action == Action, resource);',
  'permit(principal, action in Action::"a", resource in [Doc::"a"]);',
  'permit(principal, action == User::"a", resource);',
  'permit(principal, action in [Action::"a", Robot::Action::"b"], resource);',
  '@id("x")\npermit(principal, action, resource);\n@id("x")\npermit(principal, action, resource);',
];

describe('policy text: acceptance parity with cedar-wasm', () => {
  it('accepts and refuses the same tricky texts', () => {
    const disagreements = PARSE_PARITY.filter((text) => (oracleParseErrors(text).length === 0) !== (ourParseCodes(text).length === 0));
    expect(disagreements).toEqual([]);
    // The table is not trivially one-sided.
    const accepted = PARSE_PARITY.filter((text) => oracleParseErrors(text).length === 0).length;
    expect(accepted).toBeGreaterThan(10);
    expect(PARSE_PARITY.length - accepted).toBeGreaterThan(10);
  });
});

/**
 * Calls to extension functions and methods with the wrong number of arguments: Cedar loads the
 * policy and reports an evaluation error for it at request time. Arguments are evaluated before
 * the count is checked, so an error inside an argument is the one reported.
 */
const WRONG_ARITY: string[] = [
  when('decimal("1.0").lessThan(decimal("2.0"), decimal("3.0"))'),
  when('duration("1h", 2) == duration("1h")'),
  when('ip()'),
  when('ip("1.2.3.4", "x").isIpv4()'),
  when('decimal("not a decimal", 1) == decimal("1.0")'),
  when('ip("1.1.1.1").isInRange()'),
  when('ip("1.1.1.1").isLoopback(1)'),
  when('decimal("1.0").lessThan()'),
  when('datetime("2024-01-01").offset()'),
  when('datetime("2024-01-01").offset(duration("1h"), 1) == datetime("2024-01-01")'),
  when('duration("1h").toDays(1) == 0'),
  when('context.missing.lessThan(1, 2)'),
  when('ip(context.missing, 2)'),
  when('1.lessThan(2, 3)'),
  when('false && ip("1.2.3.4", 2)'),
  when('true || duration()'),
  'forbid(principal, action, resource) when { decimal("1.0").greaterThan(1, 2) };\npermit(principal, action, resource);',
  '@id("bad") permit(principal, action, resource) when { datetime("2024-01-01").toTime(1) == duration("0ms") };\npermit(principal, action, resource) when { ip("1.2.3.4").isIpv4() };',
];

describe('extension calls with the wrong number of arguments: parity with cedar-wasm', () => {
  const request = { principal: { type: 'U', id: 'a' }, action: { type: 'Action', id: 'a' }, resource: { type: 'R', id: 'r' }, context: {} };

  it.each(WRONG_ARITY)('%s', (text) => {
    expect(oracleParseErrors(text)).toEqual([]);
    expect(ourParseCodes(text)).toEqual([]);
    const ours = isAuthorized(PolicySet.fromText(text), Entities.empty(), requestFromJson(JSON.stringify(request)));
    expect({
      decision: ours.decision,
      reasons: [...ours.reasons].sort(),
      errored: ours.errors.map((e) => e.policyId).sort(),
    }).toEqual(oracleIsAuthorized(text, [], request));
    // The argument-count errors worded as Cedar's (other errors are not compared word for word).
    const arity = (message: string) => (message.startsWith('wrong number of arguments') ? message : '(another error)');
    const byPolicy = (errors: Array<{ policyId: string; message: string }>) =>
      Object.fromEntries(errors.map((e) => [e.policyId, arity(e.message)]));
    expect(byPolicy(ours.errors)).toEqual(byPolicy(oracleErrors(text, [], request)));
    for (const e of ours.errors) expect(e.code === 'EVAL_ARITY').toBe(e.message.startsWith('wrong number of arguments'));
  });

  it('the table exercises errors, short-circuits and both decisions', () => {
    const outcomes = WRONG_ARITY.map((text) => oracleIsAuthorized(text, [], request));
    expect(outcomes.filter((o) => o.errored.length === 0).length).toBeGreaterThanOrEqual(2);
    expect(outcomes.filter((o) => o.decision === 'allow').length).toBeGreaterThanOrEqual(2);
    expect(outcomes.filter((o) => o.errored.length > 0).length).toBeGreaterThanOrEqual(10);
  });
});

const uid = (type: string, id: string) => ({ type, id });
const entity = (over: Partial<EntityJson> & Record<string, unknown>): EntityJson => ({ uid: uid('U', 'a'), attrs: {}, parents: [], ...over }) as EntityJson;

/** Entity data both must accept, or both refuse. */
const ENTITY_PARITY: Record<string, unknown[]> = {
  cycle: [entity({ parents: [uid('G', 'g')] }), entity({ uid: uid('G', 'g'), parents: [uid('U', 'a')] })],
  'self parent': [entity({ parents: [uid('U', 'a')] })],
  'duplicate with different attributes': [entity({ attrs: { n: 1 } }), entity({ attrs: { n: 2 } })],
  'action with a non-action parent': [entity({ uid: uid('Action', 'x'), parents: [uid('G', 'g')] })],
  'entity with an action parent': [entity({ parents: [uid('Action', 'g')] })],
  'namespaced action with an action parent': [entity({ uid: uid('A::Action', 'x'), parents: [uid('Action', 'y')] })],
  'null attribute': [entity({ attrs: { x: null } })],
  'float attribute': [entity({ attrs: { x: 1.5 } })],
  'unknown extension function': [entity({ attrs: { x: { __extn: { fn: 'foo', arg: '1' } } } })],
  'invalid extension literal': [entity({ attrs: { x: { __extn: { fn: 'ip', arg: '::ffff:1.2.3.4' } } } })],
  'extension call with args': [entity({ attrs: { x: { __extn: { fn: 'decimal', args: ['1.0'] } } } })],
  'offset call in data': [entity({ attrs: { x: { __extn: { fn: 'offset', args: [{ __extn: { fn: 'datetime', arg: '2024-01-01' } }, { __extn: { fn: 'duration', arg: '1h' } }] } } } })],
  'nested extension argument': [entity({ attrs: { x: { __extn: { fn: 'ip', arg: { __extn: { fn: 'ip', arg: '1.2.3.4' } } } } } })],
  'retired __expr escape': [entity({ attrs: { x: { __expr: '1' } } })],
  'missing attrs': [{ uid: uid('U', 'a'), parents: [] }],
  'missing parents': [{ uid: uid('U', 'a'), attrs: {} }],
  'attrs as array': [entity({ attrs: [] as unknown as Record<string, never> })],
  'null tags': [entity({ tags: null as unknown as Record<string, never> })],
  'escaped uids': [{ uid: { __entity: uid('U', 'a') }, attrs: {}, parents: [{ __entity: uid('G', 'g') }] }],
  'entity reference with an extra field': [entity({ attrs: { o: { __entity: uid('U', 'b'), x: 1 } } })],
  'type with a space': [entity({ uid: uid('U U', 'a') })],
  'reserved type': [entity({ uid: uid('if', 'a') })],
  '__cedar namespace': [entity({ uid: uid('__cedar::X', 'a') })],
  'empty type': [entity({ uid: uid('', 'a') })],
  'numeric id': [entity({ uid: { type: 'U', id: 1 } as unknown as { type: string; id: string } })],
  'duplicate set entries': [entity({ attrs: { x: [1, 1] } })],
  'action with attributes and tags': [entity({ uid: uid('Action', 'x'), attrs: { a: 1 }, tags: { t: 1 } })],
};

/** Entity data Cedar accepts and ztedge refuses: a strict reader fails closed on sloppy data. */
const STRICTER_ENTITIES: Record<string, [unknown[], string]> = {
  'identical duplicate entities': [[entity({}), entity({})], 'ENTITIES_DUPLICATE'],
  'unknown field in an entity': [[entity({ comment: 'x' })], 'ENTITIES_SHAPE'],
  'extension escape with both arg and args': [[entity({ attrs: { x: { __extn: { fn: 'decimal', arg: '1.0', args: ['1.0'] } } } })], 'ENTITIES_SHAPE'],
};

const request = { principal: uid('U', 'a'), action: uid('Action', 'x'), resource: uid('R', 'r'), context: {} };

function oracleAccepts(entities: unknown[]): boolean {
  try {
    oracleIsAuthorized('permit(principal, action, resource);', entities as EntityJson[], request);
    return true;
  } catch (e) {
    if (e instanceof OracleFailure) return false;
    throw e;
  }
}

function ourCode(entities: unknown[]): string | undefined {
  try {
    Entities.fromJson(JSON.stringify(entities));
    return undefined;
  } catch (e) {
    if (e instanceof EntitiesError) return e.code;
    throw e;
  }
}

describe('entity data: acceptance parity with cedar-wasm', () => {
  it.each(Object.entries(ENTITY_PARITY))('%s', (_name, entities) => {
    expect(ourCode(entities) === undefined).toBe(oracleAccepts(entities));
  });

  it('the parity table holds both accepted and refused data', () => {
    const accepted = Object.values(ENTITY_PARITY).filter(oracleAccepts).length;
    expect(accepted).toBeGreaterThan(4);
    expect(Object.keys(ENTITY_PARITY).length - accepted).toBeGreaterThan(10);
  });

  it.each(Object.entries(STRICTER_ENTITIES))('refuses what Cedar lets through: %s', (_name, [entities, code]) => {
    expect(oracleAccepts(entities)).toBe(true);
    expect(ourCode(entities)).toBe(code);
  });
});
