// The entity store: Cedar's JSON entity format, checked strictly, with each entity's ancestry
// (the transitive closure of its parents) computed once at load so `in` is a set lookup.
import { CedarJsonError, checkKeys, isJsonObject, recordFromJsonObject, uidFromJson } from './cedar-json.js';
import type { CedarJsonErrorCode, CedarJsonOptions } from './cedar-json.js';
import { JsonError, formatJsonPath, jsonFromValue, parseJson } from './json.js';
import type { JsonErrorCode, JsonLimits, JsonPath, JsonValue } from './json.js';
import { CedarRecord } from './value.js';
import type { EntityUid } from './value.js';
import { ZtedgeError } from '../errors.js';

export type EntitiesErrorCode =
  | JsonErrorCode
  | CedarJsonErrorCode
  | 'ENTITIES_SHAPE'
  | 'ENTITIES_DUPLICATE'
  | 'ENTITIES_CYCLE'
  | 'ENTITIES_ACTION_PARENT'
  | 'ENTITIES_TOO_LARGE';

export class EntitiesError extends ZtedgeError<EntitiesErrorCode> {
  /** JSON path of the offending value, e.g. `$[3].attrs.owner`. */
  readonly path: string;
  readonly line: number | undefined;
  readonly column: number | undefined;

  constructor(code: EntitiesErrorCode, message: string, path: string, line?: number, column?: number) {
    super(code, message);
    this.path = path;
    this.line = line;
    this.column = column;
  }
}

export interface Entity {
  readonly uid: EntityUid;
  readonly attrs: CedarRecord;
  readonly parents: readonly EntityUid[];
  /** Keys of every entity this one is transitively `in` (itself excluded). */
  readonly ancestors: ReadonlySet<string>;
  readonly tags: CedarRecord;
}

export interface EntitiesOptions extends CedarJsonOptions, JsonLimits {
  /** Most entities accepted. */
  maxEntities?: number;
  /** Most (entity, ancestor) pairs accepted in total; bounds the closure's memory. */
  maxAncestry?: number;
}

const DEFAULT_MAX_ENTITIES = 200_000;
const DEFAULT_MAX_ANCESTRY = 2_000_000;
const NO_ANCESTORS: ReadonlySet<string> = new Set();

/** Cedar's action types: `Action` and `Namespace::Action`. */
export function isActionType(type: string): boolean {
  return type === 'Action' || type.endsWith('::Action');
}

function shapeError(detail: string, path: JsonPath): EntitiesError {
  return new EntitiesError('ENTITIES_SHAPE', `${detail} at ${formatJsonPath(path)}`, formatJsonPath(path));
}

interface RawEntity {
  uid: EntityUid;
  attrs: CedarRecord;
  parents: EntityUid[];
  tags: CedarRecord;
  index: number;
}

function readEntity(v: JsonValue, index: number, opts: EntitiesOptions): RawEntity {
  const path: Array<string | number> = [index];
  if (!isJsonObject(v)) throw shapeError('an entity must be an object', path);
  checkKeys(v, ['uid', 'attrs', 'parents'], ['tags'], path, 'an entity');
  path.push('uid');
  const uid = uidFromJson(v.get('uid')!, path);
  path.pop();
  path.push('attrs');
  const attrs = recordFromJsonObject(v.get('attrs')!, path, 'attrs', opts);
  path.pop();
  const parentsJson = v.get('parents')!;
  path.push('parents');
  if (!Array.isArray(parentsJson)) throw shapeError('parents must be an array', path);
  const parents: EntityUid[] = [];
  const seen = new Set<string>();
  for (let i = 0; i < parentsJson.length; i++) {
    path.push(i);
    const parent = uidFromJson(parentsJson[i]!, path);
    if (isActionType(uid.type) && !isActionType(parent.type)) {
      throw new EntitiesError(
        'ENTITIES_ACTION_PARENT',
        `action ${uid.key} has a non-action parent ${parent.key} at ${formatJsonPath(path)}`,
        formatJsonPath(path),
      );
    }
    path.pop();
    if (!seen.has(parent.key)) {
      seen.add(parent.key);
      parents.push(parent);
    }
  }
  path.pop();
  let tags = CedarRecord.EMPTY;
  const tagsJson = v.get('tags');
  if (tagsJson !== undefined) {
    path.push('tags');
    tags = recordFromJsonObject(tagsJson, path, 'tags', opts);
  }
  return { uid, attrs, parents, tags, index };
}

/**
 * Computes every entity's ancestor keys by an iterative depth-first walk (no recursion, so a
 * long parent chain cannot overflow the stack). Cedar refuses cyclic hierarchies; so do we.
 */
function computeAncestry(raw: ReadonlyMap<string, RawEntity>, maxAncestry: number): Map<string, ReadonlySet<string>> {
  const done = new Map<string, ReadonlySet<string>>();
  const onPath = new Set<string>();
  let total = 0;

  for (const root of raw.values()) {
    if (done.has(root.uid.key)) continue;
    const stack: Array<{ entity: RawEntity; next: number }> = [{ entity: root, next: 0 }];
    onPath.add(root.uid.key);
    while (stack.length > 0) {
      const frame = stack[stack.length - 1]!;
      const { entity } = frame;
      if (frame.next < entity.parents.length) {
        const parent = entity.parents[frame.next++]!;
        const parentEntity = raw.get(parent.key);
        if (parentEntity === undefined || done.has(parent.key)) continue;
        if (onPath.has(parent.key)) {
          const path = formatJsonPath([entity.index, 'parents', frame.next - 1]);
          throw new EntitiesError(
            'ENTITIES_CYCLE',
            `the entity hierarchy has a cycle through ${parent.key} at ${path}`,
            path,
          );
        }
        onPath.add(parent.key);
        stack.push({ entity: parentEntity, next: 0 });
        continue;
      }
      stack.pop();
      onPath.delete(entity.uid.key);
      if (entity.parents.length === 0) {
        done.set(entity.uid.key, NO_ANCESTORS);
        continue;
      }
      const ancestors = new Set<string>();
      for (const parent of entity.parents) {
        ancestors.add(parent.key);
        const above = done.get(parent.key);
        if (above !== undefined) for (const k of above) ancestors.add(k);
      }
      total += ancestors.size;
      if (total > maxAncestry) {
        throw new EntitiesError(
          'ENTITIES_TOO_LARGE',
          `the entity hierarchy has more than ${maxAncestry} ancestor relations`,
          formatJsonPath([]),
        );
      }
      done.set(entity.uid.key, ancestors);
    }
  }
  return done;
}

function wrap(e: unknown): never {
  if (e instanceof JsonError) throw new EntitiesError(e.code, e.message, e.path, e.line, e.column);
  if (e instanceof CedarJsonError) {
    throw new EntitiesError(e.code === 'CEDAR_JSON_SHAPE' ? 'ENTITIES_SHAPE' : e.code, e.message, e.path);
  }
  throw e;
}

export class Entities {
  static readonly #EMPTY = new Entities(new Map());
  readonly #byKey: ReadonlyMap<string, Entity>;

  private constructor(byKey: ReadonlyMap<string, Entity>) {
    this.#byKey = byKey;
  }

  static empty(): Entities {
    return Entities.#EMPTY;
  }

  /**
   * Reads Cedar's entity JSON: text (read exactly, big integers included) or an already
   * parsed value (plain objects, arrays, Maps; numbers must be safe integers or bigint).
   * Throws EntitiesError with a stable code and the JSON path of the problem.
   */
  static fromJson(input: string | unknown, opts: EntitiesOptions = {}): Entities {
    try {
      const json = typeof input === 'string' ? parseJson(input, opts) : jsonFromValue(input, opts);
      return Entities.#fromJsonValue(json, opts);
    } catch (e) {
      return wrap(e);
    }
  }

  static #fromJsonValue(json: JsonValue, opts: EntitiesOptions): Entities {
    if (!Array.isArray(json)) throw shapeError('entities must be an array', []);
    const maxEntities = opts.maxEntities ?? DEFAULT_MAX_ENTITIES;
    if (json.length > maxEntities) {
      throw new EntitiesError('ENTITIES_TOO_LARGE', `more than ${maxEntities} entities`, formatJsonPath([]));
    }
    const raw = new Map<string, RawEntity>();
    for (let i = 0; i < json.length; i++) {
      const entity = readEntity(json[i]!, i, opts);
      const earlier = raw.get(entity.uid.key);
      if (earlier !== undefined) {
        const path = formatJsonPath([i, 'uid']);
        throw new EntitiesError(
          'ENTITIES_DUPLICATE',
          `duplicate entity ${entity.uid.key} at ${path} (first at ${formatJsonPath([earlier.index])})`,
          path,
        );
      }
      raw.set(entity.uid.key, entity);
    }
    const ancestry = computeAncestry(raw, opts.maxAncestry ?? DEFAULT_MAX_ANCESTRY);
    const byKey = new Map<string, Entity>();
    for (const [key, r] of raw) {
      byKey.set(key, Object.freeze({ uid: r.uid, attrs: r.attrs, parents: r.parents, ancestors: ancestry.get(key)!, tags: r.tags }));
    }
    return new Entities(byKey);
  }

  get size(): number {
    return this.#byKey.size;
  }

  get(uid: EntityUid): Entity | undefined {
    return this.#byKey.get(uid.key);
  }

  /** Cedar `a in b` for entities: reflexive, transitive; an unknown entity is only in itself. */
  isIn(a: EntityUid, b: EntityUid): boolean {
    if (a.key === b.key) return true;
    const entity = this.#byKey.get(a.key);
    return entity !== undefined && entity.ancestors.has(b.key);
  }

  /** Cedar `a in [g1, g2, ...]` for a fixed group, given by keys. */
  isInAny(a: EntityUid, groupKeys: ReadonlySet<string>): boolean {
    if (groupKeys.has(a.key)) return true;
    const ancestors = this.ancestorsOf(a);
    if (ancestors.size <= groupKeys.size) {
      for (const k of ancestors) if (groupKeys.has(k)) return true;
    } else {
      for (const k of groupKeys) if (ancestors.has(k)) return true;
    }
    return false;
  }

  /** Ancestor keys of `uid` (empty when it is not in the store). */
  ancestorsOf(uid: EntityUid): ReadonlySet<string> {
    return this.#byKey.get(uid.key)?.ancestors ?? NO_ANCESTORS;
  }
}
