// fast-check generators for Cedar authorization inputs: policy sets (every scope form, when/unless
// over a typed expression grammar with deliberate type errors, missing attributes and overflow),
// acyclic entity graphs with attributes and tags, and requests. Everything generated stays within
// what cedar-wasm can take through JSON: integers in entity and context data are safe integers
// (policy text may hold any Long).
import fc from 'fast-check';
import type { Context, EntityJson, OracleRequest } from './cedar-wasm.js';

// ---------------------------------------------------------------------------------------------
// Vocabulary: a small universe so that equalities, memberships and attribute hits happen often.

interface Uid {
  type: string;
  id: string;
}

const uid = (type: string, id: string): Uid => ({ type, id });

const USERS = ['alice', 'bob', 'carol', 'déjà "vu"'].map((id) => uid('User', id));
const GROUPS = ['admins', 'ops', 'staff'].map((id) => uid('Group', id));
const DOCS = ['d1', 'd2', 'd3'].map((id) => uid('Doc', id));
const FOLDERS = ['f1', 'f2'].map((id) => uid('Folder', id));
const ARMS = ['a1', 'a2'].map((id) => uid('Robot::Arm', id));
const CELLS = ['c1'].map((id) => uid('Robot::Cell', id));
/** Action hierarchy: read, write, delete under manage; manage and read under all. */
/** Action hierarchy; `Robot::Action` is an action type too (Cedar: any `...::Action`). */
const ACTIONS = [
  ...['read', 'write', 'delete', 'manage', 'all'].map((id) => uid('Action', id)),
  ...['move', 'motion'].map((id) => uid('Robot::Action', id)),
];
const ACTION_PARENTS: Record<string, Uid[]> = {
  'Action::read': [uid('Action', 'all')],
  'Action::write': [uid('Action', 'manage')],
  'Action::delete': [uid('Action', 'manage')],
  'Action::manage': [uid('Action', 'all')],
  'Action::all': [],
  'Robot::Action::move': [uid('Robot::Action', 'motion')],
  'Robot::Action::motion': [],
};
const GHOSTS = [uid('User', 'ghost'), uid('Doc', 'ghost')];

/**
 * Non-action entities in rank order: an entity's parents always rank higher, so every generated
 * graph is acyclic (cedar-wasm rejects cyclic entity data).
 */
const RANKED: Uid[] = [...USERS, ...ARMS, ...DOCS, ...GROUPS, ...FOLDERS, ...CELLS];
const ALL_UIDS: Uid[] = [...RANKED, ...ACTIONS, ...GHOSTS];
const ENTITY_TYPES = ['User', 'Group', 'Doc', 'Folder', 'Robot::Arm', 'Robot::Cell', 'Action', 'Robot::Action'];

const PRINCIPALS: Uid[] = [...USERS, ...GROUPS, ...ARMS, GHOSTS[0]!];
const RESOURCES: Uid[] = [...DOCS, ...FOLDERS, ...ARMS, ...CELLS, GHOSTS[1]!];
const REQUEST_ACTIONS: Uid[] = [...ACTIONS, uid('Action', 'ghost')];

const STRINGS = ['', 'a', 'ab', 'abc', 'a*b', 'héllo', 'zone-1', 'x\ty', 'A', 'admins', 'a😀b', '\\'];
const SMALL_LONGS = [0, 1, -1, 2, 3, 7, 10, 100, -20];
/** Safe integers only: these go through JSON into cedar-wasm. */
const DATA_LONGS = [...SMALL_LONGS, 9007199254740991, -9007199254740991, 3037000499, 4294967296];
/** Policy-text Longs: anything in i64, with the edges and 2^53 + 1 (exactness). */
const LITERAL_LONGS: bigint[] = [
  ...SMALL_LONGS.map(BigInt),
  9223372036854775807n,
  -9223372036854775808n,
  4611686018427387904n,
  3037000500n,
  -3037000500n,
  9007199254740993n,
  9007199254740992n,
];
const IP_STRINGS = [
  '10.0.0.1',
  '10.0.0.0/8',
  '127.0.0.1',
  '127.0.0.0/8',
  '192.168.1.0/24',
  '224.0.0.1',
  '0.0.0.0/0',
  '::1',
  'ff02::1',
  '2001:db8::/32',
  '2001:db8::1',
];
/** Cedar refuses IPv4-embedded IPv6 forms such as `::ffff:10.0.0.1`. */
const BAD_IP_STRINGS = ['::ffff:10.0.0.1', '1.2.3', '10.0.0.1/33', '01.2.3.4', 'fe80::1%eth0', '::/129', ''];
const DECIMAL_STRINGS = ['1.5', '1.50', '0.0', '-0.0', '-0.0001', '1.0000', '1.0', '2.25', '922337203685477.5807', '-922337203685477.5808'];
const BAD_DECIMAL_STRINGS = ['1.23456', '.5', '1.', '12', '922337203685477.5808', '1e3'];
const DATETIME_STRINGS = [
  '2024-01-01',
  '2024-02-29T12:00:00Z',
  '2024-06-01T08:30:00.123Z',
  '2024-06-01T08:30:00+0200',
  '2024-06-01T08:30:00.250-0130',
  '1969-12-31T23:59:59Z',
  '1970-01-01',
  '9999-12-31T23:59:59.999Z',
  '0000-01-01',
];
const BAD_DATETIME_STRINGS = ['2023-02-29', '2024-13-01', '2024-01-01T25:00:00Z', '2024-1-1', '2024-01-01T00:00:00'];
/** The last two are near the i64 millisecond limit, so `offset` and `durationSince` can overflow. */
const DURATION_STRINGS = ['1h', '30m', '1d2h3m4s5ms', '-30m', '0ms', '90s', '2d', '-1d12h', '106751991167d', '-9223372036854775808ms'];
const BAD_DURATION_STRINGS = ['1h1d', '1d1d', '', '5', '9223372036854775808ms', '106751991167301d'];

// ---------------------------------------------------------------------------------------------
// Cedar text helpers.

/** A Cedar string literal; escapes quotes, backslashes and control characters. */
export function cedarString(s: string): string {
  let out = '"';
  for (const ch of s) {
    const code = ch.codePointAt(0)!;
    if (ch === '"' || ch === '\\') out += '\\' + ch;
    else if (ch === '\n') out += '\\n';
    else if (ch === '\t') out += '\\t';
    else if (code < 0x20) out += `\\u{${code.toString(16)}}`;
    else out += ch;
  }
  return out + '"';
}

function uidText(u: Uid): string {
  return `${u.type}::${cedarString(u.id)}`;
}

/** A generated expression with the precedence level of its outermost construct. */
interface Gen {
  text: string;
  prec: number;
}

/** Cedar grammar levels: an operand of a level-n construct needs at least the level shown. */
const IF = 0;
const OR = 1;
const AND = 2;
const REL = 3;
const ADD = 4;
const MUL = 5;
const UNARY = 6;
const MEMBER = 7;

const operand = (e: Gen, min: number): string => (e.prec >= min ? e.text : `(${e.text})`);
const primary = (text: string): Gen => ({ text, prec: MEMBER });
const bin = (l: Gen, op: string, r: Gen, prec: number, lmin: number, rmin: number): Gen => ({
  text: `${operand(l, lmin)} ${op} ${operand(r, rmin)}`,
  prec,
});
const rel = (l: Gen, op: string, r: Gen): Gen => bin(l, op, r, REL, ADD, ADD);
const call = (target: Gen, method: string, args: Gen[] = []): Gen =>
  primary(`${operand(target, MEMBER)}.${method}(${args.map((a) => a.text).join(', ')})`);
const access = (target: Gen, attr: string, bracket: boolean): Gen =>
  primary(
    bracket || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(attr)
      ? `${operand(target, MEMBER)}[${cedarString(attr)}]`
      : `${operand(target, MEMBER)}.${attr}`,
  );
const ite = (c: Gen, t: Gen, e: Gen): Gen => ({ text: `if ${c.text} then ${t.text} else ${e.text}`, prec: IF });

function longLiteral(v: bigint): Gen {
  return { text: v.toString(), prec: v < 0n ? UNARY : MEMBER };
}

// ---------------------------------------------------------------------------------------------
// Data model: which attributes exist and what type they hold.

type Ty = 'bool' | 'long' | 'string' | 'entity' | 'set' | 'record' | 'ip' | 'decimal' | 'datetime' | 'duration';
const TYPES: Ty[] = ['bool', 'long', 'string', 'entity', 'set', 'record', 'ip', 'decimal', 'datetime', 'duration'];

/** Entity attributes (every entity holds a random subset). */
const ENTITY_ATTRS: Array<[string, Ty]> = [
  ['level', 'long'],
  ['name', 'string'],
  ['active', 'bool'],
  ['roles', 'set'],
  ['owner', 'entity'],
  ['addr', 'ip'],
  ['score', 'decimal'],
  ['since', 'datetime'],
  ['ttl', 'duration'],
  ['meta', 'record'],
  ['home zone', 'string'],
];
/** Context attributes (each request holds a random subset). */
const CONTEXT_ATTRS: Array<[string, Ty]> = [
  ['n', 'long'],
  ['m', 'long'],
  ['s', 'string'],
  ['flag', 'bool'],
  ['src', 'ip'],
  ['amount', 'decimal'],
  ['now', 'datetime'],
  ['window', 'duration'],
  ['list', 'set'],
  ['names', 'set'],
  ['who', 'entity'],
  ['args', 'record'],
];
/** Tags: `k1` holds a Long, `k2` a String, `on` a Boolean. */
const TAG_KEYS = ['k1', 'k2', 'on', 'missing'];
const ATTR_NAMES = [...new Set([...ENTITY_ATTRS, ...CONTEXT_ATTRS].map(([k]) => k)), 'speed', 'zone', 'depth', 'nested'];

const pick = <T>(xs: readonly T[]): fc.Arbitrary<T> => fc.constantFrom(...xs);
const w = <T>(weight: number, arbitrary: fc.Arbitrary<T>) => ({ weight, arbitrary });

// ---------------------------------------------------------------------------------------------
// Expressions.

const VARS = {
  principal: primary('principal'),
  action: primary('action'),
  resource: primary('resource'),
  context: primary('context'),
};
const entityVar = pick([VARS.principal, VARS.resource, VARS.principal, VARS.resource, VARS.action]);

/** `entity.attr` / `context.attr` / nested record paths that usually hold a value of type t. */
function accessors(t: Ty): fc.Arbitrary<Gen> {
  const out: fc.Arbitrary<Gen>[] = [];
  const useBracket = fc.integer({ min: 0, max: 9 }).map((n) => n === 0);
  for (const [name, ty] of ENTITY_ATTRS) {
    if (ty === t) out.push(fc.tuple(entityVar, useBracket).map(([v, b]) => access(v, name, b)));
  }
  for (const [name, ty] of CONTEXT_ATTRS) {
    if (ty === t) out.push(useBracket.map((b) => access(VARS.context, name, b)));
  }
  const args = access(VARS.context, 'args', false);
  const owner = access(VARS.resource, 'owner', false);
  const meta = access(VARS.principal, 'meta', false);
  switch (t) {
    case 'long':
      out.push(fc.constant(access(args, 'speed', false)), fc.constant(access(meta, 'depth', false)));
      out.push(fc.constant(access(owner, 'level', false)));
      out.push(entityVar.map((v) => call(v, 'getTag', [primary('"k1"')])));
      break;
    case 'string':
      out.push(fc.constant(access(args, 'zone', false)), fc.constant(access(meta, 'label', false)));
      out.push(entityVar.map((v) => call(v, 'getTag', [primary('"k2"')])));
      break;
    case 'bool':
      out.push(fc.constant(access(access(meta, 'nested', false), 'flag', false)));
      out.push(entityVar.map((v) => call(v, 'getTag', [primary('"on"')])));
      break;
    case 'entity':
      out.push(entityVar, fc.constant(access(owner, 'owner', false)));
      break;
    case 'record':
      out.push(fc.constant(VARS.context), fc.constant(access(meta, 'nested', false)));
      break;
    case 'decimal':
      out.push(fc.constant(access(args, 'force', false)));
      break;
    default:
      break;
  }
  return fc.oneof(...out);
}

function extLiteral(fn: string, good: string[], bad: string[]): fc.Arbitrary<Gen> {
  return fc.oneof(w(6, pick(good)), w(1, pick(bad))).map((s) => primary(`${fn}(${cedarString(s)})`));
}

const entityLiteral = pick(ALL_UIDS).map((u) => primary(uidText(u)));
const stringLiteral = pick(STRINGS).map((s) => primary(cedarString(s)));

function leaves(t: Ty): fc.Arbitrary<Gen> {
  switch (t) {
    case 'bool':
      return fc.oneof(
        w(2, fc.boolean().map((b) => primary(String(b)))),
        w(4, accessors('bool')),
        w(3, fc.tuple(fc.oneof(entityVar, fc.constant(VARS.context)), pick(ATTR_NAMES)).map(([v, a]) => hasAttr(v, [a]))),
        w(2, fc.tuple(entityVar, pick(ALL_UIDS)).map(([v, u]) => rel(v, 'in', primary(uidText(u))))),
        w(2, fc.tuple(entityVar, pick(ALL_UIDS)).map(([v, u]) => rel(v, '==', primary(uidText(u))))),
        w(1, fc.tuple(entityVar, pick(ENTITY_TYPES)).map(([v, ty]) => ({ text: `${v.text} is ${ty}`, prec: REL }))),
        w(1, fc.tuple(entityVar, pick(TAG_KEYS)).map(([v, k]) => call(v, 'hasTag', [primary(cedarString(k))]))),
      );
    case 'long':
      return fc.oneof(w(3, pick(LITERAL_LONGS).map(longLiteral)), w(4, accessors('long')));
    case 'string':
      return fc.oneof(w(3, stringLiteral), w(4, accessors('string')));
    case 'entity':
      return fc.oneof(w(3, entityLiteral), w(4, accessors('entity')));
    case 'set':
      return fc.oneof(
        w(3, accessors('set')),
        w(1, fc.constant(primary('[]'))),
        w(2, fc.array(pick(STRINGS), { maxLength: 3 }).map((xs) => primary(`[${xs.map(cedarString).join(', ')}]`))),
        w(2, fc.array(pick(ALL_UIDS), { maxLength: 3 }).map((xs) => primary(`[${xs.map(uidText).join(', ')}]`))),
      );
    case 'record':
      return fc.oneof(w(3, accessors('record')), w(1, fc.constant(primary('{}'))));
    case 'ip':
      return fc.oneof(w(3, extLiteral('ip', IP_STRINGS, BAD_IP_STRINGS)), w(3, accessors('ip')));
    case 'decimal':
      return fc.oneof(w(3, extLiteral('decimal', DECIMAL_STRINGS, BAD_DECIMAL_STRINGS)), w(3, accessors('decimal')));
    case 'datetime':
      return fc.oneof(w(3, extLiteral('datetime', DATETIME_STRINGS, BAD_DATETIME_STRINGS)), w(3, accessors('datetime')));
    case 'duration':
      return fc.oneof(w(3, extLiteral('duration', DURATION_STRINGS, BAD_DURATION_STRINGS)), w(3, accessors('duration')));
  }
}

/** `e has a` or the multi-level `e has a.b`, with quoted names where an identifier won't do. */
function hasAttr(target: Gen, path: string[]): Gen {
  const ident = (a: string) => /^[A-Za-z_][A-Za-z0-9_]*$/.test(a);
  const text =
    path.length === 1 && !ident(path[0]!) ? cedarString(path[0]!) : path.every(ident) ? path.join('.') : cedarString(path[0]!);
  return { text: `${operand(target, ADD)} has ${text}`, prec: REL };
}

interface LikePart {
  wildcard: boolean;
  text: string;
}

function likePattern(parts: LikePart[]): string {
  let body = '';
  for (const p of parts) {
    if (p.wildcard) body += '*';
    else body += cedarString(p.text).slice(1, -1).replace(/\*/g, '\\*');
  }
  return `"${body}"`;
}

const likeParts = fc.array(
  fc.oneof(
    fc.constant<LikePart>({ wildcard: true, text: '' }),
    pick(['a', 'b', 'ab', '*', 'é', '-1', 'x\t', '😀', '\\']).map((text): LikePart => ({ wildcard: false, text })),
  ),
  { maxLength: 4 },
);

const arbCache = new Map<string, fc.Arbitrary<Gen>>();

/**
 * An expression that usually has type t. With a small weight it has another type instead, so
 * that type errors are exercised as well.
 */
export function expr(t: Ty, depth: number): fc.Arbitrary<Gen> {
  const key = `${t}/${depth}`;
  const cached = arbCache.get(key);
  if (cached !== undefined) return cached;
  const illTyped = pick(TYPES.filter((x) => x !== t)).chain((other) => (depth === 0 ? leaves(other) : expr(other, depth - 1)));
  const arb =
    depth === 0
      ? fc.oneof(w(30, leaves(t)), w(1, illTyped))
      : fc.oneof(
          { depthSize: 'small', withCrossShrink: true },
          w(12, leaves(t)),
          w(14, composites(t, depth - 1)),
          w(1, illTyped),
          w(1, fc.tuple(expr('bool', depth - 1), expr(t, depth - 1), expr(t, depth - 1)).map(([c, a, b]) => ite(c, a, b))),
          w(1, expr(t, depth - 1).map((e) => primary(`(${e.text})`))),
        );
  arbCache.set(key, arb);
  return arb;
}

function composites(t: Ty, d: number): fc.Arbitrary<Gen> {
  const e = (ty: Ty) => expr(ty, d);
  const anyTyped = pick(TYPES).chain((ty) => e(ty));
  switch (t) {
    case 'bool':
      return fc.oneof(
        w(3, e('bool').map((a) => ({ text: `!${operand(a, MEMBER)}`, prec: UNARY }))),
        w(4, fc.tuple(e('bool'), e('bool')).map(([a, b]) => bin(a, '&&', b, AND, AND, REL))),
        w(4, fc.tuple(e('bool'), e('bool')).map(([a, b]) => bin(a, '||', b, OR, OR, AND))),
        w(8, fc.tuple(e('long'), pick(['<', '<=', '>', '>=', '==', '!=']), e('long')).map(([a, op, b]) => rel(a, op, b))),
        w(2, fc.tuple(e('datetime'), pick(['<', '<=', '>', '>=', '==', '!=']), e('datetime')).map(([a, op, b]) => rel(a, op, b))),
        w(2, fc.tuple(e('duration'), pick(['<', '<=', '>', '>=', '==', '!=']), e('duration')).map(([a, op, b]) => rel(a, op, b))),
        w(3, pick(TYPES).chain((ty) => fc.tuple(e(ty), pick(['==', '!=']), e(ty))).map(([a, op, b]) => rel(a, op, b))),
        w(1, fc.tuple(anyTyped, pick(['==', '!=']), anyTyped).map(([a, op, b]) => rel(a, op, b))),
        w(3, fc.tuple(e('string'), likeParts).map(([a, p]) => ({ text: `${operand(a, ADD)} like ${likePattern(p)}`, prec: REL }))),
        w(3, fc.tuple(e('entity'), e('entity')).map(([a, b]) => rel(a, 'in', b))),
        w(2, fc.tuple(e('entity'), e('set')).map(([a, b]) => rel(a, 'in', b))),
        w(
          3,
          fc
            .tuple(fc.oneof(e('entity'), e('record')), pick(ATTR_NAMES), fc.option(pick(['nested', 'flag', 'speed', 'depth']), { nil: undefined }))
            .map(([a, attr, sub]) => hasAttr(a, sub === undefined ? [attr] : [attr, sub])),
        ),
        w(
          2,
          fc
            .tuple(e('entity'), pick(ENTITY_TYPES), fc.option(e('entity'), { nil: undefined }))
            .map(([a, ty, inE]) => ({
              text: `${operand(a, ADD)} is ${ty}${inE === undefined ? '' : ` in ${operand(inE, ADD)}`}`,
              prec: REL,
            })),
        ),
        w(3, fc.tuple(e('set'), anyTyped).map(([s, x]) => call(s, 'contains', [x]))),
        w(2, fc.tuple(e('set'), e('set'), pick(['containsAll', 'containsAny'])).map(([s, x, m]) => call(s, m, [x]))),
        w(1, e('set').map((s) => call(s, 'isEmpty'))),
        w(2, fc.tuple(e('entity'), e('string')).map(([a, k]) => call(a, 'hasTag', [k]))),
        w(2, fc.tuple(e('ip'), pick(['isIpv4', 'isIpv6', 'isLoopback', 'isMulticast'])).map(([a, m]) => call(a, m))),
        w(2, fc.tuple(e('ip'), e('ip')).map(([a, b]) => call(a, 'isInRange', [b]))),
        w(
          2,
          fc
            .tuple(e('decimal'), pick(['lessThan', 'lessThanOrEqual', 'greaterThan', 'greaterThanOrEqual']), e('decimal'))
            .map(([a, m, b]) => call(a, m, [b])),
        ),
        w(1, fc.tuple(e('decimal'), pick(['<', '>=']), e('decimal')).map(([a, op, b]) => rel(a, op, b))),
        w(1, fc.tuple(e('record'), pick(ATTR_NAMES)).map(([r, a]) => access(r, a, false))),
        // Wrong argument counts: Cedar loads these and reports an error when they are evaluated.
        w(1, fc.tuple(e('decimal'), pick(['lessThan', 'greaterThanOrEqual']), fc.array(e('decimal'), { maxLength: 3 }))
          .filter(([, , args]) => args.length !== 1)
          .map(([a, m, args]) => call(a, m, args))),
        w(1, fc.tuple(e('ip'), pick(['isLoopback', 'isInRange']), anyTyped).map(([a, m, x]) => call(a, m, m === 'isInRange' ? [x, x] : [x]))),
      );
    case 'long':
      return fc.oneof(
        w(6, fc.tuple(e('long'), pick(['+', '-']), e('long')).map(([a, op, b]) => bin(a, op, b, ADD, ADD, MUL))),
        w(4, fc.tuple(e('long'), e('long')).map(([a, b]) => bin(a, '*', b, MUL, MUL, UNARY))),
        w(2, e('long').map((a) => ({ text: `-${operand(a, MEMBER)}`, prec: UNARY }))),
        w(
          2,
          fc
            .tuple(e('duration'), pick(['toMilliseconds', 'toSeconds', 'toMinutes', 'toHours', 'toDays']))
            .map(([a, m]) => call(a, m)),
        ),
        w(1, fc.tuple(e('entity'), e('string')).map(([a, k]) => call(a, 'getTag', [k]))),
        w(1, fc.tuple(pick(ATTR_NAMES), e('long'), anyTyped, fc.boolean()).map(([k, v, other, q]) => recordAccess(k, v, other, q))),
        w(1, fc.tuple(e('duration'), e('long')).map(([a, x]) => call(a, 'toHours', [x]))),
      );
    case 'string':
      return fc.oneof(
        w(1, fc.tuple(e('entity'), e('string')).map(([a, k]) => call(a, 'getTag', [k]))),
        w(1, fc.tuple(pick(ATTR_NAMES), e('string'), anyTyped, fc.boolean()).map(([k, v, other, q]) => recordAccess(k, v, other, q))),
      );
    case 'entity':
      return fc.oneof(
        w(2, fc.tuple(e('entity'), pick(['owner'])).map(([a, attr]) => access(a, attr, false))),
        w(1, fc.tuple(pick(ATTR_NAMES), e('entity'), anyTyped, fc.boolean()).map(([k, v, other, q]) => recordAccess(k, v, other, q))),
      );
    case 'set':
      return fc.oneof(
        w(3, fc.array(anyTyped, { maxLength: 3 }).map((xs) => primary(`[${xs.map((x) => x.text).join(', ')}]`))),
        w(2, fc.array(e('long'), { maxLength: 3 }).map((xs) => primary(`[${xs.map((x) => x.text).join(', ')}]`))),
        w(2, fc.array(e('entity'), { minLength: 1, maxLength: 3 }).map((xs) => primary(`[${xs.map((x) => x.text).join(', ')}]`))),
      );
    case 'record':
      return fc.oneof(
        w(
          3,
          fc
            .uniqueArray(fc.tuple(pick(ATTR_NAMES), anyTyped, fc.boolean()), { selector: ([k]) => k, maxLength: 3 })
            .map((entries) => primary(`{${entries.map(([k, v, quoted]) => `${recordKey(k, quoted)}: ${v.text}`).join(', ')}}`)),
        ),
        w(1, fc.tuple(e('record'), pick(['args', 'meta', 'nested'])).map(([r, a]) => access(r, a, false))),
      );
    case 'ip':
      return fc.oneof(
        w(6, e('string').map((s) => primary(`ip(${s.text})`))),
        w(1, fc.array(e('string'), { maxLength: 3 }).filter((xs) => xs.length !== 1).map((xs) => primary(`ip(${xs.map((x) => x.text).join(', ')})`))),
      );
    case 'decimal':
      return fc.oneof(
        w(6, e('string').map((s) => primary(`decimal(${s.text})`))),
        w(1, fc.tuple(e('string'), anyTyped).map(([s, x]) => primary(`decimal(${s.text}, ${x.text})`))),
      );
    case 'datetime':
      return fc.oneof(
        w(2, fc.tuple(e('datetime'), e('duration')).map(([a, b]) => call(a, 'offset', [b]))),
        w(2, e('datetime').map((a) => call(a, 'toDate'))),
        w(1, e('string').map((s) => primary(`datetime(${s.text})`))),
        w(1, fc.tuple(e('datetime'), fc.array(e('duration'), { maxLength: 2 }).filter((xs) => xs.length !== 1)).map(([a, xs]) => call(a, 'offset', xs))),
      );
    case 'duration':
      return fc.oneof(
        w(2, e('datetime').map((a) => call(a, 'toTime'))),
        w(2, fc.tuple(e('datetime'), e('datetime')).map(([a, b]) => call(a, 'durationSince', [b]))),
        w(1, e('string').map((s) => primary(`duration(${s.text})`))),
        w(1, fc.tuple(e('string'), e('long')).map(([s, n]) => primary(`duration(${s.text}, ${n.text})`))),
        w(1, fc.tuple(e('datetime'), e('datetime'), e('datetime')).map(([a, b, c]) => call(a, 'durationSince', [b, c]))),
      );
  }
}

/** A record literal key: an identifier where possible, else (or when asked) a quoted string. */
function recordKey(k: string, quoted: boolean): string {
  return /^[A-Za-z_][A-Za-z0-9_]*$/.test(k) && !quoted ? k : cedarString(k);
}

/** `{key: value, zz: other}.key` — a record literal read back (by `.key` or `["key"]`). */
function recordAccess(key: string, value: Gen, other: Gen, quoted: boolean): Gen {
  return access(primary(`{${recordKey(key, quoted)}: ${value.text}, zz: ${other.text}}`), key, quoted);
}

// ---------------------------------------------------------------------------------------------
// Policies.

const scopeEntity = (pool: Uid[]) => pick(pool).map(uidText);

function principalOrResourceScope(name: 'principal' | 'resource', pool: Uid[], types: string[]): fc.Arbitrary<string> {
  return fc.oneof(
    w(5, fc.constant(name)),
    w(2, scopeEntity(pool).map((e) => `${name} == ${e}`)),
    w(3, scopeEntity([...pool, ...GROUPS, ...FOLDERS, ...CELLS]).map((e) => `${name} in ${e}`)),
    w(1, pick(types).map((t) => `${name} is ${t}`)),
    w(1, fc.tuple(pick(types), scopeEntity([...GROUPS, ...FOLDERS, ...CELLS, ...pool])).map(([t, e]) => `${name} is ${t} in ${e}`)),
  );
}

const actionScope = fc.oneof(
  w(5, fc.constant('action')),
  w(2, scopeEntity(REQUEST_ACTIONS).map((e) => `action == ${e}`)),
  w(2, scopeEntity(ACTIONS).map((e) => `action in ${e}`)),
  w(1, fc.uniqueArray(scopeEntity(REQUEST_ACTIONS), { minLength: 1, maxLength: 3 }).map((es) => `action in [${es.join(', ')}]`)),
);

const annotation = fc.oneof(
  fc.constant('@id("rule")\n'),
  pick(['@approval("2")\n', '@rate("20/60s")\n', '@safety\n', '@advice("check \\"zone\\"")\n']),
);

const condition = fc.tuple(pick(['when', 'when', 'unless']), expr('bool', 3)).map(([kind, e]) => `${kind} { ${e.text} }`);

const policyText = fc
  .record({
    annotations: fc.uniqueArray(annotation, { maxLength: 2 }),
    effect: fc.oneof(w(3, fc.constant('permit')), w(1, fc.constant('forbid'))),
    principal: principalOrResourceScope('principal', PRINCIPALS, ['User', 'Group', 'Robot::Arm']),
    action: actionScope,
    resource: principalOrResourceScope('resource', RESOURCES, ['Doc', 'Folder', 'Robot::Arm', 'Robot::Cell']),
    conditions: fc.array(condition, { maxLength: 2 }),
    comment: fc.boolean(),
  })
  .map(
    (p) =>
      `${p.comment ? '// generated policy\n' : ''}${p.annotations.join('')}${p.effect} (\n  ${p.principal},\n  ${p.action},\n  ${p.resource}\n)` +
      `${p.conditions.map((c) => `\n${c}`).join('')};`,
  );

export const policySetText: fc.Arbitrary<string> = fc.array(policyText, { minLength: 1, maxLength: 4 }).map((ps) => ps.join('\n\n'));

// ---------------------------------------------------------------------------------------------
// Entity and context data (Cedar's JSON format).

type JsonValue = Context[string];

const entityRefJson = (u: Uid) => ({ __entity: { type: u.type, id: u.id } });
const extJson = (fn: string, pool: string[]) => pick(pool).map((arg) => ({ __extn: { fn, arg } }));

function dataValue(t: Ty): fc.Arbitrary<JsonValue> {
  switch (t) {
    case 'bool':
      return fc.boolean();
    case 'long':
      return pick(DATA_LONGS);
    case 'string':
      return pick(STRINGS);
    case 'entity':
      // Cedar reads `{type, id}` without the `__entity` escape as a plain record.
      return fc.oneof(w(5, pick(ALL_UIDS).map(entityRefJson)), w(1, pick(ALL_UIDS).map((u) => ({ type: u.type, id: u.id }))));
    case 'set':
      return fc.oneof(
        fc.array(pick(STRINGS), { maxLength: 3 }),
        fc.array(pick(DATA_LONGS), { maxLength: 3 }),
        fc.array(pick(ALL_UIDS).map(entityRefJson), { maxLength: 2 }),
        // Equal by value, not by text: decimal("1.0000") and decimal("1.5") vs "1.50" dedupe.
        fc.array(extJson('decimal', DECIMAL_STRINGS), { maxLength: 3 }),
        fc.array(fc.record({ zone: pick(STRINGS) }, { requiredKeys: [] }), { maxLength: 2 }),
      );
    case 'record':
      return fc.record(
        {
          speed: pick(DATA_LONGS),
          zone: pick(STRINGS),
          force: extJson('decimal', DECIMAL_STRINGS),
          depth: pick(DATA_LONGS),
          label: pick(STRINGS),
          nested: fc.record({ flag: fc.boolean() }, { requiredKeys: [] }),
        },
        { requiredKeys: [] },
      );
    case 'ip':
      return extJson('ip', IP_STRINGS);
    case 'decimal':
      return extJson('decimal', DECIMAL_STRINGS);
    case 'datetime':
      return extJson('datetime', DATETIME_STRINGS);
    case 'duration':
      return extJson('duration', DURATION_STRINGS);
  }
}

/** A record holding each listed attribute with the given percentage chance. */
function attrsRecord(attrs: Array<[string, Ty]>, presence: number): fc.Arbitrary<Record<string, JsonValue>> {
  const parts = attrs.map(([name, ty]) =>
    fc.tuple(fc.integer({ min: 0, max: 99 }), dataValue(ty)).map(([roll, v]) => (roll < presence ? ([name, v] as const) : undefined)),
  );
  return fc.tuple(...parts).map((entries) => {
    const out: Record<string, JsonValue> = {};
    for (const e of entries) if (e !== undefined) out[e[0]] = e[1];
    return out;
  });
}

const tagsRecord = fc.record({ k1: pick(DATA_LONGS), k2: pick(STRINGS), on: fc.boolean() }, { requiredKeys: [] });

function entityJson(u: Uid, rank: number): fc.Arbitrary<EntityJson> {
  const isAction = u.type === 'Action' || u.type === 'Robot::Action';
  const parentPool = [...RANKED.slice(rank + 1), GHOSTS[0]!];
  const parents: fc.Arbitrary<Uid[]> = isAction
    ? fc.constant(ACTION_PARENTS[`${u.type}::${u.id}`]!)
    : fc.uniqueArray(pick(parentPool), { maxLength: 2, selector: uidText });
  const attrs: fc.Arbitrary<Record<string, JsonValue>> = attrsRecord(ENTITY_ATTRS, isAction ? 20 : 80);
  return fc.tuple(attrs, parents, fc.option(tagsRecord, { nil: undefined })).map(([a, ps, tags]) => {
    const entity: EntityJson = { uid: { type: u.type, id: u.id }, attrs: a, parents: ps.map((p) => ({ type: p.type, id: p.id })) };
    if (tags !== undefined) entity.tags = tags as Record<string, JsonValue>;
    return entity;
  });
}

export const entitiesJson: fc.Arbitrary<EntityJson[]> = fc
  .tuple(
    ...RANKED.map((u, i) => fc.option(entityJson(u, i), { freq: 6, nil: undefined })),
    ...ACTIONS.map((u) => fc.option(entityJson(u, 0), { freq: 10, nil: undefined })),
  )
  .map((es) => es.filter((e): e is EntityJson => e !== undefined));

export const requestJson: fc.Arbitrary<OracleRequest> = fc.record({
  principal: pick(PRINCIPALS),
  action: pick(REQUEST_ACTIONS),
  resource: pick(RESOURCES),
  context: attrsRecord(CONTEXT_ATTRS, 85),
});

export interface GeneratedCase {
  policies: string;
  entities: EntityJson[];
  request: OracleRequest;
}

export const authorizationCase: fc.Arbitrary<GeneratedCase> = fc.record({
  policies: policySetText,
  entities: entitiesJson,
  request: requestJson,
});
