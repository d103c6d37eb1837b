// Compiles a Cedar policy once: its scope into cheap uid tests (cheapest first), its when/unless
// conditions into closures (see compile-expr.ts), and the facts the authorizer and a decision
// cache need (annotations, the determining-policy record, the context paths it reads).
import type { ActionConstraint, EntityUidLit, PolicyAst, ScopeConstraint } from './ast.js';
import type { DeterminingPolicy } from './ast.js';
import { compileExpression, expectBool } from './compile-expr.js';
import type { EvalEnv } from './compile-expr.js';
import { contextReadsOf } from './context-reads.js';
import type { ContextReads } from './context-reads.js';
import { EntityUid } from './value.js';

const uidOf = (lit: EntityUidLit): EntityUid => new EntityUid(lit.type, lit.id);

export type ScopeTest = (env: EvalEnv) => boolean;

/** A scope test with its rough cost, so cheap exact tests run before hierarchy lookups. */
interface RankedTest {
  readonly test: ScopeTest;
  readonly cost: number;
}

const EXACT = 0;
const TYPE = 1;
const HIERARCHY = 2;

function compileScope(c: ScopeConstraint, slot: 'principal' | 'resource'): RankedTest | undefined {
  const ancestors = slot === 'principal' ? 'principalAncestors' : 'resourceAncestors';
  switch (c.op) {
    case 'any':
      return undefined;
    case '==': {
      const key = uidOf(c.entity).key;
      return { cost: EXACT, test: (env) => env[slot].key === key };
    }
    case 'in': {
      const group = uidOf(c.entity).key;
      return { cost: HIERARCHY, test: (env) => env[slot].key === group || env[ancestors].has(group) };
    }
    case 'is': {
      const type = c.entityType;
      if (c.in === undefined) return { cost: TYPE, test: (env) => env[slot].type === type };
      const group = uidOf(c.in).key;
      return {
        cost: HIERARCHY,
        test: (env) => env[slot].type === type && (env[slot].key === group || env[ancestors].has(group)),
      };
    }
  }
}

function compileActionScope(c: ActionConstraint): RankedTest | undefined {
  switch (c.op) {
    case 'any':
      return undefined;
    case '==': {
      const key = uidOf(c.entity).key;
      return { cost: EXACT, test: (env) => env.action.key === key };
    }
    case 'in': {
      const keys = new Set(c.entities.map((lit) => uidOf(lit).key));
      return { cost: HIERARCHY, test: (env) => env.entities.isInAny(env.action, keys) };
    }
  }
}

/** All of the tests, cheapest first (they never fail, so order does not change the result). */
function allOf(ranked: ReadonlyArray<RankedTest | undefined>): ScopeTest {
  const tests = ranked
    .filter((t): t is RankedTest => t !== undefined)
    .sort((a, b) => a.cost - b.cost)
    .map((t) => t.test);
  switch (tests.length) {
    case 0:
      return () => true;
    case 1:
      return tests[0]!;
    case 2: {
      const [a, b] = tests as [ScopeTest, ScopeTest];
      return (env) => a(env) && b(env);
    }
    default: {
      const [a, b, c] = tests as [ScopeTest, ScopeTest, ScopeTest];
      return (env) => a(env) && b(env) && c(env);
    }
  }
}

function compileConditions(policy: PolicyAst): ScopeTest {
  const clauses = policy.conditions.map((c) => ({ unless: c.kind === 'unless', body: compileExpression(c.body) }));
  if (clauses.length === 1) {
    const { unless, body } = clauses[0]!;
    return unless ? (env) => !expectBool(body(env)) : (env) => expectBool(body(env));
  }
  return (env) => {
    for (const { unless, body } of clauses) if (expectBool(body(env)) === unless) return false;
    return true;
  };
}

export interface CompiledPolicy {
  readonly id: string;
  /** The `@id("...")` annotation, when present. */
  readonly name: string | undefined;
  readonly effect: 'permit' | 'forbid';
  /** Position in its policy set; decisions list policies in this order. */
  readonly position: number;
  readonly ast: PolicyAst;
  readonly annotations: Readonly<Record<string, string>>;
  /** This policy as a determining policy of a decision (shared, frozen). */
  readonly determining: DeterminingPolicy;
  readonly contextReads: ContextReads;
  /** The scope (principal, action, resource constraints); never throws. */
  readonly matchesScope: ScopeTest;
  /** The principal and resource constraints only, for requests whose action the index matched. */
  readonly matchesScopeButAction: ScopeTest;
  /** The when/unless conditions, in order; throws EvalError. */
  readonly satisfiesConditions: ScopeTest;
}

/** Compiles a policy; throws PolicyParseError for calls to unknown functions or methods. */
export function compilePolicy(ast: PolicyAst, position: number): CompiledPolicy {
  const principal = compileScope(ast.principal, 'principal');
  const resource = compileScope(ast.resource, 'resource');
  const annotations: Readonly<Record<string, string>> = Object.freeze(
    Object.fromEntries(ast.annotations.map((a) => [a.key, a.value])),
  );
  const name = ast.annotations.find((a) => a.key === 'id')?.value;
  const determining: DeterminingPolicy = Object.freeze({
    id: ast.id,
    ...(name === undefined ? {} : { name }),
    effect: ast.effect,
    annotations,
  });
  return Object.freeze({
    id: ast.id,
    name,
    effect: ast.effect,
    position,
    ast,
    annotations,
    determining,
    contextReads: contextReadsOf(ast),
    matchesScope: allOf([principal, compileActionScope(ast.action), resource]),
    matchesScopeButAction: allOf([principal, resource]),
    satisfiesConditions: ast.conditions.length === 0 ? () => true : compileConditions(ast),
  });
}
