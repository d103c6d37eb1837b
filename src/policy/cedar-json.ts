// Cedar's JSON value format (entity attributes, tags, request context): JSON values map to
// Cedar values, with the escapes `{"__entity": {type, id}}` and `{"__extn": {fn, arg | args}}`.
// Numbers must be integers in i64; `null` and the retired `__expr` escape are refused.
import { EvalError } from './eval-error.js';
import { applyExtension, extensionFunction } from './extensions.js';
import { JsonNumber, formatJsonPath } from './json.js';
import type { JsonObject, JsonPath, JsonValue } from './json.js';
import { CedarRecord, CedarSet, EntityUid, I64_MAX, I64_MIN } from './value.js';
import type { Value } from './value.js';
import { ZtedgeError } from '../errors.js';

export type CedarJsonErrorCode =
  | 'CEDAR_JSON_NULL'
  | 'CEDAR_JSON_NUMBER'
  | 'CEDAR_JSON_SHAPE'
  | 'CEDAR_JSON_UID'
  | 'CEDAR_JSON_EXTENSION'
  | 'CEDAR_JSON_EXPR';

export class CedarJsonError extends ZtedgeError<CedarJsonErrorCode> {
  readonly path: string;

  constructor(code: CedarJsonErrorCode, detail: string, path: JsonPath) {
    super(code, `${detail} at ${formatJsonPath(path)}`);
    this.path = formatJsonPath(path);
  }
}

export interface CedarJsonOptions {
  /**
   * Read an object with exactly the string fields `type` and `id` as an entity reference.
   * Cedar does so only where a schema says an entity is expected; without a schema it is a
   * record. Off by default (Cedar's schemaless reading); turn it on to read data written for
   * schema-based parsing, such as Cedar's own sample entities.
   */
  implicitEntityRefs?: boolean;
}

const RESERVED = new Set(['true', 'false', 'if', 'then', 'else', 'in', 'is', 'like', 'has', '__cedar']);
const IDENT = /^[A-Za-z_][A-Za-z0-9_]*$/;

// Type names repeat across entities and requests: remember verdicts, within a bound.
const typeNameVerdicts = new Map<string, boolean>();
const MAX_REMEMBERED_TYPE_NAMES = 4096;
const MAX_TYPE_NAME_LENGTH = 1024;

function checkTypeName(name: string): boolean {
  for (const part of name.split('::')) {
    if (!IDENT.test(part) || RESERVED.has(part)) return false;
  }
  return true;
}

/** A normalized Cedar entity type name: `Ident(::Ident)*`, no reserved words, no spaces. */
export function isEntityTypeName(name: string): boolean {
  if (name.length === 0 || name.length > MAX_TYPE_NAME_LENGTH) return false;
  let verdict = typeNameVerdicts.get(name);
  if (verdict === undefined) {
    verdict = checkTypeName(name);
    if (typeNameVerdicts.size >= MAX_REMEMBERED_TYPE_NAMES) typeNameVerdicts.clear();
    typeNameVerdicts.set(name, verdict);
  }
  return verdict;
}

export function isJsonObject(v: JsonValue): v is JsonObject {
  return v instanceof Map;
}

function describe(v: JsonValue): string {
  if (v === null) return 'null';
  if (Array.isArray(v)) return 'an array';
  if (v instanceof Map) return 'an object';
  if (v instanceof JsonNumber || typeof v === 'bigint') return 'a number';
  return `a ${typeof v}`;
}

/** Fails unless `obj` has only keys from `allowed` and all of `required`. */
export function checkKeys(
  obj: JsonObject,
  required: readonly string[],
  optional: readonly string[],
  path: Array<string | number>,
  what: string,
): void {
  for (const k of required) {
    if (!obj.has(k)) throw new CedarJsonError('CEDAR_JSON_SHAPE', `${what} is missing "${k}"`, path);
  }
  for (const k of obj.keys()) {
    if (!required.includes(k) && !optional.includes(k)) {
      path.push(k);
      throw new CedarJsonError('CEDAR_JSON_SHAPE', `unexpected field in ${what}`, path);
    }
  }
}

function typeAndId(obj: JsonObject, path: Array<string | number>): EntityUid {
  checkKeys(obj, ['type', 'id'], [], path, 'an entity reference');
  const type = obj.get('type')!;
  const id = obj.get('id')!;
  if (typeof type !== 'string' || !isEntityTypeName(type)) {
    path.push('type');
    throw new CedarJsonError('CEDAR_JSON_UID', 'entity type must be a normalized Cedar type name', path);
  }
  if (typeof id !== 'string') {
    path.push('id');
    throw new CedarJsonError('CEDAR_JSON_UID', `entity id must be a string, not ${describe(id)}`, path);
  }
  return new EntityUid(type, id);
}

/** An entity uid written `{"type": T, "id": I}` or `{"__entity": {"type": T, "id": I}}`. */
export function uidFromJson(v: JsonValue, path: Array<string | number>): EntityUid {
  if (!isJsonObject(v)) {
    throw new CedarJsonError('CEDAR_JSON_UID', `expected an entity reference object, not ${describe(v)}`, path);
  }
  if (v.size === 1 && v.has('__entity')) {
    const inner = v.get('__entity')!;
    path.push('__entity');
    if (!isJsonObject(inner)) {
      throw new CedarJsonError('CEDAR_JSON_UID', `expected {"type", "id"}, not ${describe(inner)}`, path);
    }
    const uid = typeAndId(inner, path);
    path.pop();
    return uid;
  }
  return typeAndId(v, path);
}

function extensionFromJson(v: JsonValue, path: Array<string | number>, opts: CedarJsonOptions): Value {
  path.push('__extn');
  if (!isJsonObject(v)) {
    throw new CedarJsonError('CEDAR_JSON_EXTENSION', `expected {"fn", "arg"}, not ${describe(v)}`, path);
  }
  const hasArgs = v.has('args');
  checkKeys(v, ['fn', hasArgs ? 'args' : 'arg'], [], path, 'an extension value');
  const name = v.get('fn')!;
  const fn = typeof name === 'string' ? extensionFunction(name) : undefined;
  if (fn === undefined) {
    path.push('fn');
    throw new CedarJsonError('CEDAR_JSON_EXTENSION', `unknown extension function ${JSON.stringify(name)}`, path);
  }
  let args: Value[];
  if (hasArgs) {
    const list = v.get('args')!;
    path.push('args');
    if (!Array.isArray(list)) throw new CedarJsonError('CEDAR_JSON_EXTENSION', 'args must be an array', path);
    args = list.map((a, i) => {
      path.push(i);
      const value = valueFromJson(a, path, opts);
      path.pop();
      return value;
    });
    path.pop();
  } else {
    path.push('arg');
    args = [valueFromJson(v.get('arg')!, path, opts)];
    path.pop();
  }
  let result: Value;
  try {
    result = applyExtension(fn, args);
  } catch (e) {
    if (e instanceof EvalError) throw new CedarJsonError('CEDAR_JSON_EXTENSION', e.message, path);
    throw e;
  }
  path.pop();
  return result;
}

function recordFromJson(obj: JsonObject, path: Array<string | number>, opts: CedarJsonOptions): CedarRecord {
  const attrs = new Map<string, Value>();
  for (const [k, x] of obj) {
    path.push(k);
    attrs.set(k, valueFromJson(x, path, opts));
    path.pop();
  }
  return new CedarRecord(attrs);
}

/** A Cedar value from its JSON form. `path` locates `v` for errors (restored on success). */
export function valueFromJson(v: JsonValue, path: Array<string | number>, opts: CedarJsonOptions = {}): Value {
  switch (typeof v) {
    case 'boolean':
    case 'string':
      return v;
    case 'bigint':
      if (v < I64_MIN || v > I64_MAX) {
        throw new CedarJsonError('CEDAR_JSON_NUMBER', `integer ${v} is outside the Long range`, path);
      }
      return v;
  }
  if (v === null) throw new CedarJsonError('CEDAR_JSON_NULL', 'null is not a Cedar value', path);
  if (v instanceof JsonNumber) {
    throw new CedarJsonError('CEDAR_JSON_NUMBER', `${v.text} is not an integer in the Long range`, path);
  }
  if (Array.isArray(v)) {
    const elements: Value[] = [];
    for (let i = 0; i < v.length; i++) {
      path.push(i);
      elements.push(valueFromJson(v[i]!, path, opts));
      path.pop();
    }
    return CedarSet.of(elements);
  }
  if (v.size === 1) {
    const [key, inner] = v.entries().next().value as [string, JsonValue];
    if (key === '__entity') return uidFromJson(v, path);
    if (key === '__extn') return extensionFromJson(inner, path, opts);
    if (key === '__expr') {
      throw new CedarJsonError('CEDAR_JSON_EXPR', 'the __expr escape is not supported; use __entity or __extn', path);
    }
  }
  if (
    opts.implicitEntityRefs &&
    v.size === 2 &&
    typeof v.get('type') === 'string' &&
    typeof v.get('id') === 'string' &&
    isEntityTypeName(v.get('type') as string)
  ) {
    return typeAndId(v, path);
  }
  return recordFromJson(v, path, opts);
}

/** A Cedar record from a JSON object (entity attributes, tags, context). */
export function recordFromJsonObject(
  v: JsonValue,
  path: Array<string | number>,
  what: string,
  opts: CedarJsonOptions = {},
): CedarRecord {
  if (!isJsonObject(v)) throw new CedarJsonError('CEDAR_JSON_SHAPE', `${what} must be an object, not ${describe(v)}`, path);
  return recordFromJson(v, path, opts);
}
