// Cedar policy AST. Produced by the parser, consumed by the compiler/evaluator.
// Every node carries a source location so errors can point at policy text.

/** A position range in a policy source. Lines and columns are 1-based; offsets 0-based. */
export interface Loc {
  /** Name of the source (file name or a label such as "<stdin>"). */
  source: string;
  line: number;
  column: number;
  /** Start offset in the source text (UTF-16 code units). */
  offset: number;
  /** Length of the range in UTF-16 code units. */
  length: number;
}

/** An entity uid as written in policy text: `Namespace::Type::"id"`. */
export interface EntityUidLit {
  /** Fully qualified type name, e.g. `Robot::Arm` (namespaces joined by `::`). */
  type: string;
  /** The unescaped id string. */
  id: string;
}

export type VarName = 'principal' | 'action' | 'resource' | 'context';

/** One element of a `like` pattern: literal text or the `*` wildcard. */
export type PatternElem = { kind: 'text'; text: string } | { kind: 'wildcard' };

export type BinaryOp =
  | '=='
  | '!='
  | '<'
  | '<='
  | '>'
  | '>='
  | 'in'
  | '+'
  | '-'
  | '*';

/** Built-in methods (`e.contains(x)` etc.) and extension methods (`ip.isLoopback()`) alike. */
export interface MethodCall {
  kind: 'method';
  target: Expr;
  /** Method name as written, e.g. `contains`, `hasTag`, `isInRange`, `offset`. */
  method: string;
  args: Expr[];
  loc: Loc;
}

export type Expr =
  | { kind: 'bool'; value: boolean; loc: Loc }
  /** A Long literal; always a bigint in -2^63 .. 2^63-1 (the parser folds a leading `-`). */
  | { kind: 'long'; value: bigint; loc: Loc }
  | { kind: 'string'; value: string; loc: Loc }
  | { kind: 'var'; name: VarName; loc: Loc }
  | { kind: 'entity'; uid: EntityUidLit; loc: Loc }
  | { kind: 'if'; cond: Expr; then: Expr; else: Expr; loc: Loc }
  | { kind: 'and'; left: Expr; right: Expr; loc: Loc }
  | { kind: 'or'; left: Expr; right: Expr; loc: Loc }
  | { kind: 'not'; arg: Expr; loc: Loc }
  | { kind: 'neg'; arg: Expr; loc: Loc }
  | { kind: 'binary'; op: BinaryOp; left: Expr; right: Expr; loc: Loc }
  /**
   * `target has attr`. A multi-level `e has a.b` is desugared by the parser into
   * `e has a && e.a has b`.
   */
  | { kind: 'has'; target: Expr; attr: string; loc: Loc }
  /** `target.attr` or `target["attr"]`. */
  | { kind: 'getAttr'; target: Expr; attr: string; loc: Loc }
  | { kind: 'like'; target: Expr; pattern: PatternElem[]; loc: Loc }
  /** `target is Type` or `target is Type in inExpr`. */
  | { kind: 'is'; target: Expr; entityType: string; in?: Expr; loc: Loc }
  | { kind: 'set'; elements: Expr[]; loc: Loc }
  /** Record literal; keys are unique (the parser rejects duplicates). */
  | { kind: 'record'; entries: Array<[string, Expr]>; loc: Loc }
  /** Extension function call, e.g. `ip("10.0.0.1")`, `decimal("1.5")`; `fn` fully qualified as written. */
  | { kind: 'call'; fn: string; args: Expr[]; loc: Loc }
  | MethodCall;

/** Scope constraint on principal or resource. */
export type ScopeConstraint =
  | { op: 'any' }
  | { op: '=='; entity: EntityUidLit; loc: Loc }
  | { op: 'in'; entity: EntityUidLit; loc: Loc }
  /** `principal is Type` or `principal is Type in Entity`. */
  | { op: 'is'; entityType: string; in?: EntityUidLit; loc: Loc };

/** Scope constraint on action. `action in Action::"a"` is stored as a one-element list. */
export type ActionConstraint =
  | { op: 'any' }
  | { op: '=='; entity: EntityUidLit; loc: Loc }
  | { op: 'in'; entities: EntityUidLit[]; loc: Loc };

export interface Condition {
  kind: 'when' | 'unless';
  body: Expr;
  loc: Loc;
}

export interface Annotation {
  key: string;
  /** The annotation value; `@key` with no value has the empty string. */
  value: string;
  loc: Loc;
}

export interface PolicyAst {
  /** Cedar policy id: `policy0`, `policy1`, ... in source order (see the parser's `idPrefix`/`startIndex`). */
  id: string;
  effect: 'permit' | 'forbid';
  /** In source order; keys are unique (the parser rejects duplicates). */
  annotations: Annotation[];
  principal: ScopeConstraint;
  action: ActionConstraint;
  resource: ScopeConstraint;
  conditions: Condition[];
  /** Location of the whole policy (from its first annotation or effect keyword to the `;`). */
  loc: Loc;
}

/** A policy that determined a decision, as reported with it (id, @id name, effect, annotations). */
export interface DeterminingPolicy {
  id: string;
  name?: string;
  effect: 'permit' | 'forbid';
  annotations: Record<string, string>;
}
