// enforce(): Cedar's decision plus reason codes, and strict mode turning an errored forbid
// (which Cedar would skip, failing open) into a deny.
import { describe, expect, it } from 'vitest';
import { Entities, PolicySet, enforce, isAuthorized, requestFromJson } from '../../src/policy/index.js';

const entities = Entities.fromJson([{ uid: { type: 'User', id: 'op' }, attrs: { certified: true }, parents: [] }]);
const request = (context: Record<string, unknown>, action = 'move') =>
  requestFromJson({ principal: { type: 'User', id: 'op' }, action: { type: 'Action', id: action }, resource: { type: 'Robot::Arm', id: 'a1' }, context });

const policies = PolicySet.fromText(`
  @id("operators-move") @approval("1")
  permit(principal, action == Action::"move", resource) when { principal.certified };

  @id("speed-limit")
  forbid(principal, action == Action::"move", resource) when { context.args.speed > 100 };

  @id("estop")
  forbid(principal, action, resource) when { context.estop };
`);

describe('enforce', () => {
  it('allows with no reason codes when Cedar allows and nothing errored', () => {
    const d = enforce(policies, entities, request({ args: { speed: 10 }, estop: false }));
    expect(d).toMatchObject({ decision: 'allow', reasons: ['policy0'], strictDeny: false, reasonCodes: [], errors: [] });
    expect(d.determining[0]!.annotations).toEqual({ id: 'operators-move', approval: '1' });
  });

  it('says NO_PERMIT for a default deny and FORBIDDEN for a forbid', () => {
    expect(enforce(policies, entities, request({ args: { speed: 10 }, estop: false }, 'cut')).reasonCodes).toEqual(['NO_PERMIT']);
    const forbidden = enforce(policies, entities, request({ args: { speed: 500 }, estop: true }));
    expect(forbidden).toMatchObject({ decision: 'deny', reasons: ['policy1', 'policy2'], reasonCodes: ['FORBIDDEN'], strictDeny: false });
  });

  it('denies when a matching forbid errors, where Cedar alone allows', () => {
    // `context.args` is missing: the speed limit cannot be checked.
    const req = request({ estop: false });
    expect(isAuthorized(policies, entities, req).decision).toBe('allow');
    const d = enforce(policies, entities, req);
    expect(d.decision).toBe('deny');
    expect(d.strictDeny).toBe(true);
    expect(d.reasonCodes).toEqual(['FORBID_ERRORED']);
    expect(d.reasons).toEqual(['policy1']);
    expect(d.determining).toEqual([{ id: 'policy1', name: 'speed-limit', effect: 'forbid', annotations: { id: 'speed-limit' } }]);
    expect(d.errors).toMatchObject([{ policyId: 'policy1', policyName: 'speed-limit', code: 'EVAL_MISSING_ATTR' }]);
  });

  it('follows Cedar when strict mode is off', () => {
    const d = enforce(policies, entities, request({ estop: false }), { strict: false });
    expect(d).toMatchObject({ decision: 'allow', reasons: ['policy0'], strictDeny: false, reasonCodes: [] });
    expect(d.errors).toHaveLength(1);
  });

  it('ignores errors in permits: they only withhold a permission', () => {
    const ps = PolicySet.fromText(`
      permit(principal, action, resource) when { context.missing };
      permit(principal, action, resource);`);
    expect(enforce(ps, entities, request({}))).toMatchObject({ decision: 'allow', strictDeny: false, reasonCodes: [] });
  });

  it('does not evaluate, and so never fails on, forbids whose scope does not match', () => {
    const d = enforce(policies, entities, request({ estop: false }, 'inspect'));
    expect(d.errors).toEqual([]);
    expect(d.reasonCodes).toEqual(['NO_PERMIT']);
  });

  it('lists every reason that applies to a deny', () => {
    expect(enforce(policies, entities, request({ estop: true })).reasonCodes).toEqual(['FORBIDDEN', 'FORBID_ERRORED']);
    const d = enforce(policies, entities, request({}, 'cut'));
    expect(d).toMatchObject({ decision: 'deny', strictDeny: false, reasonCodes: ['FORBID_ERRORED', 'NO_PERMIT'] });
    expect(d.errors.map((e) => e.policyId)).toEqual(['policy2']);
  });
});
