// Cedar `like` patterns: literal text and `*` (any sequence, possibly empty). Matching is one
// left-to-right pass placing each literal run at its earliest position, which is exact for
// `*`-only patterns and never backtracks, so a hostile pattern or input cannot blow up.
import type { PatternElem } from './ast.js';

export type LikeMatcher = (s: string) => boolean;

export function compileLike(pattern: readonly PatternElem[]): LikeMatcher {
  // Literal runs between wildcards: `a*b**c` -> ['a', 'b', 'c'], with an empty run at an end
  // that is a wildcard.
  const runs: string[] = [''];
  for (const elem of pattern) {
    if (elem.kind === 'text') runs[runs.length - 1] += elem.text;
    else if (runs[runs.length - 1] !== '' || runs.length === 1) runs.push('');
  }
  if (runs.length === 1) {
    const exact = runs[0]!;
    return (s) => s === exact;
  }
  const first = runs[0]!;
  const last = runs[runs.length - 1]!;
  const middle = runs.slice(1, -1).filter((r) => r !== '');
  const minLength = first.length + last.length;
  return (s) => {
    if (s.length < minLength || !s.startsWith(first) || !s.endsWith(last)) return false;
    const end = s.length - last.length;
    let pos = first.length;
    for (const run of middle) {
      const at = s.indexOf(run, pos);
      if (at < 0 || at + run.length > end) return false;
      pos = at + run.length;
    }
    return true;
  };
}
