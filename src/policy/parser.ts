// Cedar parser: recursive descent over Cedar's grammar
// (https://docs.cedarpolicy.com/policies/syntax-grammar.html), producing the AST in ./ast.ts.
// Static policies only. Every input is untrusted: the text size, bracket nesting, tree height and
// desugared size are bounded, and every problem becomes a located diagnostic. After an error the
// parser skips to the next `;` and carries on, so one run reports every broken policy; the
// diagnostics are thrown together as one PolicyParseError.
import type {
  ActionConstraint,
  Annotation,
  BinaryOp,
  Condition,
  EntityUidLit,
  Expr,
  Loc,
  PolicyAst,
  ScopeConstraint,
  VarName,
} from './ast.js';
import { type Diagnostic, type ParseErrorCode, PolicyParseError } from './errors.js';
import { extensionFunction } from './extensions.js';
import { Lexer, decodePattern, decodeString, type Span, type Token, type TokenKind } from './lexer.js';

export interface ParseOptions {
  /** Name of the text in diagnostics and locations. Default `<policy>`. */
  source?: string;
  /** Policy ids are `${idPrefix}${startIndex + i}`. Default `policy`. */
  idPrefix?: string;
  /** Default 0. */
  startIndex?: number;
  /** Texts longer than this many UTF-8 bytes are refused before lexing. Default 1 MiB. */
  maxBytes?: number;
  /** Bound on bracket nesting and on expression tree height. Default 128, at most 512. */
  maxDepth?: number;
}

/**
 * Built-in methods with their argument counts (the receiver not counted). A wrong count is a
 * parse error, as in Cedar. Extension functions and methods come from the extension registry:
 * their argument counts are checked when a call is evaluated, as Cedar does.
 */
export const BUILTIN_METHOD_ARITY: ReadonlyMap<string, number> = new Map([
  ['contains', 1], ['containsAll', 1], ['containsAny', 1], ['isEmpty', 0], ['hasTag', 1], ['getTag', 1],
]);

const isExtensionMethod = (name: string): boolean => extensionFunction(name)?.style === 'method';
const isExtensionFunction = (name: string): boolean => extensionFunction(name)?.style === 'function';

/** Words Cedar never accepts as attribute, record key or type name components. */
const RESERVED_WORDS = new Set(['true', 'false', 'if', 'then', 'else', 'in', 'has', 'like', 'is']);
/** Reserved for Cedar's own use as a whole name component (`__cedar_x` is fine). */
const RESERVED_NAMESPACE = '__cedar';
const VARIABLES = new Set<string>(['principal', 'action', 'resource', 'context']);
const RELATION_OPS = new Set<TokenKind>(['==', '!=', '<', '<=', '>', '>=']);
/** Tokens that would extend an additive expression: after `has x`, `like "p"`, `is T` they are errors. */
const ADD_CONTINUATIONS = new Set<TokenKind>(['.', '[', '(', '+', '-', '*', '/', '%', '::']);
const ACCESS_STARTS = new Set<TokenKind>(['.', '[', '(']);

const DEFAULT_MAX_BYTES = 1024 * 1024;
const DEFAULT_MAX_DEPTH = 128;
/** Above this the parser's own recursion could approach Node's default stack size. */
const MAX_DEPTH_CEILING = 512;
/** Bound on one expression's node count once multi-level `has` is desugared (it copies its target). */
const MAX_EXPANDED_NODES = 1 << 20;
/**
 * Each inner node's height (longest path to a leaf) and node count, with shared subtrees counted
 * at each use, are packed into one number, `nodes * HEIGHT_RANGE + height`; heights stay below
 * MAX_DEPTH_CEILING. Leaves are not recorded: LEAF_METRICS is 1 node of height 0.
 */
const HEIGHT_RANGE = 1024;
const LEAF_METRICS = HEIGHT_RANGE;
const MAX_DIAGNOSTICS = 100;
const MAX_UNARY_RUN = 4;
const I64_MAX = (1n << 63n) - 1n;
const I64_MIN = -(1n << 63n);

/** Thrown to abandon the current policy once its error is recorded; caught at the policy. */
const BAIL = Symbol('bail');
/** Thrown when there are too many diagnostics to be useful; ends the parse. */
const HALT = Symbol('halt');

interface Settings {
  source: string;
  idPrefix: string;
  startIndex: number;
  maxBytes: number;
  maxDepth: number;
}

function settings(opts: ParseOptions | undefined, defaultSource: string): Settings {
  const s: Settings = {
    source: opts?.source ?? defaultSource,
    idPrefix: opts?.idPrefix ?? 'policy',
    startIndex: opts?.startIndex ?? 0,
    maxBytes: opts?.maxBytes ?? DEFAULT_MAX_BYTES,
    maxDepth: opts?.maxDepth ?? DEFAULT_MAX_DEPTH,
  };
  if (!Number.isSafeInteger(s.startIndex) || s.startIndex < 0) throw new RangeError('startIndex must be a non-negative integer');
  if (!Number.isSafeInteger(s.maxBytes) || s.maxBytes < 0) throw new RangeError('maxBytes must be a non-negative integer');
  if (!Number.isSafeInteger(s.maxDepth) || s.maxDepth < 1 || s.maxDepth > MAX_DEPTH_CEILING) {
    throw new RangeError(`maxDepth must be an integer from 1 to ${MAX_DEPTH_CEILING}`);
  }
  return s;
}

/** Shortens long token text for messages. */
function clip(text: string): string {
  return text.length > 40 ? `${text.slice(0, 37)}...` : text;
}

function describe(t: Token): string {
  switch (t.kind) {
    case 'eof': return 'end of input';
    case 'string': return 'a string literal';
    case 'invalid': return 'invalid text';
    default: return `\`${clip(t.text)}\``;
  }
}

class Parser {
  readonly diagnostics: Diagnostic[] = [];
  private readonly lexer: Lexer;
  private cur: Token;
  private ahead: Token | null = null;
  private prev: Token;
  private nesting = 0;
  /** Metrics of the current policy's inner nodes (see HEIGHT_RANGE); a WeakMap costs far more GC time. */
  private readonly metrics = new Map<Expr, number>();
  /** Records a diagnostic; given to the lexer and the string decoders too. */
  private readonly report = (code: ParseErrorCode, message: string, at: Span): void => {
    this.addDiagnostic(code, message, at);
    if (this.diagnostics.length >= MAX_DIAGNOSTICS) throw HALT;
  };

  constructor(
    private readonly text: string,
    private readonly s: Settings,
  ) {
    this.lexer = new Lexer(text, this.report);
    this.cur = this.lexer.next();
    this.prev = this.cur;
  }

  // ---- driver ------------------------------------------------------------------------------

  /** Runs `body`, turning the unwinding sentinels into diagnostics; throws if any were recorded. */
  run<T>(body: () => T): T {
    let result: T | undefined;
    let halted = false;
    try {
      result = body();
    } catch (e) {
      if (e === HALT) halted = true;
      else if (isStackOverflow(e)) this.reportStackOverflow();
      else if (e !== BAIL) throw e;
    }
    if (this.diagnostics.length > 0 || result === undefined) {
      const sorted = [...this.diagnostics].sort((a, b) => a.offset - b.offset);
      if (halted) {
        const at = this.cur;
        sorted.push({
          code: 'PARSE_TOO_MANY_ERRORS',
          message: `stopped after ${MAX_DIAGNOSTICS} errors`,
          source: this.s.source,
          line: at.line,
          column: at.column,
          offset: at.offset,
          length: 0,
        });
      }
      throw new PolicyParseError(sorted);
    }
    return result;
  }

  policies(): PolicyAst[] {
    const out: PolicyAst[] = [];
    for (let i = 0; !this.at('eof'); i++) {
      try {
        out.push(this.policy(`${this.s.idPrefix}${this.s.startIndex + i}`));
      } catch (e) {
        if (isStackOverflow(e)) this.reportStackOverflow();
        else if (e !== BAIL) throw e;
        this.skipPastSemicolon();
      }
    }
    return out;
  }

  wholeExpression(): Expr {
    const e = this.expr();
    this.expectEnd();
    return e;
  }

  wholeEntityUid(): EntityUidLit {
    if (!this.at('ident')) this.fail('PARSE_INVALID_ENTITY', `expected an entity uid such as \`User::"alice"\`, found ${describe(this.cur)}`);
    const path = this.namePath();
    this.expect('::');
    const idToken = this.expect('string');
    this.expectEnd();
    return { type: this.typeName(path), id: this.stringValue(idToken) };
  }

  private addDiagnostic(code: ParseErrorCode, message: string, at: Span): void {
    const { source } = this.s;
    this.diagnostics.push({ code, message, source, line: at.line, column: at.column, offset: at.offset, length: at.length });
  }

  /**
   * The depth bounds keep recursion far below Node's default stack; on a host running with a much
   * smaller stack, exhaustion still ends as a diagnostic rather than a crash. Never throws: it runs
   * in the handlers that end a policy or the whole parse.
   */
  private reportStackOverflow(): void {
    this.addDiagnostic('PARSE_TOO_DEEP', 'nesting too deep for the available stack', this.cur);
  }

  /** Error recovery: drop tokens up to and including the next `;`. */
  private skipPastSemicolon(): void {
    while (!this.at('eof')) {
      if (this.advance().kind === ';') return;
    }
  }

  // ---- tokens --------------------------------------------------------------------------------

  private advance(): Token {
    this.prev = this.cur;
    if (this.ahead !== null) {
      this.cur = this.ahead;
      this.ahead = null;
    } else {
      this.cur = this.lexer.next();
    }
    return this.prev;
  }

  /** The token after the current one. */
  private peek(): Token {
    this.ahead ??= this.lexer.next();
    return this.ahead;
  }

  /** Whether the current token is of `kind` (a method, so checks are not narrowed across `advance`). */
  private at(kind: TokenKind): boolean {
    return this.cur.kind === kind;
  }

  private isWord(word: string, t: Token = this.cur): boolean {
    return t.kind === 'ident' && t.text === word;
  }

  private expect(kind: TokenKind): Token {
    if (this.cur.kind !== kind) {
      const what = kind === 'string' ? 'a string literal' : kind === 'ident' ? 'a name' : `\`${kind}\``;
      this.fail('PARSE_EXPECTED_TOKEN', `expected ${what}, found ${describe(this.cur)}`);
    }
    return this.advance();
  }

  private expectWord(word: string): Token {
    if (!this.isWord(word)) this.fail('PARSE_EXPECTED_TOKEN', `expected \`${word}\`, found ${describe(this.cur)}`);
    return this.advance();
  }

  private expectEnd(): void {
    if (!this.at('eof')) this.fail('PARSE_UNEXPECTED_TOKEN', `expected end of input, found ${describe(this.cur)}`);
  }

  /** Records an error and abandons the current policy. An `invalid` token was reported already. */
  private fail(code: ParseErrorCode, message: string, at: Span = this.cur): never {
    if (!(at === this.cur && this.at('invalid'))) this.report(code, message, at);
    throw BAIL;
  }

  private locFrom(start: Span): Loc {
    const end = this.prev.offset + this.prev.length;
    return { source: this.s.source, line: start.line, column: start.column, offset: start.offset, length: Math.max(0, end - start.offset) };
  }

  private stringValue(t: Token): string {
    return decodeString(this.text, t, this.report) ?? '';
  }

  // ---- bounds --------------------------------------------------------------------------------

  private enter(at: Token): void {
    if (++this.nesting > this.s.maxDepth) {
      this.fail('PARSE_TOO_DEEP', `nesting deeper than ${this.s.maxDepth} levels`, at);
    }
  }

  /** Registers a new node over its children, enforcing the height and size bounds. */
  private make<E extends Expr>(node: E, children: readonly Expr[]): E {
    let height = 0;
    let nodes = 1;
    for (const child of children) {
      const m = this.metrics.get(child) ?? LEAF_METRICS;
      const childHeight = m % HEIGHT_RANGE;
      if (childHeight + 1 > height) height = childHeight + 1;
      nodes += (m - childHeight) / HEIGHT_RANGE;
    }
    if (height > this.s.maxDepth) this.fail('PARSE_TOO_DEEP', `expression nested deeper than ${this.s.maxDepth} levels`, node.loc);
    if (nodes > MAX_EXPANDED_NODES) this.fail('PARSE_TOO_LARGE', `expression larger than ${MAX_EXPANDED_NODES} nodes once desugared`, node.loc);
    if (children.length > 0) this.metrics.set(node, nodes * HEIGHT_RANGE + height);
    return node;
  }

  // ---- policies ------------------------------------------------------------------------------

  private policy(id: string): PolicyAst {
    this.nesting = 0;
    this.metrics.clear();
    const start = this.cur;
    const annotations = this.annotations();
    let effect: PolicyAst['effect'] = 'permit';
    if (this.isWord('permit') || this.isWord('forbid')) {
      effect = this.advance().text as PolicyAst['effect'];
    } else if (this.at('ident')) {
      // Keep going: the rest of the policy may hold more errors worth reporting.
      this.report('PARSE_INVALID_EFFECT', `expected \`permit\` or \`forbid\`, found ${describe(this.cur)}`, this.cur);
      this.advance();
    } else {
      this.fail('PARSE_EXPECTED_TOKEN', `expected \`permit\` or \`forbid\`, found ${describe(this.cur)}`);
    }
    this.expect('(');
    const principal = this.principalOrResource('principal');
    this.scopeSeparator('action');
    const action = this.actionScope();
    this.scopeSeparator('resource');
    const resource = this.principalOrResource('resource');
    if (this.at(',')) this.advance(); // Cedar accepts a trailing comma
    if (this.at('ident')) {
      this.fail('PARSE_INVALID_SCOPE', `unexpected ${describe(this.cur)} in the policy scope: it has exactly principal, action and resource`);
    }
    this.expect(')');
    const conditions = this.conditions();
    if (!this.at(';')) {
      this.fail('PARSE_EXPECTED_TOKEN', `expected \`when\`, \`unless\` or \`;\`, found ${describe(this.cur)}`);
    }
    this.advance();
    return { id, effect, annotations, principal, action, resource, conditions, loc: this.locFrom(start) };
  }

  private annotations(): Annotation[] {
    const out: Annotation[] = [];
    const seen = new Set<string>();
    while (this.at('@')) {
      const at = this.advance();
      // Any identifier is a valid key, reserved words included (as in Cedar).
      const key = this.expect('ident');
      let value = '';
      if (this.at('(')) {
        this.advance();
        value = this.stringValue(this.expect('string'));
        this.expect(')');
      }
      if (seen.has(key.text)) {
        this.report('PARSE_DUPLICATE_ANNOTATION', `duplicate annotation \`@${key.text}\``, key);
      } else {
        seen.add(key.text);
        out.push({ key: key.text, value, loc: this.locFrom(at) });
      }
    }
    return out;
  }

  private scopeSeparator(next: 'action' | 'resource'): void {
    if (this.at(')')) {
      this.fail('PARSE_INVALID_SCOPE', `the policy scope is missing \`${next}\``);
    }
    this.expect(',');
  }

  /** The scope variable itself, with the errors Cedar gives for the wrong one or `var: Type`. */
  private scopeVariable(name: 'principal' | 'action' | 'resource'): Token {
    const t = this.cur;
    if (!this.isWord(name)) {
      this.fail(
        'PARSE_INVALID_SCOPE',
        t.kind === ')' ? `the policy scope is missing \`${name}\`` : `expected \`${name}\` in the policy scope, found ${describe(t)}`,
      );
    }
    this.advance();
    if (this.at(':')) this.fail('PARSE_INVALID_SCOPE', 'type constraints using `:` are not supported in the policy scope');
    return t;
  }

  private principalOrResource(name: 'principal' | 'resource'): ScopeConstraint {
    const start = this.scopeVariable(name);
    if (this.at('==')) {
      this.advance();
      return { op: '==', entity: this.scopeEntity(), loc: this.locFrom(start) };
    }
    if (this.isWord('in')) {
      this.advance();
      return { op: 'in', entity: this.scopeEntity(), loc: this.locFrom(start) };
    }
    if (this.isWord('is')) {
      this.advance();
      const entityType = this.isTypeName();
      if (this.at('==')) this.fail('PARSE_INVALID_SCOPE', '`is` cannot be combined with `==` in the policy scope');
      if (!this.isWord('in')) return { op: 'is', entityType, loc: this.locFrom(start) };
      this.advance();
      return { op: 'is', entityType, in: this.scopeEntity(), loc: this.locFrom(start) };
    }
    this.rejectScopeOperator();
    return { op: 'any' };
  }

  private actionScope(): ActionConstraint {
    const start = this.scopeVariable('action');
    if (this.at('==')) {
      this.advance();
      const e = this.expr();
      if (e.kind !== 'entity') this.fail('PARSE_INVALID_SCOPE', '`action ==` takes one entity literal such as `Action::"read"`', e.loc);
      this.checkActionType(e);
      return { op: '==', entity: e.uid, loc: this.locFrom(start) };
    }
    if (this.isWord('in')) {
      this.advance();
      const e = this.expr();
      const listed = e.kind === 'set' ? e.elements : [e];
      const entities: EntityUidLit[] = [];
      for (const item of listed) {
        if (item.kind !== 'entity') {
          this.fail('PARSE_INVALID_SCOPE', '`action in` takes an entity literal or a list of them', item.loc);
        }
        this.checkActionType(item);
        entities.push(item.uid);
      }
      return { op: 'in', entities, loc: this.locFrom(start) };
    }
    if (this.isWord('is')) this.fail('PARSE_INVALID_SCOPE', '`is` cannot appear in the action scope');
    this.rejectScopeOperator();
    return { op: 'any' };
  }

  private rejectScopeOperator(): void {
    if (RELATION_OPS.has(this.cur.kind) || this.at('=') || this.isWord('has') || this.isWord('like')) {
      this.fail('PARSE_INVALID_SCOPE', `invalid operator ${describe(this.cur)} in the policy scope: use \`==\`, \`in\` or \`is\``);
    }
  }

  /** A principal/resource scope operand: exactly one entity literal (parentheses allowed, as in Cedar). */
  private scopeEntity(): EntityUidLit {
    const e = this.expr();
    if (e.kind !== 'entity') {
      const what = e.kind === 'set' ? 'a set' : 'an expression';
      this.fail('PARSE_INVALID_SCOPE', `expected one entity literal such as \`User::"alice"\` in the policy scope, found ${what}`, e.loc);
    }
    return e.uid;
  }

  private checkActionType(e: Extract<Expr, { kind: 'entity' }>): void {
    const type = e.uid.type;
    if (type !== 'Action' && !type.endsWith('::Action')) {
      this.report('PARSE_INVALID_SCOPE', `expected an action entity (type \`Action\` or \`Namespace::Action\`), found type \`${type}\``, e.loc);
    }
  }

  private conditions(): Condition[] {
    const out: Condition[] = [];
    while (this.isWord('when') || this.isWord('unless')) {
      const keyword = this.advance();
      this.expect('{');
      if (this.at('}')) {
        this.report('PARSE_EMPTY_CONDITION', `\`${keyword.text}\` condition cannot be empty`, this.cur);
        this.advance();
        continue;
      }
      const body = this.expr();
      this.expect('}');
      out.push({ kind: keyword.text as Condition['kind'], body, loc: this.locFrom(keyword) });
    }
    return out;
  }

  // ---- expressions ---------------------------------------------------------------------------

  /** Expr := 'if' Expr 'then' Expr 'else' Expr | Or */
  private expr(): Expr {
    if (!this.isWord('if')) return this.or();
    const start = this.advance();
    this.enter(start);
    const cond = this.expr();
    this.expectWord('then');
    const then = this.expr();
    this.expectWord('else');
    const otherwise = this.expr();
    this.nesting--;
    return this.make({ kind: 'if', cond, then, else: otherwise, loc: this.locFrom(start) }, [cond, then, otherwise]);
  }

  private or(): Expr {
    const start = this.cur;
    let left = this.and();
    while (this.at('||')) {
      this.advance();
      const right = this.and();
      left = this.make({ kind: 'or', left, right, loc: this.locFrom(start) }, [left, right]);
    }
    return left;
  }

  private and(): Expr {
    const start = this.cur;
    let left = this.relation();
    while (this.at('&&')) {
      this.advance();
      const right = this.relation();
      left = this.make({ kind: 'and', left, right, loc: this.locFrom(start) }, [left, right]);
    }
    return left;
  }

  private isRelationStart(t: Token): boolean {
    return RELATION_OPS.has(t.kind) || t.kind === '=' || this.isWord('in', t) || this.isWord('has', t) || this.isWord('like', t) || this.isWord('is', t);
  }

  /** Relation := Add [RelOp Add | 'has' Attr | 'like' Pattern | 'is' Type ['in' Add]]; non-associative. */
  private relation(): Expr {
    const start = this.cur;
    const left = this.add();
    const t = this.cur;
    let node: Expr;
    if (RELATION_OPS.has(t.kind) || this.isWord('in')) {
      this.advance();
      const right = this.add();
      node = this.make({ kind: 'binary', op: t.text as BinaryOp, left, right, loc: this.locFrom(start) }, [left, right]);
    } else if (t.kind === '=') {
      this.fail('PARSE_UNSUPPORTED_OPERATOR', '`=` is not a Cedar operator; use `==`');
    } else if (this.isWord('has')) {
      node = this.has(start, left);
    } else if (this.isWord('like')) {
      node = this.like(start, left);
    } else if (this.isWord('is')) {
      node = this.is(start, left);
    } else {
      return left;
    }
    if (this.isRelationStart(this.cur)) {
      this.fail('PARSE_CHAINED_RELATION', `relational operators cannot be chained: add parentheses before ${describe(this.cur)}`);
    }
    return node;
  }

  /** `e has a.b.c` is desugared to `e has a && e.a has b && e.a.b has c` (left-nested). */
  private has(start: Token, target: Expr): Expr {
    this.advance();
    const path: string[] = [];
    if (this.at('string')) {
      path.push(this.stringValue(this.advance()));
    } else if (this.at('ident')) {
      path.push(this.attributeName(this.advance()));
      while (this.at('.') && this.peek().kind === 'ident') {
        this.advance();
        path.push(this.attributeName(this.advance()));
      }
    } else {
      this.fail('PARSE_INVALID_HAS', `expected an attribute name or string literal after \`has\`, found ${describe(this.cur)}`);
    }
    if (ADD_CONTINUATIONS.has(this.cur.kind)) {
      this.fail('PARSE_INVALID_HAS', '`has` takes an attribute name, a dotted path of names, or one string literal');
    }
    const loc = this.locFrom(start);
    let result: Expr = this.make({ kind: 'has', target, attr: path[0], loc }, [target]);
    let object = target;
    for (let i = 1; i < path.length; i++) {
      object = this.make({ kind: 'getAttr', target: object, attr: path[i - 1], loc }, [object]);
      const step = this.make({ kind: 'has', target: object, attr: path[i], loc }, [object]);
      result = this.make({ kind: 'and', left: result, right: step, loc }, [result, step]);
    }
    return result;
  }

  private like(start: Token, target: Expr): Expr {
    this.advance();
    if (!this.at('string')) {
      this.fail('PARSE_INVALID_PATTERN', `\`like\` takes a string literal pattern, found ${describe(this.cur)}`);
    }
    const pattern = decodePattern(this.text, this.advance(), this.report) ?? [];
    if (ADD_CONTINUATIONS.has(this.cur.kind)) {
      this.fail('PARSE_INVALID_PATTERN', '`like` takes a single string literal pattern');
    }
    return this.make({ kind: 'like', target, pattern, loc: this.locFrom(start) }, [target]);
  }

  private is(start: Token, target: Expr): Expr {
    this.advance();
    const entityType = this.isTypeName();
    if (!this.isWord('in')) {
      return this.make({ kind: 'is', target, entityType, loc: this.locFrom(start) }, [target]);
    }
    this.advance();
    const inExpr = this.add();
    return this.make({ kind: 'is', target, entityType, in: inExpr, loc: this.locFrom(start) }, [target, inExpr]);
  }

  /** The entity type after `is`: a name, never an entity literal. */
  private isTypeName(): string {
    if (!this.at('ident')) this.fail('PARSE_INVALID_TYPE', `\`is\` takes an entity type name, found ${describe(this.cur)}`);
    const path = this.namePath();
    if (ADD_CONTINUATIONS.has(this.cur.kind)) {
      this.fail('PARSE_INVALID_TYPE', '`is` takes an entity type name such as `User` or `Robot::Arm`, not an expression');
    }
    return this.typeName(path);
  }

  private add(): Expr {
    const start = this.cur;
    let left = this.mult();
    while (this.at('+') || this.at('-')) {
      const op = this.advance().kind as BinaryOp;
      const right = this.mult();
      left = this.make({ kind: 'binary', op, left, right, loc: this.locFrom(start) }, [left, right]);
    }
    return left;
  }

  private mult(): Expr {
    const start = this.cur;
    let left = this.unary();
    for (;;) {
      if (this.at('/') || this.at('%')) {
        this.fail('PARSE_UNSUPPORTED_OPERATOR', `${describe(this.cur)} is not a Cedar operator: Cedar has no division or remainder`);
      }
      if (!this.at('*')) return left;
      this.advance();
      const right = this.unary();
      left = this.make({ kind: 'binary', op: '*', left, right, loc: this.locFrom(start) }, [left, right]);
    }
  }

  /** Unary := ('!'{1,4} | '-'{1,4})? Member; a `-` directly before an integer literal folds into it. */
  private unary(): Expr {
    const op = this.cur.kind;
    if (op !== '!' && op !== '-') return this.member();
    const ops: Token[] = [];
    while (this.cur.kind === op) ops.push(this.advance());
    if (this.at('!') || this.at('-')) {
      this.fail('PARSE_UNEXPECTED_TOKEN', '`!` and `-` cannot be mixed without parentheses');
    }
    if (ops.length > MAX_UNARY_RUN) {
      this.fail('PARSE_TOO_MANY_UNARY', `at most ${MAX_UNARY_RUN} \`${op}\` in a row`, ops[MAX_UNARY_RUN]);
    }
    let operand: Expr;
    let remaining = ops.length;
    if (op === '-' && this.at('int') && !ACCESS_STARTS.has(this.peek().kind)) {
      remaining--;
      operand = this.long(this.advance(), ops[remaining]);
    } else {
      operand = this.member();
    }
    for (let i = remaining - 1; i >= 0; i--) {
      const arg = operand;
      operand = this.make(
        op === '!' ? { kind: 'not', arg, loc: this.locFrom(ops[i]) } : { kind: 'neg', arg, loc: this.locFrom(ops[i]) },
        [arg],
      );
    }
    return operand;
  }

  /** Member := Primary { '.' name | '.' method '(' args ')' | '[' string ']' } */
  private member(): Expr {
    const start = this.cur;
    let e = this.primary();
    for (;;) {
      if (this.at('.')) {
        this.advance();
        if (!this.at('ident')) {
          this.fail('PARSE_EXPECTED_TOKEN', `expected an attribute or method name after \`.\`, found ${describe(this.cur)}`);
        }
        const name = this.advance();
        if (this.at('(')) {
          const args = this.args();
          this.checkMethod(name, args.length);
          const target = e;
          e = this.make({ kind: 'method', target, method: name.text, args, loc: this.locFrom(start) }, [target, ...args]);
        } else {
          const target = e;
          e = this.make({ kind: 'getAttr', target, attr: this.attributeName(name), loc: this.locFrom(start) }, [target]);
        }
      } else if (this.at('[')) {
        this.advance();
        if (!this.at('string') || this.peek().kind !== ']') {
          this.fail('PARSE_INVALID_ATTRIBUTE', '`[...]` takes one string literal, e.g. `context["key"]`');
        }
        const attr = this.stringValue(this.advance());
        this.advance();
        const target = e;
        e = this.make({ kind: 'getAttr', target, attr, loc: this.locFrom(start) }, [target]);
      } else if (this.at('(')) {
        this.fail('PARSE_INVALID_CALL', 'only extension functions can be called, written `name(args)`');
      } else {
        return e;
      }
    }
  }

  private checkMethod(name: Token, argCount: number): void {
    const arity = BUILTIN_METHOD_ARITY.get(name.text);
    if (arity !== undefined) {
      if (arity !== argCount) this.report('PARSE_INVALID_METHOD', `\`${name.text}\` takes ${plural(arity, 'argument')}, got ${argCount}`, name);
    } else if (!isExtensionMethod(name.text)) {
      const hint = isExtensionFunction(name.text) ? ` (\`${name.text}\` is a function, not a method)` : '';
      this.report('PARSE_INVALID_METHOD', `unknown method \`${clip(name.text)}\`${hint}`, name);
    }
  }

  /** '(' [Expr {',' Expr} [',']] ')' */
  private args(): Expr[] {
    const open = this.advance();
    this.enter(open);
    const list = this.commaList(')');
    this.nesting--;
    return list;
  }

  /** Items up to `close`, separated by commas, trailing comma allowed (as in Cedar). */
  private commaList(close: ')' | ']'): Expr[] {
    const items: Expr[] = [];
    while (this.cur.kind !== close) {
      items.push(this.expr());
      if (!this.at(',')) break;
      this.advance();
    }
    this.expect(close);
    return items;
  }

  private primary(): Expr {
    const t = this.cur;
    switch (t.kind) {
      case 'int':
        return this.long(this.advance(), null);
      case 'string':
        this.advance();
        return { kind: 'string', value: this.stringValue(t), loc: this.locFrom(t) };
      case 'ident':
        return this.namePrimary();
      case 'slot':
        if (t.text === '?principal' || t.text === '?resource') {
          this.fail('PARSE_TEMPLATE_UNSUPPORTED', `template slot \`${t.text}\`: only static policies are supported`);
        }
        return this.fail('PARSE_UNEXPECTED_TOKEN', `\`${clip(t.text)}\` is not a valid template slot`);
      case '(': {
        this.advance();
        this.enter(t);
        const inner = this.expr();
        this.expect(')');
        this.nesting--;
        return inner;
      }
      case '[': {
        this.advance();
        this.enter(t);
        const elements = this.commaList(']');
        this.nesting--;
        return this.make({ kind: 'set', elements, loc: this.locFrom(t) }, elements);
      }
      case '{':
        return this.record();
      default:
        return this.fail('PARSE_UNEXPECTED_TOKEN', `expected an expression, found ${describe(t)}`);
    }
  }

  /** Literals `true`/`false`, variables, entity literals `A::B::"id"` and extension calls. */
  private namePrimary(): Expr {
    const t = this.cur;
    if (t.text === 'true' || t.text === 'false') {
      this.advance();
      return { kind: 'bool', value: t.text === 'true', loc: this.locFrom(t) };
    }
    if (t.text === 'if') this.fail('PARSE_UNEXPECTED_TOKEN', 'an `if` expression must be parenthesized here');
    if (RESERVED_WORDS.has(t.text) && this.peek().kind !== '::') {
      this.fail('PARSE_UNEXPECTED_TOKEN', `expected an expression, found ${describe(t)}`);
    }
    if (VARIABLES.has(t.text) && this.peek().kind !== '::') {
      this.advance();
      return { kind: 'var', name: t.text as VarName, loc: this.locFrom(t) };
    }
    const path = this.namePath();
    if (this.at('::')) {
      this.advance();
      if (this.at('string')) {
        const type = this.typeName(path);
        const id = this.stringValue(this.advance());
        return { kind: 'entity', uid: { type, id }, loc: this.locFrom(t) };
      }
      if (this.at('{')) this.fail('PARSE_INVALID_ENTITY', 'entity literals are written `Type::"id"`');
      this.fail('PARSE_EXPECTED_TOKEN', `expected a name or an entity id string after \`::\`, found ${describe(this.cur)}`);
    }
    const name = this.typeName(path);
    if (!this.at('(')) {
      this.fail('PARSE_UNKNOWN_VARIABLE', `unknown variable \`${clip(name)}\`: expected principal, action, resource or context`, this.locFrom(t));
    }
    if (!isExtensionFunction(name)) {
      const method = BUILTIN_METHOD_ARITY.has(name) || isExtensionMethod(name);
      const hint = method ? ` (\`${name}\` is a method: write \`e.${name}(...)\`)` : '';
      this.report('PARSE_UNKNOWN_FUNCTION', `unknown function \`${clip(name)}\`${hint}`, this.locFrom(t));
    }
    const args = this.args();
    return this.make({ kind: 'call', fn: name, args, loc: this.locFrom(t) }, args);
  }

  /** IDENT { '::' IDENT }, stopping before a `::` that is not followed by a name. */
  private namePath(): Token[] {
    const path = [this.advance()];
    while (this.at('::') && this.peek().kind === 'ident') {
      this.advance();
      path.push(this.advance());
    }
    return path;
  }

  /** Joins a name path, reporting reserved components. */
  private typeName(path: Token[]): string {
    for (const part of path) {
      if (RESERVED_WORDS.has(part.text) || part.text === RESERVED_NAMESPACE) {
        this.report('PARSE_RESERVED_IDENTIFIER', `\`${part.text}\` is reserved and cannot be used in a name`, part);
      }
    }
    return path.map((p) => p.text).join('::');
  }

  /** An attribute written as a bare identifier (after `.`, `has`, or as a record key). */
  private attributeName(t: Token): string {
    if (RESERVED_WORDS.has(t.text) || t.text === RESERVED_NAMESPACE) {
      this.report('PARSE_RESERVED_IDENTIFIER', `\`${t.text}\` is reserved: write it as a string, e.g. \`["${t.text}"]\``, t);
    }
    return t.text;
  }

  private record(): Expr {
    const open = this.advance();
    this.enter(open);
    const entries: Array<[string, Expr]> = [];
    const values: Expr[] = [];
    const seen = new Set<string>();
    while (!this.at('}')) {
      const keyToken = this.cur;
      if ((keyToken.kind !== 'ident' && keyToken.kind !== 'string') || this.peek().kind !== ':') {
        this.fail('PARSE_INVALID_ATTRIBUTE', 'record keys are identifiers or string literals followed by `:`');
      }
      this.advance();
      const key = keyToken.kind === 'string' ? this.stringValue(keyToken) : this.attributeName(keyToken);
      this.advance();
      const value = this.expr();
      if (seen.has(key)) {
        this.report('PARSE_DUPLICATE_KEY', `duplicate key \`${clip(key)}\` in record literal`, keyToken);
      } else {
        seen.add(key);
        entries.push([key, value]);
        values.push(value);
      }
      if (!this.at(',')) break;
      this.advance();
    }
    this.expect('}');
    this.nesting--;
    return this.make({ kind: 'record', entries, loc: this.locFrom(open) }, values);
  }

  /**
   * An integer literal (just consumed), negated when `dash` (the folded `-`) is given; must fit in
   * a signed 64-bit integer.
   */
  private long(digits: Token, dash: Token | null): Expr {
    const loc = this.locFrom(dash ?? digits);
    let significant = 0;
    while (significant < digits.text.length - 1 && digits.text.charCodeAt(significant) === 48) significant++;
    // 2^63 has 19 digits: anything longer overflows without building a huge BigInt.
    let value = digits.text.length - significant > 19 ? null : BigInt(digits.text);
    if (value !== null && dash !== null) value = -value;
    if (value === null || value > I64_MAX || value < I64_MIN) {
      const written = `${dash === null ? '' : '-'}${clip(digits.text)}`;
      this.report('PARSE_INTEGER_OVERFLOW', `integer literal \`${written}\` does not fit in a signed 64-bit integer`, loc);
      value = 0n;
    }
    return { kind: 'long', value, loc };
  }
}

function isStackOverflow(e: unknown): boolean {
  return e instanceof RangeError && e.message.includes('call stack');
}

function plural(n: number, noun: string): string {
  return `${n} ${noun}${n === 1 ? '' : 's'}`;
}

/** Refuses oversized text before lexing. UTF-8 is never shorter than the UTF-16 length. */
function checkSize(text: string, s: Settings): void {
  if (text.length > s.maxBytes || Buffer.byteLength(text, 'utf8') > s.maxBytes) {
    throw new PolicyParseError([
      {
        code: 'PARSE_TOO_LARGE',
        message: `policy text is larger than ${s.maxBytes} bytes`,
        source: s.source,
        line: 1,
        column: 1,
        offset: 0,
        length: 0,
      },
    ]);
  }
}

/** Parses a policy set. Throws PolicyParseError with every diagnostic if any policy is invalid. */
export function parsePolicies(text: string, opts?: ParseOptions): PolicyAst[] {
  const s = settings(opts, '<policy>');
  checkSize(text, s);
  const parser = new Parser(text, s);
  return parser.run(() => parser.policies());
}

/** Parses one Cedar expression, e.g. `context.args.speed <= 5`. */
export function parseExpression(text: string, opts?: ParseOptions): Expr {
  const s = settings(opts, '<expression>');
  checkSize(text, s);
  const parser = new Parser(text, s);
  return parser.run(() => parser.wholeExpression());
}

/** Parses an entity uid as written in policies, `Ns::Type::"id"` (used by CLIs). */
export function parseEntityUid(text: string): EntityUidLit {
  const s = settings(undefined, '<entity-uid>');
  checkSize(text, s);
  const parser = new Parser(text, s);
  return parser.run(() => parser.wholeEntityUid());
}
