// The entity store: Cedar's JSON entity format read strictly and exactly, ancestry computed at
// load (transitive, cycle-refusing), and every malformed input a typed EntitiesError.
import { readFileSync } from 'node:fs';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CedarRecord, CedarSet, Decimal, Entities, EntitiesError, EntityUid, IpAddr, valueKey } from '../../src/policy/index.js';
import type { EntitiesOptions, Value } from '../../src/policy/index.js';

const sampleEntities = readFileSync(new URL('../vectors/cedar/sample-data/sandbox_b/entities.json', import.meta.url), 'utf8');

const u = (type: string, id: string) => new EntityUid(type, id);
const one = (attrs: unknown, extra: Record<string, unknown> = {}) => [{ uid: { type: 'User', id: 'a' }, attrs, parents: [], ...extra }];
const attr = (entities: Entities, name: string): Value | undefined => entities.get(u('User', 'a'))!.attrs.get(name);

function entitiesError(input: unknown, opts?: EntitiesOptions): EntitiesError {
  try {
    Entities.fromJson(input, opts);
  } catch (e) {
    if (e instanceof EntitiesError) return e;
    throw e;
  }
  throw new Error('expected an EntitiesError');
}

describe('reading entities', () => {
  it("reads Cedar's sample data; {type, id} attributes become entities only when asked", () => {
    const schemaless = Entities.fromJson(sampleEntities);
    const photo = u('Photo', 'vacation.jpg');
    expect(schemaless.get(photo)!.attrs.get('account')).toBeInstanceOf(CedarRecord);
    const implicit = Entities.fromJson(sampleEntities, { implicitEntityRefs: true });
    expect(implicit.size).toBe(schemaless.size);
    expect(implicit.get(photo)!.attrs.get('account')).toEqual(u('Account', 'alice'));
    expect(implicit.isIn(photo, u('Account', 'alice'))).toBe(true);
    expect(implicit.isIn(u('User', 'alice'), u('UserGroup', 'AVTeam'))).toBe(true);
  });

  it('keeps a {type, id} object whose type is not a type name a record, even when asked', () => {
    const e = Entities.fromJson(one({ m: { type: 'image/png', id: '1' } }), { implicitEntityRefs: true });
    expect(attr(e, 'm')).toBeInstanceOf(CedarRecord);
  });

  it('reads Longs exactly at the i64 edges and refuses anything beyond', () => {
    const text = (n: string) => `[{"uid": {"type": "User", "id": "a"}, "attrs": {"n": ${n}}, "parents": []}]`;
    expect(attr(Entities.fromJson(text('9223372036854775807')), 'n')).toBe(9223372036854775807n);
    expect(attr(Entities.fromJson(text('-9223372036854775808')), 'n')).toBe(-9223372036854775808n);
    expect(attr(Entities.fromJson(text('9007199254740993')), 'n')).toBe(9007199254740993n);
    for (const bad of ['9223372036854775808', '-9223372036854775809', '1.5', '1e3', '1' + '0'.repeat(40)]) {
      const e = entitiesError(text(bad));
      expect(e.code, bad).toBe('CEDAR_JSON_NUMBER');
      expect(e.path).toBe('$[0].attrs.n');
    }
  });

  it('reads the __entity and __extn escapes, sets and nested records', () => {
    const e = Entities.fromJson(
      one({
        owner: { __entity: { type: 'Robot::Cell', id: 'c"1' } },
        ip: { __extn: { fn: 'ip', arg: '10.0.0.0/8' } },
        dec: { __extn: { fn: 'decimal', args: ['1.50'] } },
        later: { __extn: { fn: 'offset', args: [{ __extn: { fn: 'datetime', arg: '2024-01-01' } }, { __extn: { fn: 'duration', arg: '1d' } }] } },
        tags: ['a', 'a', 'b'],
        nested: { deep: { flag: true } },
        notAnEscape: { __entity: { type: 'User', id: 'b' }, extra: 1 },
      }),
    );
    expect(attr(e, 'owner')).toEqual(u('Robot::Cell', 'c"1'));
    expect(valueKey(attr(e, 'ip')!)).toBe(valueKey(IpAddr.parse('10.0.0.0/8')));
    expect(valueKey(attr(e, 'dec')!)).toBe(valueKey(Decimal.parse('1.5')));
    expect(String(attr(e, 'later'))).toContain('2024-01-02');
    expect((attr(e, 'tags') as CedarSet).size).toBe(2);
    expect(((attr(e, 'nested') as CedarRecord).get('deep') as CedarRecord).get('flag')).toBe(true);
    expect([...(attr(e, 'notAnEscape') as CedarRecord).keys()]).toEqual(['__entity', 'extra']);
  });

  it('accepts uids in the escaped form and removes repeated parents', () => {
    const e = Entities.fromJson([
      { uid: { __entity: { type: 'User', id: 'a' } }, attrs: {}, parents: [{ __entity: { type: 'G', id: 'g' } }, { type: 'G', id: 'g' }] },
    ]);
    expect(e.get(u('User', 'a'))!.parents).toEqual([u('G', 'g')]);
  });

  it('reads tags apart from attributes', () => {
    const e = Entities.fromJson(one({ a: 1 }, { tags: { a: 'tag', t: [1] } }));
    const entity = e.get(u('User', 'a'))!;
    expect(entity.attrs.get('a')).toBe(1n);
    expect(entity.tags.get('a')).toBe('tag');
    expect(entity.tags.has('t')).toBe(true);
    expect(Entities.fromJson(one({})).get(u('User', 'a'))!.tags.size).toBe(0);
  });

  it('takes text, plain values and Maps alike', () => {
    const fromText = Entities.fromJson('[{"uid": {"type": "User", "id": "a"}, "attrs": {"n": 1}, "parents": []}]');
    const fromValue = Entities.fromJson(one({ n: 1 }));
    const fromMap = Entities.fromJson([new Map<string, unknown>([['uid', { type: 'User', id: 'a' }], ['attrs', new Map([['n', 1n]])], ['parents', []]])]);
    for (const e of [fromText, fromValue, fromMap]) expect(attr(e, 'n')).toBe(1n);
    expect(Entities.empty().size).toBe(0);
    expect(Entities.fromJson([]).size).toBe(0);
  });
});

describe('entity ancestry', () => {
  const chain = (n: number) =>
    Array.from({ length: n }, (_, i) => ({ uid: { type: 'N', id: `${i}` }, attrs: {}, parents: i + 1 < n ? [{ type: 'N', id: `${i + 1}` }] : [] }));

  it('is the transitive closure of parents, through diamonds and unknown parents', () => {
    const e = Entities.fromJson([
      { uid: { type: 'U', id: 'a' }, attrs: {}, parents: [{ type: 'G', id: 'left' }, { type: 'G', id: 'right' }] },
      { uid: { type: 'G', id: 'left' }, attrs: {}, parents: [{ type: 'G', id: 'top' }] },
      { uid: { type: 'G', id: 'right' }, attrs: {}, parents: [{ type: 'G', id: 'top' }, { type: 'G', id: 'elsewhere' }] },
      { uid: { type: 'G', id: 'top' }, attrs: {}, parents: [] },
    ]);
    expect([...e.ancestorsOf(u('U', 'a'))].sort()).toEqual(['G::"elsewhere"', 'G::"left"', 'G::"right"', 'G::"top"']);
    expect(e.isIn(u('U', 'a'), u('G', 'top'))).toBe(true);
    expect(e.isIn(u('U', 'a'), u('G', 'elsewhere'))).toBe(true);
    expect(e.isIn(u('G', 'top'), u('U', 'a'))).toBe(false);
    expect(e.isIn(u('G', 'elsewhere'), u('G', 'elsewhere'))).toBe(true);
    expect(e.isIn(u('G', 'elsewhere'), u('G', 'top'))).toBe(false);
    expect(e.ancestorsOf(u('X', 'unknown')).size).toBe(0);
  });

  it('handles long chains without recursion, in any order', () => {
    const n = 1500;
    const entities = chain(n).reverse();
    const e = Entities.fromJson(entities);
    expect(e.isIn(u('N', '0'), u('N', `${n - 1}`))).toBe(true);
    expect(e.ancestorsOf(u('N', '0')).size).toBe(n - 1);
    expect(e.isIn(u('N', `${n - 1}`), u('N', '0'))).toBe(false);
  });

  it('refuses cycles, as Cedar does', () => {
    expect(entitiesError([{ uid: { type: 'U', id: 'a' }, attrs: {}, parents: [{ type: 'U', id: 'a' }] }]).code).toBe('ENTITIES_CYCLE');
    const loop = chain(5);
    loop[4]!.parents = [{ type: 'N', id: '1' }];
    const e = entitiesError(loop);
    expect(e.code).toBe('ENTITIES_CYCLE');
    expect(e.path).toMatch(/^\$\[\d\]\.parents\[0\]$/);
  });

  it('bounds the size of the closure', () => {
    expect(entitiesError(chain(200), { maxAncestry: 1000 }).code).toBe('ENTITIES_TOO_LARGE');
    expect(entitiesError(chain(20), { maxEntities: 10 }).code).toBe('ENTITIES_TOO_LARGE');
  });
});

describe('malformed entity data', () => {
  const uid = { type: 'User', id: 'a' };
  const cases: Array<[string, unknown, string, string]> = [
    ['not an array', { uid }, 'ENTITIES_SHAPE', '$'],
    ['entity not an object', [1], 'ENTITIES_SHAPE', '$[0]'],
    ['missing attrs', [{ uid, parents: [] }], 'ENTITIES_SHAPE', '$[0]'],
    ['missing parents', [{ uid, attrs: {} }], 'ENTITIES_SHAPE', '$[0]'],
    ['missing uid', [{ attrs: {}, parents: [] }], 'ENTITIES_SHAPE', '$[0]'],
    ['unknown field', [{ uid, attrs: {}, parents: [], parent: [] }], 'ENTITIES_SHAPE', '$[0].parent'],
    ['attrs not an object', [{ uid, attrs: [], parents: [] }], 'ENTITIES_SHAPE', '$[0].attrs'],
    ['tags null', [{ uid, attrs: {}, parents: [], tags: null }], 'ENTITIES_SHAPE', '$[0].tags'],
    ['parents not an array', [{ uid, attrs: {}, parents: {} }], 'ENTITIES_SHAPE', '$[0].parents'],
    ['parent as a string', [{ uid, attrs: {}, parents: ['User::"b"'] }], 'CEDAR_JSON_UID', '$[0].parents[0]'],
    ['numeric id', [{ uid: { type: 'User', id: 1 }, attrs: {}, parents: [] }], 'CEDAR_JSON_UID', '$[0].uid.id'],
    ['spaced type', [{ uid: { type: 'A :: B', id: 'a' }, attrs: {}, parents: [] }], 'CEDAR_JSON_UID', '$[0].uid.type'],
    ['reserved type', [{ uid: { type: 'if', id: 'a' }, attrs: {}, parents: [] }], 'CEDAR_JSON_UID', '$[0].uid.type'],
    ['__cedar type', [{ uid: { type: '__cedar::X', id: 'a' }, attrs: {}, parents: [] }], 'CEDAR_JSON_UID', '$[0].uid.type'],
    ['digit type', [{ uid: { type: '1A', id: 'a' }, attrs: {}, parents: [] }], 'CEDAR_JSON_UID', '$[0].uid.type'],
    ['extra uid field', [{ uid: { ...uid, x: 1 }, attrs: {}, parents: [] }], 'ENTITIES_SHAPE', '$[0].uid.x'],
    ['null attribute', one({ x: null }), 'CEDAR_JSON_NULL', '$[0].attrs.x'],
    ['__expr escape', one({ x: { __expr: '1' } }), 'CEDAR_JSON_EXPR', '$[0].attrs.x'],
    ['unknown extension', one({ x: { __extn: { fn: 'foo', arg: '1' } } }), 'CEDAR_JSON_EXTENSION', '$[0].attrs.x.__extn.fn'],
    ['bad extension literal', one({ x: { __extn: { fn: 'ip', arg: 'zzz' } } }), 'CEDAR_JSON_EXTENSION', '$[0].attrs.x.__extn'],
    ['extension arg of wrong type', one({ x: { __extn: { fn: 'ip', arg: 1 } } }), 'CEDAR_JSON_EXTENSION', '$[0].attrs.x.__extn'],
    ['extension without arg', one({ x: { __extn: { fn: 'ip' } } }), 'ENTITIES_SHAPE', '$[0].attrs.x.__extn'],
    ['extension args not a list', one({ x: { __extn: { fn: 'ip', args: '1.1.1.1' } } }), 'CEDAR_JSON_EXTENSION', '$[0].attrs.x.__extn.args'],
    ['bad __entity', one({ x: { __entity: 'User::"b"' } }), 'CEDAR_JSON_UID', '$[0].attrs.x.__entity'],
    ['float in a set', one({ x: [1, 2.5] }), 'CEDAR_JSON_NUMBER', '$[0].attrs.x[1]'],
    ['non-action parent of an action', [{ uid: { type: 'Action', id: 'a' }, attrs: {}, parents: [uid] }], 'ENTITIES_ACTION_PARENT', '$[0].parents[0]'],
    ['unsafe JavaScript number', one({ n: 2 ** 63 }), 'JSON_UNSAFE_NUMBER', '$[0].attrs.n'],
  ];

  it.each(cases)('%s', (_name, input, code, path) => {
    const e = entitiesError(input);
    expect(e.code).toBe(code);
    expect(e.path).toBe(path);
    expect(e.message).toContain(path);
  });

  it('refuses duplicate uids, pointing at both', () => {
    const e = entitiesError([...one({}), ...one({})]);
    expect(e.code).toBe('ENTITIES_DUPLICATE');
    expect(e.path).toBe('$[1].uid');
    expect(e.message).toContain('$[0]');
  });

  it('allows namespaced action types with action parents', () => {
    const e = Entities.fromJson([{ uid: { type: 'Robot::Action', id: 'move' }, attrs: {}, parents: [{ type: 'Action', id: 'all' }] }]);
    expect(e.isIn(u('Robot::Action', 'move'), u('Action', 'all'))).toBe(true);
  });

  it('reports JSON syntax errors with line and column', () => {
    const e = entitiesError('[\n  {"uid": {"type": "User", "id": "a"},\n   "attrs": {"n": 01}, "parents": []}\n]');
    expect(e.code).toBe('JSON_SYNTAX');
    expect([e.line, e.column]).toEqual([3, 19]);
    expect(e.path).toBe('$[0].attrs.n');
    expect(entitiesError('[{"uid": {"type": "U", "id": "a", "id": "b"}, "attrs": {}, "parents": []}]').code).toBe('JSON_DUPLICATE_KEY');
  });
});

describe('untrusted entity JSON', () => {
  const valid = JSON.stringify([
    { uid: { type: 'User', id: 'a' }, attrs: { n: 9223372036854775807, s: 'x', ip: { __extn: { fn: 'ip', arg: '10.0.0.1' } } }, parents: [{ type: 'G', id: 'g' }], tags: { t: [true] } },
    { uid: { __entity: { type: 'G', id: 'g' } }, attrs: { owner: { __entity: { type: 'User', id: 'a' } } }, parents: [] },
  ]);
  type Mutation = { kind: 'delete'; at: number; length: number } | { kind: 'insert' | 'replace'; at: number; text: string };
  const mutation: fc.Arbitrary<Mutation> = fc.oneof(
    fc.record({ kind: fc.constant('delete' as const), at: fc.nat(), length: fc.integer({ min: 1, max: 8 }) }),
    fc.record({ kind: fc.constant('insert' as const), at: fc.nat(), text: fc.string({ maxLength: 6, unit: fc.constantFrom(...'{}[]":,0-9e.tn\\') }) }),
    fc.record({
      kind: fc.constant('replace' as const),
      at: fc.nat(),
      text: fc.constantFrom('null', '1.5', '[]', '{}', '"x"', '-1', '99999999999999999999', '{"__extn":{"fn":"ip","arg":"x"}}'),
    }),
  );
  const mutate = (text: string, ms: Mutation[]) =>
    ms.reduce((t, m) => {
      const at = t.length === 0 ? 0 : m.at % t.length;
      if (m.kind === 'delete') return t.slice(0, at) + t.slice(at + m.length);
      if (m.kind === 'insert') return t.slice(0, at) + m.text + t.slice(at);
      return t.slice(0, at) + m.text + t.slice(at + m.text.length);
    }, text);

  it('yields entities or an EntitiesError for mutated text, nothing else', () => {
    let loaded = 0;
    fc.assert(
      fc.property(fc.array(mutation, { minLength: 1, maxLength: 3 }), (ms) => {
        try {
          Entities.fromJson(mutate(valid, ms));
          loaded++;
        } catch (e) {
          expect(e).toBeInstanceOf(EntitiesError);
          expect((e as EntitiesError).code).toMatch(/^[A-Z_]+$/);
        }
      }),
      { numRuns: 3000 },
    );
    expect(loaded).toBeGreaterThan(0);
  });

  it('yields entities or an EntitiesError for arbitrary parsed values', () => {
    const anything = fc.anything({ maxDepth: 4, withBigInt: true, withMap: true, withNullPrototype: true, withObjectString: true });
    const entityLike = fc.record({ uid: fc.oneof(anything, fc.record({ type: fc.string(), id: fc.string() })), attrs: anything, parents: fc.array(anything, { maxLength: 2 }) }, { requiredKeys: [] });
    fc.assert(
      fc.property(fc.oneof(anything, fc.array(entityLike, { maxLength: 3 })), (input) => {
        try {
          Entities.fromJson(input);
        } catch (e) {
          expect(e).toBeInstanceOf(EntitiesError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
