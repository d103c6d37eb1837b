// Compilation: refused calls, constants computed once yet failing per evaluation like Cedar,
// the context paths each policy reads, and scope tests.
import { describe, expect, it } from 'vitest';
import {
  CedarRecord,
  Entities,
  EntityUid,
  PolicyParseError,
  compileExpression,
  compilePolicy,
  evalEnv,
  parseExpression,
  parsePolicies,
} from '../../src/policy/index.js';
import type { EvalEnv, Expr, Loc } from '../../src/policy/index.js';
import { expectError } from './evaluator-harness.js';

const loc: Loc = { source: 'test', line: 3, column: 7, offset: 20, length: 5 };
const long = (value: bigint): Expr => ({ kind: 'long', value, loc });

function compileFailure(e: Expr): PolicyParseError {
  try {
    compileExpression(e);
  } catch (err) {
    if (err instanceof PolicyParseError) return err;
    throw err;
  }
  throw new Error('expected a compile failure');
}

describe('calls the compiler refuses', () => {
  it('refuses unknown functions and methods used as functions, with the location', () => {
    const unknown = compileFailure({ kind: 'call', fn: 'foo', args: [], loc });
    expect(unknown.diagnostics[0]).toMatchObject({ code: 'PARSE_UNKNOWN_FUNCTION', line: 3, column: 7, source: 'test' });
    expect(compileFailure({ kind: 'call', fn: 'lessThan', args: [long(1n), long(2n)], loc }).diagnostics[0]!.code).toBe(
      'PARSE_UNKNOWN_FUNCTION',
    );
  });

  it('refuses unknown methods, functions used as methods and wrong built-in arity', () => {
    const target: Expr = { kind: 'set', elements: [], loc };
    for (const [method, args] of [
      ['foo', []],
      ['ip', []],
      ['contains', []],
      ['contains', [long(1n), long(2n)]],
      ['isEmpty', [long(1n)]],
      ['getTag', []],
    ] as const) {
      const err = compileFailure({ kind: 'method', target, method, args: [...args], loc });
      expect(err.diagnostics[0]!.code, method).toBe('PARSE_INVALID_METHOD');
    }
  });
});

describe('constants', () => {
  it('fail at every evaluation, not at compile time, when their construction fails', () => {
    const ev = compileExpression(parseExpression('decimal("x") == decimal("1.0")'));
    const env = evalEnv(Entities.empty(), {
      principal: new EntityUid('User', 'a'),
      action: new EntityUid('Action', 'a'),
      resource: new EntityUid('Doc', 'a'),
      context: CedarRecord.EMPTY,
    });
    expect(() => ev(env)).toThrow(expect.objectContaining({ code: 'EVAL_EXTENSION' }));
    expect(() => ev(env)).toThrow(expect.objectContaining({ code: 'EVAL_EXTENSION' }));
  });

  it('keep their errors inside the branch that is not taken', () => {
    expectError('if true then decimal("x") else 1', 'EVAL_EXTENSION');
    expect(() => compileExpression(parseExpression('if false then decimal("x") else 1'))).not.toThrow();
  });
});

describe('context reads', () => {
  const readsOf = (condition: string) => compilePolicy(parsePolicies(`permit(principal, action, resource) when { ${condition} };`)[0]!, 0).contextReads;

  it('lists the attribute paths read, shortest covering path first', () => {
    expect(readsOf('true')).toEqual([]);
    expect(readsOf('principal.level > 3')).toEqual([]);
    expect(readsOf('context.args.speed < 5 && context has posture')).toEqual([['args', 'speed'], ['posture']]);
    expect(readsOf('context.args.speed < 5 && context.args == {}')).toEqual([['args']]);
    expect(readsOf('context.b.x == 1 || context.a == 2 || context.b.x == 3')).toEqual([['a'], ['b', 'x']]);
    expect(readsOf('context["a b"].c == 1')).toEqual([['a b', 'c']]);
    expect(readsOf('context.a has b')).toEqual([['a', 'b']]);
    expect(readsOf('context has a.b')).toEqual([['a']]);
    expect(readsOf('context.now.offset(duration("1h")) < context.deadline')).toEqual([['deadline'], ['now']]);
    expect(readsOf('[context.x].contains(1)')).toEqual([['x']]);
  });

  it('says "all" when context is used as a whole', () => {
    expect(readsOf('context == {}')).toBe('all');
    expect(readsOf('[context].isEmpty()')).toBe('all');
    expect(readsOf('context.a == 1 && {c: context}.c has a')).toBe('all');
  });

  it('covers unless clauses too', () => {
    const [p] = parsePolicies('permit(principal, action, resource) when { context.a } unless { context.b.c };');
    expect(compilePolicy(p!, 0).contextReads).toEqual([['a'], ['b', 'c']]);
  });
});

describe('a compiled policy', () => {
  it('carries its id, @id name, effect, annotations and position', () => {
    const [ast] = parsePolicies('@id("stop-all") @safety("true") forbid(principal, action, resource);', { startIndex: 4 });
    const p = compilePolicy(ast!, 9);
    expect(p).toMatchObject({ id: 'policy4', name: 'stop-all', effect: 'forbid', position: 9 });
    expect(p.annotations).toEqual({ id: 'stop-all', safety: 'true' });
    expect(p.determining).toEqual({ id: 'policy4', name: 'stop-all', effect: 'forbid', annotations: { id: 'stop-all', safety: 'true' } });
    expect(Object.isFrozen(p.determining)).toBe(true);
  });

  it('keeps an annotation named __proto__ as data', () => {
    const [ast] = parsePolicies('@__proto__("x") permit(principal, action, resource);');
    const p = compilePolicy(ast!, 0);
    expect(Object.keys(p.annotations)).toEqual(['__proto__']);
    expect(p.annotations['__proto__']).toBe('x');
    expect(p.name).toBeUndefined();
  });

  it('tests each scope form against the request', () => {
    const entities = Entities.fromJson([
      { uid: { type: 'User', id: 'a' }, attrs: {}, parents: [{ type: 'Group', id: 'g' }] },
      { uid: { type: 'Action', id: 'write' }, attrs: {}, parents: [{ type: 'Action', id: 'edit' }] },
      { uid: { type: 'Doc', id: 'd' }, attrs: {}, parents: [{ type: 'Folder', id: 'f' }] },
    ]);
    const env = (principal: EntityUid, action: EntityUid, resource: EntityUid): EvalEnv =>
      evalEnv(entities, { principal, action, resource, context: CedarRecord.EMPTY });
    const a = new EntityUid('User', 'a');
    const b = new EntityUid('User', 'b');
    const write = new EntityUid('Action', 'write');
    const read = new EntityUid('Action', 'read');
    const d = new EntityUid('Doc', 'd');
    const cases: Array<[string, EvalEnv, boolean]> = [
      ['principal == User::"a", action, resource', env(a, read, d), true],
      ['principal == User::"a", action, resource', env(b, read, d), false],
      ['principal in Group::"g", action, resource', env(a, read, d), true],
      ['principal in Group::"g", action, resource', env(b, read, d), false],
      ['principal is User, action, resource', env(b, read, d), true],
      ['principal is Group, action, resource', env(a, read, d), false],
      ['principal is User in Group::"g", action, resource', env(a, read, d), true],
      ['principal is User in Group::"g", action, resource', env(b, read, d), false],
      ['principal, action == Action::"write", resource', env(a, write, d), true],
      ['principal, action == Action::"edit", resource', env(a, write, d), false],
      ['principal, action in Action::"edit", resource', env(a, write, d), true],
      ['principal, action in [Action::"x", Action::"edit"], resource', env(a, write, d), true],
      ['principal, action in [Action::"x", Action::"edit"], resource', env(a, read, d), false],
      ['principal, action, resource in Folder::"f"', env(a, read, d), true],
      ['principal, action, resource == Doc::"e"', env(a, read, d), false],
      ['principal == User::"a", action == Action::"write", resource is Doc in Folder::"f"', env(a, write, d), true],
      ['principal == User::"a", action == Action::"write", resource is Doc in Folder::"f"', env(a, read, d), false],
    ];
    for (const [scope, e, expected] of cases) {
      const p = compilePolicy(parsePolicies(`permit(${scope});`)[0]!, 0);
      expect(p.matchesScope(e), scope).toBe(expected);
    }
  });
});
