// Cedar lexer: turns policy text into tokens on demand, one pass, no backtracking. Tokens carry
// 1-based line/column and 0-based offsets (UTF-16 code units) so every diagnostic and AST node
// can point at the text. String literals are kept raw; the parser decodes them as a plain string
// or as a `like` pattern, because the two differ in what `\*` means.
import type { PatternElem } from './ast.js';
import type { ParseErrorCode } from './errors.js';

export type Punct =
  | '@' | '.' | ',' | ';' | ':' | '::'
  | '(' | ')' | '{' | '}' | '[' | ']'
  | '==' | '!=' | '<' | '<=' | '>' | '>='
  | '||' | '&&' | '+' | '-' | '*' | '/' | '%' | '!' | '=';

/**
 * `ident` covers keywords too (the parser decides by position, as Cedar does); `slot` is a
 * template slot such as `?principal`; `invalid` stands for text already reported as an error.
 */
export type TokenKind = 'ident' | 'int' | 'string' | 'slot' | 'eof' | 'invalid' | Punct;

/** A located range of the text. */
export interface Span {
  offset: number;
  length: number;
  line: number;
  column: number;
}

export interface Token extends Span {
  kind: TokenKind;
  /** The token as written: the name, the digits, or the string literal with its quotes. */
  text: string;
}

export type LexReport = (code: ParseErrorCode, message: string, at: Span) => void;

/** Told each `//` comment skipped (its span runs to the end of its line, the break excluded). */
export type CommentSink = (comment: Span) => void;

const CH_TAB = 9, CH_LF = 10, CH_CR = 13, CH_SPACE = 32, CH_QUOTE = 34, CH_SLASH = 47,
  CH_BACKSLASH = 92, CH_QUESTION = 63, CH_UNDERSCORE = 95, CH_STAR = 42;

function isIdentStart(c: number): boolean {
  return (c >= 97 && c <= 122) || (c >= 65 && c <= 90) || c === CH_UNDERSCORE;
}

function isIdentPart(c: number): boolean {
  return isIdentStart(c) || isDigit(c);
}

function isDigit(c: number): boolean {
  return c >= 48 && c <= 57;
}

function hexValue(c: number): number {
  if (c >= 48 && c <= 57) return c - 48;
  if (c >= 97 && c <= 102) return c - 87;
  if (c >= 65 && c <= 70) return c - 55;
  return -1;
}

/** Unicode White_Space other than line breaks (Cedar's lexer skips `\s`). A BOM is not one. */
function isBlank(c: number): boolean {
  return (
    c === CH_SPACE || c === CH_TAB || c === 11 || c === 12 || c === 0x85 || c === 0xa0 ||
    c === 0x1680 || (c >= 0x2000 && c <= 0x200a) || c === 0x2028 || c === 0x2029 ||
    c === 0x202f || c === 0x205f || c === 0x3000
  );
}

/** Punctuation by first character; the two-character forms are those whose second character fits. */
const PUNCT_BY_CHAR = new Map<number, { one?: Punct; two?: Punct }>([
  [0x3a, { one: ':', two: '::' }],
  [0x3d, { one: '=', two: '==' }],
  [0x21, { one: '!', two: '!=' }],
  [0x3c, { one: '<', two: '<=' }],
  [0x3e, { one: '>', two: '>=' }],
  [0x7c, { two: '||' }],
  [0x26, { two: '&&' }],
  ...['@', '.', ',', ';', '(', ')', '{', '}', '[', ']', '+', '-', '*', '/', '%'].map(
    (p) => [p.charCodeAt(0), { one: p as Punct }] as [number, { one: Punct }],
  ),
]);

export class Lexer {
  private pos = 0;
  private line = 1;
  private lineStart = 0;

  constructor(
    private readonly text: string,
    private readonly report: LexReport,
    private readonly onComment?: CommentSink,
  ) {}

  /** The next token; `eof` forever once the text is exhausted. */
  next(): Token {
    this.skipTrivia();
    const text = this.text;
    const start = this.pos;
    const line = this.line;
    const column = start - this.lineStart + 1;
    if (start >= text.length) return { kind: 'eof', text: '', offset: start, length: 0, line, column };

    const c = text.charCodeAt(start);
    if (isIdentStart(c)) {
      let end = start + 1;
      while (end < text.length && isIdentPart(text.charCodeAt(end))) end++;
      return this.take('ident', start, end, line, column);
    }
    if (isDigit(c)) {
      let end = start + 1;
      while (end < text.length && isDigit(text.charCodeAt(end))) end++;
      return this.take('int', start, end, line, column);
    }
    if (c === CH_QUOTE) return this.string(start, line, column);
    if (c === CH_QUESTION && start + 1 < text.length && isIdentStart(text.charCodeAt(start + 1))) {
      let end = start + 2;
      while (end < text.length && isIdentPart(text.charCodeAt(end))) end++;
      return this.take('slot', start, end, line, column);
    }
    const punct = PUNCT_BY_CHAR.get(c);
    if (punct !== undefined) {
      if (punct.two !== undefined && text.charCodeAt(start + 1) === punct.two.charCodeAt(1)) {
        return this.punct(punct.two, start, line, column);
      }
      if (punct.one !== undefined) return this.punct(punct.one, start, line, column);
    }

    // One whole code point, so a diagnostic never splits a surrogate pair.
    const cp = text.codePointAt(start) ?? c;
    const end = start + (cp > 0xffff ? 2 : 1);
    const token = this.take('invalid', start, end, line, column);
    this.report('PARSE_UNEXPECTED_CHAR', `unexpected character ${describeChar(cp)}`, token);
    return token;
  }

  private punct(kind: Punct, start: number, line: number, column: number): Token {
    this.pos = start + kind.length;
    return { kind, text: kind, offset: start, length: kind.length, line, column };
  }

  private take(kind: TokenKind, start: number, end: number, line: number, column: number): Token {
    this.pos = end;
    return { kind, text: this.text.slice(start, end), offset: start, length: end - start, line, column };
  }

  /** Whitespace, line breaks (LF, CR, CRLF) and `//` comments. */
  private skipTrivia(): void {
    const text = this.text;
    let pos = this.pos;
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c === CH_LF || c === CH_CR) {
        pos += c === CH_CR && text.charCodeAt(pos + 1) === CH_LF ? 2 : 1;
        this.line++;
        this.lineStart = pos;
      } else if (isBlank(c)) {
        pos++;
      } else if (c === CH_SLASH && text.charCodeAt(pos + 1) === CH_SLASH) {
        const start = pos;
        pos += 2;
        while (pos < text.length) {
          const d = text.charCodeAt(pos);
          if (d === CH_LF || d === CH_CR) break;
          pos++;
        }
        this.onComment?.({ offset: start, length: pos - start, line: this.line, column: start - this.lineStart + 1 });
      } else {
        break;
      }
    }
    this.pos = pos;
  }

  /** A string literal, raw; escapes are checked when the parser decodes it. */
  private string(start: number, line: number, column: number): Token {
    const text = this.text;
    let pos = start + 1;
    while (pos < text.length) {
      const c = text.charCodeAt(pos);
      if (c === CH_QUOTE) return this.take('string', start, pos + 1, line, column);
      if (c === CH_BACKSLASH && pos + 1 < text.length) {
        const escaped = text.charCodeAt(pos + 1);
        // A backslash before a line break is an invalid escape, but the break still counts.
        if (escaped === CH_LF || escaped === CH_CR) {
          pos++;
          continue;
        }
        pos += 2;
        continue;
      }
      if (c === CH_LF || c === CH_CR) {
        pos += c === CH_CR && text.charCodeAt(pos + 1) === CH_LF ? 2 : 1;
        this.line++;
        this.lineStart = pos;
        continue;
      }
      pos++;
    }
    const token = this.take('invalid', start, text.length, line, column);
    this.report('PARSE_UNTERMINATED_STRING', 'unterminated string literal', { offset: start, length: 1, line, column });
    return token;
  }
}

function describeChar(cp: number): string {
  const hex = cp.toString(16).toUpperCase().padStart(4, '0');
  return cp >= 0x21 && cp <= 0x7e ? `\`${String.fromCodePoint(cp)}\`` : `U+${hex}`;
}

/** The span of `length` code units starting `delta` code units into `token` (which may span lines). */
function spanWithin(source: string, token: Token, delta: number, length: number): Span {
  let line = token.line;
  let column = token.column;
  for (let i = token.offset; i < token.offset + delta; i++) {
    const c = source.charCodeAt(i);
    if (c === CH_LF || (c === CH_CR && source.charCodeAt(i + 1) !== CH_LF)) {
      line++;
      column = 1;
    } else {
      column++;
    }
  }
  return { offset: token.offset + delta, length, line, column };
}

/**
 * Reads one escape sequence starting at the backslash at `at` (inside `body`). Returns the decoded
 * text and where the escape ends, or the end of the malformed escape with `value` null.
 * Escapes are Rust's, as in Cedar: `\n \r \t \\ \0 \' \"`, `\x41` (up to 0x7F) and `\u{1F600}`
 * (1 to 6 hex digits, `_` allowed after the first, no surrogates). `\*` is decided by the caller.
 */
function readEscape(body: string, at: number): { value: string | null; end: number } {
  const kind = body[at + 1];
  switch (kind) {
    case 'n': return { value: '\n', end: at + 2 };
    case 'r': return { value: '\r', end: at + 2 };
    case 't': return { value: '\t', end: at + 2 };
    case '\\': return { value: '\\', end: at + 2 };
    case '0': return { value: '\0', end: at + 2 };
    case "'": return { value: "'", end: at + 2 };
    case '"': return { value: '"', end: at + 2 };
    case 'x': {
      const hi = hexValue(body.charCodeAt(at + 2));
      const lo = hexValue(body.charCodeAt(at + 3));
      if (hi < 0 || lo < 0 || hi > 7) return { value: null, end: Math.min(body.length, at + 4) };
      return { value: String.fromCharCode(hi * 16 + lo), end: at + 4 };
    }
    case 'u': {
      if (body[at + 2] !== '{') return { value: null, end: Math.min(body.length, at + 3) };
      let pos = at + 3;
      let value = 0;
      let digits = 0;
      let ok = body[pos] !== '_';
      for (; pos < body.length && body[pos] !== '}'; pos++) {
        if (body[pos] === '_') continue;
        const h = hexValue(body.charCodeAt(pos));
        if (h < 0) {
          ok = false;
          break;
        }
        digits++;
        if (digits <= 6) value = value * 16 + h;
      }
      if (body[pos] !== '}') return { value: null, end: Math.min(body.length, pos + 1) };
      const end = pos + 1;
      if (!ok || digits === 0 || digits > 6 || value > 0x10ffff || (value >= 0xd800 && value <= 0xdfff)) {
        return { value: null, end };
      }
      return { value: String.fromCodePoint(value), end };
    }
    default: {
      // Cover a whole code point after the backslash in the diagnostic.
      const cp = body.codePointAt(at + 1);
      return { value: null, end: Math.min(body.length, at + 1 + (cp !== undefined && cp > 0xffff ? 2 : 1)) };
    }
  }
}

/**
 * Walks a string token's body, calling `onText` for literal text and `onStar` for every `*` not
 * written as `\*` (only patterns care). Reports every malformed escape and raw carriage return;
 * false if there was one.
 */
function walkLiteral(
  source: string,
  token: Token,
  starEscapeAllowed: boolean,
  report: LexReport,
  onText: (text: string) => void,
  onStar: () => void,
): boolean {
  const body = token.text.slice(1, -1);
  let ok = true;
  let runStart = 0;
  const flush = (end: number): void => {
    if (end > runStart) onText(body.slice(runStart, end));
  };
  let pos = 0;
  while (pos < body.length) {
    const c = body.charCodeAt(pos);
    if (c === CH_STAR) {
      flush(pos);
      onStar();
      runStart = ++pos;
      continue;
    }
    if (c === CH_CR) {
      // As in Cedar (Rust's unescaping), a carriage return must be written `\r`, even in CRLF.
      flush(pos);
      ok = false;
      report('PARSE_INVALID_ESCAPE', 'a carriage return in a string literal must be written `\\r`', spanWithin(source, token, pos + 1, 1));
      runStart = ++pos;
      continue;
    }
    if (c !== CH_BACKSLASH) {
      pos++;
      continue;
    }
    flush(pos);
    if (starEscapeAllowed && body.charCodeAt(pos + 1) === CH_STAR) {
      onText('*');
      runStart = pos += 2;
      continue;
    }
    const { value, end } = readEscape(body, pos);
    if (value === null) {
      ok = false;
      const escape = body.slice(pos, end);
      report('PARSE_INVALID_ESCAPE', `invalid escape \`${escape}\``, spanWithin(source, token, pos + 1, end - pos));
    } else if (value === '*') {
      // Cedar treats a `*` written as `\u{2a}` or `\x2a` as a wildcard: only `\*` is literal.
      onStar();
    } else {
      onText(value);
    }
    runStart = pos = end;
  }
  flush(pos);
  return ok;
}

/** The value of a string literal token; null (and reported) if an escape is invalid. */
export function decodeString(source: string, token: Token, report: LexReport): string | null {
  const body = token.text.slice(1, -1);
  if (!body.includes('\\') && !body.includes('\r')) return body;
  const parts: string[] = [];
  const ok = walkLiteral(source, token, false, report, (t) => parts.push(t), () => parts.push('*'));
  return ok ? parts.join('') : null;
}

/**
 * A string literal token read as a `like` pattern: unescaped `*` is a wildcard, `\*` a literal
 * star. Adjacent literal text is merged; null (and reported) if an escape is invalid.
 */
export function decodePattern(source: string, token: Token, report: LexReport): PatternElem[] | null {
  const elems: PatternElem[] = [];
  let text: string[] = [];
  const endText = (): void => {
    if (text.length > 0) elems.push({ kind: 'text', text: text.join('') });
    text = [];
  };
  const ok = walkLiteral(
    source,
    token,
    true,
    report,
    (t) => text.push(t),
    () => {
      endText();
      elems.push({ kind: 'wildcard' });
    },
  );
  endText();
  return ok ? elems : null;
}
