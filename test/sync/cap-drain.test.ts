// Cap and drain together, on the real agent (its HTTP API) and a real collector: with the
// upstream away the audit log reaches its cap and commands are denied AUDIT_FULL (an e-stop,
// @safety, still passes); the upstream returns, the backlog drains, space is freed, and commands
// are allowed again — without a restart. /v1/status and /metrics say what happened.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Collector } from '../../src/collector/server.js';
import { DeviceKeyDirectory } from '../../src/collector/registry.js';
import { SqliteCollectorStore } from '../../src/collector/sqlite-store.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../../src/crypto/key-files.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { DEVICE, GRIP_POLICY, command, makeSite, startAgent } from '../e2e/support.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { storedLog } from '../collector/support.js';
import { freePort } from '../support/free-port.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));


describe('the audit cap and the upstream drain', () => {
  it('denies AUDIT_FULL while the upstream is away, lets @safety through, and allows commands again once the backlog drained', async () => {
    const site = makeSite();
    cleanups.push(() => site.remove());
    const collectorKey = generatePrivateKey('ed25519');
    writePrivateKeyFile(path.join(site.dir, 'collector.key'), collectorKey);
    writePublicKeyFile(path.join(site.dir, 'collector.pub'), collectorKey.publicKey);
    const devices = path.join(site.dir, 'devices');
    fs.mkdirSync(devices);
    fs.copyFileSync(site.pubFile('device'), path.join(devices, `${DEVICE}.pub`));
    const port = await freePort();

    const running = await startAgent(
      site.config(null, {
        bundleFile: site.bundleFile(1, CELL_POLICIES + GRIP_POLICY),
        executors: {},
        audit: {
          capBytes: 64 * 1024,
          reserveBytes: 16 * 1024,
          retention: '0s',
          sync: { url: `http://127.0.0.1:${port}`, collectorKey: path.join(site.dir, 'collector.pub'), interval: '100ms', backoffMax: '1s', timeout: '5s' },
        },
      }),
    );
    cleanups.push(() => running.stop());
    const { agent } = running;
    const base = `http://127.0.0.1:${agent.httpPort()}`;
    const decide = async (action: string) => {
      const res = await fetch(`${base}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/cose' }, body: command(site.keys.planner, action) });
      return (await res.json()) as { decision: string; reasons: string[] };
    };
    const status = async () => (await (await fetch(`${base}/v1/status`)).json()) as { audit: { full: boolean; sync: { state: string; backlog: { records: number; bytes: number; oldestAgeMs: number | null }; lastSyncMs: number | null } } };

    // Upstream away: allowed until the cap, then AUDIT_FULL.
    let allowed = 0;
    let denial: { decision: string; reasons: string[] } | undefined;
    for (let i = 0; i < 2000 && denial === undefined; i++) {
      const answer = await decide('grip');
      if (answer.decision === 'allow') allowed++;
      else denial = answer;
    }
    expect(allowed).toBeGreaterThan(20);
    expect(denial).toMatchObject({ decision: 'deny', reasons: ['AUDIT_FULL'] });
    expect(await decide('grip')).toMatchObject({ decision: 'deny', reasons: ['AUDIT_FULL'] });
    // Decided and recorded; no controller is attached here, so nothing executes it (NO_EXECUTOR).
    expect(await decide('estop')).toMatchObject({ decision: 'allow', reasons: ['PERMITTED', 'NO_EXECUTOR'] });
    const away = await status();
    expect(away.audit.full).toBe(true);
    expect(away.audit.sync).toMatchObject({ state: 'unreachable', lastSyncMs: null });
    expect(away.audit.sync.backlog.records).toBeGreaterThan(allowed);
    expect(away.audit.sync.backlog.oldestAgeMs).toBeGreaterThanOrEqual(0);
    const metrics = await (await fetch(`${base}/metrics`)).text();
    expect(metrics).toMatch(/^ztedge_audit_full 1$/m);
    expect(metrics).toMatch(/^ztedge_audit_upstream_state\{state="unreachable"\} 1$/m);
    const headWhenFull = agent.audit.head().seq;

    // The upstream returns: the backlog drains and space is freed, with no restart.
    const store = new SqliteCollectorStore(path.join(site.dir, 'collector.db'));
    const collector = new Collector({ store, keys: new DeviceKeyDirectory(devices), signingKey: collectorKey, port });
    await collector.start();
    cleanups.push(() => collector.stop());
    await waitUntil(() => !agent.audit.capacity().full && agent.audit.capacity().syncedSeq >= headWhenFull, 'the backlog to drain', 20_000);
    expect(agent.audit.capacity().unsyncedBytes).toBeLessThan(4096);
    expect(await decide('grip')).toMatchObject({ decision: 'allow' });
    const back = await status();
    expect(back.audit.full).toBe(false);
    expect(back.audit.sync.state).toBe('connected');
    expect(back.audit.sync.lastSyncMs).not.toBeNull();

    // The collector holds the whole log, the AUDIT_FULL denials and the e-stop included.
    await waitUntil(() => agent.audit.capacity().unsyncedRecords === 0, 'the last records to sync', 10_000);
    const stored = await storedLog(store, DEVICE);
    expect(stored.length).toBe(agent.audit.head().seq);
    const kinds = stored.map((r) => new TextDecoder().decode(r.body));
    expect(kinds.filter((t) => t.includes('AUDIT_FULL')).length).toBeGreaterThanOrEqual(2);
  });
});
