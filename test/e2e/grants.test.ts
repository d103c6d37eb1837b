// Approvals and just-in-time grants through the running agent (broker, bundles pushed, the local
// API): an approval approves exactly one command; a grant exists only when the determining policy
// says so (`@grant_ttl`), is shown with its expiry in the signed result, the audit record and
// GET /v1/approvals, and lives only as long as the bundle in force carries its policy with a grant
// (activation and rollback alike).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { encodeRollbackPayload, signRollback } from '../../src/bundle/rollback.js';
import { toHex } from '../../src/crypto/bytes.js';
import { signApproval } from '../../src/envelope/approval.js';
import type { ApprovalsView } from '../../src/api/app.js';
import { CELL_POLICIES, type Keys } from '../agent/fixture.js';
import { type TestBroker, startBroker } from '../support/broker.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { ARM, auditTrail, brokerArgs, cli, command, DEVICE, GRIP_POLICY, makeSite, Operator, PREFIX, type Site, SITE, startAgent, startArm, untilOnlineWithBundle } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

/** The cell's weld policy: two supervisors approve; the fixture grants for 5 minutes. */
const withGrant = (ttl: string) => CELL_POLICIES.replace('@grant_ttl("5m")', `@grant_ttl("${ttl}")`);
const WITHOUT_GRANT = CELL_POLICIES.replace('@grant_ttl("5m")\n', '');
const TOKEN = 'a'.repeat(12) + 'b'.repeat(12) + 'c'.repeat(8);

async function setup(firstPolicies: string) {
  const broker = await startBroker();
  cleanups.push(() => broker.stop());
  const site = makeSite();
  cleanups.push(() => site.remove());
  const tokenFile = path.join(site.dir, 'admin.token');
  fs.writeFileSync(tokenFile, TOKEN, { mode: 0o600 });
  const running = await startAgent(site.config(broker.url, { bundleFile: site.bundleFile(1, firstPolicies), http: { port: 0, adminTokenFile: tokenFile } }));
  cleanups.push(() => running.stop());
  const { agent } = running;
  await untilOnlineWithBundle(agent);
  const arm = await startArm(broker);
  cleanups.push(() => arm.stop());
  const operator = await Operator.connect(broker, site);
  cleanups.push(() => operator.close());
  const approvals = async () => {
    const res = await fetch(`http://127.0.0.1:${agent.httpPort()}/v1/approvals`, { headers: { authorization: `Bearer ${TOKEN}` } });
    expect(res.status).toBe(200);
    return (await res.json()) as ApprovalsView;
  };
  return { broker, site, running, agent, arm, operator, approvals };
}

/** Sends a weld and, when it is held, has both supervisors approve it; returns its settled result. */
async function weld(operator: Operator, keys: Keys, approve = true) {
  const digest = await operator.send(command(keys.planner, 'weld', { seam: 's-7' }));
  const [first] = await operator.waitResults(digest, 1);
  if (first!.claims.decision !== 'pending' || !approve) return { digest, result: first!.claims };
  for (const who of [keys.alice, keys.bob]) {
    await operator.peer.publish(`${PREFIX}approve`, Buffer.from(signApproval({ key: who, deviceId: DEVICE, topic: 'approve', commandDigest: digest, decision: 'approve', now: Date.now(), lifetimeMs: 60_000 })), { qos: 1 });
  }
  const [, settled] = await operator.waitResults(digest, 2);
  return { digest, result: settled!.claims };
}

function push(broker: TestBroker, site: Site, revision: number, policies: string) {
  return cli(['bundle', 'push', site.bundleFile(revision, policies), ...brokerArgs(broker), '--root', site.pubFile('root'), '--threshold', '1']);
}

describe('approvals and just-in-time grants', () => {
  it('an approval approves exactly one command when the policy grants nothing', async () => {
    const { site, agent, arm, operator, approvals } = await setup(WITHOUT_GRANT);
    const first = await weld(operator, site.keys);
    expect(first.result).toMatchObject({ decision: 'allow', reasons: ['APPROVED'], outcome: 'executed' });
    expect(first.result.grantExpiresMs).toBeUndefined();
    expect(await approvals()).toMatchObject({ grantCount: 0, grants: [] });

    // The same principal, action and resource right after: held again, nothing runs without approval.
    const again = await weld(operator, site.keys, false);
    expect(again.result).toMatchObject({ decision: 'pending', reasons: ['APPROVAL_REQUIRED'], outcome: 'pending_approval' });
    expect(arm.executed.map((r) => r.action)).toEqual(['weld']);
    const listed = await approvals();
    expect(listed).toMatchObject({
      pendingCount: 1,
      pending: [{ command: toHex(again.digest), principal: 'Agent::"planner"', action: 'weld', resource: ARM, required: 2, approvers: ['Role::"supervisor"'], approvals: [] }],
      grants: [],
    });
    expect(listed.pending[0]!.expiresMs).toBeGreaterThan(Date.now());
    const decisions = auditTrail(agent).filter(({ record, body }) => record.kind === 'decision' && body.get('decision') === 'allow');
    expect(decisions.map(({ body }) => body.get('grant'))).toEqual([undefined]);
  });

  it('a grant exists when the policy says so, is shown with its expiry, and lives only while the bundle in force grants under its policy', async () => {
    const { broker, site, agent, arm, operator, approvals } = await setup(withGrant('10m'));
    const before = Date.now();
    const approved = await weld(operator, site.keys);
    expect(approved.result).toMatchObject({ decision: 'allow', reasons: ['APPROVED'], outcome: 'executed' });
    // Shown in the signed result (seconds), the audit record and /v1/approvals.
    const expiresMs = approved.result.grantExpiresMs!;
    expect(expiresMs).toBeGreaterThanOrEqual(Math.floor(before / 1000) * 1000 + 600_000 - 1000);
    expect(expiresMs).toBeLessThanOrEqual(Date.now() + 600_000);
    const record = auditTrail(agent).find(({ body }) => body.get('decision') === 'allow' && toHex(body.get('cmd') as Uint8Array) === toHex(approved.digest))!;
    const recorded = record.body.get('grant') as Map<string, unknown>;
    expect(recorded.get('policies')).toEqual(['weld-needs-approval']);
    expect(Math.floor((recorded.get('expiresMs') as number) / 1000) * 1000).toBe(expiresMs);
    let listed = await approvals();
    expect(listed).toMatchObject({ grantCount: 1, grants: [{ principal: 'Agent::"planner"', action: 'weld', resource: ARM, policies: ['weld-needs-approval'], command: toHex(approved.digest), bundleRevision: 1 }] });
    const granted = listed.grants[0]!;
    expect(granted.expiresMs - granted.grantedMs).toBe(600_000);

    // Repeated within the grant: allowed without a quorum, the grant's expiry in the result.
    const repeat = await weld(operator, site.keys, false);
    expect(repeat.result).toMatchObject({ decision: 'allow', reasons: ['JIT_GRANT'], outcome: 'executed' });
    expect(repeat.result.grantExpiresMs).toBe(expiresMs);

    // A new bundle still carrying the policy with a grant keeps it, never longer than it now says.
    expect((await push(broker, site, 2, withGrant('1m') + GRIP_POLICY)).code).toBe(0);
    listed = await approvals();
    expect(listed.grants.map((g) => [g.policies, g.expiresMs - g.grantedMs])).toEqual([[['weld-needs-approval'], 60_000]]);
    expect((await weld(operator, site.keys, false)).result.reasons).toEqual(['JIT_GRANT']);

    // A bundle whose policy no longer grants drops it: the next weld is held again.
    expect((await push(broker, site, 3, WITHOUT_GRANT + GRIP_POLICY)).code).toBe(0);
    expect((await approvals()).grants).toEqual([]);
    expect((await weld(operator, site.keys, false)).result.reasons).toEqual(['APPROVAL_REQUIRED']);

    // Granted again under revision 4, then rolled back to revision 3 (no grant there): dropped.
    expect((await push(broker, site, 4, withGrant('10m') + GRIP_POLICY)).code).toBe(0);
    expect((await weld(operator, site.keys)).result.grantExpiresMs).toBeDefined();
    expect((await approvals()).grants.map((g) => g.bundleRevision)).toEqual([4]);
    const status = agent.status();
    const instruction = encodeRollbackPayload({
      device: DEVICE,
      site: SITE,
      from: { revision: 4, digest: status.bundle!.digest },
      to: { revision: 3, digest: status.lastKnownGood!.digest },
      created: Math.floor(Date.now() / 1000) - 5,
      expires: Math.floor(Date.now() / 1000) + 600,
    });
    await operator.peer.publish(`${PREFIX}bundle/rollback`, Buffer.from(signRollback(instruction, site.keys.root)), { qos: 1 });
    await waitUntil(() => agent.status().bundle?.revision === 3, 'rolled back to revision 3');
    expect((await approvals()).grants).toEqual([]);
    expect((await weld(operator, site.keys, false)).result.reasons).toEqual(['APPROVAL_REQUIRED']);

    // Each change is in the audit log.
    const changes = auditTrail(agent).filter(({ record, body }) => record.kind === 'system' && body.get('event') === 'grants').map(({ body }) => body);
    expect(changes.map((b) => [b.get('bundle'), (b.get('dropped') as unknown[]).length, (b.get('shortened') as unknown[]).length])).toEqual([
      [2, 0, 1],
      [3, 1, 0],
      [3, 1, 0],
    ]);
    expect(arm.executed.filter((r) => r.action === 'weld')).toHaveLength(4);
  });
});
