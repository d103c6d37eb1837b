import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { ExtensionError } from '../../src/policy/ext/error.js';
import { IpAddr, IPADDR_TYPE } from '../../src/policy/ext/ipaddr.js';
import { cedarString, disagreements, type Outcome } from './ext-cedar-oracle.js';

const ip = (text: string) => IpAddr.parse(text);

describe('IpAddr.parse', () => {
  it.each([
    ['0.0.0.0', 4], ['255.255.255.255', 4], ['10.0.0.1/24', 4], ['0.0.0.0/0', 4], ['192.168.1.1/32', 4],
    ['::', 6], ['::1', 6], ['::/0', 6], ['::/128', 6], ['1::', 6], ['1:2:3:4:5:6:7:8', 6], ['1:2:3:4:5:6:7::', 6],
    ['::1:2:3:4:5:6:7', 6], ['0001::', 6], ['ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/128', 6], ['fe80::1/64', 6],
    ['::ffff:102:304', 6],
  ])('accepts %s as IPv%s', (text, family) => {
    expect(ip(text).isIpv4()).toBe(family === 4);
    expect(ip(text).isIpv6()).toBe(family === 6);
  });

  it.each([
    // IPv4: exactly four decimal octets, no leading zeros (Rust's rules)
    '01.2.3.4', '1.02.3.4', '1.2.3.004', '256.1.1.1', '1.2.3', '1.2.3.4.5', '1.2.3.', '.1.2.3', '1..2.3', '1.2.3.4 ', ' 1.2.3.4',
    '0x1.2.3.4', '1.2.3.4%eth0', '١.2.3.4', '1.2.3.-4', '1.2.3.+4', '16909060',
    // IPv6
    ':', ':::', '1::2::3', '1:2:3:4:5:6:7', '1:2:3:4:5:6:7:8:9', '1:2:3:4:5:6:7:8::', '::1:2:3:4:5:6:7:8', '1:2:3:4::5:6:7:8',
    ':1::', '1::2:', '00001::', '1:2:3:4:5:6:7:g', 'fe80::1%1', '[::1]', '::1 ',
    // IPv4 embedded in IPv6 is refused outright
    '::ffff:1.2.3.4', '::1.2.3.4', '::ffff:127.0.0.1', '1:2:3:4:5:6:1.2.3.4', '::1.2',
    // prefixes
    '1.2.3.4/', '1.2.3.4/33', '1.2.3.4/024', '1.2.3.4/000', '1.2.3.4/00', '1.2.3.4/+1', '1.2.3.4/ 1', '1.2.3.4/1/2', '1.2.3.4/-1',
    '::/129', '::/0128', '::/00', '::/1000', '::/', '/24', '1.2.3.4/3a', '1.2.3.4/٣',
    // length
    'ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/1280', '0ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/128',
    '', 'localhost',
  ])('refuses %j', (text) => {
    expect(() => ip(text)).toThrow(ExtensionError);
  });

  it('names its Cedar type', () => {
    expect(IPADDR_TYPE).toBe('ipaddr');
  });
});

describe('IpAddr predicates', () => {
  it.each([
    ['127.0.0.1', true], ['127.255.255.255', true], ['127.0.0.1/8', true], ['127.0.0.0/8', true], ['127.0.0.1/7', false],
    ['126.0.0.1', false], ['::1', true], ['::1/128', true], ['::1/127', false], ['::', false], ['::2', false],
    ['::ffff:7f00:1', false],
  ])('%s is loopback: %s', (text, expected) => {
    expect(ip(text).isLoopback()).toBe(expected);
  });

  it.each([
    ['224.0.0.1', true], ['239.255.255.255', true], ['224.1.2.3/4', true], ['224.1.2.3/3', false], ['240.0.0.1', false],
    ['223.255.255.255', false], ['ff00::', true], ['ff02::1', true], ['ff00::/8', true], ['ff01::/7', false], ['fe00::', false],
    ['::ffff:e000:1', false],
  ])('%s is multicast: %s', (text, expected) => {
    expect(ip(text).isMulticast()).toBe(expected);
  });

  it.each([
    ['10.0.0.0/24', '10.0.0.0/8', true],
    ['10.0.0.0/8', '10.0.0.0/24', false],
    ['10.1.2.3/8', '10.0.0.0/8', true],
    ['10.0.0.1', '10.0.0.0/24', true],
    ['10.0.1.0', '10.0.0.0/24', false],
    ['10.0.0.1', '10.0.0.1', true],
    ['10.0.0.1', '10.0.0.2', false],
    ['0.0.0.0/0', '0.0.0.0/0', true],
    ['1.2.3.4', '0.0.0.0/0', true],
    ['192.168.0.0/16', '192.168.0.0/24', false],
    ['::1', '::/0', true],
    ['2001:db8::1', '2001:db8::/32', true],
    ['2001:db9::1', '2001:db8::/32', false],
    ['::1', '0.0.0.0/0', false],
    ['1.2.3.4', '::/0', false],
    ['::ffff:102:304', '1.2.3.0/24', false],
  ])('%s in range %s: %s', (inner, outer, expected) => {
    expect(ip(inner).isInRange(ip(outer))).toBe(expected);
  });
});

describe('IpAddr equality and printing', () => {
  it('is equal on family, address and prefix; host bits count', () => {
    expect(ip('10.0.0.1').equals(ip('10.0.0.1/32'))).toBe(true);
    expect(ip('::1').equals(ip('0:0:0:0:0:0:0:1/128'))).toBe(true);
    expect(ip('ff00::').equals(ip('FF00:0::'))).toBe(true);
    expect(ip('10.0.0.1/24').equals(ip('10.0.0.0/24'))).toBe(false);
    expect(ip('10.0.0.0/24').equals(ip('10.0.0.0/25'))).toBe(false);
    expect(ip('127.0.0.1').equals(ip('::ffff:7f00:1'))).toBe(false);
    expect(ip('0.0.0.0/0').equals(ip('::/0'))).toBe(false);
  });

  it.each([
    ['10.0.0.1', '10.0.0.1/32'],
    ['10.0.0.1/24', '10.0.0.1/24'],
    ['::', '::/128'],
    ['::1', '::1/128'],
    ['1::', '1::/128'],
    ['2001:0DB8:0000:0000:0000:0000:0000:0001/64', '2001:db8::1/64'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1/128'],
    ['2001:0:0:1:0:0:0:1', '2001:0:0:1::1/128'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1/128'],
    ['::ffff:102:304', '::ffff:102:304/128'],
  ])('prints %s as %s', (text, printed) => {
    expect(ip(text).toString()).toBe(printed);
  });

  it('round-trips every address and prefix through its printed form', () => {
    const v4 = fc.tuple(fc.bigInt({ min: 0n, max: 2n ** 32n - 1n }), fc.integer({ min: 0, max: 32 })).map(([address, prefix]) =>
      `${[24n, 16n, 8n, 0n].map((shift) => (address >> shift) & 0xffn).join('.')}/${prefix}`,
    );
    const group = fc.oneof(fc.constant(0), fc.integer({ min: 0, max: 0xffff }));
    const v6 = fc.tuple(fc.array(group, { minLength: 8, maxLength: 8 }), fc.integer({ min: 0, max: 128 })).map(([groups, prefix]) =>
      `${groups.map((g) => g.toString(16)).join(':')}/${prefix}`,
    );
    fc.assert(
      fc.property(fc.oneof(v4, v6), (text) => {
        const value = ip(text);
        expect(ip(value.toString()).equals(value)).toBe(true);
      }),
      { numRuns: 2000 },
    );
  });
});

describe('IpAddr against untrusted input', () => {
  it('throws nothing but ExtensionError', () => {
    const ipish = fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:./'), maxLength: 45 });
    fc.assert(
      fc.property(fc.oneof(fc.string({ unit: 'binary' }), ipish), (text) => {
        try {
          ip(text);
        } catch (error) {
          expect(error).toBeInstanceOf(ExtensionError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('refuses a megabyte literal promptly', () => {
    expect(() => ip(`1.2.3.4/${'1'.repeat(1 << 20)}`)).toThrow(ExtensionError);
  });
});

describe('IpAddr agrees with the reference Cedar implementation', () => {
  const octet = fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 255 }).map(String), weight: 20 },
    fc.constantFrom('256', '00', '01', '007', '1000', ''),
  );
  const hexGroup = fc.oneof(
    { arbitrary: fc.integer({ min: 0, max: 0xffff }).map((n) => n.toString(16)), weight: 20 },
    fc.constantFrom('0000', 'FFFF', '00001', 'g', ''),
  );
  const prefix = fc.oneof(
    { arbitrary: fc.constant(''), weight: 3 },
    { arbitrary: fc.integer({ min: 0, max: 130 }).map((n) => `/${n}`), weight: 3 },
    fc.constantFrom('/', '/00', '/032', '/0128', '/-1', '/a'),
  );
  const v4 = fc.tuple(fc.oneof({ arbitrary: fc.constant(4), weight: 5 }, fc.constantFrom(3, 5)), fc.array(octet, { minLength: 5, maxLength: 5 }), prefix)
    .map(([count, octets, p]) => octets.slice(0, count).join('.') + p);
  // Eight groups, or fewer around one `::`; sometimes one group too many.
  const v6 = fc
    .tuple(fc.array(hexGroup, { minLength: 9, maxLength: 9 }), fc.integer({ min: -1, max: 8 }), fc.integer({ min: 0, max: 8 }), fc.boolean(), prefix)
    .map(([groups, compressAt, kept, overfull, p]) => {
      if (compressAt < 0) return groups.slice(0, overfull ? 9 : 8).join(':') + p;
      const count = Math.min(kept, overfull ? 8 : 7);
      const head = groups.slice(0, Math.min(compressAt, count));
      const tail = groups.slice(head.length, count);
      return `${head.join(':')}::${tail.join(':')}${p}`;
    });
  const candidates = fc.oneof(
    { arbitrary: v4, weight: 3 },
    { arbitrary: v6, weight: 4 },
    fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:./'), maxLength: 16 }),
    fc.tuple(fc.constantFrom('::', '::ffff:', '1::', '1:2:3:4:5:6:'), v4).map(([a, b]) => a + b),
  );

  it('on acceptance, value and printed form', () => {
    const texts = [...new Set(fc.sample(candidates, { numRuns: 4000, seed: 8080 }))];
    const parsed = texts.map((text) => ({ text, ours: tryParse(text) }));
    const cases = parsed.flatMap(({ text, ours }): Array<{ expression: string; expected: Outcome }> => {
      const literal = `ip(${cedarString(text)})`;
      if (ours === undefined) return [{ expression: `${literal}.isIpv4() || true`, expected: 'error' }];
      const flag = (value: boolean): Outcome => (value ? 'true' : 'false');
      return [
        { expression: `${literal} == ip(${cedarString(ours.toString())})`, expected: 'true' },
        { expression: `${literal}.isIpv4()`, expected: flag(ours.isIpv4()) },
        { expression: `${literal}.isIpv6()`, expected: flag(ours.isIpv6()) },
        { expression: `${literal}.isLoopback()`, expected: flag(ours.isLoopback()) },
        { expression: `${literal}.isMulticast()`, expected: flag(ours.isMulticast()) },
      ];
    });
    expect(parsed.filter(({ ours }) => ours !== undefined).length).toBeGreaterThan(800);
    expect(parsed.filter(({ ours }) => ours === undefined).length).toBeGreaterThan(800);
    expect(disagreements(cases)).toEqual([]);
  });

  it('on isInRange and equality between ranges', () => {
    const near = fc.oneof(
      fc.tuple(fc.constantFrom('10', '127', '224', '0'), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 32 })).map(([a, b, p]) => `${a}.${b}.0.${b}/${p}`),
      fc.tuple(fc.constantFrom('::', 'ff00::', '2001:db8::', '::ffff:'), fc.integer({ min: 0, max: 3 }), fc.integer({ min: 0, max: 128 })).map(([a, b, p]) => `${a}${b}/${p}`),
    );
    const pairs = fc.sample(fc.tuple(near, near), { numRuns: 1500, seed: 443 });
    const cases = pairs.flatMap(([a, b]) => [
      { expression: `ip("${a}").isInRange(ip("${b}"))`, expected: (ip(a).isInRange(ip(b)) ? 'true' : 'false') as Outcome },
      { expression: `ip("${a}") == ip("${b}")`, expected: (ip(a).equals(ip(b)) ? 'true' : 'false') as Outcome },
    ]);
    expect(cases.filter((c) => c.expected === 'true').length).toBeGreaterThan(100);
    expect(disagreements(cases)).toEqual([]);
  });
});

function tryParse(text: string): IpAddr | undefined {
  try {
    return IpAddr.parse(text);
  } catch (error) {
    if (error instanceof ExtensionError) return undefined;
    throw error;
  }
}
