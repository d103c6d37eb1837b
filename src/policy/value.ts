// Cedar runtime values. Longs are always bigint (Cedar's Long is i64); entity uids carry a
// canonical key so identity checks are string comparisons; sets and records are immutable and
// compare by Cedar equality through canonical value keys.
import { Datetime } from './ext/datetime.js';
import { Decimal } from './ext/decimal.js';
import { Duration } from './ext/duration.js';
import { IpAddr } from './ext/ipaddr.js';

export { Datetime, Decimal, Duration, IpAddr };

export const I64_MIN = -(1n << 63n);
export const I64_MAX = (1n << 63n) - 1n;

export type ExtensionValue = Decimal | IpAddr | Datetime | Duration;
export type Value = boolean | bigint | string | EntityUid | CedarSet | CedarRecord | ExtensionValue;

export type TypeName =
  | 'bool'
  | 'long'
  | 'string'
  | 'entity'
  | 'set'
  | 'record'
  | 'decimal'
  | 'ipaddr'
  | 'datetime'
  | 'duration';

// Characters escaped in the display form of a string: the quote, the backslash and every
// control or line-breaking character, so a uid prints on one line and reads back unambiguously.
const NEEDS_ESCAPE = /["\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/;
const ESCAPE_ALL = /["\\\u0000-\u001f\u007f-\u009f\u2028\u2029]/g;

function escapeChar(ch: string): string {
  switch (ch) {
    case '"':
      return '\\"';
    case '\\':
      return '\\\\';
    case '\n':
      return '\\n';
    case '\r':
      return '\\r';
    case '\t':
      return '\\t';
    case '\0':
      return '\\0';
    default:
      return `\\u{${ch.charCodeAt(0).toString(16)}}`;
  }
}

/** A Cedar string literal for `s`: quoted, with quotes, backslashes and controls escaped. */
export function quoteString(s: string): string {
  return NEEDS_ESCAPE.test(s) ? `"${s.replace(ESCAPE_ALL, escapeChar)}"` : `"${s}"`;
}

/** An entity reference `Type::"id"`. `key` is its display form, unique per (type, id). */
export class EntityUid {
  readonly type: string;
  readonly id: string;
  readonly key: string;

  constructor(type: string, id: string) {
    this.type = type;
    this.id = id;
    this.key = `${type}::${quoteString(id)}`;
  }

  equals(other: EntityUid): boolean {
    return this === other || this.key === other.key;
  }

  toString(): string {
    return this.key;
  }
}

/**
 * A canonical string for a value: two values have the same key exactly when they are equal in
 * Cedar. Type prefixes keep kinds apart; nested parts are length-prefixed, so composites stay
 * unambiguous and grow linearly with nesting (quoting would double escapes at every level); set
 * keys are sorted so element order does not matter.
 */
export function valueKey(v: Value): string {
  switch (typeof v) {
    case 'boolean':
      return v ? 'T' : 'F';
    case 'bigint':
      return `l${v}`;
    case 'string':
      return `s${v}`;
  }
  if (v instanceof EntityUid) return `e${v.key}`;
  if (v instanceof CedarSet || v instanceof CedarRecord) return v.key;
  if (v instanceof Decimal) return `d${v.scaled}`;
  if (v instanceof Datetime) return `t${v.epochMs}`;
  if (v instanceof Duration) return `u${v.ms}`;
  return `i${v.toString()}`;
}

/** `text` behind its length, so a sequence of framed parts reads back unambiguously. */
const framed = (text: string): string => `${text.length}:${text}`;

/** An immutable Cedar set; elements are deduplicated by Cedar equality. */
export class CedarSet implements Iterable<Value> {
  static readonly EMPTY = new CedarSet(new Map());

  readonly #byKey: ReadonlyMap<string, Value>;
  #key: string | undefined;
  #entityOnly: boolean | undefined;

  private constructor(byKey: ReadonlyMap<string, Value>) {
    this.#byKey = byKey;
  }

  static of(values: Iterable<Value>): CedarSet {
    const byKey = new Map<string, Value>();
    for (const v of values) {
      const k = valueKey(v);
      if (!byKey.has(k)) byKey.set(k, v);
    }
    return byKey.size === 0 ? CedarSet.EMPTY : new CedarSet(byKey);
  }

  get size(): number {
    return this.#byKey.size;
  }

  has(v: Value): boolean {
    return this.#byKey.has(valueKey(v));
  }

  /** True when every element of `other` is in this set. */
  hasAll(other: CedarSet): boolean {
    for (const k of other.#byKey.keys()) if (!this.#byKey.has(k)) return false;
    return true;
  }

  /** True when some element of `other` is in this set. */
  hasAny(other: CedarSet): boolean {
    const [small, large] = other.size <= this.size ? [other, this] : [this, other];
    for (const k of small.#byKey.keys()) if (large.#byKey.has(k)) return true;
    return false;
  }

  /** True when every element is an entity uid (the only sets `in` accepts). */
  get entityOnly(): boolean {
    if (this.#entityOnly === undefined) {
      let all = true;
      for (const v of this.#byKey.values()) if (!(v instanceof EntityUid)) all = false;
      this.#entityOnly = all;
    }
    return this.#entityOnly;
  }

  values(): IterableIterator<Value> {
    return this.#byKey.values();
  }

  [Symbol.iterator](): IterableIterator<Value> {
    return this.#byKey.values();
  }

  get key(): string {
    if (this.#key === undefined) this.#key = `S${[...this.#byKey.keys()].sort().map(framed).join('')}`;
    return this.#key;
  }
}

/** An immutable Cedar record. Attribute names are arbitrary strings (a Map, never an object). */
export class CedarRecord {
  static readonly EMPTY = new CedarRecord(new Map());

  readonly #attrs: ReadonlyMap<string, Value>;
  #key: string | undefined;

  constructor(attrs: ReadonlyMap<string, Value>) {
    this.#attrs = attrs;
  }

  static fromEntries(entries: Iterable<readonly [string, Value]>): CedarRecord {
    return new CedarRecord(new Map(entries));
  }

  get size(): number {
    return this.#attrs.size;
  }

  has(name: string): boolean {
    return this.#attrs.has(name);
  }

  get(name: string): Value | undefined {
    return this.#attrs.get(name);
  }

  keys(): IterableIterator<string> {
    return this.#attrs.keys();
  }

  entries(): IterableIterator<[string, Value]> {
    return this.#attrs.entries();
  }

  get key(): string {
    if (this.#key === undefined) {
      let key = 'R';
      for (const name of [...this.#attrs.keys()].sort()) key += framed(name) + framed(valueKey(this.#attrs.get(name)!));
      this.#key = key;
    }
    return this.#key;
  }
}

/** Cedar `==`: never fails; values of different types are simply unequal. */
export function valueEquals(a: Value, b: Value): boolean {
  if (a === b) return true;
  const t = typeof a;
  if (t !== 'object' || typeof b !== 'object') return false;
  if (a instanceof EntityUid) return b instanceof EntityUid && a.key === b.key;
  return valueKey(a) === valueKey(b);
}

export function typeName(v: Value): TypeName {
  switch (typeof v) {
    case 'boolean':
      return 'bool';
    case 'bigint':
      return 'long';
    case 'string':
      return 'string';
  }
  if (v instanceof EntityUid) return 'entity';
  if (v instanceof CedarSet) return 'set';
  if (v instanceof CedarRecord) return 'record';
  if (v instanceof Decimal) return 'decimal';
  if (v instanceof IpAddr) return 'ipaddr';
  if (v instanceof Datetime) return 'datetime';
  return 'duration';
}

const DISPLAY_LIMIT = 120;

/** Appends the display form of `v` to `out` until it passes the limit (then stops early). */
function display(v: Value, out: string[], used: { length: number }): void {
  const emit = (text: string) => {
    out.push(text);
    used.length += text.length;
  };
  if (used.length > DISPLAY_LIMIT) return;
  switch (typeof v) {
    case 'boolean':
    case 'bigint':
      return emit(String(v));
    case 'string':
      return emit(quoteString(v.length > DISPLAY_LIMIT ? v.slice(0, DISPLAY_LIMIT) : v));
  }
  if (v instanceof EntityUid) return emit(v.key);
  if (v instanceof CedarSet || v instanceof CedarRecord) {
    const isSet = v instanceof CedarSet;
    emit(isSet ? '[' : '{');
    let first = true;
    for (const item of isSet ? v.values() : v.entries()) {
      if (used.length > DISPLAY_LIMIT) return;
      if (!first) emit(', ');
      first = false;
      if (isSet) display(item as Value, out, used);
      else {
        const [k, x] = item as [string, Value];
        emit(`${quoteString(k)}: `);
        display(x, out, used);
      }
    }
    return emit(isSet ? ']' : '}');
  }
  const fn = v instanceof IpAddr ? 'ip' : typeName(v);
  emit(`${fn}(${quoteString(v.toString())})`);
}

/** Cedar source form of a value for error messages, cut to a bounded length. */
export function displayValue(v: Value): string {
  const out: string[] = [];
  display(v, out, { length: 0 });
  const text = out.join('');
  return text.length > DISPLAY_LIMIT ? `${text.slice(0, DISPLAY_LIMIT)}…` : text;
}
