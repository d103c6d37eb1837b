import { describe, expect, it } from 'vitest';
import type { ParseErrorCode } from '../../src/policy/errors.js';
import { Lexer, decodePattern, decodeString, type Span, type Token } from '../../src/policy/lexer.js';

interface Reported {
  code: ParseErrorCode;
  message: string;
  at: Span;
}

function lex(text: string): { tokens: Token[]; reported: Reported[] } {
  const reported: Reported[] = [];
  const lexer = new Lexer(text, (code, message, at) => reported.push({ code, message, at }));
  const tokens: Token[] = [];
  for (;;) {
    const t = lexer.next();
    tokens.push(t);
    if (t.kind === 'eof') return { tokens, reported };
  }
}

const kinds = (text: string): string[] => lex(text).tokens.map((t) => `${t.kind}:${t.text}`);

/** Decodes the first token of `literal` (a string literal as written in policy text). */
function decode(literal: string, mode: 'string' | 'pattern'): { value: unknown; reported: Reported[] } {
  const { tokens } = lex(literal);
  expect(tokens[0].kind).toBe('string');
  const reported: Reported[] = [];
  const report = (code: ParseErrorCode, message: string, at: Span): void => {
    reported.push({ code, message, at });
  };
  const value = mode === 'string' ? decodeString(literal, tokens[0], report) : decodePattern(literal, tokens[0], report);
  return { value, reported };
}

describe('tokens', () => {
  it('splits identifiers, integers, strings, slots and every punctuation mark', () => {
    expect(kinds('permit _x9 Robot::Arm::"a" 007 ?principal')).toEqual([
      'ident:permit', 'ident:_x9', 'ident:Robot', ':::::', 'ident:Arm', ':::::', 'string:"a"', 'int:007', 'slot:?principal', 'eof:',
    ]);
    expect(lex('@ . , ; : :: ( ) { } [ ] == != < <= > >= || && + - * / % ! =').tokens.slice(0, -1).map((t) => t.kind)).toEqual(
      ['@', '.', ',', ';', ':', '::', '(', ')', '{', '}', '[', ']', '==', '!=', '<', '<=', '>', '>=', '||', '&&', '+', '-', '*', '/', '%', '!', '='],
    );
    expect(kinds('a<=b>=c!=d==e')).toEqual(['ident:a', '<=:<=', 'ident:b', '>=:>=', 'ident:c', '!=:!=', 'ident:d', '==:==', 'ident:e', 'eof:']);
    expect(kinds('123abc')).toEqual(['int:123', 'ident:abc', 'eof:']);
  });

  it('keeps string literals raw, escapes and all', () => {
    expect(kinds('"a\\"b" "c\\\\"')).toEqual(['string:"a\\"b"', 'string:"c\\\\"', 'eof:']);
  });

  it('locates tokens across LF, CRLF and lone CR line ends, comments and Unicode blanks', () => {
    const text = 'a // note\r\n  b\rc\n\u00a0\u2003d\t"x\ny" e';
    const { tokens } = lex(text);
    expect(tokens.map((t) => [t.text, t.line, t.column, t.offset, t.length])).toEqual([
      ['a', 1, 1, 0, 1],
      ['b', 2, 3, 13, 1],
      ['c', 3, 1, 15, 1],
      ['d', 4, 3, 19, 1],
      ['"x\ny"', 4, 5, 21, 5],
      ['e', 5, 4, 27, 1],
      ['', 5, 5, 28, 0],
    ]);
  });

  it('reports characters that start no token, one whole code point each', () => {
    const { tokens, reported } = lex('a # & | $ \ufeff 🤖 ? b');
    expect(tokens.filter((t) => t.kind === 'invalid').map((t) => [t.text, t.length])).toEqual([
      ['#', 1], ['&', 1], ['|', 1], ['$', 1], ['\ufeff', 1], ['🤖', 2], ['?', 1],
    ]);
    expect(reported.map((r) => r.code)).toEqual(Array(7).fill('PARSE_UNEXPECTED_CHAR'));
    expect(reported.map((r) => r.message)).toEqual([
      'unexpected character `#`', 'unexpected character `&`', 'unexpected character `|`', 'unexpected character `$`',
      'unexpected character U+FEFF', 'unexpected character U+1F916', 'unexpected character `?`',
    ]);
    expect(tokens.at(-2)).toMatchObject({ kind: 'ident', text: 'b', column: 18 });
  });

  it('reports an unterminated string at its opening quote and consumes the rest', () => {
    const { tokens, reported } = lex('x == "abc\n def \\" ghi');
    expect(tokens.map((t) => t.kind)).toEqual(['ident', '==', 'invalid', 'eof']);
    expect(reported).toEqual([{ code: 'PARSE_UNTERMINATED_STRING', message: 'unterminated string literal', at: { offset: 5, length: 1, line: 1, column: 6 } }]);
    expect(tokens[3]).toMatchObject({ line: 2, offset: 21 });
  });

  it('returns eof repeatedly at the end', () => {
    const lexer = new Lexer('', () => undefined);
    expect([lexer.next().kind, lexer.next().kind]).toEqual(['eof', 'eof']);
  });
});

describe('string literals', () => {
  it('decodes every escape Cedar has', () => {
    expect(decode('"\\n\\r\\t\\\\\\0\\\'\\""', 'string').value).toBe('\n\r\t\\\0\'"');
    expect(decode('"\\x41\\x7f\\u{41}\\u{1F916}\\u{10FFFF}\\u{000041}\\u{1_0}"', 'string').value).toBe('A\x7fA🤖\u{10FFFF}A\u0010');
    expect(decode('"plain, no escapes"', 'string').value).toBe('plain, no escapes');
    expect(decode('"*"', 'string').value).toBe('*');
  });

  it.each([
    ['\\q', '\\q'],
    ['\\*', '\\*'],
    ['\\x80', '\\x80'],
    ['\\x4g', '\\x4g'],
    ['\\u{}', '\\u{}'],
    ['\\u{_1}', '\\u{_1}'],
    ['\\u{1234567}', '\\u{1234567}'],
    ['\\u{110000}', '\\u{110000}'],
    ['\\u{D800}', '\\u{D800}'],
    ['\\u0041', '\\u0'],
    ['\\u{12g}', '\\u{12g'],
    ['\\🤖', '\\🤖'],
  ])('refuses %s, pointing at it', (escape, shown) => {
    const { value, reported } = decode(`"ok ${escape} ok"`, 'string');
    expect(value).toBeNull();
    expect(reported).toEqual([
      { code: 'PARSE_INVALID_ESCAPE', message: `invalid escape \`${shown}\``, at: { offset: 4, length: shown.length, line: 1, column: 5 } },
    ]);
  });

  it('reports every bad escape in a string, located across its line breaks', () => {
    const literal = '"\\q\n  \\z"';
    const { value, reported } = decode(literal, 'string');
    expect(value).toBeNull();
    expect(reported.map((r) => r.at)).toEqual([
      { offset: 1, length: 2, line: 1, column: 2 },
      { offset: 6, length: 2, line: 2, column: 3 },
    ]);
  });

  it('refuses a raw carriage return inside a string, as Cedar does, even in CRLF', () => {
    for (const literal of ['"a\rb"', '"a\r\nb"']) {
      const { value, reported } = decode(literal, 'string');
      expect(value).toBeNull();
      expect(reported).toEqual([{ code: 'PARSE_INVALID_ESCAPE', message: expect.stringContaining('carriage return'), at: { offset: 2, length: 1, line: 1, column: 3 } }]);
    }
    expect(decode('"a*\r"', 'pattern').value).toBeNull();
  });

  it('refuses a backslash before a line break', () => {
    const { value, reported } = decode('"a\\\nb"', 'string');
    expect(value).toBeNull();
    expect(reported[0]).toMatchObject({ code: 'PARSE_INVALID_ESCAPE', at: { offset: 2, line: 1, column: 3 } });
  });
});

describe('like patterns', () => {
  const pattern = (literal: string): unknown => decode(literal, 'pattern').value;

  it('makes unescaped `*` a wildcard and `\\*` a literal star', () => {
    expect(pattern('"robot-*"')).toEqual([{ kind: 'text', text: 'robot-' }, { kind: 'wildcard' }]);
    expect(pattern('"\\*"')).toEqual([{ kind: 'text', text: '*' }]);
    expect(pattern('"a\\*\\n*\\\\"')).toEqual([{ kind: 'text', text: 'a*\n' }, { kind: 'wildcard' }, { kind: 'text', text: '\\' }]);
    expect(pattern('"*a**"')).toEqual([{ kind: 'wildcard' }, { kind: 'text', text: 'a' }, { kind: 'wildcard' }, { kind: 'wildcard' }]);
    expect(pattern('""')).toEqual([]);
  });

  it('treats `*` written as a code point escape as a wildcard, as Cedar does', () => {
    expect(pattern('"\\u{2a}\\x2a"')).toEqual([{ kind: 'wildcard' }, { kind: 'wildcard' }]);
  });

  it('refuses invalid escapes in patterns too', () => {
    const { value, reported } = decode('"a*\\q"', 'pattern');
    expect(value).toBeNull();
    expect(reported.map((r) => r.code)).toEqual(['PARSE_INVALID_ESCAPE']);
  });
});
