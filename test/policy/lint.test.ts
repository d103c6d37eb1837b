import { describe, expect, it } from 'vitest';
import { extensionArityProblems, formatDiagnostic, parsePolicies } from '../../src/policy/index.js';

const problems = (text: string) => extensionArityProblems(parsePolicies(text, { source: 'p.cedar' }));

describe('extension calls with the wrong number of arguments', () => {
  it('reports each, at the call, counting the arguments as written', () => {
    const text = [
      'permit(principal, action, resource) when {',
      '  decimal("1.0").lessThan(decimal("2.0"), decimal("3.0")) &&',
      '  context.t.offset() == context.u',
      '};',
      '@id("x") forbid(principal, action, resource) unless { duration("1h", 2) == context.d };',
    ].join('\n');
    expect(problems(text).map((d) => formatDiagnostic(d, 'warning'))).toEqual([
      'p.cedar:2:3: warning: `lessThan` takes 1 argument, got 2: Cedar loads this policy, but the call fails whenever it is evaluated [POLICY_EXTENSION_ARITY]',
      'p.cedar:3:3: warning: `offset` takes 1 argument, got 0: Cedar loads this policy, but the call fails whenever it is evaluated [POLICY_EXTENSION_ARITY]',
      'p.cedar:5:55: warning: `duration` takes 1 argument, got 2: Cedar loads this policy, but the call fails whenever it is evaluated [POLICY_EXTENSION_ARITY]',
    ]);
  });

  it('finds calls nested anywhere, and nothing in correct calls or built-in methods', () => {
    expect(problems('permit(principal, action, resource) when { if [ip("a", "b")].isEmpty() then true else {a: ip()}.a.isLoopback() };').map((d) => d.column)).toEqual([
      48, 91,
    ]);
    const fine = 'permit(principal, action, resource) when { ip("1.2.3.4").isInRange(ip("1.0.0.0/8")) && [1].contains(1) && datetime("2024-01-01").toTime() < duration("1h") };';
    expect(problems(fine)).toEqual([]);
  });
});
