// Walking the policy AST: the direct sub-expressions of a node, for the passes that look at
// every node (context reads, lint).
import type { Expr, PolicyAst } from './ast.js';

export function children(e: Expr): Expr[] {
  switch (e.kind) {
    case 'bool':
    case 'long':
    case 'string':
    case 'var':
    case 'entity':
      return [];
    case 'if':
      return [e.cond, e.then, e.else];
    case 'and':
    case 'or':
    case 'binary':
      return [e.left, e.right];
    case 'not':
    case 'neg':
      return [e.arg];
    case 'has':
    case 'getAttr':
    case 'like':
      return [e.target];
    case 'is':
      return e.in ? [e.target, e.in] : [e.target];
    case 'set':
      return e.elements;
    case 'record':
      return e.entries.map(([, v]) => v);
    case 'call':
      return e.args;
    case 'method':
      return [e.target, ...e.args];
  }
}

/** Calls `visit` on every expression of the policy's conditions, parents before children. */
export function forEachExpr(policy: PolicyAst, visit: (e: Expr) => void): void {
  // An explicit stack: the parser bounds tree height, but this need not rely on it.
  const stack: Expr[] = policy.conditions.map((c) => c.body).reverse();
  for (let e = stack.pop(); e !== undefined; e = stack.pop()) {
    visit(e);
    const kids = children(e);
    for (let i = kids.length - 1; i >= 0; i--) stack.push(kids[i]!);
  }
}
