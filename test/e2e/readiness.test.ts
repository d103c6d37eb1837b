// /readyz says whether the agent can enforce: false without an active bundle and whenever it is
// fail-closed (here: its audit log cannot be written because another writer holds the state
// database), with every reason in /readyz and /v1/status and each change logged; ready again by
// itself once the audit log takes records.
import path from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import { runCleanups, waitUntil } from '../support/wait.js';
import { command, makeSite, startAgent } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

describe('readiness', () => {
  it('is false without a bundle and while the audit log cannot be written, with the reason', async () => {
    const site = makeSite();
    cleanups.push(() => site.remove());
    const running = await startAgent(site.config(null));
    cleanups.push(() => running.stop());
    const base = `http://127.0.0.1:${running.agent.httpPort()}`;
    const readyz = async () => {
      const res = await fetch(`${base}/readyz`);
      return { status: res.status, body: (await res.json()) as Record<string, unknown> };
    };
    const status = async () => (await (await fetch(`${base}/v1/status`)).json()) as Record<string, unknown>;
    const decide = async (envelope: Uint8Array) =>
      (await (await fetch(`${base}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/cose' }, body: envelope })).json()) as { reasons: string[] };

    expect(await readyz()).toMatchObject({ status: 503, body: { status: 'not_ready', error: { code: 'NO_ACTIVE_BUNDLE' } } });
    running.agent.bundles.activate(site.bundle(1));
    expect(await readyz()).toMatchObject({ status: 200, body: { status: 'ready' } });

    // One command first: the replay guard's pruning (a write of its own, at most once a minute)
    // is then done, and the next command's first write is its audit record.
    await decide(command(site.keys.planner, 'move', { speed: 100, zone: 'A' }));
    // Another writer holds the state database: the agent's audit appends fail (after its busy timeout).
    const intruder = new Database(path.join(site.stateDir, 'state.db'));
    cleanups.push(() => intruder.close());
    intruder.exec('BEGIN IMMEDIATE');
    const refused = await decide(command(site.keys.planner, 'move', { speed: 100, zone: 'A' }));
    expect(refused.reasons).toEqual(['AUDIT_UNAVAILABLE']);

    const failed = await readyz();
    expect(failed.status).toBe(503);
    expect(failed.body.reasons).toEqual([{ code: 'FAIL_CLOSED', message: 'fail-closed (AUDIT_WRITE_FAILED): the audit log cannot be written; only @safety actions pass' }]);
    expect(await status()).toMatchObject({ ready: { ready: false, reasons: [{ code: 'FAIL_CLOSED' }] }, failClosed: { reason: 'AUDIT_WRITE_FAILED' } });
    const notReady = running.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.message === 'agent not ready');
    expect(notReady.at(-1)).toMatchObject({ level: 'warn', reasons: [{ code: 'FAIL_CLOSED' }] });

    // The writer lets go: the next record is written, and the agent is ready again.
    intruder.exec('ROLLBACK');
    await decide(command(site.keys.planner, 'move', { speed: 100, zone: 'A' }));
    const messages = () => running.logs.map((l) => (JSON.parse(l) as { message: string }).message).filter((m) => m.startsWith('agent ') && m !== 'agent started');
    await waitUntil(() => messages().length === 4, 'agent ready again');
    expect(messages()).toEqual(['agent not ready', 'agent ready', 'agent not ready', 'agent ready']);
    expect(await readyz()).toMatchObject({ status: 200 });
    expect(await status()).toMatchObject({ ready: { ready: true, reasons: [] }, failClosed: null });
  });
});
