import { Decoder, Encoder } from 'cbor-x';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type CborValue, CborTagged, decodeCbor, encodeCbor } from '../../src/envelope/cbor.js';
import { EnvelopeError } from '../../src/envelope/errors.js';

const limits = { maxBytes: 1024, maxDepth: 8 };
const hex = (text: string) => new Uint8Array(Buffer.from(text.replace(/\s/g, ''), 'hex'));
const toHex = (bytes: Uint8Array) => Buffer.from(bytes).toString('hex');

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof EnvelopeError) return err.code;
    throw err;
  }
  return undefined;
}

describe('strict decoding', () => {
  it('decodes the RFC 8949 appendix A examples it allows', () => {
    expect(decodeCbor(hex('00'), limits)).toBe(0);
    expect(decodeCbor(hex('1903e8'), limits)).toBe(1000);
    expect(decodeCbor(hex('3903e7'), limits)).toBe(-1000);
    expect(decodeCbor(hex('1bffffffffffffffff'), limits)).toBe(18446744073709551615n);
    expect(decodeCbor(hex('3bffffffffffffffff'), limits)).toBe(-18446744073709551616n);
    expect(decodeCbor(hex('6449455446'), limits)).toBe('IETF');
    expect(decodeCbor(hex('62c3bc'), limits)).toBe('\u00fc');
    expect(decodeCbor(hex('4401020304'), limits)).toEqual(new Uint8Array([1, 2, 3, 4]));
    expect(decodeCbor(hex('f4'), limits)).toBe(false);
    expect(decodeCbor(hex('f6'), limits)).toBe(null);
    expect(decodeCbor(hex('a201020304'), limits)).toEqual(new Map([[1, 2], [3, 4]]));
    expect(decodeCbor(hex('a26161016162820203'), limits)).toEqual(new Map<string, CborValue>([['a', 1], ['b', [2, 3]]]));
  });

  it('keeps integers exact at and beyond 2^53 (never a float)', () => {
    expect(decodeCbor(hex('1b001fffffffffffff'), limits)).toBe(Number.MAX_SAFE_INTEGER);
    expect(decodeCbor(hex('1b0020000000000000'), limits)).toBe(9007199254740992n);
    expect(decodeCbor(hex('1b7fffffffffffffff'), limits)).toBe(9223372036854775807n);
    expect(decodeCbor(hex('3b001ffffffffffffe'), limits)).toBe(-Number.MAX_SAFE_INTEGER);
    expect(decodeCbor(hex('3b001fffffffffffff'), limits)).toBe(-9007199254740992n);
  });

  it('accepts a root tag only when asked, and never a nested one', () => {
    expect(decodeCbor(hex('d2 80'), { ...limits, allowRootTag: true })).toEqual(new CborTagged(18, []));
    expect(codeOf(() => decodeCbor(hex('d2 80'), limits))).toBe('ENVELOPE_MALFORMED');
    expect(codeOf(() => decodeCbor(hex('81 d2 80'), { ...limits, allowRootTag: true }))).toBe('ENVELOPE_MALFORMED');
    expect(codeOf(() => decodeCbor(hex('d2 d2 80'), { ...limits, allowRootTag: true }))).toBe('ENVELOPE_MALFORMED');
  });

  it.each([
    ['oversize input', 'ENVELOPE_TOO_LARGE', '40'.repeat(1025)],
    ['trailing bytes', 'ENVELOPE_TRAILING_BYTES', '0000'],
    ['truncated head', 'ENVELOPE_TRUNCATED', '19 03'],
    ['truncated byte string', 'ENVELOPE_TRUNCATED', '44 0102'],
    ['array longer than the input', 'ENVELOPE_TRUNCATED', '9a ffffffff 00'],
    ['map longer than the input', 'ENVELOPE_TRUNCATED', 'a2 0102'],
    ['empty input', 'ENVELOPE_TRUNCATED', ''],
    ['indefinite array', 'ENVELOPE_INDEFINITE_LENGTH', '9f 01 ff'],
    ['indefinite map', 'ENVELOPE_INDEFINITE_LENGTH', 'bf 01 02 ff'],
    ['indefinite bytes', 'ENVELOPE_INDEFINITE_LENGTH', '5f 41 01 ff'],
    ['indefinite text', 'ENVELOPE_INDEFINITE_LENGTH', '7f 61 61 ff'],
    ['lone break', 'ENVELOPE_MALFORMED', 'ff'],
    ['reserved additional info', 'ENVELOPE_MALFORMED', '1c'],
    ['half float', 'ENVELOPE_MALFORMED', 'f9 3c00'],
    ['double', 'ENVELOPE_MALFORMED', 'fb 3ff199999999999a'],
    ['undefined', 'ENVELOPE_MALFORMED', 'f7'],
    ['simple(16)', 'ENVELOPE_MALFORMED', 'f0'],
    ['two-byte simple', 'ENVELOPE_MALFORMED', 'f8 ff'],
    ['invalid UTF-8', 'ENVELOPE_MALFORMED', '62 c328'],
    ['lone surrogate', 'ENVELOPE_MALFORMED', '63 eda080'],
    ['byte-string map key', 'ENVELOPE_MALFORMED', 'a1 4101 02'],
    ['array map key', 'ENVELOPE_MALFORMED', 'a1 80 02'],
    ['duplicate integer keys', 'ENVELOPE_DUPLICATE_KEY', 'a2 01 02 01 03'],
    ['duplicate keys in different encodings', 'ENVELOPE_DUPLICATE_KEY', 'a2 01 02 1801 03'],
    ['duplicate text keys', 'ENVELOPE_DUPLICATE_KEY', 'a2 6161 01 6161 02'],
    ['duplicate big keys', 'ENVELOPE_DUPLICATE_KEY', 'a2 1bffffffffffffffff 01 1bffffffffffffffff 02'],
    ['nested duplicate', 'ENVELOPE_DUPLICATE_KEY', 'a1 01 a2 02 00 02 00'],
  ])('refuses %s with %s', (_name, code, bytes) => {
    expect(codeOf(() => decodeCbor(hex(bytes), limits))).toBe(code);
  });

  it('distinguishes integer key 1 from text key "1"', () => {
    expect(decodeCbor(hex('a2 01 02 6131 03'), limits)).toEqual(new Map<string | number, CborValue>([[1, 2], ['1', 3]]));
  });

  it('enforces the depth limit before descending (a nesting bomb costs no stack)', () => {
    expect(decodeCbor(hex('81'.repeat(8) + '00'), limits)).toBeDefined();
    expect(codeOf(() => decodeCbor(hex('81'.repeat(9) + '00'), limits))).toBe('ENVELOPE_TOO_DEEP');
    const bomb = new Uint8Array(200_000).fill(0x81);
    expect(codeOf(() => decodeCbor(bomb, { maxBytes: 1 << 20, maxDepth: 8 }))).toBe('ENVELOPE_TOO_DEEP');
    const mapBomb = new Uint8Array(200_000);
    for (let i = 0; i < mapBomb.length; i += 2) mapBomb.set([0xa1, 0x00], i);
    expect(codeOf(() => decodeCbor(mapBomb, { maxBytes: 1 << 20, maxDepth: 8 }))).toBe('ENVELOPE_TOO_DEEP');
  });

  it('returns byte strings that do not alias the input', () => {
    const input = hex('42 0102');
    const value = decodeCbor(input, limits) as Uint8Array;
    input[1] = 9;
    expect(value).toEqual(new Uint8Array([1, 2]));
  });
});

describe('deterministic encoding', () => {
  it('uses shortest heads and sorts map keys by encoded bytes', () => {
    expect(toHex(encodeCbor(23))).toBe('17');
    expect(toHex(encodeCbor(24))).toBe('1818');
    expect(toHex(encodeCbor(256))).toBe('190100');
    expect(toHex(encodeCbor(-1))).toBe('20');
    expect(toHex(encodeCbor(2 ** 32))).toBe('1b0000000100000000');
    expect(toHex(encodeCbor(18446744073709551615n))).toBe('1bffffffffffffffff');
    expect(toHex(encodeCbor(-18446744073709551616n))).toBe('3bffffffffffffffff');
    expect(toHex(encodeCbor(new Map<string | number, CborValue>([['b', 1], [10, 2], [-1, 3], ['a', 4], [100, 5]])))).toBe(
      'a5' + '0a02' + '1864' + '05' + '2003' + '616104' + '616201',
    );
    expect(toHex(encodeCbor({ z: true, a: null }))).toBe('a2' + '6161f6' + '617af5');
  });

  it('never tags byte arrays or maps (the cbor-x defaults)', () => {
    expect(toHex(encodeCbor(new Uint8Array([1, 2])))).toBe('420102');
    expect(toHex(encodeCbor({ a: 1 }))).toBe('a1616101');
    // What cbor-x does by default with the same values, and why it is not used for signed data.
    expect(toHex(new Encoder().encode(new Uint8Array([1, 2])))).toBe('d840420102');
    expect(toHex(new Encoder().encode({ a: 1 }))).not.toBe('a1616101');
  });

  it('catches the duplicate key that cbor-x silently resolves to the last value', () => {
    const bytes = hex('a2 01 02 01 03');
    expect(new Decoder({ mapsAsObjects: false }).decode(bytes)).toEqual(new Map([[1, 3]]));
    expect(codeOf(() => decodeCbor(bytes, limits))).toBe('ENVELOPE_DUPLICATE_KEY');
  });

  it.each([
    ['a float', 1.5],
    ['NaN', Number.NaN],
    ['an unsafe integer', 2 ** 60],
    ['a bigint beyond 64 bits', 1n << 64n],
    ['undefined', undefined],
    ['a Date', new Date(0)],
  ])('refuses %s', (_name, value) => {
    expect(codeOf(() => encodeCbor(value as never))).toBe('ENVELOPE_UNENCODABLE');
  });

  it('refuses maps whose keys collide', () => {
    expect(codeOf(() => encodeCbor(new Map<number | bigint, CborValue>([[1, 1], [1n, 2]])))).toBe('ENVELOPE_UNENCODABLE');
  });

  const value: fc.Arbitrary<CborValue> = fc.letrec<{ v: CborValue }>((tie) => ({
    v: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      fc.integer(),
      fc.bigInt({ min: -(1n << 64n), max: (1n << 64n) - 1n }).map((b) => (b >= BigInt(Number.MIN_SAFE_INTEGER) && b <= BigInt(Number.MAX_SAFE_INTEGER) ? Number(b) : b)),
      fc.string(),
      fc.boolean(),
      fc.constant(null),
      fc.uint8Array({ maxLength: 40 }),
      fc.array(tie('v'), { maxLength: 4 }),
      fc.uniqueArray(fc.tuple(fc.oneof(fc.integer(), fc.string()), tie('v')), { maxLength: 4, selector: ([k]) => k }).map((entries) => new Map(entries)),
    ),
  })).v;

  it('round-trips random values exactly, and cbor-x reads the same bytes the same way', () => {
    const cborx = new Decoder({ mapsAsObjects: false });
    fc.assert(
      fc.property(value, (v) => {
        const bytes = encodeCbor(v);
        expect(decodeCbor(bytes, { maxBytes: 1 << 20, maxDepth: 64 })).toEqual(v);
        expect(encodeCbor(decodeCbor(bytes, { maxBytes: 1 << 20, maxDepth: 64 }))).toEqual(bytes);
        const viaCborx = cborx.decode(bytes) as unknown;
        expect(normalize(viaCborx)).toEqual(normalize(v));
      }),
      { numRuns: 2000 },
    );
  });
});

/** Compares across decoders: Buffers as Uint8Array, every integer as bigint. */
function normalize(value: unknown): unknown {
  if (typeof value === 'number') return BigInt(value);
  if (value instanceof Uint8Array) return Uint8Array.from(value);
  if (Array.isArray(value)) return value.map(normalize);
  if (value instanceof Map) return new Map([...value].map(([k, v]) => [normalize(k), normalize(v)]));
  return value;
}
