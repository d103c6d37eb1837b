// Canonical Cedar text for parsed policies (`ztedge policy fmt`). Parsing the output gives back
// the same AST, locations aside. Parentheses are printed only where precedence needs them, plus
// where Cedar's grammar would otherwise read the text differently (unary runs, negative literals).
// A condition that does not fit in LINE_WIDTH gets its body on lines of its own, one operand of a
// top-level `&&` / `||` chain per line. Comments are not part of the AST: format-text.ts places
// them on the lines built here.
import type { ActionConstraint, Condition, EntityUidLit, Expr, PatternElem, PolicyAst, ScopeConstraint } from './ast.js';

/** Conditions longer than this on one line are broken over several. */
export const LINE_WIDTH = 80;
const INDENT = '  ';

// Binding strength, loosest first; an operand printed below its required level is parenthesized.
const IF = 0, OR = 1, AND = 2, RELATION = 3, ADD = 4, MULT = 5, UNARY = 6, MEMBER = 7, PRIMARY = 8;
const MAX_UNARY_RUN = 4;

const RESERVED = new Set(['true', 'false', 'if', 'then', 'else', 'in', 'has', 'like', 'is', '__cedar']);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

function precedence(e: Expr): number {
  switch (e.kind) {
    case 'if': return IF;
    case 'or': return OR;
    case 'and': return AND;
    case 'has':
    case 'like':
    case 'is': return RELATION;
    case 'binary': return e.op === '+' || e.op === '-' ? ADD : e.op === '*' ? MULT : RELATION;
    case 'not':
    case 'neg': return UNARY;
    case 'long': return e.value < 0n ? UNARY : PRIMARY;
    case 'getAttr':
    case 'method': return MEMBER;
    default: return PRIMARY;
  }
}

function escapeChar(c: string, inPattern: boolean): string {
  switch (c) {
    case '"': return '\\"';
    case '\\': return '\\\\';
    case '\n': return '\\n';
    case '\r': return '\\r';
    case '\t': return '\\t';
    case '\0': return '\\0';
    case '*': return inPattern ? '\\*' : '*';
    default: {
      const code = c.charCodeAt(0);
      return code < 0x20 || code === 0x7f ? `\\u{${code.toString(16)}}` : c;
    }
  }
}

function escapeText(text: string, inPattern: boolean): string {
  let out = '';
  let runStart = 0;
  for (let i = 0; i < text.length; i++) {
    const c = text[i];
    const escaped = escapeChar(c, inPattern);
    if (escaped !== c) {
      out += text.slice(runStart, i) + escaped;
      runStart = i + 1;
    }
  }
  return out + text.slice(runStart);
}

export function formatString(value: string): string {
  return `"${escapeText(value, false)}"`;
}

function formatPattern(pattern: PatternElem[]): string {
  return `"${pattern.map((p) => (p.kind === 'wildcard' ? '*' : escapeText(p.text, true))).join('')}"`;
}

export function formatEntityUid(uid: EntityUidLit): string {
  return `${uid.type}::${formatString(uid.id)}`;
}

/** Whether `name` can be written bare after `.` or `has`, or as a record key. */
function isPlainAttribute(name: string): boolean {
  return IDENT.test(name) && !RESERVED.has(name);
}

function attributeKey(name: string): string {
  return isPlainAttribute(name) ? name : formatString(name);
}

function operand(e: Expr, minimum: number): string {
  const text = formatExpr(e);
  return precedence(e) < minimum ? `(${text})` : text;
}

function list(items: Expr[]): string {
  return items.map((item) => formatExpr(item)).join(', ');
}

/**
 * `!`/`-` runs: Cedar allows at most four in a row, never mixed, and folds `-` into a directly
 * following integer literal, so those cases get parentheses.
 */
function formatUnary(e: Extract<Expr, { kind: 'not' | 'neg' }>): string {
  const symbol = e.kind === 'not' ? '!' : '-';
  let run = 1;
  let inner = e.arg;
  while (inner.kind === e.kind && run < MAX_UNARY_RUN) {
    run++;
    inner = inner.arg;
  }
  // A fifth or mixed operator, and `-` before a non-negative literal (`-(5)`, which `-5` would
  // fold), need parentheses; negative literals get them from their UNARY precedence.
  const parenthesize =
    inner.kind === 'not' || inner.kind === 'neg' || (e.kind === 'neg' && inner.kind === 'long' && inner.value >= 0n);
  return symbol.repeat(run) + (parenthesize ? `(${formatExpr(inner)})` : operand(inner, MEMBER));
}

export function formatExpr(e: Expr): string {
  switch (e.kind) {
    case 'bool': return e.value ? 'true' : 'false';
    case 'long': return e.value.toString();
    case 'string': return formatString(e.value);
    case 'var': return e.name;
    case 'entity': return formatEntityUid(e.uid);
    case 'if': return `if ${operand(e.cond, IF)} then ${operand(e.then, IF)} else ${operand(e.else, IF)}`;
    case 'or': return `${operand(e.left, OR)} || ${operand(e.right, AND)}`;
    case 'and': return `${operand(e.left, AND)} && ${operand(e.right, RELATION)}`;
    case 'binary': {
      const level = precedence(e);
      if (level === RELATION) return `${operand(e.left, ADD)} ${e.op} ${operand(e.right, ADD)}`;
      return `${operand(e.left, level)} ${e.op} ${operand(e.right, level + 1)}`;
    }
    case 'not':
    case 'neg': return formatUnary(e);
    case 'has': return `${operand(e.target, ADD)} has ${attributeKey(e.attr)}`;
    case 'getAttr': {
      const target = operand(e.target, MEMBER);
      return isPlainAttribute(e.attr) ? `${target}.${e.attr}` : `${target}[${formatString(e.attr)}]`;
    }
    case 'like': return `${operand(e.target, ADD)} like ${formatPattern(e.pattern)}`;
    case 'is': {
      const head = `${operand(e.target, ADD)} is ${e.entityType}`;
      return e.in === undefined ? head : `${head} in ${operand(e.in, ADD)}`;
    }
    case 'set': return `[${list(e.elements)}]`;
    case 'record': return `{${e.entries.map(([k, v]) => `${attributeKey(k)}: ${formatExpr(v)}`).join(', ')}}`;
    case 'call': return `${e.fn}(${list(e.args)})`;
    case 'method': return `${operand(e.target, MEMBER)}.${e.method}(${list(e.args)})`;
  }
}

function formatScope(variable: 'principal' | 'resource', c: ScopeConstraint): string {
  switch (c.op) {
    case 'any': return variable;
    case '==':
    case 'in': return `${variable} ${c.op} ${formatEntityUid(c.entity)}`;
    case 'is': {
      const head = `${variable} is ${c.entityType}`;
      return c.in === undefined ? head : `${head} in ${formatEntityUid(c.in)}`;
    }
  }
}

function formatActionScope(c: ActionConstraint): string {
  switch (c.op) {
    case 'any': return 'action';
    case '==': return `action == ${formatEntityUid(c.entity)}`;
    case 'in':
      return c.entities.length === 1
        ? `action in ${formatEntityUid(c.entities[0])}`
        : `action in [${c.entities.map(formatEntityUid).join(', ')}]`;
  }
}

/**
 * One line of a formatted policy. `part` names the piece of the policy it shows, so comments can
 * be placed by where that piece starts in the source; `inner` lines sit inside brackets (comments
 * before them are indented like them).
 */
export interface PolicyLine {
  code: string;
  part: PolicyPart;
  inner: boolean;
}

export type PolicyPart =
  | { kind: 'annotation'; index: number }
  | { kind: 'effect' }
  | { kind: 'scope'; slot: 'principal' | 'action' | 'resource' }
  | { kind: 'scope-close' }
  | { kind: 'condition'; index: number }
  | { kind: 'condition-open'; index: number }
  | { kind: 'operand'; condition: number; expr: Expr }
  | { kind: 'condition-close'; index: number };

/** The operands of a top-level `&&` (or `||`) chain, `a && b && c` as [a, b, c], with the operator. */
function chain(body: Expr): { op: '&&' | '||'; operands: Expr[] } | undefined {
  if (body.kind !== 'and' && body.kind !== 'or') return undefined;
  const operands: Expr[] = [];
  let e: Expr = body;
  // Only the left spine: `a && (b && c)` is a different tree and keeps its parentheses.
  while (e.kind === body.kind) {
    operands.push(e.right);
    e = e.left;
  }
  operands.push(e);
  return { op: body.kind === 'and' ? '&&' : '||', operands: operands.reverse() };
}

function conditionLines(c: Condition, index: number, last: boolean, breakLines: boolean): PolicyLine[] {
  const oneLine = `${c.kind} { ${formatExpr(c.body)} }`;
  if (!breakLines && oneLine.length + (last ? 1 : 0) <= LINE_WIDTH) return [{ code: oneLine, part: { kind: 'condition', index }, inner: false }];
  const lines: PolicyLine[] = [{ code: `${c.kind} {`, part: { kind: 'condition-open', index }, inner: false }];
  const ch = chain(c.body);
  const operands = ch === undefined ? [c.body] : ch.operands;
  operands.forEach((expr, i) => {
    const text = ch === undefined ? formatExpr(expr) : operand(expr, ch.op === '&&' ? RELATION : AND);
    const more = ch !== undefined && i < operands.length - 1 ? ` ${ch.op}` : '';
    lines.push({ code: `${INDENT}${text}${more}`, part: { kind: 'operand', condition: index, expr }, inner: true });
  });
  lines.push({ code: '}', part: { kind: 'condition-close', index }, inner: true });
  return lines;
}

/**
 * The lines of one policy, the last without its `;`. `breakCondition(i)` forces condition i onto
 * several lines (format-text.ts asks for it when comments sit inside the condition).
 */
export function policyLines(p: PolicyAst, breakCondition: (index: number) => boolean = () => false): PolicyLine[] {
  const lines: PolicyLine[] = p.annotations.map((a, index) => ({
    code: a.value === '' ? `@${a.key}` : `@${a.key}(${formatString(a.value)})`,
    part: { kind: 'annotation', index },
    inner: false,
  }));
  lines.push(
    { code: `${p.effect} (`, part: { kind: 'effect' }, inner: false },
    { code: `${INDENT}${formatScope('principal', p.principal)},`, part: { kind: 'scope', slot: 'principal' }, inner: true },
    { code: `${INDENT}${formatActionScope(p.action)},`, part: { kind: 'scope', slot: 'action' }, inner: true },
    { code: `${INDENT}${formatScope('resource', p.resource)}`, part: { kind: 'scope', slot: 'resource' }, inner: true },
    { code: ')', part: { kind: 'scope-close' }, inner: false },
  );
  p.conditions.forEach((c, i) => lines.push(...conditionLines(c, i, i === p.conditions.length - 1, breakCondition(i))));
  return lines;
}

/** One policy as canonical Cedar text, ending in `;` (no trailing newline). */
export function formatPolicy(p: PolicyAst): string {
  return `${policyLines(p).map((l) => l.code).join('\n')};`;
}

/** A policy set: policies separated by blank lines, with a final newline. */
export function formatPolicies(policies: PolicyAst[]): string {
  return policies.length === 0 ? '' : `${policies.map(formatPolicy).join('\n\n')}\n`;
}
