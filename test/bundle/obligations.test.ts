import { describe, expect, it } from 'vitest';
import { ObligationError, combineObligations, obligationTable, obligationsOf } from '../../src/bundle/obligations.js';

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
    const cases: Array<Record<string, string>> = [
      { approval: 'two' }, { approval: '0' }, { rate: '20' }, { rate: '0/1s' }, { cache_ttl: '30s' }, { safety: 'yes' }, { approvers: 'supervisor' },
      { grant_ttl: 'soon', approval: '1' }, { grant_ttl: '500ms', approval: '1' }, { grant_ttl: '2d', approval: '1' }, { grant_ttl: '10m' },
    ];
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

  it('reads @grant_ttl: a grant only when every determining permit asking for approvals grants one, for the shortest time', () => {
    expect(obligationsOf([p('weld', { approval: '2', grant_ttl: '10m' })]).grantTtlMs).toBe(600_000);
    expect(obligationsOf([p('weld', { approval: '2', grant_ttl: '10m' }), p('weld-night', { approval: '1', grant_ttl: '1m' })]).grantTtlMs).toBe(60_000);
    // One permit asking for approval without a grant: no grant at all.
    expect(obligationsOf([p('weld', { approval: '2', grant_ttl: '10m' }), p('weld-any', { approval: '1' })]).grantTtlMs).toBeUndefined();
    // A permit without @approval neither adds nor withholds a grant.
    expect(obligationsOf([p('weld', { approval: '2', grant_ttl: '10m' }), p('plain', {})]).grantTtlMs).toBe(600_000);
    expect(obligationsOf([p('weld', { approval: '2' })]).grantTtlMs).toBeUndefined();
  });

  it('combines from a bundle\'s table without reading annotations again, one permit giving its own entry', () => {
    const weld = p('weld', { approval: '2', grant_ttl: '10m', rate: '5/1h' });
    const table = obligationTable([weld, p('estop', { safety: 'true' })]);
    expect(combineObligations([weld], table)).toBe(table.get('weld'));
    expect(combineObligations([weld, p('estop', {})], table)).toEqual({ approvals: 2, approvers: [], rates: [{ policyId: 'weld', count: 5, periodMs: 3_600_000 }], safety: false, grantTtlMs: 600_000 });
    expect(() => obligationTable([p('bad', { rate: 'x' })])).toThrow(ObligationError);
  });
});
