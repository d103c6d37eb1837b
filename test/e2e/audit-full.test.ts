// The audit cap on the running agent (its local API): with a small cap, commands fill the log
// until every command not marked @safety is denied AUDIT_FULL; an e-stop (@safety) still executes
// and is recorded; /readyz, /v1/status, /metrics and the log say why; once space is freed (the
// upstream acknowledged the records: markSynced) the agent is ready and allows commands again,
// without a restart.
import { afterEach, describe, expect, it } from 'vitest';
import { toHex } from '../../src/crypto/bytes.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { GRIP_POLICY, auditTrail, command, makeSite, startAgent } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

const CAP = 64 * 1024;
const RESERVE = 16 * 1024;

describe('the audit cap on the running agent', () => {
  it('denies AUDIT_FULL, executes and records @safety, is not ready while full, and recovers once space is freed', async () => {
    const site = makeSite();
    cleanups.push(() => site.remove());
    const running = await startAgent(
      site.config(null, {
        bundleFile: site.bundleFile(1, CELL_POLICIES + GRIP_POLICY),
        executors: { estop: { kind: 'exec', command: ['true'] }, grip: { kind: 'exec', command: ['true'] } },
        audit: { capBytes: CAP, reserveBytes: RESERVE },
      }),
    );
    cleanups.push(() => running.stop());
    const { agent } = running;
    const base = `http://127.0.0.1:${agent.httpPort()}`;
    const decide = async (action: string, args: Record<string, number | string> = {}) => {
      const envelope = command(site.keys.planner, action, args);
      const res = await fetch(`${base}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/cose' }, body: envelope });
      return (await res.json()) as { decision: string; reasons: string[]; outcome: string; command: string };
    };
    const readyz = async () => {
      const res = await fetch(`${base}/readyz`);
      return { status: res.status, body: (await res.json()) as { reasons?: Array<{ code: string; message: string }> } };
    };
    const status = async () => (await (await fetch(`${base}/v1/status`)).json()) as { ready: { ready: boolean; reasons: Array<{ code: string }> }; audit: Record<string, unknown> };
    const metrics = async () => (await fetch(`${base}/metrics`)).text();
    const readinessLog = () => running.logs.map((l) => JSON.parse(l) as { message: string; reasons?: Array<{ code: string }> }).filter((l) => l.message === 'agent ready' || l.message === 'agent not ready');

    expect((await readyz()).status).toBe(200);
    // Commands fill the log up to the cap, less the reserve.
    let allowed = 0;
    let denial: Awaited<ReturnType<typeof decide>> | undefined;
    for (let i = 0; i < 2000 && denial === undefined; i++) {
      const answer = await decide('grip');
      if (answer.decision === 'allow') allowed++;
      else denial = answer;
    }
    expect(allowed).toBeGreaterThan(20);
    expect(denial).toMatchObject({ decision: 'deny', reasons: ['AUDIT_FULL'], outcome: 'not_executed' });
    expect(await decide('move', { speed: 10 })).toMatchObject({ decision: 'deny', reasons: ['AUDIT_FULL'] });
    // Denials take the reserve until even it is used up (then they go unrecorded, and say so).
    for (let i = 0; i < 1000 && !agent.audit.capacity().reserveExhausted; i++) expect((await decide('grip')).decision).toBe('deny');
    expect(agent.audit.capacity().reserveExhausted).toBe(true);
    const headBefore = agent.audit.head().seq;

    // @safety still executes, and is recorded: its decision and execution go to the safety area,
    // which nothing refuses for space.
    const estop = await decide('estop');
    expect(estop).toMatchObject({ decision: 'allow', reasons: ['PERMITTED'], outcome: 'executed' });
    const trail = auditTrail(agent).filter(({ record }) => record.seq > headBefore);
    expect(trail.filter(({ body }) => toHex((body.get('cmd') as Uint8Array | undefined) ?? new Uint8Array()) === estop.command).map(({ record, body }) => [record.kind, body.get('decision') ?? body.get('outcome')])).toEqual([
      ['decision', 'allow'],
      ['execution', 'executed'],
    ]);
    expect(agent.audit.capacity().unsyncedBytes).toBeGreaterThan(CAP);

    // Not ready, and saying why: /readyz, /v1/status, /metrics and the log.
    const notReady = await readyz();
    expect(notReady.status).toBe(503);
    expect(notReady.body.reasons).toEqual([{ code: 'AUDIT_FULL', message: expect.stringMatching(/^the audit log holds as many records not yet synced upstream as its cap allows \(audit\.capBytes\): every command not marked @safety is denied AUDIT_FULL/) }]);
    const full = await status();
    expect(full.ready).toMatchObject({ ready: false, reasons: [{ code: 'AUDIT_FULL' }] });
    expect(full.audit).toMatchObject({ full: true, capBytes: CAP, reserveBytes: RESERVE });
    expect(full.audit.unsyncedBytes as number).toBeGreaterThan(CAP - RESERVE);
    const fullMetrics = await metrics();
    expect(fullMetrics).toMatch(/^ztedge_audit_full 1$/m);
    expect(fullMetrics).toMatch(new RegExp(`^ztedge_audit_cap_bytes ${CAP}$`, 'm'));
    expect(Number(/^ztedge_audit_backlog_bytes (\d+)$/m.exec(fullMetrics)![1])).toBeGreaterThan(CAP - RESERVE);
    await waitUntil(() => readinessLog().at(-1)?.message === 'agent not ready', 'the readiness change logged');
    expect(readinessLog().at(-1)).toMatchObject({ reasons: [{ code: 'AUDIT_FULL' }] });

    // The upstream acknowledges everything: space is free, and the agent recovers by itself.
    await agent.audit.markSynced(agent.audit.head().seq);
    expect(await readyz()).toMatchObject({ status: 200 });
    expect(await decide('grip')).toMatchObject({ decision: 'allow', outcome: 'executed' });
    expect((await status()).audit).toMatchObject({ full: false });
    expect(await metrics()).toMatch(/^ztedge_audit_full 0$/m);
    await waitUntil(() => readinessLog().at(-1)?.message === 'agent ready', 'ready again, logged');
    expect(agent.audit.verify()).toBeUndefined();
  });
});
