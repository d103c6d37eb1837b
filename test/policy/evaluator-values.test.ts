// Runtime values: uid keys and display, set deduplication, Cedar equality, canonical keys.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  CedarRecord,
  CedarSet,
  Decimal,
  Duration,
  EntityUid,
  IpAddr,
  displayValue,
  quoteString,
  typeName,
  valueEquals,
  valueKey,
} from '../../src/policy/index.js';
import type { Value } from '../../src/policy/index.js';

describe('EntityUid', () => {
  it('has a Cedar display form as its key, escaping what needs it', () => {
    expect(new EntityUid('User', 'alice').key).toBe('User::"alice"');
    expect(new EntityUid('Robot::Arm', 'déjà "vu"').key).toBe('Robot::Arm::"déjà \\"vu\\""');
    expect(new EntityUid('User', 'a\\b\nc\u0001').key).toBe('User::"a\\\\b\\nc\\u{1}"');
    expect(String(new EntityUid('User', ''))).toBe('User::""');
  });

  it('keys distinct uids apart, including ids that look like escapes', () => {
    const ids = ['a"b', 'a\\"b', 'a\\b', 'a\nb', 'a\\nb', 'a::"b', ''];
    const keys = new Set(ids.map((id) => new EntityUid('T', id).key));
    expect(keys.size).toBe(ids.length);
    expect(new EntityUid('A::B', 'c').key).not.toBe(new EntityUid('A', 'B::"c"').key);
  });

  it('is equal by type and id', () => {
    expect(new EntityUid('User', 'a').equals(new EntityUid('User', 'a'))).toBe(true);
    expect(new EntityUid('User', 'a').equals(new EntityUid('Group', 'a'))).toBe(false);
  });
});

describe('CedarSet', () => {
  it('deduplicates by Cedar equality and ignores order', () => {
    const s = CedarSet.of([1n, 1n, 'a', Decimal.parse('1.0'), Decimal.parse('1.0000'), IpAddr.parse('10.0.0.1'), IpAddr.parse('10.0.0.1/32')]);
    expect(s.size).toBe(4);
    expect(valueEquals(CedarSet.of([1n, 2n]), CedarSet.of([2n, 1n, 2n]))).toBe(true);
    expect(CedarSet.of([])).toBe(CedarSet.EMPTY);
  });

  it('answers membership, containsAll and containsAny', () => {
    const s = CedarSet.of([1n, 'x', CedarSet.of([true])]);
    expect(s.has(CedarSet.of([true, true]))).toBe(true);
    expect(s.has('1')).toBe(false);
    expect(s.hasAll(CedarSet.of([1n, 'x']))).toBe(true);
    expect(s.hasAll(CedarSet.of([1n, 'y']))).toBe(false);
    expect(s.hasAny(CedarSet.of(['y', 1n]))).toBe(true);
    expect(CedarSet.of([1n, 2n, 3n]).hasAny(CedarSet.of(['z']))).toBe(false);
  });

  it('knows whether it holds only entities', () => {
    expect(CedarSet.of([new EntityUid('G', 'a')]).entityOnly).toBe(true);
    expect(CedarSet.of([new EntityUid('G', 'a'), 'a']).entityOnly).toBe(false);
    expect(CedarSet.EMPTY.entityOnly).toBe(true);
  });
});

describe('valueEquals and valueKey', () => {
  const samples: Value[] = [
    true,
    false,
    0n,
    1n,
    -1n,
    '',
    '1',
    'true',
    'e:x',
    new EntityUid('T', 'x'),
    new EntityUid('T', 'y'),
    CedarSet.EMPTY,
    CedarSet.of(['a', 'b']),
    CedarSet.of(['a,b']),
    CedarSet.of(['["a","b"]']),
    CedarRecord.EMPTY,
    CedarRecord.fromEntries([['a', 1n]]),
    CedarRecord.fromEntries([['a', '1']]),
    CedarRecord.fromEntries([['a', 1n], ['b', 2n]]),
    CedarRecord.fromEntries([['a,b', 1n]]),
    Decimal.parse('1.0'),
    Decimal.parse('0.0001'),
    IpAddr.parse('10.0.0.1'),
    IpAddr.parse('::1'),
    Duration.parse('1ms'),
    Duration.parse('0ms'),
  ];

  it('tells distinct values apart and never fails on mixed types', () => {
    for (let i = 0; i < samples.length; i++) {
      for (let j = 0; j < samples.length; j++) {
        expect(valueEquals(samples[i]!, samples[j]!), `${displayValue(samples[i]!)} vs ${displayValue(samples[j]!)}`).toBe(i === j);
        expect(valueKey(samples[i]!) === valueKey(samples[j]!)).toBe(i === j);
      }
    }
  });

  it('compares records regardless of attribute order', () => {
    const a = CedarRecord.fromEntries([['x', 1n], ['y', CedarSet.of([1n, 2n])]]);
    const b = CedarRecord.fromEntries([['y', CedarSet.of([2n, 1n])], ['x', 1n]]);
    expect(valueEquals(a, b)).toBe(true);
  });

  it('agrees with structural equality on random nested string/Long data', () => {
    const leaf = fc.oneof(fc.string({ maxLength: 3 }), fc.bigInt({ min: -3n, max: 3n }));
    const tree = fc.letrec<{ v: unknown }>((tie) => ({
      v: fc.oneof({ depthSize: 'small' }, leaf, fc.array(tie('v'), { maxLength: 3 }), fc.dictionary(fc.string({ maxLength: 2 }), tie('v'), { maxKeys: 3 })),
    })).v;
    const toValue = (x: unknown): Value =>
      Array.isArray(x)
        ? CedarSet.of(x.map(toValue))
        : typeof x === 'object' && x !== null
          ? CedarRecord.fromEntries(Object.entries(x).map(([k, v]) => [k, toValue(v)]))
          : (x as Value);
    // Canonical JSON with sorted, deduplicated arrays: the model of Cedar equality.
    const canon = (x: unknown): string =>
      Array.isArray(x)
        ? `[${[...new Set(x.map(canon))].sort().join(',')}]`
        : typeof x === 'object' && x !== null
          ? `{${Object.keys(x).sort().map((k) => `${JSON.stringify(k)}:${canon((x as Record<string, unknown>)[k])}`).join(',')}}`
          : typeof x === 'bigint'
            ? `${x}n`
            : JSON.stringify(x);
    fc.assert(
      fc.property(tree, tree, (a, b) => {
        expect(valueEquals(toValue(a), toValue(b))).toBe(canon(a) === canon(b));
      }),
      { numRuns: 500 },
    );
  });
});

describe('typeName and displayValue', () => {
  it('names each type as Cedar does', () => {
    expect([true, 1n, 's', new EntityUid('T', 'x'), CedarSet.EMPTY, CedarRecord.EMPTY, Decimal.parse('1.0'), IpAddr.parse('::1'), Duration.parse('1h')].map(typeName)).toEqual([
      'bool',
      'long',
      'string',
      'entity',
      'set',
      'record',
      'decimal',
      'ipaddr',
      'duration',
    ]);
  });

  it('prints Cedar source text, bounded in length', () => {
    expect(displayValue(CedarRecord.fromEntries([['a b', CedarSet.of([1n])]]))).toBe('{"a b": [1]}');
    expect(displayValue(IpAddr.parse('10.0.0.1'))).toBe('ip("10.0.0.1/32")');
    expect(displayValue('x'.repeat(500)).length).toBeLessThanOrEqual(121);
    expect(quoteString('tab\there')).toBe('"tab\\there"');
  });
});

describe('large values', () => {
  it('have keys that grow linearly with nesting', () => {
    let v: Value = 'a"\\';
    const lengths: number[] = [];
    for (let i = 0; i < 64; i++) {
      v = CedarSet.of([CedarRecord.fromEntries([['"', v]])]);
      lengths.push(valueKey(v).length);
    }
    expect(lengths[63]! - lengths[62]!).toBeLessThan(20);
    expect(lengths[63]).toBeLessThan(2000);
  });

  it('display briefly, however wide or deep', () => {
    const wide = CedarSet.of(Array.from({ length: 100_000 }, (_, i) => BigInt(i)));
    let deep: Value = 'x"\\';
    for (let i = 0; i < 60; i++) deep = CedarSet.of([BigInt(i), CedarRecord.fromEntries([['k"', deep]])]);
    for (const v of [wide, deep]) {
      const text = displayValue(v);
      expect(text.length).toBeLessThanOrEqual(121);
      expect(text.startsWith('[')).toBe(true);
    }
  });
});
