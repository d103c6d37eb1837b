// Which parts of `context` a policy reads, found statically: `context.args.speed` reads the
// path ["args", "speed"]; `context has mode` reads ["mode"]. Any other use of `context` (passed
// whole, compared, indexed through something dynamic) reads it all. A decision cache keys on
// exactly these paths.
import type { Expr, PolicyAst } from './ast.js';
import { children } from './ast-walk.js';

/** 'all', or the attribute paths read (no path is a prefix of another; sorted). */
export type ContextReads = 'all' | ReadonlyArray<ReadonlyArray<string>>;

/** The attribute chain of `context.a.b...`, or undefined when `e` is not such a chain. */
function contextChain(e: Expr): string[] | undefined {
  const chain: string[] = [];
  let cur = e;
  while (cur.kind === 'getAttr') {
    chain.push(cur.attr);
    cur = cur.target;
  }
  return cur.kind === 'var' && cur.name === 'context' ? chain.reverse() : undefined;
}

export function contextReadsOf(policy: PolicyAst): ContextReads {
  const paths: string[][] = [];
  let all = false;
  const visit = (e: Expr): void => {
    if (all) return;
    const chain = contextChain(e);
    if (chain !== undefined) {
      if (chain.length === 0) all = true;
      else paths.push(chain);
      return;
    }
    if (e.kind === 'has') {
      const target = contextChain(e.target);
      if (target !== undefined) {
        paths.push([...target, e.attr]);
        return;
      }
    }
    for (const c of children(e)) visit(c);
  };
  for (const condition of policy.conditions) visit(condition.body);
  if (all) return 'all';
  return minimalPaths(paths);
}

/** Sorted, deduplicated, and without paths already covered by a shorter prefix. */
function minimalPaths(paths: string[][]): string[][] {
  const sorted = [...paths].sort((a, b) => {
    for (let i = 0; i < Math.min(a.length, b.length); i++) {
      if (a[i] !== b[i]) return a[i]! < b[i]! ? -1 : 1;
    }
    return a.length - b.length;
  });
  const out: string[][] = [];
  for (const p of sorted) {
    const prev = out[out.length - 1];
    if (prev && prev.length <= p.length && prev.every((seg, i) => seg === p[i])) continue;
    out.push(p);
  }
  return out;
}
