// Requests from JSON: uid forms, context values read exactly, strict shape, typed errors only.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CedarRecord, EntityUid, RequestError, requestFromJson, valueKey } from '../../src/policy/index.js';

const base = { principal: { type: 'User', id: 'alice' }, action: { type: 'Action', id: 'move' }, resource: { type: 'Robot::Arm', id: 'a1' } };

function requestError(input: unknown): RequestError {
  try {
    requestFromJson(input);
  } catch (e) {
    if (e instanceof RequestError) return e;
    throw e;
  }
  throw new Error('expected a RequestError');
}

describe('requestFromJson', () => {
  it('reads uids in both forms and the context exactly', () => {
    const r = requestFromJson(
      '{"principal": {"__entity": {"type": "User", "id": "alice"}}, "action": {"type": "Action", "id": "move"},' +
        ' "resource": {"type": "Robot::Arm", "id": "a1"}, "context": {"args": {"speed": 9223372036854775807}, "who": {"__entity": {"type": "User", "id": "bob"}}}}',
    );
    expect(r.principal).toEqual(new EntityUid('User', 'alice'));
    expect(r.action.key).toBe('Action::"move"');
    expect(r.resource.type).toBe('Robot::Arm');
    expect((r.context.get('args') as CedarRecord).get('speed')).toBe(9223372036854775807n);
    expect(r.context.get('who')).toEqual(new EntityUid('User', 'bob'));
  });

  it('treats a missing context as empty', () => {
    expect(requestFromJson(base).context.size).toBe(0);
  });

  it('reads {type, id} in the context as a record unless asked otherwise', () => {
    const input = { ...base, context: { owner: { type: 'User', id: 'bob' } } };
    expect(requestFromJson(input).context.get('owner')).toBeInstanceOf(CedarRecord);
    expect(requestFromJson(input, { implicitEntityRefs: true }).context.get('owner')).toEqual(new EntityUid('User', 'bob'));
  });

  it('refuses malformed requests with a code and a path', () => {
    const cases: Array<[unknown, string, string]> = [
      [[], 'REQUEST_SHAPE', '$'],
      [{ ...base, extra: 1 }, 'REQUEST_SHAPE', '$.extra'],
      [{ action: base.action, resource: base.resource }, 'REQUEST_SHAPE', '$'],
      [{ ...base, principal: 'User::"alice"' }, 'CEDAR_JSON_UID', '$.principal'],
      [{ ...base, action: { type: 'Action', id: 7 } }, 'CEDAR_JSON_UID', '$.action.id'],
      [{ ...base, context: [] }, 'REQUEST_SHAPE', '$.context'],
      [{ ...base, context: { a: null } }, 'CEDAR_JSON_NULL', '$.context.a'],
      [{ ...base, context: { a: [0.5] } }, 'CEDAR_JSON_NUMBER', '$.context.a[0]'],
      [{ ...base, context: { a: 2 ** 55 } }, 'JSON_UNSAFE_NUMBER', '$.context.a'],
      [{ ...base, context: { a: { __extn: { fn: 'decimal', arg: '1.23456' } } } }, 'CEDAR_JSON_EXTENSION', '$.context.a.__extn'],
      ['{"principal": 1,}', 'JSON_SYNTAX', '$'],
      [JSON.stringify({ ...base, context: { a: 1 } }).replace('"a":1', '"a":9223372036854775808'), 'CEDAR_JSON_NUMBER', '$.context.a'],
    ];
    for (const [input, code, path] of cases) {
      const e = requestError(input);
      expect(e.code, JSON.stringify(input)).toBe(code);
      expect(e.path, JSON.stringify(input)).toBe(path);
    }
  });

  it('bounds the size and nesting of a request', () => {
    const deep = { ...base, context: { a: JSON.parse('['.repeat(40) + ']'.repeat(40)) as unknown } };
    expect(requestError(deep).code).toBe('JSON_TOO_DEEP');
    expect(requestError(JSON.stringify({ ...base, context: { big: 'x'.repeat(2 * 1024 * 1024) } })).code).toBe('JSON_TOO_LARGE');
  });

  it('reads deeply nested sets of quoted strings in linear space', () => {
    const nested = '['.repeat(28) + '"\\"\\\\"' + ']'.repeat(28);
    const r = requestFromJson(`{"principal": {"type": "U", "id": "a"}, "action": {"type": "A", "id": "a"}, "resource": {"type": "R", "id": "a"}, "context": {"a": ${nested}}}`);
    expect(valueKey(r.context).length).toBeLessThan(500);
  });

  it('yields a request or a RequestError for mutated text, nothing else', () => {
    const valid = JSON.stringify({ ...base, context: { args: { speed: 5, zone: 'a' }, at: { __extn: { fn: 'datetime', arg: '2024-01-01' } } } });
    fc.assert(
      fc.property(fc.nat(), fc.nat({ max: 6 }), fc.string({ maxLength: 4, unit: fc.constantFrom(...'{}[]":,01.-e\\nu') }), (at, cut, insert) => {
        const i = at % valid.length;
        const text = valid.slice(0, i) + insert + valid.slice(i + cut);
        try {
          requestFromJson(text);
        } catch (e) {
          expect(e).toBeInstanceOf(RequestError);
        }
      }),
      { numRuns: 3000 },
    );
  });

  it('yields a request or a RequestError for arbitrary parsed values', () => {
    const anything = fc.anything({ maxDepth: 3, withBigInt: true, withMap: true, withNullPrototype: true });
    fc.assert(
      fc.property(fc.record({ principal: anything, action: anything, resource: anything, context: anything }, { requiredKeys: [] }), (input) => {
        try {
          requestFromJson(input);
        } catch (e) {
          expect(e).toBeInstanceOf(RequestError);
        }
      }),
      { numRuns: 2000 },
    );
  });
});
