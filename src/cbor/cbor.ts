// Strict, bounded CBOR (RFC 8949) for signed data.
//
// Decoding is one validating pass over the raw bytes that also builds the value, instead of
// handing untrusted bytes to cbor-x: cbor-x keeps the last of duplicate map keys silently,
// may turn large integers into floats, and understands tags and indefinite lengths we must
// refuse. Two parsers over the same signed bytes would also be two chances to disagree about
// what was signed. The pass enforces:
//   - a maximum input size and a maximum nesting depth (checked before descending, so a
//     nesting bomb costs no stack);
//   - definite lengths only, and declared lengths that fit in the remaining input (a
//     4-billion-element header over ten bytes fails at once, without allocating);
//   - map keys that are integers or text strings, each at most once;
//   - well-formed UTF-8 text;
//   - integers preserved exactly: a JS number when it is a safe integer, a bigint otherwise;
//   - only false, true and null among simple values, and no floating-point numbers;
//   - at most one tag, on the outermost item, when the caller allows one (COSE's tag 18/98);
//   - no bytes after the item.
//
// Encoding is a small deterministic encoder (RFC 8949 §4.2.1: shortest heads, definite
// lengths, map keys sorted by their encoded bytes) rather than cbor-x, whose defaults tag
// byte arrays (64) and Maps (259), use record extensions, and write fixed-width map headers
// for objects: each would need an option to switch off and a test to keep it off, while the
// few types signed data uses take a page to encode exactly.
import { ZtedgeError } from '../errors.js';

export type CborErrorCode =
  | 'CBOR_TOO_LARGE'
  | 'CBOR_TRAILING_BYTES'
  | 'CBOR_DUPLICATE_KEY'
  | 'CBOR_INDEFINITE_LENGTH'
  | 'CBOR_TRUNCATED'
  | 'CBOR_TOO_DEEP'
  | 'CBOR_MALFORMED'
  | 'CBOR_UNENCODABLE';

/** Every refusal of the codec; callers above (envelope, bundle, keys) map it to their own codes. */
export class CborError extends ZtedgeError<CborErrorCode> {}

export type CborMapKey = number | bigint | string;
export type CborMap = Map<CborMapKey, CborValue>;
export type CborValue =
  | number
  | bigint
  | string
  | boolean
  | null
  | Uint8Array
  | CborValue[]
  | CborMap
  | CborTagged;

/** A tagged item; the decoder produces it only for the outermost item. */
export class CborTagged {
  constructor(
    readonly tag: number,
    readonly value: CborValue,
  ) {}
}

export interface DecodeLimits {
  /** Largest accepted input, in bytes (CBOR_TOO_LARGE). */
  maxBytes: number;
  /** Deepest accepted nesting of arrays and maps (CBOR_TOO_DEEP); a root tag is free. */
  maxDepth: number;
  /** Whether the outermost item may carry a tag (its number is checked by the caller). */
  allowRootTag?: boolean;
}

const MAJOR_UNSIGNED = 0;
const MAJOR_NEGATIVE = 1;
const MAJOR_BYTES = 2;
const MAJOR_TEXT = 3;
const MAJOR_ARRAY = 4;
const MAJOR_MAP = 5;
const MAJOR_TAG = 6;
const MAJOR_SIMPLE = 7;

const SIMPLE_FALSE = 20;
const SIMPLE_TRUE = 21;
const SIMPLE_NULL = 22;
const INDEFINITE = 31;

const utf8 = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
const textEncoder = new TextEncoder();

/** Decodes exactly one CBOR item from `bytes` under `limits`; throws CborError. */
export function decodeCbor(bytes: Uint8Array, limits: DecodeLimits): CborValue {
  if (bytes.length > limits.maxBytes) {
    throw new CborError('CBOR_TOO_LARGE', `${bytes.length} bytes exceeds the limit of ${limits.maxBytes}`);
  }
  const decoder = new StrictDecoder(bytes, limits.maxDepth);
  const value = decoder.root(limits.allowRootTag === true);
  if (decoder.offset !== bytes.length) {
    throw new CborError('CBOR_TRAILING_BYTES', `${bytes.length - decoder.offset} bytes after the CBOR item`);
  }
  return value;
}

class StrictDecoder {
  offset = 0;

  constructor(
    private readonly bytes: Uint8Array,
    private readonly maxDepth: number,
  ) {}

  root(allowTag: boolean): CborValue {
    if (allowTag && this.offset < this.bytes.length && this.bytes[this.offset]! >> 5 === MAJOR_TAG) {
      const tag = this.argument(this.bytes[this.offset++]! & 0x1f, MAJOR_TAG);
      if (typeof tag !== 'number') throw malformed('tag number out of range');
      return new CborTagged(tag, this.item(0));
    }
    return this.item(0);
  }

  private item(depth: number): CborValue {
    const initial = this.byte();
    const major = initial >> 5;
    const info = initial & 0x1f;
    switch (major) {
      case MAJOR_UNSIGNED:
        return this.argument(info, major);
      case MAJOR_NEGATIVE: {
        const n = this.argument(info, major);
        return typeof n === 'number' && n < Number.MAX_SAFE_INTEGER ? -1 - n : narrow(-1n - BigInt(n));
      }
      case MAJOR_BYTES:
        return this.take(this.length(info, major)).slice();
      case MAJOR_TEXT:
        return decodeText(this.take(this.length(info, major)));
      case MAJOR_ARRAY: {
        const count = this.length(info, major);
        this.enter(depth + 1);
        const items: CborValue[] = [];
        for (let i = 0; i < count; i++) items.push(this.item(depth + 1));
        return items;
      }
      case MAJOR_MAP: {
        const count = this.length(info, major, 2);
        this.enter(depth + 1);
        const map: CborMap = new Map();
        for (let i = 0; i < count; i++) {
          const key = this.item(depth + 1);
          if (typeof key !== 'number' && typeof key !== 'bigint' && typeof key !== 'string') {
            throw malformed('map keys must be integers or text strings');
          }
          if (map.has(key)) {
            throw new CborError('CBOR_DUPLICATE_KEY', `duplicate map key ${describeKey(key)}`);
          }
          map.set(key, this.item(depth + 1));
        }
        return map;
      }
      case MAJOR_TAG:
        throw malformed('tags are only allowed on the outermost item');
      default:
        return this.simple(info);
    }
  }

  private simple(info: number): CborValue {
    switch (info) {
      case SIMPLE_FALSE:
        return false;
      case SIMPLE_TRUE:
        return true;
      case SIMPLE_NULL:
        return null;
      case 25:
      case 26:
      case 27:
        throw malformed('floating-point numbers are not allowed');
      case INDEFINITE:
        throw malformed('unexpected break');
      default:
        throw malformed(`simple value ${info} is not allowed`);
    }
  }

  /** Reads the argument of a head whose initial byte has already been consumed. */
  private argument(info: number, major: number): number | bigint {
    if (info < 24) return info;
    switch (info) {
      case 24:
        this.need(1);
        return this.bytes[this.offset++]!;
      case 25:
        this.need(2);
        return this.uint(2);
      case 26:
        this.need(4);
        return this.uint(4);
      case 27: {
        this.need(8);
        const high = this.uint(4);
        const low = this.uint(4);
        return narrow((BigInt(high) << 32n) | BigInt(low));
      }
      case INDEFINITE:
        if (major === MAJOR_BYTES || major === MAJOR_TEXT || major === MAJOR_ARRAY || major === MAJOR_MAP) {
          throw new CborError('CBOR_INDEFINITE_LENGTH', 'indefinite-length items are not allowed');
        }
        throw malformed(`indefinite length on major type ${major}`);
      default:
        throw malformed(`reserved additional information ${info}`);
    }
  }

  /** A big-endian unsigned integer of 2 or 4 bytes (bounds already checked). */
  private uint(size: 2 | 4): number {
    let value = 0;
    for (let i = 0; i < size; i++) value = value * 256 + this.bytes[this.offset++]!;
    return value;
  }

  /** A length that must fit in the rest of the input, `minItemBytes` per unit. */
  private length(info: number, major: number, minItemBytes = 1): number {
    const length = this.argument(info, major);
    const remaining = this.bytes.length - this.offset;
    if (typeof length !== 'number' || length * minItemBytes > remaining) {
      throw new CborError('CBOR_TRUNCATED', `declared length ${length} exceeds the remaining ${remaining} bytes`);
    }
    return length;
  }

  private enter(depth: number): void {
    if (depth > this.maxDepth) {
      throw new CborError('CBOR_TOO_DEEP', `nesting deeper than ${this.maxDepth}`);
    }
  }

  private byte(): number {
    this.need(1);
    return this.bytes[this.offset++]!;
  }

  private take(length: number): Uint8Array {
    const chunk = this.bytes.subarray(this.offset, this.offset + length);
    this.offset += length;
    return chunk;
  }

  private need(count: number): void {
    if (this.offset + count > this.bytes.length) {
      throw new CborError('CBOR_TRUNCATED', 'input ends inside a CBOR item');
    }
  }
}

const SHORT_TEXT = 32;

/** Strict UTF-8; short ASCII strings (most keys and claims) skip the TextDecoder call. */
function decodeText(raw: Uint8Array): string {
  if (raw.length <= SHORT_TEXT) {
    let ascii = '';
    let i = 0;
    for (; i < raw.length && raw[i]! < 0x80; i++) ascii += String.fromCharCode(raw[i]!);
    if (i === raw.length) return ascii;
  }
  try {
    return utf8.decode(raw);
  } catch {
    throw malformed('text string is not valid UTF-8');
  }
}

function narrow(value: bigint): number | bigint {
  return value >= BigInt(Number.MIN_SAFE_INTEGER) && value <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(value) : value;
}

function malformed(reason: string): CborError {
  return new CborError('CBOR_MALFORMED', reason);
}

function describeKey(key: CborMapKey): string {
  return typeof key === 'string' ? JSON.stringify(key) : String(key);
}

// ---------------------------------------------------------------------------------------
// Deterministic encoding

/** Values the encoder accepts: CBOR values, plus plain objects as text-keyed maps. */
export type Encodable =
  | CborValue
  | readonly Encodable[]
  | ReadonlyMap<CborMapKey, Encodable>
  | { readonly [key: string]: Encodable };

const MAX_ENCODE_DEPTH = 64;
const UINT64_MAX = (1n << 64n) - 1n;

/**
 * Encodes `value` deterministically; throws CborError('CBOR_UNENCODABLE').
 * `sizeHint` (bytes) avoids growing the buffer when the caller knows about how large it is.
 */
export function encodeCbor(value: Encodable, sizeHint = 128): Uint8Array {
  const writer = new Writer(sizeHint);
  writeValue(writer, value, 0);
  return writer.result();
}

/** Scratch space every encode starts in (encoding is synchronous and never nested). */
let scratch = Buffer.allocUnsafeSlow(4096);
/** A scratch buffer grown past this for one large value is not kept. */
const SCRATCH_KEPT_BYTES = 64 * 1024;

/**
 * A growable output buffer over the shared scratch space: no buffer of its own per encode; only
 * the written bytes are copied out, into a plain Uint8Array that owns its memory.
 */
class Writer {
  private buffer: Buffer;
  private length = 0;

  constructor(initialSize: number) {
    if (initialSize > SCRATCH_KEPT_BYTES) this.buffer = Buffer.allocUnsafeSlow(initialSize);
    else {
      if (scratch.length < initialSize) scratch = Buffer.allocUnsafeSlow(initialSize);
      this.buffer = scratch;
    }
  }

  ensure(extra: number): void {
    if (this.length + extra <= this.buffer.length) return;
    let size = this.buffer.length * 2;
    while (size < this.length + extra) size *= 2;
    const grown = Buffer.allocUnsafeSlow(size);
    this.buffer.copy(grown, 0, 0, this.length);
    this.buffer = grown;
    if (size <= SCRATCH_KEPT_BYTES) scratch = grown;
  }

  head(major: number, argument: number | bigint): void {
    this.ensure(9);
    const m = major << 5;
    const b = this.buffer;
    if (typeof argument === 'bigint' && argument > 0xffffffffn) {
      b[this.length++] = m | 27;
      b.writeBigUInt64BE(argument, this.length);
      this.length += 8;
      return;
    }
    const n = Number(argument);
    if (n < 24) {
      b[this.length++] = m | n;
    } else if (n <= 0xff) {
      b[this.length++] = m | 24;
      b[this.length++] = n;
    } else if (n <= 0xffff) {
      b[this.length++] = m | 25;
      b[this.length++] = n >>> 8;
      b[this.length++] = n & 0xff;
    } else if (n <= 0xffffffff) {
      b[this.length++] = m | 26;
      b.writeUInt32BE(n, this.length);
      this.length += 4;
    } else {
      b[this.length++] = m | 27;
      b.writeBigUInt64BE(BigInt(n), this.length);
      this.length += 8;
    }
  }

  text(value: string): void {
    // Short ASCII strings (most keys and claims) are copied unit by unit, without TextEncoder.
    if (value.length <= SHORT_TEXT && isAscii(value)) {
      this.head(MAJOR_TEXT, value.length);
      this.ensure(value.length);
      for (let i = 0; i < value.length; i++) this.buffer[this.length++] = value.charCodeAt(i);
      return;
    }
    const encoded = textEncoder.encode(value);
    this.head(MAJOR_TEXT, encoded.length);
    this.bytes(encoded);
  }

  bytes(data: Uint8Array): void {
    this.ensure(data.length);
    this.buffer.set(data, this.length);
    this.length += data.length;
  }

  result(): Uint8Array {
    const out = new Uint8Array(this.length);
    out.set(this.buffer.subarray(0, this.length));
    return out;
  }
}

function writeValue(writer: Writer, value: Encodable, depth: number): void {
  if (depth > MAX_ENCODE_DEPTH) throw unencodable(`nesting deeper than ${MAX_ENCODE_DEPTH}`);
  if (typeof value === 'number') {
    if (!Number.isSafeInteger(value)) throw unencodable(`${value} is not a safe integer (signed data carries integers only)`);
    if (value >= 0) writer.head(MAJOR_UNSIGNED, value);
    else writer.head(MAJOR_NEGATIVE, -1 - value);
  } else if (typeof value === 'bigint') {
    if (value >= 0n && value <= UINT64_MAX) writer.head(MAJOR_UNSIGNED, value);
    else if (value < 0n && -1n - value <= UINT64_MAX) writer.head(MAJOR_NEGATIVE, -1n - value);
    else throw unencodable(`${value} does not fit in 64 bits`);
  } else if (typeof value === 'string') {
    writer.text(value);
  } else if (typeof value === 'boolean') {
    writer.head(MAJOR_SIMPLE, value ? SIMPLE_TRUE : SIMPLE_FALSE);
  } else if (value === null) {
    writer.head(MAJOR_SIMPLE, SIMPLE_NULL);
  } else if (value instanceof Uint8Array) {
    writer.head(MAJOR_BYTES, value.length);
    writer.bytes(value);
  } else if (Array.isArray(value)) {
    writer.head(MAJOR_ARRAY, value.length);
    for (const item of value as readonly Encodable[]) writeValue(writer, item, depth + 1);
  } else if (value instanceof CborTagged) {
    writer.head(MAJOR_TAG, value.tag);
    writeValue(writer, value.value, depth + 1);
  } else if (value instanceof Map) {
    const map = value as ReadonlyMap<CborMapKey, Encodable>;
    writeMap(writer, Array.from(map.keys()), (key) => map.get(key)!, depth);
  } else if (typeof value === 'object' && isPlainObject(value)) {
    const record = value as { readonly [key: string]: Encodable };
    writeMap(writer, Object.keys(record), (key) => record[key as string]!, depth);
  } else {
    throw unencodable(`cannot encode a value of type ${typeof value}`);
  }
}

/** A map's entries in the order of their keys' encodings: one array of keys per map, sorted in place. */
function writeMap(writer: Writer, keys: CborMapKey[], valueOf: (key: CborMapKey) => Encodable, depth: number): void {
  for (const key of keys) {
    if (typeof key === 'number') {
      if (!Number.isSafeInteger(key)) throw unencodable(`${key} is not a safe integer (signed data carries integers only)`);
    } else if (typeof key !== 'bigint' && typeof key !== 'string') {
      throw unencodable('map keys must be integers or text strings');
    }
  }
  // Sorted without encoding the keys first; small maps (nearly all) by insertion, which allocates nothing.
  if (keys.length > 16) keys.sort(compareKeys);
  else {
    for (let i = 1; i < keys.length; i++) {
      const key = keys[i]!;
      let j = i - 1;
      for (; j >= 0 && compareKeys(keys[j]!, key) > 0; j--) keys[j + 1] = keys[j]!;
      keys[j + 1] = key;
    }
  }
  for (let i = 1; i < keys.length; i++) {
    if (compareKeys(keys[i - 1]!, keys[i]!) === 0) throw unencodable('duplicate map key');
  }
  writer.head(MAJOR_MAP, keys.length);
  for (const key of keys) {
    writeValue(writer, key, 0);
    writeValue(writer, valueOf(key), depth + 1);
  }
}

/**
 * The bytewise order of two keys' deterministic encodings (RFC 8949 §4.2.1), computed from the
 * keys: the major type first (unsigned 0, negative 1, text 3); within one type a smaller head
 * argument encodes to smaller bytes (shortest heads are monotonic), so unsigned integers go by
 * value, negative ones by -1 - value, and text by its UTF-8 length, then its bytes.
 */
function compareKeys(a: CborMapKey, b: CborMapKey): number {
  const ma = keyMajor(a);
  const mb = keyMajor(b);
  if (ma !== mb) return ma - mb;
  if (ma === MAJOR_TEXT) return compareText(a as string, b as string);
  // Integers (numbers and bigints compare across types); negative ones in reverse.
  const order = a < b ? -1 : a > b ? 1 : 0;
  return ma === MAJOR_UNSIGNED ? order : -order;
}

function keyMajor(key: CborMapKey): number {
  if (typeof key === 'string') return MAJOR_TEXT;
  return key >= 0 ? MAJOR_UNSIGNED : MAJOR_NEGATIVE;
}

function compareText(a: string, b: string): number {
  if (isAscii(a) && isAscii(b)) {
    if (a.length !== b.length) return a.length - b.length;
    return a < b ? -1 : a > b ? 1 : 0;
  }
  const ea = textEncoder.encode(a);
  const eb = textEncoder.encode(b);
  if (ea.length !== eb.length) return ea.length - eb.length;
  return compareBytes(ea, eb);
}

function isAscii(value: string): boolean {
  for (let i = 0; i < value.length; i++) if (value.charCodeAt(i) >= 0x80) return false;
  return true;
}

function isPlainObject(value: object): boolean {
  const proto = Object.getPrototypeOf(value) as unknown;
  return proto === Object.prototype || proto === null;
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) if (a[i] !== b[i]) return a[i]! - b[i]!;
  return a.length - b.length;
}

function unencodable(reason: string): CborError {
  return new CborError('CBOR_UNENCODABLE', reason);
}
