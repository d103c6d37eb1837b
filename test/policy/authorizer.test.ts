// Authorization: Cedar's decision rules, reasons and errors in policy order, policy set
// construction, and the index never changing a decision (indexed vs linear on random input).
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  Entities,
  PolicyParseError,
  PolicySet,
  PolicySetError,
  isAuthorized,
  isAuthorizedUnindexed,
  parsePolicies,
  requestFromJson,
} from '../../src/policy/index.js';
import type { AuthzRequest, Decision } from '../../src/policy/index.js';
import { authorizationCase, entitiesJson, policySetText, requestJson } from './support/generators.js';

const entities = Entities.fromJson([
  { uid: { type: 'User', id: 'alice' }, attrs: { level: 5 }, parents: [{ type: 'Group', id: 'ops' }] },
  { uid: { type: 'User', id: 'bob' }, attrs: { level: 1 }, parents: [] },
  { uid: { type: 'Action', id: 'write' }, attrs: {}, parents: [{ type: 'Action', id: 'manage' }] },
  { uid: { type: 'Action', id: 'manage' }, attrs: {}, parents: [{ type: 'Action', id: 'all' }] },
  { uid: { type: 'Action', id: 'read' }, attrs: {}, parents: [{ type: 'Action', id: 'all' }] },
  { uid: { type: 'Robot::Arm', id: 'a1' }, attrs: { zone: 'z1' }, parents: [{ type: 'Robot::Cell', id: 'c1' }] },
]);

function request(principal: string, action: string, resource = 'a1', context: Record<string, unknown> = {}): AuthzRequest {
  return requestFromJson({
    principal: { type: 'User', id: principal },
    action: { type: 'Action', id: action },
    resource: { type: 'Robot::Arm', id: resource },
    context,
  });
}

const decide = (text: string, req: AuthzRequest): Decision => isAuthorized(PolicySet.fromText(text), entities, req);

describe('decisions', () => {
  it('denies by default, with no reasons', () => {
    expect(decide('', request('alice', 'read'))).toEqual({ decision: 'deny', reasons: [], determining: [], errors: [] });
    expect(decide('permit(principal == User::"bob", action, resource);', request('alice', 'read')).decision).toBe('deny');
  });

  it('allows on a satisfied permit, naming it', () => {
    const d = decide('@id("ops-read") @rate("20/60s") permit(principal in Group::"ops", action == Action::"read", resource);', request('alice', 'read'));
    expect(d).toEqual({
      decision: 'allow',
      reasons: ['policy0'],
      determining: [{ id: 'policy0', name: 'ops-read', effect: 'permit', annotations: { id: 'ops-read', rate: '20/60s' } }],
      errors: [],
    });
  });

  it('lets a satisfied forbid override every permit; the forbids are the reasons', () => {
    const text = `
      permit(principal, action, resource);
      forbid(principal, action, resource) when { principal.level < 3 };
      permit(principal == User::"bob", action, resource);
      forbid(principal, action == Action::"read", resource);`;
    const bob = decide(text, request('bob', 'read'));
    expect(bob.decision).toBe('deny');
    expect(bob.reasons).toEqual(['policy1', 'policy3']);
    expect(bob.determining.map((p) => p.effect)).toEqual(['forbid', 'forbid']);
    expect(decide(text, request('alice', 'write'))).toMatchObject({ decision: 'allow', reasons: ['policy0'] });
  });

  it('skips policies whose condition errors and lists them in policy order', () => {
    const text = `
      permit(principal, action, resource) when { principal.missing };
      @id("guard") forbid(principal, action, resource) when { context.speed > 10 };
      permit(principal, action, resource) when { resource.zone == "z1" };
      permit(principal, action, resource) when { 1 + "x" == 2 };`;
    const d = decide(text, request('alice', 'read'));
    expect(d.decision).toBe('allow');
    expect(d.reasons).toEqual(['policy2']);
    expect(d.errors.map((e) => [e.policyId, e.policyName, e.code])).toEqual([
      ['policy0', undefined, 'EVAL_MISSING_ATTR'],
      ['policy1', 'guard', 'EVAL_MISSING_ATTR'],
      ['policy3', undefined, 'EVAL_TYPE'],
    ]);
    expect(d.errors[1]!.message).toContain('speed');
    expect(Object.keys(d.errors[0]!)).not.toContain('policyName');
  });

  it('lists reasons in policy order across the index buckets', () => {
    // Filed under: rest, the resource, the principal, the principal, the resource's group,
    // the principal's group, the principal itself as a group, the resource's group.
    const text = `
      permit(principal, action, resource);
      permit(principal, action, resource == Robot::Arm::"a1");
      permit(principal == User::"alice", action, resource);
      permit(principal == User::"alice", action, resource == Robot::Arm::"a1");
      permit(principal, action, resource in Robot::Cell::"c1");
      permit(principal in Group::"ops", action, resource);
      permit(principal is User in User::"alice", action, resource is Robot::Arm);
      permit(principal in Group::"ops", action, resource is Robot::Arm in Robot::Cell::"c1");`;
    const all = Array.from({ length: 8 }, (_, i) => `policy${i}`);
    expect(decide(text, request('alice', 'read')).reasons).toEqual(all);
    expect(decide(text, request('bob', 'read')).reasons).toEqual(['policy0', 'policy1', 'policy4']);
  });

  it('matches action groups through the action hierarchy, and == exactly', () => {
    const text = `
      permit(principal, action in Action::"all", resource);
      permit(principal, action == Action::"manage", resource);
      permit(principal, action in [Action::"manage", Action::"read"], resource);
      permit(principal, action == Action::"write", resource);`;
    expect(decide(text, request('bob', 'write')).reasons).toEqual(['policy0', 'policy2', 'policy3']);
    expect(decide(text, request('bob', 'manage')).reasons).toEqual(['policy0', 'policy1', 'policy2']);
    expect(decide(text, request('bob', 'read')).reasons).toEqual(['policy0', 'policy2']);
    expect(decide(text, request('bob', 'unknown')).reasons).toEqual([]);
  });

  it('gives the same answers for repeated and interleaved requests', () => {
    const ps = PolicySet.fromText('permit(principal, action in Action::"manage", resource) when { context.ok };');
    const ask = (action: string, ok: boolean) => isAuthorized(ps, entities, request('bob', action, 'a1', { ok })).decision;
    expect([ask('write', true), ask('read', true), ask('write', false), ask('write', true), ask('manage', true)]).toEqual([
      'allow',
      'deny',
      'deny',
      'allow',
      'allow',
    ]);
    // The same policy set against another store sees that store's hierarchy.
    expect(isAuthorized(ps, Entities.empty(), request('bob', 'write', 'a1', { ok: true })).decision).toBe('deny');
  });

  it('stays correct when requests name many distinct unknown actions', () => {
    const ps = PolicySet.fromText('permit(principal, action, resource) when { action == Action::"a4999" };');
    const allowed = Array.from({ length: 5000 }, (_, i) => isAuthorized(ps, entities, request('bob', `a${i}`)).decision).filter((d) => d === 'allow');
    expect(allowed).toHaveLength(1);
  });
});

describe('policy sets', () => {
  it('numbers policies across sources and keeps their locations', () => {
    const ps = PolicySet.fromSources([
      { text: 'permit(principal, action, resource);\nforbid(principal, action, resource);', source: 'a.cedar' },
      { text: 'permit(principal, action, resource);', source: 'b.cedar' },
    ]);
    expect(ps.policies.map((p) => [p.id, p.ast.loc.source])).toEqual([
      ['policy0', 'a.cedar'],
      ['policy1', 'a.cedar'],
      ['policy2', 'b.cedar'],
    ]);
    expect(ps.size).toBe(3);
    expect(ps.get('policy1')!.effect).toBe('forbid');
    expect(ps.get('policy9')).toBeUndefined();
  });

  it('passes parse options through and reports parse errors', () => {
    expect(PolicySet.fromText('permit(principal, action, resource);', { idPrefix: 'p', startIndex: 7 }).policies[0]!.id).toBe('p7');
    expect(() => PolicySet.fromText('permit(principal, action, resource)')).toThrow(PolicyParseError);
    expect(() => PolicySet.fromText('permit(principal, action, resource) when { foo(1) };')).toThrow(PolicyParseError);
  });

  it('refuses duplicate policy ids', () => {
    const [p] = parsePolicies('permit(principal, action, resource);');
    let error: unknown;
    try {
      PolicySet.fromPolicies([p!, { ...p!, effect: 'forbid' }]);
    } catch (e) {
      error = e;
    }
    expect(error).toBeInstanceOf(PolicySetError);
    expect(error).toMatchObject({ code: 'POLICY_DUPLICATE_ID', policyId: 'policy0' });
  });
});

describe('the index', () => {
  it('never changes a decision: indexed equals linear evaluation on random inputs', () => {
    // Up to ~24 policies per set so that every index bucket is populated.
    const bigSets = fc.array(policySetText, { minLength: 1, maxLength: 6 }).map((texts) => texts.join('\n'));
    fc.assert(
      fc.property(bigSets, entitiesJson, fc.array(requestJson, { minLength: 1, maxLength: 5 }), (text, ents, reqs) => {
        const ps = PolicySet.fromText(text);
        const store = Entities.fromJson(ents);
        for (const r of reqs) {
          const req = requestFromJson(r);
          expect(isAuthorized(ps, store, req)).toEqual(isAuthorizedUnindexed(ps, store, req));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('agrees with linear evaluation on generated single cases too', () => {
    fc.assert(
      fc.property(authorizationCase, (c) => {
        const ps = PolicySet.fromText(c.policies);
        const store = Entities.fromJson(c.entities);
        const req = requestFromJson(c.request);
        expect(isAuthorized(ps, store, req)).toEqual(isAuthorizedUnindexed(ps, store, req));
      }),
      { numRuns: 300 },
    );
  });
});
