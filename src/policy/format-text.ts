// Formats a whole policy file as `ztedge policy fmt` writes it: the canonical text of format.ts,
// with the file's comments kept where they belong. A comment on lines of its own stays above the
// piece of the policy that follows it (an annotation, the effect, a scope, a condition or one
// operand of a broken condition); a comment at the end of a line stays at the end of the line
// showing the piece that line began; comments between policies stay between them, with at most
// one blank line kept around them. Formatting the output again changes nothing.
import type { PolicyAst } from './ast.js';
import { type PolicyLine, type PolicyPart, policyLines } from './format.js';
import { Lexer, type Span, type Token } from './lexer.js';
import { type ParseOptions, parsePolicies } from './parser.js';

interface Comment {
  text: string;
  offset: number;
  end: number;
  /** Nothing but blanks before it on its line. */
  ownLine: boolean;
}

/** Where each piece of a policy starts in the source, found from its tokens. */
interface Anchors {
  effect: number;
  principal: number;
  action: number;
  resource: number;
  scopeClose: number;
  conditionClose: number[];
}

/** Tokens and comments of text that parsed, in source order. */
function scan(text: string): { tokens: Token[]; comments: Comment[] } {
  const spans: Span[] = [];
  const lexer = new Lexer(
    text,
    (code, message) => {
      // The text has parsed, so the lexer has nothing to report.
      throw new Error(`unexpected lexical error ${code}: ${message}`);
    },
    (span) => spans.push(span),
  );
  const tokens: Token[] = [];
  for (let t = lexer.next(); t.kind !== 'eof'; t = lexer.next()) tokens.push(t);
  const comments = spans.map((s) => {
    const lineStart = s.offset - (s.column - 1);
    return {
      text: text.slice(s.offset, s.offset + s.length).trimEnd(),
      offset: s.offset,
      end: s.offset + s.length,
      ownLine: text.slice(lineStart, s.offset).trim() === '',
    };
  });
  return { tokens, comments };
}

const OPENERS = new Set(['(', '[', '{']);
const CLOSERS = new Set([')', ']', '}']);

/** Reads the structure of one policy from its tokens (the policy parsed, so the shape is known). */
function anchorsOf(tokens: readonly Token[]): Anchors {
  let i = 0;
  while (tokens[i]!.kind === '@') {
    i += 2; // `@` name
    if (tokens[i]?.kind === '(') i += 3; // `(` "value" `)`
  }
  const effect = tokens[i]!.offset;
  i += 2; // effect `(`
  const scopes: number[] = [tokens[i]!.offset];
  let depth = 0;
  for (; depth > 0 || tokens[i]!.kind !== ')'; i++) {
    const kind = tokens[i]!.kind;
    if (OPENERS.has(kind)) depth++;
    else if (CLOSERS.has(kind)) depth--;
    else if (kind === ',' && depth === 0 && scopes.length < 3) scopes.push(tokens[i + 1]!.offset);
  }
  const scopeClose = tokens[i]!.offset;
  const conditionClose: number[] = [];
  for (i++; i < tokens.length; i++) {
    const kind = tokens[i]!.kind;
    if (OPENERS.has(kind)) depth++;
    else if (CLOSERS.has(kind)) {
      depth--;
      if (depth === 0 && kind === '}') conditionClose.push(tokens[i]!.offset);
    }
  }
  return { effect, principal: scopes[0]!, action: scopes[1]!, resource: scopes[2]!, scopeClose, conditionClose };
}

/** Where the piece a line shows starts in the source. */
function startOf(part: PolicyPart, policy: PolicyAst, anchors: Anchors): number {
  switch (part.kind) {
    case 'annotation': return policy.annotations[part.index]!.loc.offset;
    case 'effect': return anchors.effect;
    case 'scope': return anchors[part.slot];
    case 'scope-close': return anchors.scopeClose;
    case 'condition':
    case 'condition-open': return policy.conditions[part.index]!.loc.offset;
    case 'operand': return part.expr.loc.offset;
    case 'condition-close': return anchors.conditionClose[part.index]!;
  }
}

interface PlacedLine {
  code: string;
  /** Comments on lines of their own just above this line, indented like it. */
  above: string[];
  /** Comments at the end of this line. */
  after: string[];
}

const INNER_INDENT = '  ';

function formatWithComments(policy: PolicyAst, tokens: readonly Token[], inside: readonly Comment[], after: readonly Comment[]): string[] {
  const anchors = anchorsOf(tokens);
  const end = policy.loc.offset + policy.loc.length;
  // A condition holding a comment is broken over lines, so the comment has a line to stay with.
  const broken = policy.conditions.map((c) => inside.some((k) => k.offset > c.loc.offset && k.offset < c.loc.offset + c.loc.length));
  const lines: PolicyLine[] = policyLines(policy, (i) => broken[i]!);
  const starts = lines.map((l) => startOf(l.part, policy, anchors));
  const placed: PlacedLine[] = lines.map((l) => ({ code: l.code, above: [], after: [] }));
  const last = placed[placed.length - 1]!;
  for (const comment of inside) {
    if (comment.ownLine) {
      const next = starts.findIndex((s) => s > comment.offset);
      (next === -1 ? last.after : placed[next]!.above).push(comment.text);
    } else {
      let previous = 0;
      for (let i = 0; i < starts.length && starts[i]! < comment.offset; i++) previous = i;
      placed[previous]!.after.push(comment.text);
    }
  }
  for (const comment of after) if (comment.offset >= end) last.after.push(comment.text);
  last.code += ';';
  const out: string[] = [];
  placed.forEach((line, i) => {
    const indent = lines[i]!.inner ? INNER_INDENT : '';
    for (const text of line.above) out.push(indent + text);
    out.push(line.after.length === 0 ? line.code : `${line.code} ${line.after.join(' ')}`);
  });
  return out;
}

/** Whether the text between two offsets holds an empty line. */
function blankBetween(text: string, from: number, to: number): boolean {
  return /\r?\n[^\S\r\n]*\r?\n/.test(text.slice(from, to));
}

/**
 * The canonical text of a policy file, comments kept, ending in a newline (empty text stays
 * empty). Throws PolicyParseError when the text does not parse.
 */
export function formatPolicyText(text: string, opts?: ParseOptions): string {
  const policies = parsePolicies(text, opts);
  const { tokens, comments } = scan(text);
  const out: string[] = [];
  let ci = 0;
  let ti = 0;
  let previousEnd = 0;
  policies.forEach((policy, pi) => {
    const start = policy.loc.offset;
    const end = start + policy.loc.length;
    // Comments above the policy (those ending the previous policy's line went with it).
    const leading: Comment[] = [];
    for (; ci < comments.length && comments[ci]!.offset < start; ci++) leading.push(comments[ci]!);
    if (pi > 0) out.push('');
    let from = previousEnd;
    leading.forEach((c, i) => {
      if (i > 0 && blankBetween(text, from, c.offset)) out.push('');
      out.push(c.text);
      from = c.end;
    });
    if (leading.length > 0 && blankBetween(text, from, start)) out.push('');
    const inside: Comment[] = [];
    for (; ci < comments.length && comments[ci]!.offset < end; ci++) inside.push(comments[ci]!);
    // End-of-line comments right after the `;` belong to this policy's last line.
    const trailing: Comment[] = [];
    const nextStart = policies[pi + 1]?.loc.offset ?? text.length;
    for (let k = ci; k < comments.length && comments[k]!.offset < nextStart && !comments[k]!.ownLine; k++) trailing.push(comments[k]!);
    ci += trailing.length;
    const own: Token[] = [];
    while (ti < tokens.length && tokens[ti]!.offset < start) ti++;
    for (; ti < tokens.length && tokens[ti]!.offset < end; ti++) own.push(tokens[ti]!);
    out.push(...formatWithComments(policy, own, inside, trailing));
    previousEnd = trailing.length > 0 ? trailing[trailing.length - 1]!.end : end;
  });
  // Comments after the last policy (or in a file without policies).
  let from = previousEnd;
  comments.slice(ci).forEach((c, i) => {
    if ((i > 0 || policies.length > 0) && blankBetween(text, from, c.offset)) out.push('');
    out.push(c.text);
    from = c.end;
  });
  return out.length === 0 ? '' : `${out.join('\n')}\n`;
}
