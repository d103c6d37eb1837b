// The exact, bounded JSON reader: big integers survive, duplicates and bad text are refused
// with a path and a position, limits hold, and in-memory values convert the same way.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { JsonError, JsonNumber, jsonFromValue, parseJson } from '../../src/policy/index.js';
import type { JsonValue } from '../../src/policy/index.js';
import { formatJsonPath } from '../../src/policy/json.js';

function jsonError(run: () => unknown): JsonError {
  try {
    run();
  } catch (e) {
    if (e instanceof JsonError) return e;
    throw e;
  }
  throw new Error('expected a JsonError');
}

describe('parseJson', () => {
  it('reads integers exactly as bigint, whatever their size in i64', () => {
    expect(parseJson('9223372036854775807')).toBe(9223372036854775807n);
    expect(parseJson('-9223372036854775808')).toBe(-9223372036854775808n);
    expect(parseJson('9007199254740993')).toBe(9007199254740993n);
    expect(parseJson('-0')).toBe(0n);
    expect(parseJson('[18446744073709551616]')).toEqual([18446744073709551616n]);
  });

  it('keeps other numbers as text', () => {
    expect(parseJson('1.5')).toEqual(new JsonNumber('1.5'));
    expect(parseJson('1e3')).toEqual(new JsonNumber('1e3'));
    expect(parseJson('-0.0')).toEqual(new JsonNumber('-0.0'));
    const huge = '9'.repeat(5000);
    expect(parseJson(huge)).toEqual(new JsonNumber(huge));
  });

  it('reads objects into Maps in order, "__proto__" being just a key', () => {
    const v = parseJson('{"b": 1, "__proto__": {"x": true}, "a": [null, "s"]}') as Map<string, JsonValue>;
    expect([...v.keys()]).toEqual(['b', '__proto__', 'a']);
    expect(v.get('__proto__')).toEqual(new Map([['x', true]]));
    expect(v.get('a')).toEqual([null, 's']);
    expect(({} as Record<string, unknown>)['x']).toBeUndefined();
  });

  it('decodes escapes and surrogate pairs', () => {
    expect(parseJson('"a\\"b\\\\c\\/d\\b\\f\\n\\r\\t\\u00e9\\ud83d\\ude00"')).toBe('a"b\\c/d\b\f\n\r\té😀');
    expect(parseJson('"plain 😀 text"')).toBe('plain 😀 text');
  });

  it('refuses duplicate keys, naming the path and position', () => {
    const e = jsonError(() => parseJson('[\n  {"uid": 1,\n   "uid": 2}\n]'));
    expect(e.code).toBe('JSON_DUPLICATE_KEY');
    expect(e.path).toBe('$[0]');
    expect([e.line, e.column]).toEqual([3, 4]);
  });

  it('refuses malformed text with the line and column of the problem', () => {
    const cases: Array<[string, number, number]> = [
      ['', 1, 1],
      ['[1,]', 1, 4],
      ['[1 2]', 1, 4],
      ['{"a" 1}', 1, 6],
      ['{"a": 1,}', 1, 9],
      ['{a: 1}', 1, 2],
      ['01', 1, 1],
      ['1.', 1, 1],
      ['-', 1, 1],
      ['1e', 1, 1],
      ['"abc', 1, 5],
      ['"a\\x"', 1, 3],
      ['"a\\u12"', 1, 3],
      ['"tab\there"', 1, 5],
      ['tru', 1, 1],
      ['NaN', 1, 1],
      ['{"a": 1}\n\n  x', 3, 3],
      ['[1]]', 1, 4],
    ];
    for (const [text, line, column] of cases) {
      const e = jsonError(() => parseJson(text));
      expect(e.code, text).toBe('JSON_SYNTAX');
      expect([e.line, e.column], text).toEqual([line, column]);
    }
  });

  it('refuses unpaired surrogates', () => {
    for (const text of ['"\\ud800"', '"\\udc00x"', '"\\ud800\\u0041"']) {
      expect(jsonError(() => parseJson(text)).code, text).toBe('JSON_BAD_STRING');
    }
    expect(jsonError(() => parseJson('"\ud800"')).code).toBe('JSON_BAD_STRING');
  });

  it('bounds nesting depth, size and value count', () => {
    expect(() => parseJson('['.repeat(64) + ']'.repeat(64))).not.toThrow();
    const deep = jsonError(() => parseJson('['.repeat(65) + ']'.repeat(65)));
    expect(deep.code).toBe('JSON_TOO_DEEP');
    expect(jsonError(() => parseJson('{"a":'.repeat(100_000))).code).toBe('JSON_TOO_DEEP');
    expect(jsonError(() => parseJson('[1, 2, 3]', { maxLength: 5 })).code).toBe('JSON_TOO_LARGE');
    expect(jsonError(() => parseJson('[1, 2, 3]', { maxNodes: 3 })).code).toBe('JSON_TOO_LARGE');
    expect(parseJson('[[[1]]]', { maxDepth: 3 })).toEqual([[[1n]]]);
  });

  it('names paths with indices, identifiers and quoted keys', () => {
    expect(formatJsonPath([])).toBe('$');
    expect(formatJsonPath([0, 'attrs', 'a b', 2])).toBe('$[0].attrs["a b"][2]');
    const e = jsonError(() => parseJson('{"x y": [0, {"z": tru}]}'));
    expect(e.path).toBe('$["x y"][1].z');
  });

  it('reads whatever JSON.parse reads exactly the same way', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 5 }), (v) => {
        const text = JSON.stringify(v);
        const fromText = parseJson(text);
        let fromValue: JsonValue;
        try {
          fromValue = jsonFromValue(JSON.parse(text));
        } catch (e) {
          // Integers past 2^53 arrive as doubles through JSON.parse: refused there, exact here.
          expect((e as JsonError).code).toBe('JSON_UNSAFE_NUMBER');
          return;
        }
        expect(fromText).toEqual(fromValue);
      }),
      { numRuns: 300 },
    );
  });

  it('fails with a JsonError, never anything else, on arbitrary text', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 40, unit: fc.constantFrom(...'{}[]",:0123456789-.eE\\utrufalsn \n') }), (text) => {
        try {
          parseJson(text);
        } catch (e) {
          expect(e).toBeInstanceOf(JsonError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});

describe('jsonFromValue', () => {
  it('converts plain data, Maps and bigints', () => {
    expect(jsonFromValue({ a: [1, 'x', true, null], b: 2n })).toEqual(
      new Map<string, JsonValue>([
        ['a', [1n, 'x', true, null]],
        ['b', 2n],
      ]),
    );
    expect(jsonFromValue(new Map([['k', 1]]))).toEqual(new Map([['k', 1n]]));
    expect(jsonFromValue(Object.assign(Object.create(null), { z: 0.5 }))).toEqual(new Map([['z', new JsonNumber('0.5')]]));
  });

  it('refuses numbers that may have lost digits and values JSON cannot hold', () => {
    expect(jsonError(() => jsonFromValue({ n: 2 ** 60 })).code).toBe('JSON_UNSAFE_NUMBER');
    expect(jsonError(() => jsonFromValue({ n: 2 ** 60 })).path).toBe('$.n');
    for (const bad of [NaN, Infinity, undefined, () => 1, Symbol('s'), new Date(0), new (class Point {})()]) {
      expect(jsonError(() => jsonFromValue([bad])).code).toBe('JSON_UNSUPPORTED_VALUE');
    }
    expect(jsonError(() => jsonFromValue(new Map([[1, 'a']]))).code).toBe('JSON_UNSUPPORTED_VALUE');
    expect(jsonError(() => jsonFromValue('\udc00')).code).toBe('JSON_BAD_STRING');
  });

  it('stops on cyclic and oversized structures', () => {
    const cyclic: Record<string, unknown> = {};
    cyclic['self'] = cyclic;
    expect(jsonError(() => jsonFromValue(cyclic)).code).toBe('JSON_TOO_DEEP');
    expect(jsonError(() => jsonFromValue(new Array(50).fill(1), { maxNodes: 10 })).code).toBe('JSON_TOO_LARGE');
  });
});
