// The reference Cedar parser (cedar-wasm) as an oracle: whether it accepts a policy text, and its
// JSON form (EST) of each policy brought into the shape of our AST, so the two can be compared.
// Both sides are normalized the same way: no locations, record entries and annotations sorted
// (the EST keeps them in maps), Long values as JavaScript numbers (the EST reaches JavaScript
// through JSON numbers), multi-level `has` desugared as our parser does.
import * as cedar from '@cedar-policy/cedar-wasm/nodejs';
import type { Expr, PolicyAst } from '../../../src/policy/ast.js';
import { extensionFunction } from '../../../src/policy/extensions.js';
import { stripLocs } from './ast-tools.js';

type Json = Record<string, unknown>;

/** A policy normalized for comparison (see the module comment). */
export type Normalized = Omit<PolicyAst, 'loc' | 'id'>;

export type OracleResult = { ok: true; policies: Normalized[] } | { ok: false; message: string };

export const cedarVersion: string = cedar.getCedarVersion();

export function oracleParse(text: string): OracleResult {
  const checked = cedar.checkParsePolicySet({ staticPolicies: text });
  if (checked.type === 'failure') return { ok: false, message: checked.errors.map((e) => e.message).join('; ') };
  const parts = cedar.policySetTextToParts(text);
  if (parts.type === 'failure') throw new Error(`cedar-wasm accepted but could not split: ${text}`);
  return {
    ok: true,
    policies: parts.policies.map((p) => {
      const answer = cedar.policyToJson(p);
      if (answer.type === 'failure') throw new Error(`cedar-wasm accepted but could not convert: ${p}`);
      return fromEstPolicy(answer.json as unknown as Json);
    }),
  };
}

// ---- our AST, normalized ---------------------------------------------------------------------

function normalizeExpr(e: Expr): Expr {
  return JSON.parse(
    JSON.stringify(stripLocs(e), (key, value: unknown) => {
      if (typeof value === 'bigint') return { $long: Number(value) };
      if (key === 'entries' && Array.isArray(value)) {
        return [...(value as Array<[string, unknown]>)].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      }
      return value;
    }),
    (_key, value: unknown) => (value !== null && typeof value === 'object' && '$long' in value ? (value as { $long: number }).$long : value),
  ) as Expr;
}

export function normalizePolicy(p: PolicyAst): Normalized {
  const stripped = stripLocs(p);
  return {
    effect: stripped.effect,
    annotations: [...stripped.annotations].sort((a, b) => (a.key < b.key ? -1 : 1)),
    principal: stripped.principal,
    action: stripped.action,
    resource: stripped.resource,
    conditions: p.conditions.map((c) => ({ kind: c.kind, body: normalizeExpr(c.body) }) as PolicyAst['conditions'][number]),
  };
}

// ---- the EST, converted ----------------------------------------------------------------------

function uidOf(j: unknown): { type: string; id: string } {
  const u = j as { type: string; id: string };
  return { type: u.type, id: u.id };
}

function fromEstPolicy(j: Json): Normalized {
  const scope = (c: Json): PolicyAst['principal'] => {
    switch (c.op) {
      case 'All': return { op: 'any' };
      case '==': return { op: '==', entity: uidOf(c.entity) } as PolicyAst['principal'];
      case 'in': return { op: 'in', entity: uidOf(c.entity) } as PolicyAst['principal'];
      case 'is': {
        const inner = c.in as Json | undefined;
        return (inner === undefined
          ? { op: 'is', entityType: c.entity_type }
          : { op: 'is', entityType: c.entity_type, in: uidOf(inner.entity) }) as PolicyAst['principal'];
      }
      default: throw new Error(`unexpected scope ${JSON.stringify(c)}`);
    }
  };
  const action = (c: Json): PolicyAst['action'] => {
    if (c.op === 'All') return { op: 'any' };
    if (c.op === '==') return { op: '==', entity: uidOf(c.entity) } as PolicyAst['action'];
    const entities = c.entities === undefined ? [uidOf(c.entity)] : (c.entities as unknown[]).map(uidOf);
    return { op: 'in', entities } as PolicyAst['action'];
  };
  const annotations = Object.entries((j.annotations ?? {}) as Record<string, string | null>)
    .map(([key, value]) => ({ key, value: value ?? '' }))
    .sort((a, b) => (a.key < b.key ? -1 : 1)) as PolicyAst['annotations'];
  return {
    effect: j.effect as PolicyAst['effect'],
    annotations,
    principal: scope(j.principal as Json),
    action: action(j.action as Json),
    resource: scope(j.resource as Json),
    conditions: (j.conditions as Json[]).map(
      (c) => ({ kind: c.kind, body: fromEstExpr(c.body as Json) }) as PolicyAst['conditions'][number],
    ),
  };
}

const BINARY = new Set(['==', '!=', '<', '<=', '>', '>=', 'in', '+', '-', '*']);
const ONE_ARG_BUILTINS = new Set(['contains', 'containsAll', 'containsAny', 'hasTag', 'getTag']);

function fromValue(v: unknown): Expr {
  if (typeof v === 'boolean') return { kind: 'bool', value: v } as Expr;
  if (typeof v === 'number') return { kind: 'long', value: v } as unknown as Expr;
  if (typeof v === 'string') return { kind: 'string', value: v } as Expr;
  if (Array.isArray(v)) return { kind: 'set', elements: v.map(fromValue) } as Expr;
  const o = v as Json;
  if ('__entity' in o) return { kind: 'entity', uid: uidOf(o.__entity) } as Expr;
  return {
    kind: 'record',
    entries: Object.entries(o)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, x]) => [k, fromValue(x)]),
  } as Expr;
}

function fromEstExpr(j: Json): Expr {
  const [key] = Object.keys(j);
  const v = j[key] as Json & unknown[];
  const sub = (x: unknown): Expr => fromEstExpr(x as Json);
  if (key === 'Value') return fromValue(v);
  if (key === 'Var') return { kind: 'var', name: v } as unknown as Expr;
  if (key === '!') return { kind: 'not', arg: sub(v.arg) } as Expr;
  if (key === 'neg') return { kind: 'neg', arg: sub(v.arg) } as Expr;
  if (key === '&&') return { kind: 'and', left: sub(v.left), right: sub(v.right) } as Expr;
  if (key === '||') return { kind: 'or', left: sub(v.left), right: sub(v.right) } as Expr;
  if (BINARY.has(key)) return { kind: 'binary', op: key, left: sub(v.left), right: sub(v.right) } as Expr;
  if (key === '.') return { kind: 'getAttr', target: sub(v.left), attr: v.attr } as Expr;
  if (key === 'has') {
    const target = sub(v.left);
    const path = Array.isArray(v.attr) ? (v.attr as string[]) : [v.attr as string];
    let result = { kind: 'has', target, attr: path[0] } as Expr;
    let object = target;
    for (let i = 1; i < path.length; i++) {
      object = { kind: 'getAttr', target: object, attr: path[i - 1] } as Expr;
      result = { kind: 'and', left: result, right: { kind: 'has', target: object, attr: path[i] } } as Expr;
    }
    return result;
  }
  if (key === 'like') {
    const pattern: Array<{ kind: 'text'; text: string } | { kind: 'wildcard' }> = [];
    for (const el of v.pattern as Array<'Wildcard' | { Literal: string }>) {
      const last = pattern[pattern.length - 1];
      if (el === 'Wildcard') pattern.push({ kind: 'wildcard' });
      else if (last?.kind === 'text') last.text += el.Literal;
      else pattern.push({ kind: 'text', text: el.Literal });
    }
    return { kind: 'like', target: sub(v.left), pattern } as Expr;
  }
  if (key === 'is') {
    const base = { kind: 'is', target: sub(v.left), entityType: v.entity_type };
    return (v.in === undefined ? base : { ...base, in: sub(v.in) }) as Expr;
  }
  if (key === 'if-then-else') return { kind: 'if', cond: sub(v.if), then: sub(v.then), else: sub(v.else) } as Expr;
  if (key === 'Set') return { kind: 'set', elements: v.map(sub) } as Expr;
  if (key === 'Record') {
    const entries = Object.entries(v as Json)
      .sort(([a], [b]) => (a < b ? -1 : 1))
      .map(([k, x]) => [k, sub(x)]);
    return { kind: 'record', entries } as Expr;
  }
  if (ONE_ARG_BUILTINS.has(key)) return { kind: 'method', target: sub(v.left), method: key, args: [sub(v.right)] } as Expr;
  if (key === 'isEmpty') return { kind: 'method', target: sub(v.arg), method: key, args: [] as Expr[] } as Expr;
  if (Array.isArray(v)) {
    if (extensionFunction(key)?.style === 'function') return { kind: 'call', fn: key, args: v.map(sub) } as Expr;
    return { kind: 'method', target: sub(v[0]), method: key, args: v.slice(1).map(sub) } as Expr;
  }
  throw new Error(`unexpected EST node ${JSON.stringify(j)}`);
}
