import { ExtensionError } from './error.js';
import { quoteLiteral } from './quote.js';

export const IPADDR_TYPE = 'ipaddr';

type Family = 4 | 6;

const BITS: Record<Family, number> = { 4: 32, 6: 128 };
// Cedar refuses prefixes written with more digits than "32" / "128" has.
const MAX_PREFIX_DIGITS: Record<Family, number> = { 4: 2, 6: 3 };
// The longest text Cedar accepts: 'ABCD:EF01:2345:6789:ABCD:EF01:2345:6789/128'.
const MAX_TEXT_LENGTH = 43;

const IPV4_OCTET = /^(?:0|[1-9][0-9]{0,2})$/;
const IPV6_GROUP = /^[0-9a-fA-F]{1,4}$/;

/**
 * Cedar `ipaddr`: an IPv4 or IPv6 address with a prefix length (32 / 128 when none is written).
 * The address keeps its host bits: `10.0.0.1/24` and `10.0.0.0/24` are different values.
 */
export class IpAddr {
  private constructor(
    private readonly family: Family,
    private readonly address: bigint,
    private readonly prefix: number,
  ) {}

  static parse(text: string): IpAddr {
    if (text.length > MAX_TEXT_LENGTH) throw new ExtensionError(`IP address text is too long: ${quoteLiteral(text)}`);
    // Cedar refuses IPv4 embedded in IPv6 (`::ffff:1.2.3.4`): mixed notation invites confusion
    // over which family the value belongs to. Cedar's test is "two colons and two dots".
    if (occursTwice(text, ':') && occursTwice(text, '.')) {
      throw new ExtensionError(`IPv4 embedded in IPv6 is not accepted: ${quoteLiteral(text)}`);
    }
    const slash = text.indexOf('/');
    const addressText = slash < 0 ? text : text.slice(0, slash);
    const parsed = parseAddress(addressText);
    if (parsed === undefined) throw new ExtensionError(`invalid IP address: ${quoteLiteral(text)}`);
    const prefix = slash < 0 ? BITS[parsed.family] : parsePrefix(text.slice(slash + 1), parsed.family, text);
    return new IpAddr(parsed.family, parsed.address, prefix);
  }

  isIpv4(): boolean {
    return this.family === 4;
  }

  isIpv6(): boolean {
    return this.family === 6;
  }

  /** Within 127.0.0.0/8 or exactly ::1/128. An IPv4-mapped IPv6 address is IPv6, never loopback. */
  isLoopback(): boolean {
    return this.family === 4 ? this.address >> 24n === 127n && this.prefix >= 8 : this.address === 1n && this.prefix === 128;
  }

  /** Within 224.0.0.0/4 or ff00::/8. */
  isMulticast(): boolean {
    return this.family === 4
      ? this.address >> 28n === 0xen && this.prefix >= 4
      : this.address >> 120n === 0xffn && this.prefix >= 8;
  }

  /** Whether every address of this range lies in `range`; IPv4 and IPv6 never contain each other. */
  isInRange(range: IpAddr): boolean {
    if (this.family !== range.family) return false;
    return range.firstAddress() <= this.firstAddress() && this.lastAddress() <= range.lastAddress();
  }

  equals(other: IpAddr): boolean {
    return this.family === other.family && this.address === other.address && this.prefix === other.prefix;
  }

  /**
   * `address/prefix` with the address as Rust prints it (RFC 5952 for IPv6), except IPv4-mapped
   * IPv6 addresses: Rust prints those dotted, which Cedar cannot parse back, so they stay in hex.
   */
  toString(): string {
    const address = this.family === 4 ? formatIpv4(this.address) : formatIpv6(this.address);
    return `${address}/${this.prefix}`;
  }

  private hostBits(): bigint {
    return BigInt(BITS[this.family] - this.prefix);
  }

  private firstAddress(): bigint {
    return (this.address >> this.hostBits()) << this.hostBits();
  }

  private lastAddress(): bigint {
    return this.firstAddress() | ((1n << this.hostBits()) - 1n);
  }
}

function occursTwice(text: string, char: string): boolean {
  const first = text.indexOf(char);
  return first >= 0 && text.indexOf(char, first + 1) >= 0;
}

function parseAddress(text: string): { family: Family; address: bigint } | undefined {
  const v4 = parseIpv4(text);
  if (v4 !== undefined) return { family: 4, address: v4 };
  const v6 = parseIpv6(text);
  return v6 === undefined ? undefined : { family: 6, address: v6 };
}

// Rust's rules: exactly four decimal octets, each at most 255, no leading zeros.
function parseIpv4(text: string): bigint | undefined {
  const octets = text.split('.');
  if (octets.length !== 4) return undefined;
  let address = 0n;
  for (const octet of octets) {
    if (!IPV4_OCTET.test(octet)) return undefined;
    const value = Number(octet);
    if (value > 255) return undefined;
    address = (address << 8n) | BigInt(value);
  }
  return address;
}

// RFC 4291 text forms: eight groups of 1–4 hex digits, or fewer around a single `::` standing
// for at least one zero group. Embedded IPv4 never reaches here (refused above).
function parseIpv6(text: string): bigint | undefined {
  const halves = text.split('::');
  if (halves.length > 2) return undefined;
  const head = parseGroups(halves[0]);
  if (halves.length === 1) return head?.length === 8 ? joinGroups(head) : undefined;
  const tail = parseGroups(halves[1]);
  if (head === undefined || tail === undefined || head.length + tail.length > 7) return undefined;
  return joinGroups([...head, ...new Array<number>(8 - head.length - tail.length).fill(0), ...tail]);
}

function parseGroups(text: string): number[] | undefined {
  if (text === '') return [];
  const groups = text.split(':');
  if (groups.length > 8 || !groups.every((group) => IPV6_GROUP.test(group))) return undefined;
  return groups.map((group) => parseInt(group, 16));
}

function joinGroups(groups: number[]): bigint {
  return groups.reduce((address, group) => (address << 16n) | BigInt(group), 0n);
}

function parsePrefix(text: string, family: Family, whole: string): number {
  const invalid = (why: string) => new ExtensionError(`invalid prefix in ${quoteLiteral(whole)}: ${why}`);
  if (text.length > MAX_PREFIX_DIGITS[family]) throw invalid('too many digits');
  if (!/^[0-9]+$/.test(text)) throw invalid('not a decimal number');
  if (text.length > 1 && text.startsWith('0')) throw invalid('leading zero');
  const prefix = Number(text);
  if (prefix > BITS[family]) throw invalid(`larger than ${BITS[family]}`);
  return prefix;
}

function formatIpv4(address: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => ((address >> shift) & 0xffn).toString()).join('.');
}

// RFC 5952: lowercase, no leading zeros, the first longest run of two or more zero groups as `::`.
function formatIpv6(address: bigint): string {
  const groups = [112n, 96n, 80n, 64n, 48n, 32n, 16n, 0n].map((shift) => Number((address >> shift) & 0xffffn));
  let best = { start: 0, length: 0 };
  let run = { start: 0, length: 0 };
  groups.forEach((group, index) => {
    run = group === 0 ? { start: run.length === 0 ? index : run.start, length: run.length + 1 } : { start: 0, length: 0 };
    if (run.length > best.length) best = run;
  });
  const hex = (part: number[]) => part.map((group) => group.toString(16)).join(':');
  if (best.length < 2) return hex(groups);
  return `${hex(groups.slice(0, best.start))}::${hex(groups.slice(best.start + best.length))}`;
}
