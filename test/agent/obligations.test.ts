import { describe, expect, it } from 'vitest';
import { ObligationError, obligationsOf } from '../../src/agent/obligations.js';

const p = (id: string, annotations: Record<string, string>) => ({ id, annotations });

describe('obligations from annotations', () => {
  it('is empty for a plain permit', () => {
    expect(obligationsOf([p('policy0', {})])).toEqual({ approvals: 0, approvers: [], rates: [], safety: false });
  });

  it('reads each annotation', () => {
    const o = obligationsOf([
      p('policy3', { approval: '2', approvers: 'Role::"supervisor", Role::"safety_officer"', rate: '20/60s', safety: 'true' }),
    ]);
    expect(o).toEqual({
      approvals: 2,
      approvers: ['Role::"supervisor"', 'Role::"safety_officer"'],
      rates: [{ policyId: 'policy3', count: 20, periodMs: 60_000 }],
      safety: true,
    });
  });

  it('combines several determining permits strictly', () => {
    const o = obligationsOf([
      p('policy1', { approval: '1', rate: '10/1m', safety: 'true' }),
      p('policy2', { approval: '3', rate: '100/1h' }),
    ]);
    expect(o.approvals).toBe(3);
    expect(o.rates.map((r) => r.policyId)).toEqual(['policy1', 'policy2']);
    expect(o.safety).toBe(false);
  });

  it('fails closed on malformed annotations, naming policy and annotation', () => {
    const cases: Array<Record<string, string>> = [{ approval: 'two' }, { approval: '0' }, { rate: '20' }, { rate: '0/1s' }, { cache_ttl: '30s' }, { safety: 'yes' }, { approvers: 'supervisor' }];
    for (const annotations of cases) {
      try {
        obligationsOf([p('policy7', annotations)]);
        expect.unreachable(`accepted ${JSON.stringify(annotations)}`);
      } catch (err) {
        expect(err).toBeInstanceOf(ObligationError);
        expect((err as ObligationError).problems[0]).toMatchObject({ policyId: 'policy7', annotation: Object.keys(annotations)[0] });
      }
    }
  });
});
