// Compiles Cedar expressions into closures, once: evaluating a request runs closures over the
// request environment and never walks the AST. Constant sub-expressions (literals, set and
// record literals, extension calls on literals) are computed at compile time. Semantics follow
// Cedar: && / || / if short-circuit and demand booleans, == never fails, Long arithmetic is
// checked i64, and every failure is an EvalError with a stable code.
import type { EntityUidLit, Expr, Loc, MethodCall, VarName } from './ast.js';
import type { Entities, Entity } from './entities.js';
import { PolicyParseError } from './errors.js';
import type { ParseErrorCode } from './errors.js';
import { EvalError, typeError } from './eval-error.js';
import { applyExtension, extensionFunction } from './extensions.js';
import { compileLike } from './like.js';
import {
  CedarRecord,
  CedarSet,
  Datetime,
  Duration,
  EntityUid,
  I64_MAX,
  I64_MIN,
  valueEquals,
} from './value.js';
import type { Value } from './value.js';

/** What an expression sees: the request and the entity store. */
export interface EvalEnv {
  readonly principal: EntityUid;
  readonly action: EntityUid;
  readonly resource: EntityUid;
  readonly context: CedarRecord;
  readonly entities: Entities;
  /** The principal's and resource's store entries and ancestry, looked up once per request. */
  readonly principalEntity: Entity | undefined;
  readonly resourceEntity: Entity | undefined;
  readonly principalAncestors: ReadonlySet<string>;
  readonly resourceAncestors: ReadonlySet<string>;
}

const NO_ANCESTORS: ReadonlySet<string> = new Set();

/** The environment for one request against one entity store. */
export function evalEnv(
  entities: Entities,
  request: { principal: EntityUid; action: EntityUid; resource: EntityUid; context: CedarRecord },
): EvalEnv {
  const principalEntity = entities.get(request.principal);
  const resourceEntity = entities.get(request.resource);
  return {
    principal: request.principal,
    action: request.action,
    resource: request.resource,
    context: request.context,
    entities,
    principalEntity,
    resourceEntity,
    principalAncestors: principalEntity?.ancestors ?? NO_ANCESTORS,
    resourceAncestors: resourceEntity?.ancestors ?? NO_ANCESTORS,
  };
}

export type Evaluator = (env: EvalEnv) => Value;

/** A compiled sub-expression; `constant` is set when its value does not depend on the request. */
interface Compiled {
  readonly ev: Evaluator;
  readonly constant?: { readonly value: Value };
}

const constant = (value: Value): Compiled => ({ ev: () => value, constant: { value } });

function compileError(code: ParseErrorCode, message: string, loc: Loc): PolicyParseError {
  return new PolicyParseError([{ code, message, ...loc }]);
}

const uidOf = (lit: EntityUidLit): EntityUid => new EntityUid(lit.type, lit.id);

const VARIABLES: Readonly<Record<VarName, Evaluator>> = {
  principal: (env) => env.principal,
  action: (env) => env.action,
  resource: (env) => env.resource,
  context: (env) => env.context,
};

export function expectBool(v: Value): boolean {
  if (typeof v === 'boolean') return v;
  throw typeError(['bool'], v);
}

function expectLong(v: Value): bigint {
  if (typeof v === 'bigint') return v;
  throw typeError(['long'], v);
}

function expectEntity(v: Value): EntityUid {
  if (v instanceof EntityUid) return v;
  throw typeError(['entity'], v);
}

function expectSet(v: Value): CedarSet {
  if (v instanceof CedarSet) return v;
  throw typeError(['set'], v);
}

function expectString(v: Value): string {
  if (typeof v === 'string') return v;
  throw typeError(['string'], v);
}

function checked(op: string, a: bigint, b: bigint, r: bigint): bigint {
  if (r < I64_MIN || r > I64_MAX) {
    throw new EvalError('EVAL_OVERFLOW', `integer overflow while attempting to ${op} the values ${a} and ${b}`);
  }
  return r;
}

/** Orders two values for `<` and friends: Longs, datetimes and durations, each with its own kind. */
function compareValues(a: Value, b: Value): number {
  if (typeof a === 'bigint') {
    if (typeof b === 'bigint') return a < b ? -1 : a > b ? 1 : 0;
    throw typeError(['long'], b);
  }
  if (a instanceof Datetime) {
    if (b instanceof Datetime) return a.compare(b);
    throw typeError(['datetime'], b);
  }
  if (a instanceof Duration) {
    if (b instanceof Duration) return a.compare(b);
    throw typeError(['duration'], b);
  }
  throw typeError(['long', 'datetime', 'duration'], a);
}

function entityOf(env: EvalEnv, uid: EntityUid) {
  const entity = env.entities.get(uid);
  if (entity === undefined) throw new EvalError('EVAL_ENTITY_NOT_FOUND', `entity ${uid.key} does not exist`);
  return entity;
}

function getAttr(env: EvalEnv, target: Value, attr: string): Value {
  if (target instanceof CedarRecord) {
    const v = target.get(attr);
    if (v === undefined) throw new EvalError('EVAL_MISSING_ATTR', `record does not have the attribute ${JSON.stringify(attr)}`);
    return v;
  }
  if (target instanceof EntityUid) {
    const v = entityOf(env, target).attrs.get(attr);
    if (v === undefined) {
      throw new EvalError('EVAL_MISSING_ATTR', `${target.key} does not have the attribute ${JSON.stringify(attr)}`);
    }
    return v;
  }
  throw typeError(['record', 'entity'], target);
}

function hasAttr(env: EvalEnv, target: Value, attr: string): boolean {
  if (target instanceof CedarRecord) return target.has(attr);
  if (target instanceof EntityUid) return env.entities.get(target)?.attrs.has(attr) ?? false;
  throw typeError(['record', 'entity'], target);
}

/** Cedar `in` with a dynamic right-hand side: an entity, or a set of entities. */
function inValue(env: EvalEnv, lhs: EntityUid, rhs: Value): boolean {
  if (rhs instanceof EntityUid) return env.entities.isIn(lhs, rhs);
  if (rhs instanceof CedarSet) {
    if (!rhs.entityOnly) {
      for (const v of rhs) if (!(v instanceof EntityUid)) throw typeError(['entity'], v);
    }
    for (const v of rhs) if (env.entities.isIn(lhs, v as EntityUid)) return true;
    return false;
  }
  throw typeError(['set', 'entity'], rhs);
}

/** Applies `build` at compile time when every operand is constant and it does not fail. */
function fold(parts: readonly Compiled[], build: (values: Value[]) => Value, ev: Evaluator): Compiled {
  if (parts.every((p) => p.constant !== undefined)) {
    try {
      return constant(build(parts.map((p) => p.constant!.value)));
    } catch (e) {
      // A constant that fails (e.g. `decimal("x")`) fails at evaluation time, as in Cedar.
      if (!(e instanceof EvalError)) throw e;
    }
  }
  return { ev };
}

function compileMethod(e: MethodCall): Compiled {
  const target = compileExpr(e.target);
  const args = e.args.map(compileExpr);
  const t = target.ev;
  const arity = (n: number) => {
    if (args.length !== n) {
      throw compileError(
        'PARSE_INVALID_METHOD',
        `\`${e.method}\` takes ${n} argument${n === 1 ? '' : 's'}, not ${args.length}`,
        e.loc,
      );
    }
  };
  switch (e.method) {
    case 'contains': {
      arity(1);
      const a = args[0]!.ev;
      const c = target.constant?.value;
      if (c instanceof CedarSet) return { ev: (env) => c.has(a(env)) };
      return { ev: (env) => expectSet(t(env)).has(a(env)) };
    }
    case 'containsAll': {
      arity(1);
      const a = args[0]!.ev;
      return { ev: (env) => expectSet(t(env)).hasAll(expectSet(a(env))) };
    }
    case 'containsAny': {
      arity(1);
      const a = args[0]!.ev;
      return { ev: (env) => expectSet(t(env)).hasAny(expectSet(a(env))) };
    }
    case 'isEmpty':
      arity(0);
      return { ev: (env) => expectSet(t(env)).size === 0 };
    case 'hasTag': {
      arity(1);
      const a = args[0]!.ev;
      return {
        ev: (env) => {
          const uid = expectEntity(t(env));
          const tag = expectString(a(env));
          return env.entities.get(uid)?.tags.has(tag) ?? false;
        },
      };
    }
    case 'getTag': {
      arity(1);
      const a = args[0]!.ev;
      return {
        ev: (env) => {
          const uid = expectEntity(t(env));
          const tag = expectString(a(env));
          const v = entityOf(env, uid).tags.get(tag);
          if (v === undefined) throw new EvalError('EVAL_MISSING_TAG', `${uid.key} does not have the tag ${JSON.stringify(tag)}`);
          return v;
        },
      };
    }
  }
  const fn = extensionFunction(e.method);
  if (fn === undefined || fn.style !== 'method') {
    throw compileError('PARSE_INVALID_METHOD', `\`${e.method}\` is not a Cedar method`, e.loc);
  }
  const parts = [target, ...args];
  const evs = parts.map((p) => p.ev);
  return fold(parts, (values) => applyExtension(fn, values), (env) => applyExtension(fn, evs.map((f) => f(env))));
}

/**
 * `==` specialised on a constant side: a primitive equals only the identical primitive, an
 * entity only an entity with its key; otherwise full Cedar equality.
 */
function compileEquals(left: Compiled, right: Compiled): (env: EvalEnv) => boolean {
  const [fixed, other] = right.constant ? [right.constant.value, left.ev] : left.constant ? [left.constant.value, right.ev] : [];
  if (fixed === undefined || other === undefined) {
    const l = left.ev;
    const r = right.ev;
    return (env) => valueEquals(l(env), r(env));
  }
  if (typeof fixed !== 'object') return (env) => other(env) === fixed;
  if (fixed instanceof EntityUid) {
    const key = fixed.key;
    return (env) => {
      const v = other(env);
      return v instanceof EntityUid && v.key === key;
    };
  }
  return (env) => valueEquals(other(env), fixed);
}

function compileBinary(e: Extract<Expr, { kind: 'binary' }>): Compiled {
  const left = compileExpr(e.left);
  const right = compileExpr(e.right);
  const l = left.ev;
  const r = right.ev;
  switch (e.op) {
    case '==':
    case '!=': {
      const equals = compileEquals(left, right);
      return { ev: e.op === '==' ? equals : (env) => !equals(env) };
    }
    // Two Longs, the common case, compare inline; everything else goes through compareValues.
    case '<':
      return {
        ev: (env) => {
          const a = l(env);
          const b = r(env);
          return typeof a === 'bigint' && typeof b === 'bigint' ? a < b : compareValues(a, b) < 0;
        },
      };
    case '<=':
      return {
        ev: (env) => {
          const a = l(env);
          const b = r(env);
          return typeof a === 'bigint' && typeof b === 'bigint' ? a <= b : compareValues(a, b) <= 0;
        },
      };
    case '>':
      return {
        ev: (env) => {
          const a = l(env);
          const b = r(env);
          return typeof a === 'bigint' && typeof b === 'bigint' ? a > b : compareValues(a, b) > 0;
        },
      };
    case '>=':
      return {
        ev: (env) => {
          const a = l(env);
          const b = r(env);
          return typeof a === 'bigint' && typeof b === 'bigint' ? a >= b : compareValues(a, b) >= 0;
        },
      };
    case '+':
      return {
        ev: (env) => {
          const a = expectLong(l(env));
          const b = expectLong(r(env));
          return checked('add', a, b, a + b);
        },
      };
    case '-':
      return {
        ev: (env) => {
          const a = expectLong(l(env));
          const b = expectLong(r(env));
          return checked('subtract', a, b, a - b);
        },
      };
    case '*':
      return {
        ev: (env) => {
          const a = expectLong(l(env));
          const b = expectLong(r(env));
          return checked('multiply', a, b, a * b);
        },
      };
    case 'in': {
      const c = right.constant?.value;
      if (c instanceof EntityUid) return { ev: (env) => env.entities.isIn(expectEntity(l(env)), c) };
      if (c instanceof CedarSet && c.entityOnly) {
        const keys = new Set([...c].map((v) => (v as EntityUid).key));
        return { ev: (env) => env.entities.isInAny(expectEntity(l(env)), keys) };
      }
      return { ev: (env) => inValue(env, expectEntity(l(env)), r(env)) };
    }
  }
}

function compileExpr(e: Expr): Compiled {
  switch (e.kind) {
    case 'bool':
    case 'long':
    case 'string':
      return constant(e.value);
    case 'entity':
      return constant(uidOf(e.uid));
    case 'var':
      return { ev: VARIABLES[e.name] };
    case 'if': {
      const c = compileExpr(e.cond).ev;
      const t = compileExpr(e.then).ev;
      const f = compileExpr(e.else).ev;
      return { ev: (env) => (expectBool(c(env)) ? t(env) : f(env)) };
    }
    case 'and': {
      const l = compileExpr(e.left).ev;
      const r = compileExpr(e.right).ev;
      return { ev: (env) => expectBool(l(env)) && expectBool(r(env)) };
    }
    case 'or': {
      const l = compileExpr(e.left).ev;
      const r = compileExpr(e.right).ev;
      return { ev: (env) => expectBool(l(env)) || expectBool(r(env)) };
    }
    case 'not': {
      const a = compileExpr(e.arg).ev;
      return { ev: (env) => !expectBool(a(env)) };
    }
    case 'neg': {
      const a = compileExpr(e.arg).ev;
      return {
        ev: (env) => {
          const v = expectLong(a(env));
          if (v === I64_MIN) throw new EvalError('EVAL_OVERFLOW', `integer overflow while attempting to negate the value ${v}`);
          return -v;
        },
      };
    }
    case 'binary':
      return compileBinary(e);
    case 'has': {
      const attr = e.attr;
      const target = e.target;
      if (target.kind === 'var' && (target.name === 'principal' || target.name === 'resource')) {
        const slot = target.name === 'principal' ? 'principalEntity' : 'resourceEntity';
        return { ev: (env) => env[slot]?.attrs.has(attr) ?? false };
      }
      const t = compileExpr(target).ev;
      return { ev: (env) => hasAttr(env, t(env), attr) };
    }
    case 'getAttr': {
      const attr = e.attr;
      const target = e.target;
      // Direct reads of the request's own attributes skip the generic dispatch and store lookup.
      if (target.kind === 'var' && target.name === 'context') {
        return {
          ev: (env) => {
            const v = env.context.get(attr);
            if (v === undefined) throw new EvalError('EVAL_MISSING_ATTR', `context does not have the attribute ${JSON.stringify(attr)}`);
            return v;
          },
        };
      }
      if (target.kind === 'var' && (target.name === 'principal' || target.name === 'resource')) {
        const [slot, entitySlot] =
          target.name === 'principal' ? (['principal', 'principalEntity'] as const) : (['resource', 'resourceEntity'] as const);
        return {
          ev: (env) => {
            const entity = env[entitySlot];
            if (entity === undefined) throw new EvalError('EVAL_ENTITY_NOT_FOUND', `entity ${env[slot].key} does not exist`);
            const v = entity.attrs.get(attr);
            if (v === undefined) {
              throw new EvalError('EVAL_MISSING_ATTR', `${env[slot].key} does not have the attribute ${JSON.stringify(attr)}`);
            }
            return v;
          },
        };
      }
      const t = compileExpr(target).ev;
      return { ev: (env) => getAttr(env, t(env), attr) };
    }
    case 'like': {
      const t = compileExpr(e.target).ev;
      const matches = compileLike(e.pattern);
      return { ev: (env) => matches(expectString(t(env))) };
    }
    case 'is': {
      const t = compileExpr(e.target).ev;
      const type = e.entityType;
      if (e.in === undefined) return { ev: (env) => expectEntity(t(env)).type === type };
      const group = compileExpr(e.in).ev;
      return {
        ev: (env) => {
          const uid = expectEntity(t(env));
          return uid.type === type && inValue(env, uid, group(env));
        },
      };
    }
    case 'set': {
      const parts = e.elements.map(compileExpr);
      const evs = parts.map((p) => p.ev);
      return fold(parts, (values) => CedarSet.of(values), (env) => CedarSet.of(evs.map((f) => f(env))));
    }
    case 'record': {
      const names = e.entries.map(([k]) => k);
      const parts = e.entries.map(([, v]) => compileExpr(v));
      const evs = parts.map((p) => p.ev);
      const build = (values: Value[]) => new CedarRecord(new Map(values.map((v, i) => [names[i]!, v])));
      return fold(parts, build, (env) => build(evs.map((f) => f(env))));
    }
    case 'call': {
      const fn = extensionFunction(e.fn);
      if (fn === undefined || fn.style !== 'function') {
        throw compileError('PARSE_UNKNOWN_FUNCTION', `\`${e.fn}\` is not a Cedar function`, e.loc);
      }
      const parts = e.args.map(compileExpr);
      const evs = parts.map((p) => p.ev);
      return fold(parts, (values) => applyExtension(fn, values), (env) => applyExtension(fn, evs.map((f) => f(env))));
    }
    case 'method':
      return compileMethod(e);
  }
}

/** Compiles one expression (the CLI's `eval`, tests); throws PolicyParseError for unknown calls. */
export function compileExpression(expr: Expr): Evaluator {
  return compileExpr(expr).ev;
}
