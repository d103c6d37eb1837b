// A lossless, bounded JSON reader. Integers stay exact (bigint), other numbers keep their text,
// objects become Maps (so "__proto__" is just a key), duplicate keys are refused, and every
// error names a JSON path and, for text input, a line and column. JSON.parse rounds integers
// beyond 2^53 and keeps the last of duplicate keys: never use it for Cedar data.

/** A number that is not a plain integer of at most 20 digits, kept as written. */
import { ZtedgeError } from '../errors.js';
export class JsonNumber {
  constructor(readonly text: string) {}
}

export type JsonValue = null | boolean | bigint | JsonNumber | string | JsonValue[] | JsonObject;
export type JsonObject = Map<string, JsonValue>;

export type JsonErrorCode =
  | 'JSON_SYNTAX'
  | 'JSON_TOO_LARGE'
  | 'JSON_TOO_DEEP'
  | 'JSON_DUPLICATE_KEY'
  | 'JSON_BAD_STRING'
  | 'JSON_UNSUPPORTED_VALUE'
  | 'JSON_UNSAFE_NUMBER';

/** A path into a JSON document: object keys and array indices from the root. */
export type JsonPath = ReadonlyArray<string | number>;

const IDENTIFIER = /^[A-Za-z_$][A-Za-z0-9_$]*$/;

/** `$`, `$[0].uid`, `$.attrs["a b"]`. */
export function formatJsonPath(path: JsonPath): string {
  let out = '$';
  for (const seg of path) {
    if (typeof seg === 'number') out += `[${seg}]`;
    else out += IDENTIFIER.test(seg) ? `.${seg}` : `[${JSON.stringify(seg)}]`;
  }
  return out;
}

export class JsonError extends ZtedgeError<JsonErrorCode> {
  readonly path: string;
  readonly line: number | undefined;
  readonly column: number | undefined;

  constructor(code: JsonErrorCode, detail: string, path: JsonPath, position?: { line: number; column: number }) {
    const where = position ? ` (line ${position.line}, column ${position.column})` : '';
    super(code, `${detail} at ${formatJsonPath(path)}${where}`);
    this.path = formatJsonPath(path);
    this.line = position?.line;
    this.column = position?.column;
  }
}

export interface JsonLimits {
  /** Largest accepted text, in UTF-16 code units. */
  maxLength?: number;
  /** Deepest accepted nesting of arrays and objects. */
  maxDepth?: number;
  /** Most values (of any kind) accepted in one document; bounds work on already-parsed input. */
  maxNodes?: number;
}

export const DEFAULT_JSON_LIMITS: Required<JsonLimits> = {
  maxLength: 16 * 1024 * 1024,
  maxDepth: 64,
  maxNodes: 2_000_000,
};

// Integers up to this many characters (sign included) become bigint directly; longer ones are
// certainly outside i64 and stay text, so a megabyte of digits never reaches BigInt().
const MAX_INTEGER_CHARS = 21;
const SURROGATE = /[\uD800-\uDFFF]/;
const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

export function hasLoneSurrogate(s: string): boolean {
  // The plain scan is much cheaper than the lookaround one, and most strings have no surrogates.
  return SURROGATE.test(s) && LONE_SURROGATE.test(s);
}

class Reader {
  private pos = 0;
  private nodes = 0;
  private readonly path: Array<string | number> = [];

  constructor(
    private readonly text: string,
    private readonly limits: Required<JsonLimits>,
  ) {}

  parseDocument(): JsonValue {
    this.skipWhitespace();
    const value = this.parseValue(0);
    this.skipWhitespace();
    if (this.pos < this.text.length) this.fail('JSON_SYNTAX', 'unexpected text after the JSON value');
    return value;
  }

  private fail(code: JsonErrorCode, detail: string, at: number = this.pos): never {
    let line = 1;
    let lineStart = 0;
    for (let i = 0; i < at && i < this.text.length; i++) {
      if (this.text.charCodeAt(i) === 10) {
        line++;
        lineStart = i + 1;
      }
    }
    throw new JsonError(code, detail, this.path, { line, column: at - lineStart + 1 });
  }

  private skipWhitespace(): void {
    const t = this.text;
    while (this.pos < t.length) {
      const c = t.charCodeAt(this.pos);
      if (c !== 0x20 && c !== 0x0a && c !== 0x0d && c !== 0x09) break;
      this.pos++;
    }
  }

  private parseValue(depth: number): JsonValue {
    if (++this.nodes > this.limits.maxNodes) this.fail('JSON_TOO_LARGE', 'too many values');
    const c = this.text.charCodeAt(this.pos);
    switch (c) {
      case 0x7b /* { */:
        return this.parseObject(depth + 1);
      case 0x5b /* [ */:
        return this.parseArray(depth + 1);
      case 0x22 /* " */:
        return this.parseString();
      case 0x74 /* t */:
        return this.parseKeyword('true', true);
      case 0x66 /* f */:
        return this.parseKeyword('false', false);
      case 0x6e /* n */:
        return this.parseKeyword('null', null);
      default:
        if (c === 0x2d || (c >= 0x30 && c <= 0x39)) return this.parseNumber();
        return this.fail('JSON_SYNTAX', Number.isNaN(c) ? 'unexpected end of input' : 'unexpected character');
    }
  }

  private parseKeyword<T>(word: string, value: T): T {
    if (!this.text.startsWith(word, this.pos)) this.fail('JSON_SYNTAX', 'unexpected character');
    this.pos += word.length;
    return value;
  }

  private parseObject(depth: number): JsonObject {
    if (depth > this.limits.maxDepth) this.fail('JSON_TOO_DEEP', `nesting deeper than ${this.limits.maxDepth}`);
    const obj: JsonObject = new Map();
    this.pos++;
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === 0x7d) {
      this.pos++;
      return obj;
    }
    for (;;) {
      if (this.text.charCodeAt(this.pos) !== 0x22) this.fail('JSON_SYNTAX', 'expected a string key');
      const keyStart = this.pos;
      const key = this.parseString();
      if (obj.has(key)) this.fail('JSON_DUPLICATE_KEY', `duplicate key ${JSON.stringify(key)}`, keyStart);
      this.skipWhitespace();
      if (this.text.charCodeAt(this.pos) !== 0x3a) this.fail('JSON_SYNTAX', "expected ':'");
      this.pos++;
      this.skipWhitespace();
      this.path.push(key);
      obj.set(key, this.parseValue(depth));
      this.path.pop();
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x7d) return obj;
      if (c !== 0x2c) this.fail('JSON_SYNTAX', "expected ',' or '}'", this.pos - 1);
      this.skipWhitespace();
    }
  }

  private parseArray(depth: number): JsonValue[] {
    if (depth > this.limits.maxDepth) this.fail('JSON_TOO_DEEP', `nesting deeper than ${this.limits.maxDepth}`);
    const arr: JsonValue[] = [];
    this.pos++;
    this.skipWhitespace();
    if (this.text.charCodeAt(this.pos) === 0x5d) {
      this.pos++;
      return arr;
    }
    for (;;) {
      this.path.push(arr.length);
      arr.push(this.parseValue(depth));
      this.path.pop();
      this.skipWhitespace();
      const c = this.text.charCodeAt(this.pos);
      this.pos++;
      if (c === 0x5d) return arr;
      if (c !== 0x2c) this.fail('JSON_SYNTAX', "expected ',' or ']'", this.pos - 1);
      this.skipWhitespace();
    }
  }

  private parseString(): string {
    const t = this.text;
    const start = ++this.pos;
    // Fast path: no escapes.
    let i = start;
    for (; i < t.length; i++) {
      const c = t.charCodeAt(i);
      if (c === 0x22) {
        const s = t.slice(start, i);
        this.pos = i + 1;
        if (hasLoneSurrogate(s)) this.fail('JSON_BAD_STRING', 'unpaired surrogate in string', start);
        return s;
      }
      if (c === 0x5c || c < 0x20) break;
    }
    let out = t.slice(start, i);
    this.pos = i;
    for (;;) {
      if (this.pos >= t.length) this.fail('JSON_SYNTAX', 'unterminated string');
      const c = t.charCodeAt(this.pos);
      if (c === 0x22) {
        this.pos++;
        if (hasLoneSurrogate(out)) this.fail('JSON_BAD_STRING', 'unpaired surrogate in string', start);
        return out;
      }
      if (c < 0x20) this.fail('JSON_SYNTAX', 'control character in string');
      if (c !== 0x5c) {
        let end = this.pos + 1;
        while (end < t.length) {
          const d = t.charCodeAt(end);
          if (d === 0x22 || d === 0x5c || d < 0x20) break;
          end++;
        }
        out += t.slice(this.pos, end);
        this.pos = end;
        continue;
      }
      const e = t[this.pos + 1];
      this.pos += 2;
      switch (e) {
        case '"':
        case '\\':
        case '/':
          out += e;
          break;
        case 'b':
          out += '\b';
          break;
        case 'f':
          out += '\f';
          break;
        case 'n':
          out += '\n';
          break;
        case 'r':
          out += '\r';
          break;
        case 't':
          out += '\t';
          break;
        case 'u': {
          const hex = t.slice(this.pos, this.pos + 4);
          if (!/^[0-9A-Fa-f]{4}$/.test(hex)) this.fail('JSON_SYNTAX', 'bad \\u escape', this.pos - 2);
          out += String.fromCharCode(parseInt(hex, 16));
          this.pos += 4;
          break;
        }
        default:
          this.fail('JSON_SYNTAX', 'bad escape in string', this.pos - 2);
      }
    }
  }

  private parseNumber(): bigint | JsonNumber {
    const t = this.text;
    const start = this.pos;
    let i = start;
    if (t.charCodeAt(i) === 0x2d) i++;
    const intStart = i;
    while (i < t.length && t.charCodeAt(i) >= 0x30 && t.charCodeAt(i) <= 0x39) i++;
    if (i === intStart) this.fail('JSON_SYNTAX', 'bad number', start);
    if (t.charCodeAt(intStart) === 0x30 && i - intStart > 1) this.fail('JSON_SYNTAX', 'leading zero in number', start);
    let integral = true;
    if (t.charCodeAt(i) === 0x2e) {
      integral = false;
      const fracStart = ++i;
      while (i < t.length && t.charCodeAt(i) >= 0x30 && t.charCodeAt(i) <= 0x39) i++;
      if (i === fracStart) this.fail('JSON_SYNTAX', 'bad number', start);
    }
    const c = t.charCodeAt(i);
    if (c === 0x65 || c === 0x45) {
      integral = false;
      i++;
      if (t.charCodeAt(i) === 0x2b || t.charCodeAt(i) === 0x2d) i++;
      const expStart = i;
      while (i < t.length && t.charCodeAt(i) >= 0x30 && t.charCodeAt(i) <= 0x39) i++;
      if (i === expStart) this.fail('JSON_SYNTAX', 'bad number', start);
    }
    this.pos = i;
    const text = t.slice(start, i);
    return integral && text.length <= MAX_INTEGER_CHARS ? BigInt(text) : new JsonNumber(text);
  }
}

/** Parses JSON text into exact values, within the given limits. */
export function parseJson(text: string, limits: JsonLimits = {}): JsonValue {
  const lim = { ...DEFAULT_JSON_LIMITS, ...limits };
  if (typeof text !== 'string') throw new JsonError('JSON_UNSUPPORTED_VALUE', 'JSON input must be text', []);
  if (text.length > lim.maxLength) {
    throw new JsonError('JSON_TOO_LARGE', `text longer than ${lim.maxLength} characters`, []);
  }
  return new Reader(text, lim).parseDocument();
}

function isPlainObject(v: object): v is Record<string, unknown> {
  const proto: unknown = Object.getPrototypeOf(v);
  return proto === Object.prototype || proto === null;
}

/**
 * Converts an in-memory JavaScript value (JSON.parse output, a decoded CBOR map, a literal in
 * code) into the same shape `parseJson` returns. Numbers must be safe integers or non-integers:
 * an integer beyond 2^53 in a JavaScript number may already have lost digits, so it is refused.
 * Bounded in depth and size, so cyclic or huge structures fail instead of hanging.
 */
export function jsonFromValue(input: unknown, limits: JsonLimits = {}): JsonValue {
  const lim = { ...DEFAULT_JSON_LIMITS, ...limits };
  const path: Array<string | number> = [];
  let nodes = 0;

  const fail = (code: JsonErrorCode, detail: string): never => {
    throw new JsonError(code, detail, path);
  };

  const convert = (v: unknown, depth: number): JsonValue => {
    if (++nodes > lim.maxNodes) fail('JSON_TOO_LARGE', 'too many values');
    switch (typeof v) {
      case 'boolean':
      case 'bigint':
        return v;
      case 'string':
        if (v.length > lim.maxLength) fail('JSON_TOO_LARGE', 'string too long');
        if (hasLoneSurrogate(v)) fail('JSON_BAD_STRING', 'unpaired surrogate in string');
        return v;
      case 'number':
        if (!Number.isFinite(v)) return fail('JSON_UNSUPPORTED_VALUE', `${v} is not a JSON number`);
        if (!Number.isInteger(v)) return new JsonNumber(String(v));
        if (!Number.isSafeInteger(v)) {
          return fail('JSON_UNSAFE_NUMBER', `${v} is beyond 2^53 and may have lost digits; pass it as bigint or JSON text`);
        }
        return BigInt(v);
      case 'object':
        break;
      default:
        return fail('JSON_UNSUPPORTED_VALUE', `a ${typeof v} is not a JSON value`);
    }
    if (v === null) return null;
    if (depth >= lim.maxDepth) fail('JSON_TOO_DEEP', `nesting deeper than ${lim.maxDepth}`);
    if (Array.isArray(v)) {
      const out: JsonValue[] = [];
      for (let i = 0; i < v.length; i++) {
        path.push(i);
        out.push(convert(v[i], depth + 1));
        path.pop();
      }
      return out;
    }
    const out: JsonObject = new Map();
    if (v instanceof Map) {
      for (const [k, x] of v) {
        if (typeof k !== 'string') fail('JSON_UNSUPPORTED_VALUE', 'map keys must be strings');
        path.push(k as string);
        out.set(k as string, convert(x, depth + 1));
        path.pop();
      }
      return out;
    }
    if (!isPlainObject(v)) return fail('JSON_UNSUPPORTED_VALUE', 'only plain objects, arrays and Maps are JSON values');
    for (const k of Object.keys(v)) {
      path.push(k);
      out.set(k, convert(v[k], depth + 1));
      path.pop();
    }
    return out;
  };

  return convert(input, 0);
}
