// Extension functions and methods inside policies: results, type checks, bad literals, arity.
import { describe, expect, it } from 'vitest';
import { Datetime, Decimal, Duration, IpAddr, compileExpression, evalEnv } from '../../src/policy/index.js';
import type { Expr, Loc } from '../../src/policy/index.js';
import { Entities, EntityUid, CedarRecord, EvalError } from '../../src/policy/index.js';
import { evalError, expectError, expectValue } from './evaluator-harness.js';

describe('ip', () => {
  it('constructs addresses and ranges and answers its methods', () => {
    expectValue('ip("10.0.0.1")', IpAddr.parse('10.0.0.1'));
    expectValue('ip("10.0.0.1").isIpv4()', true);
    expectValue('ip("10.0.0.1").isIpv6()', false);
    expectValue('ip("::1").isIpv6()', true);
    expectValue('ip("::1").isLoopback()', true);
    expectValue('ip("127.0.0.100").isLoopback()', true);
    expectValue('ip("10.0.0.1").isLoopback()', false);
    expectValue('ip("224.0.0.1").isMulticast()', true);
    expectValue('ip("10.1.2.3").isInRange(ip("10.0.0.0/8"))', true);
    expectValue('ip("11.1.2.3").isInRange(ip("10.0.0.0/8"))', false);
    expectValue('ip("10.0.0.0/24").isInRange(ip("10.0.0.0/16"))', true);
    expectValue('context.src.isInRange(ip("192.168.0.0/16"))', true, {
      context: { src: { __extn: { fn: 'ip', arg: '192.168.4.2' } } },
    });
  });

  it('fails on bad text and on non-addresses', () => {
    expectError('ip("1.2.3")', 'EVAL_EXTENSION');
    expectError('ip("10.0.0.1/33")', 'EVAL_EXTENSION');
    expectError('ip(1)', 'EVAL_TYPE');
    expectError('ip("10.0.0.1").isInRange("10.0.0.0/8")', 'EVAL_TYPE');
    expectError('decimal("1.0").isIpv4()', 'EVAL_TYPE');
    expect(evalError('ip("zz")').message).toContain('zz');
  });
});

describe('decimal', () => {
  it('compares only through its methods', () => {
    expectValue('decimal("1.5")', Decimal.parse('1.5'));
    expectValue('decimal("1.5").lessThan(decimal("2.0"))', true);
    expectValue('decimal("1.5").lessThanOrEqual(decimal("1.50"))', true);
    expectValue('decimal("1.5").greaterThan(decimal("1.5"))', false);
    expectValue('decimal("-0.0001").greaterThanOrEqual(decimal("-922337203685477.5808"))', true);
    expectValue('context.score.greaterThan(decimal("0.75"))', true, {
      context: { score: { __extn: { fn: 'decimal', arg: '0.8' } } },
    });
  });

  it('fails on bad text, overflow and non-decimals', () => {
    expectError('decimal("1.23456")', 'EVAL_EXTENSION');
    expectError('decimal("922337203685477.5808")', 'EVAL_EXTENSION');
    expectError('decimal("abc")', 'EVAL_EXTENSION');
    expectError('decimal("1.0").lessThan(1)', 'EVAL_TYPE');
    expectError('decimal("1.0").lessThan(duration("1h"))', 'EVAL_TYPE');
    expectError('ip("10.0.0.1").lessThan(decimal("1.0"))', 'EVAL_TYPE');
  });
});

describe('datetime and duration', () => {
  it('computes with instants and spans', () => {
    expectValue('datetime("2024-01-01")', Datetime.parse('2024-01-01'));
    expectValue('duration("1d2h")', Duration.parse('1d2h'));
    expectValue('datetime("2024-01-01").offset(duration("1d")) == datetime("2024-01-02")', true);
    expectValue('datetime("2024-01-02").durationSince(datetime("2024-01-01")) == duration("1d")', true);
    expectValue('datetime("2024-01-01T10:30:00Z").toDate() == datetime("2024-01-01")', true);
    expectValue('datetime("2024-01-01T10:30:00Z").toTime() == duration("10h30m")', true);
    expectValue('duration("1d2h").toHours()', 26n);
    expectValue('duration("1d2h").toDays()', 1n);
    expectValue('duration("90s").toMinutes()', 1n);
    expectValue('duration("1m").toSeconds()', 60n);
    expectValue('duration("-1s").toMilliseconds()', -1000n);
    expectValue('context.now < datetime("2025-01-01")', true, {
      context: { now: { __extn: { fn: 'datetime', arg: '2024-06-01T08:30:00Z' } } },
    });
  });

  it('fails on bad text, overflow and wrong types', () => {
    expectError('datetime("2023-02-29")', 'EVAL_EXTENSION');
    expectError('duration("1h1d")', 'EVAL_EXTENSION');
    expectError('duration("9223372036854775808ms")', 'EVAL_EXTENSION');
    expectError('datetime("2024-01-01").offset(duration("1h")).offset(1)', 'EVAL_TYPE');
    expectError('datetime("2024-01-01").durationSince(duration("1h"))', 'EVAL_TYPE');
    expectError('duration("1h").toDate()', 'EVAL_TYPE');
    expectError('datetime("2024-01-01").toHours()', 'EVAL_TYPE');
  });
});

describe('extension calls built outside the parser', () => {
  const loc: Loc = { source: 't', line: 1, column: 1, offset: 0, length: 1 };
  const str = (value: string): Expr => ({ kind: 'string', value, loc });
  const env = evalEnv(Entities.empty(), {
    principal: new EntityUid('User', 'a'),
    action: new EntityUid('Action', 'a'),
    resource: new EntityUid('Doc', 'a'),
    context: CedarRecord.EMPTY,
  });
  const run = (e: Expr) => compileExpression(e)(env);

  it('check the argument count when evaluated, as Cedar does', () => {
    for (const args of [[], [str('1.1.1.1'), str('x')]]) {
      let error: unknown;
      try {
        run({ kind: 'call', fn: 'ip', args, loc });
      } catch (e) {
        error = e;
      }
      expect(error).toBeInstanceOf(EvalError);
      expect((error as EvalError).code).toBe('EVAL_ARITY');
    }
    expect(() => run({ kind: 'method', target: { kind: 'call', fn: 'decimal', args: [str('1.0')], loc }, method: 'lessThan', args: [], loc })).toThrow(
      expect.objectContaining({ code: 'EVAL_ARITY' }),
    );
  });
});
