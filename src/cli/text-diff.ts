// Unified diffs of two texts by lines (`ztedge policy fmt --diff`), with Myers' O((N+M)·D)
// shortest edit script, so a one-line change in a long file costs little.

type Edit = { op: ' ' | '-' | '+'; line: string };

const NO_NEWLINE = '\n\\ No newline at end of file';

/** Lines of `text`; a last line without a line break carries diff's "no newline" marker. */
function linesOf(text: string): string[] {
  if (text === '') return [];
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  else lines[lines.length - 1] += NO_NEWLINE;
  return lines;
}

/** The shortest edit script turning `a` into `b`. */
function editScript(a: readonly string[], b: readonly string[]): Edit[] {
  const n = a.length;
  const m = b.length;
  const o = n + m + 1; // index of diagonal k = 0
  const v = new Int32Array(2 * o + 1);
  // trace[d]: the furthest x reached on each diagonal before step d.
  const trace: Int32Array[] = [];
  const down = (k: number, d: number, w: Int32Array) => k === -d || (k !== d && w[o + k - 1]! < w[o + k + 1]!);
  search: for (let d = 0; d <= n + m; d++) {
    trace.push(v.slice());
    for (let k = -d; k <= d; k += 2) {
      let x = down(k, d, v) ? v[o + k + 1]! : v[o + k - 1]! + 1;
      let y = x - k;
      while (x < n && y < m && a[x] === b[y]) {
        x++;
        y++;
      }
      v[o + k] = x;
      if (x >= n && y >= m) break search;
    }
  }
  const edits: Edit[] = [];
  let x = n;
  let y = m;
  for (let d = trace.length - 1; d >= 0; d--) {
    const w = trace[d]!;
    const k = x - y;
    const prevK = down(k, d, w) ? k + 1 : k - 1;
    const prevX = w[o + prevK]!;
    const prevY = prevX - prevK;
    while (x > prevX && y > prevY) {
      edits.push({ op: ' ', line: a[x - 1]! });
      x--;
      y--;
    }
    if (d === 0) break;
    if (x === prevX) edits.push({ op: '+', line: b[--y]! });
    else edits.push({ op: '-', line: a[--x]! });
  }
  return edits.reverse();
}

/** A hunk's line range as diff writes it: `start,count`, the count left out when it is 1. */
function range(start: number, count: number): string {
  if (count === 0) return `${start - 1},0`;
  return count === 1 ? `${start}` : `${start},${count}`;
}

/**
 * A unified diff (`--- aName`, `+++ bName`, hunks with `context` unchanged lines around each
 * change), or '' when the texts are equal.
 */
export function unifiedDiff(a: string, b: string, aName: string, bName: string, context = 3): string {
  if (a === b) return '';
  const edits = editScript(linesOf(a), linesOf(b));
  const out = [`--- ${aName}`, `+++ ${bName}`];
  let i = 0;
  let aLine = 1;
  let bLine = 1;
  while (i < edits.length) {
    // Skip to the next change, keeping `context` lines before it.
    let change = i;
    while (change < edits.length && edits[change]!.op === ' ') change++;
    if (change === edits.length) break;
    const lead = Math.min(context, change - i);
    aLine += change - lead - i;
    bLine += change - lead - i;
    let end = change;
    // A hunk runs until more than 2·context unchanged lines separate it from the next change.
    for (;;) {
      while (end < edits.length && edits[end]!.op !== ' ') end++;
      let same = end;
      while (same < edits.length && edits[same]!.op === ' ') same++;
      if (same === edits.length || same - end > 2 * context) {
        end = Math.min(same, end + context);
        break;
      }
      end = same;
    }
    const hunk = edits.slice(change - lead, end);
    const aCount = hunk.filter((e) => e.op !== '+').length;
    const bCount = hunk.filter((e) => e.op !== '-').length;
    out.push(`@@ -${range(aLine, aCount)} +${range(bLine, bCount)} @@`);
    for (const e of hunk) out.push(`${e.op}${e.line}`);
    aLine += aCount;
    bLine += bCount;
    i = end;
  }
  return `${out.join('\n')}\n`;
}
