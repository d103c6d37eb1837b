// decide() on its own: every row of the pipeline behaviour table as plain input → Verdict, with
// no database and no disk (a bundle built, signed and verified in memory, envelopes signed and
// verified in memory, grants and rate counts as plain values).
import { describe, expect, it } from 'vitest';
import { type DecideInput, type DecisionFacts, type GrantTerms, decide } from '../../src/agent/decide.js';
import { issuerKey, verifyBundle } from '../../src/bundle/verify.js';
import { toHex } from '../../src/crypto/bytes.js';
import { verifyCommand } from '../../src/envelope/command.js';
import type { RateLimit } from '../../src/store/rate-limiter.js';
import { CELL_POLICIES, DEVICE, T0, cellBundle, command, makeKeys } from './fixture.js';

/** The cell's policies, plus a forbid whose condition errors when a move names no zone. */
const POLICIES = `${CELL_POLICIES}
@id("zone-guard")
forbid (principal, action == Action::"move", resource) when { context.args.zone == "Z" };
`;

const keys = makeKeys();
const bundleOf = (policies: string) => verifyBundle(cellBundle(keys, 1, policies), { roots: [{ publicKey: keys.root.publicKey }], threshold: 1, device: DEVICE, agentVersion: '0.1.0', now: T0 });
const bundle = bundleOf(POLICIES);

const FACTS: DecisionFacts = {
  nowMs: T0,
  posture: 'degraded',
  online: true,
  bundle: { revision: 1, stale: false },
  source: 'mqtt',
  failClosed: { active: false },
  auditFull: false,
};

/** Rate counts as a plain set: the limits (by policy id) that have no room left. */
function rateState(exhausted: string[] = []) {
  const checked: Array<{ limits: readonly RateLimit[]; principal: string; action: string }> = [];
  return {
    checked,
    check(limits: readonly RateLimit[], principal: string, action: string) {
      checked.push({ limits, principal, action });
      const full = limits.find((l) => exhausted.includes(l.policyId));
      return full === undefined ? { allowed: true } : { allowed: false, limit: full };
    },
  };
}

/** Live grants as a plain map keyed by principal, action and resource. */
function grantLookup(grants: Record<string, GrantTerms> = {}) {
  return { find: (principal: string, action: string, resource: string, nowMs: number) => {
    const grant = grants[`${principal} ${action} ${resource}`];
    return grant !== undefined && grant.expiresMs > nowMs ? grant : undefined;
  } };
}

function input(
  action: string,
  args: Record<string, string | number> = {},
  over: { facts?: Partial<DecisionFacts>; resource?: string; iatMs?: number; tolerateEarly?: boolean; grants?: Record<string, GrantTerms>; exhausted?: string[]; approved?: { approvals: number } } = {},
): DecideInput {
  const bytes = command(keys.planner, over.iatMs ?? T0, action, args, over.resource === undefined ? {} : { resource: over.resource });
  const verified = verifyCommand(bytes, {
    keyResolver: (kid) => issuerKey(bundle, kid, T0),
    deviceId: DEVICE,
    topic: 'cmd',
    now: T0,
    maxLifetimeMs: 3_600_000,
    ...(over.tolerateEarly === true ? { tolerateEarly: true } : {}),
  });
  return {
    deviceId: DEVICE,
    command: verified,
    issuer: bundle.issuersByKid.get(toHex(verified.kid))!,
    bundle,
    facts: { ...FACTS, ...over.facts },
    grants: grantLookup(over.grants),
    rate: rateState(over.exhausted),
    ...(over.approved === undefined ? {} : { approved: over.approved }),
  };
}

const MOVE_RATE = { policyId: 'operators-move', count: 3, periodMs: 60_000 };
const WELD = 'Agent::"planner" weld Arm::"arm-01"';

describe('decide(): the pipeline behaviour table, input → Verdict', () => {
  it('allow: PERMITTED by the determining permit, its rate counted, recorded in the normal area', () => {
    expect(decide(input('move', { speed: 50, zone: 'A' }))).toEqual({
      decision: 'allow',
      reasons: ['PERMITTED'],
      policies: ['operators-move'],
      obligations: { approvals: 0, approvers: [], rates: [MOVE_RATE], safety: false },
      errors: [],
      count: [MOVE_RATE],
      area: 'normal',
    });
  });

  it('deny: no permit, or a forbid, names its reason and determining policies and counts nothing', () => {
    expect(decide(input('move', { speed: 150, zone: 'A' }))).toMatchObject({ decision: 'deny', reasons: ['NO_PERMIT'], policies: [], count: [], area: 'normal' });
    expect(decide(input('move', { speed: 300, zone: 'A' }))).toMatchObject({ decision: 'deny', reasons: ['FORBIDDEN'], policies: ['speed-cap'], count: [] });
  });

  it('forbid errored: strict enforcement denies what Cedar alone would allow, naming the erroring forbid', () => {
    const verdict = decide(input('move', { speed: 50 }));
    expect(verdict).toMatchObject({ decision: 'deny', reasons: ['FORBID_ERRORED'], policies: ['zone-guard'], count: [] });
    expect(verdict.errors.map((e) => e.policyId)).toEqual(['zone-guard']);
  });

  it('approval: holds for the quorum the permit asks, counting the rate of the hold', () => {
    expect(decide(input('weld'))).toMatchObject({
      decision: 'pending',
      reasons: ['APPROVAL_REQUIRED'],
      policies: ['weld-needs-approval'],
      hold: { required: 2, approvers: ['Role::"supervisor"'] },
      area: 'normal',
    });
  });

  it('rate: over the limit is denied RATE_LIMITED, and only the determining permit\'s limits are asked', () => {
    const request = input('move', { speed: 50, zone: 'A' }, { exhausted: ['operators-move'] });
    expect(decide(request)).toMatchObject({ decision: 'deny', reasons: ['RATE_LIMITED'], policies: ['operators-move'], count: [] });
    expect((request.rate as ReturnType<typeof rateState>).checked).toEqual([{ limits: [MOVE_RATE], principal: 'Agent::"planner"', action: 'move' }]);
    // A command without @rate never asks.
    const estop = input('estop', {}, { exhausted: ['operators-move'] });
    expect(decide(estop).decision).toBe('allow');
    expect((estop.rate as ReturnType<typeof rateState>).checked).toEqual([]);
  });

  it('grant: a live grant of the same principal, action and resource waives the quorum; an expired one does not', () => {
    const grant = { expiresMs: T0 + 60_000, policies: ['weld-needs-approval'] };
    expect(decide(input('weld', {}, { grants: { [WELD]: grant } }))).toMatchObject({ decision: 'allow', reasons: ['JIT_GRANT'], policies: ['weld-needs-approval'], grant });
    expect(decide(input('weld', {}, { grants: { [WELD]: { ...grant, expiresMs: T0 } } })).decision).toBe('pending');
    // Another resource is not covered, nor a grant made under another policy.
    expect(decide(input('weld', {}, { grants: { 'Agent::"planner" weld Arm::"arm-02"': grant } })).decision).toBe('pending');
    expect(decide(input('weld', {}, { grants: { [WELD]: { ...grant, policies: ['weld-at-night'] } } })).decision).toBe('pending');
    // A bundle whose policy no longer grants (no @grant_ttl) is not waived by a grant that is still stored.
    const ungranting = { ...input('weld', {}, { grants: { [WELD]: grant } }), bundle: bundleOf(POLICIES.replace('@grant_ttl("5m")\n', '')) };
    expect(decide(ungranting)).toMatchObject({ decision: 'pending', reasons: ['APPROVAL_REQUIRED'] });
    expect(decide({ ...ungranting, approved: { approvals: 2 } })).toMatchObject({ decision: 'allow', reasons: ['APPROVED'] });
    expect(decide({ ...ungranting, approved: { approvals: 2 } }).grant).toBeUndefined();
  });

  it('fail-closed mode: only @safety permits pass', () => {
    const facts = { failClosed: { active: true, reason: 'AUDIT_WRITE_FAILED' } };
    expect(decide(input('move', { speed: 50, zone: 'A' }, { facts }))).toMatchObject({ decision: 'deny', reasons: ['FAIL_CLOSED'], policies: ['operators-move'] });
    expect(decide(input('estop', {}, { facts }))).toMatchObject({ decision: 'allow', reasons: ['PERMITTED'], policies: ['estop'], obligations: { safety: true } });
  });

  it('audit log full: AUDIT_FULL for all but @safety; the denial goes to the reserve, the @safety allow to the safety area', () => {
    const facts = { auditFull: true };
    expect(decide(input('move', { speed: 50, zone: 'A' }, { facts }))).toMatchObject({ decision: 'deny', reasons: ['AUDIT_FULL'], area: 'reserve' });
    expect(decide(input('weld', {}, { facts }))).toMatchObject({ decision: 'deny', reasons: ['AUDIT_FULL'], area: 'reserve' });
    expect(decide(input('move', { speed: 300, zone: 'A' }, { facts }))).toMatchObject({ decision: 'deny', reasons: ['FORBIDDEN'], area: 'reserve' });
    expect(decide(input('estop', {}, { facts }))).toMatchObject({ decision: 'allow', reasons: ['PERMITTED'], area: 'safety' });
  });

  it('a resource not hosted on this device is denied before any policy runs, saying why', () => {
    const verdict = decide(input('estop', {}, { resource: 'Arm::"arm-99"' }));
    expect(verdict).toMatchObject({ decision: 'deny', reasons: ['RESOURCE_NOT_ON_DEVICE'], policies: [], count: [] });
    expect(verdict.note).toMatch(/Arm::"arm-99" is neither Device::"arm-01" nor declared in the bundle as hosted on it/);
  });

  it('clock in doubt: an early iat passes only for an allow by @safety permits (CLOCK_IN_DOUBT); anything else is refused undecided', () => {
    const early = { iatMs: T0 + 120_000, tolerateEarly: true };
    expect(decide(input('estop', {}, early))).toMatchObject({ decision: 'allow', reasons: ['PERMITTED', 'CLOCK_IN_DOUBT'] });
    expect(decide(input('move', { speed: 50, zone: 'A' }, early))).toMatchObject({ decision: 'refused', reasons: ['ENVELOPE_IAT_FUTURE'] });
    expect(decide(input('move', { speed: 300, zone: 'A' }, early))).toMatchObject({ decision: 'refused', reasons: ['ENVELOPE_IAT_FUTURE'] });
    expect(decide(input('estop', {}, { ...early, resource: 'Arm::"arm-99"' }))).toMatchObject({ decision: 'refused', reasons: ['ENVELOPE_IAT_FUTURE'] });
  });

  it('at quorum: APPROVED without a new hold or rate count, with the grant its @grant_ttl gives; fewer approvals than the policy now asks are denied', () => {
    expect(decide(input('weld', {}, { approved: { approvals: 2 } }))).toMatchObject({
      decision: 'allow',
      reasons: ['APPROVED'],
      count: [],
      grant: { expiresMs: T0 + 5 * 60_000, policies: ['weld-needs-approval'] },
    });
    expect(decide(input('weld', {}, { approved: { approvals: 1 } }))).toMatchObject({ decision: 'deny', reasons: ['APPROVALS_INSUFFICIENT'] });
    // Fail-closed since the hold: an approved command that is not @safety does not run either.
    expect(decide(input('weld', {}, { approved: { approvals: 2 }, facts: { failClosed: { active: true } } }))).toMatchObject({ decision: 'deny', reasons: ['FAIL_CLOSED'] });
  });

  it('is a function of its input: the same input gives the same verdict', () => {
    const request = input('move', { speed: 50, zone: 'A' });
    expect(decide(request)).toEqual(decide(request));
  });
});
