// The agent's runtime syncing its log as configured (audit.sync): over HTTPS with mutual TLS to
// `ztedge collector`'s HTTP API, and over MQTT through a real broker; the collector's signed time
// feeds the agent's trusted clock; the collector's read API shows the devices and their records;
// what the transport refuses (no client certificate, a collector key that did not sign).
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { Collector } from '../../src/collector/server.js';
import { DeviceKeyDirectory } from '../../src/collector/registry.js';
import { SqliteCollectorStore } from '../../src/collector/sqlite-store.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../../src/crypto/key-files.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { HttpsSyncTransport } from '../../src/transport/audit-https.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { DEVICE, GRIP_POLICY, type Site, command, makeSite, startAgent } from '../e2e/support.js';
import { makeTlsFiles, startBroker } from '../support/broker.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { storedLog } from '../collector/support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

function collectorFor(site: Site, opts: Partial<ConstructorParameters<typeof Collector>[0]> = {}) {
  const key = generatePrivateKey('ed25519');
  writePublicKeyFile(path.join(site.dir, 'collector.pub'), key.publicKey);
  writePrivateKeyFile(path.join(site.dir, 'collector.key'), key);
  const devices = path.join(site.dir, 'devices');
  fs.mkdirSync(devices);
  fs.copyFileSync(site.pubFile('device'), path.join(devices, `${DEVICE}.pub`));
  const store = new SqliteCollectorStore(path.join(site.dir, 'collector.db'));
  const collector = new Collector({ store, keys: new DeviceKeyDirectory(devices), signingKey: key, port: 0, ...opts });
  cleanups.push(() => collector.stop());
  return { collector, store, key };
}

describe('the agent syncing its audit log', () => {
  it('over HTTPS with mutual TLS, with the read API and the collector’s signed time', async () => {
    const site = makeSite();
    cleanups.push(() => site.remove());
    const tlsDir = path.join(site.dir, 'tls');
    fs.mkdirSync(tlsDir);
    const tls = makeTlsFiles(tlsDir);
    fs.writeFileSync(path.join(site.dir, 'token'), 'let-me-read\n');
    const ahead = 3_600_000;
    const { collector, store } = collectorFor(site, {
      tls: { certFile: path.join(tlsDir, 'server.crt'), keyFile: path.join(tlsDir, 'server.key'), clientCaFile: tls.ca },
      readToken: 'let-me-read',
      now: () => Date.now() + ahead,
    });
    await collector.start();
    const url = `https://127.0.0.1:${collector.port()}`;

    const running = await startAgent(
      site.config(null, {
        bundleFile: site.bundleFile(1, CELL_POLICIES + GRIP_POLICY),
        executors: {},
        audit: { sync: { url, collectorKey: path.join(site.dir, 'collector.pub'), ca: tls.ca, cert: tls.clientCert, key: tls.clientKey, interval: '100ms' } },
      }),
    );
    cleanups.push(() => running.stop());
    const { agent } = running;
    await waitUntil(() => agent.audit.capacity().syncedSeq > 0, 'the first batch to be stored');
    // The collector's clock is an hour ahead and signed: the agent's trusted time follows it.
    const decided = await fetch(`http://127.0.0.1:${agent.httpPort()}/v1/decide`, { method: 'POST', headers: { 'content-type': 'application/cose' }, body: command(site.keys.planner, 'grip', {}, { now: Date.now() + ahead }) });
    expect((await decided.json()) as object).toMatchObject({ decision: 'allow' });
    const last = agent.audit.read(agent.audit.head().seq, 1)[0]!;
    expect(last.timeMs).toBeGreaterThanOrEqual(Date.now() + ahead - 60_000);
    await waitUntil(() => agent.audit.capacity().unsyncedRecords === 0, 'the decision to sync');
    expect((await storedLog(store, DEVICE)).length).toBe(agent.audit.head().seq);
    expect(agent.status().audit.sync).toMatchObject({ transport: 'https', state: 'connected', backlog: { records: 0 } });

    // The read API, behind the token.
    const read = (p: string, token?: string) => httpsGet(`${url}${p}`, tls, token);
    expect((await read('/v1/devices')).status).toBe(401);
    const devices = await read('/v1/devices', 'let-me-read');
    expect(devices.status).toBe(200);
    expect(devices.json).toMatchObject({ devices: [{ device: DEVICE, lastSeq: agent.audit.head().seq, lag: { records: 0 } }] });
    const page = await read(`/v1/devices/${DEVICE}/audit?from=2&to=3`, 'let-me-read');
    expect(page.json).toMatchObject({ device: DEVICE, records: [{ seq: 2, kind: 'checkpoint' }, { seq: 3 }], next: null });
    expect((await read('/v1/devices/nobody/audit', 'let-me-read')).status).toBe(404);
    expect((await read(`/v1/devices/${DEVICE}/audit?from=0`, 'let-me-read')).status).toBe(400);

    // Without a client certificate there is no TLS session at all.
    const anonymous = new HttpsSyncTransport({ url, caFile: tls.ca });
    cleanups.push(() => anonymous.close());
    await expect(anonymous.send(new Uint8Array(10), new Uint8Array(32), 5000)).rejects.toMatchObject({ code: expect.stringMatching(/^SYNC_(UNREACHABLE|HTTP_ERROR)$/) });
  });

  it('over MQTT through a real broker (batches on <prefix>audit, signed acknowledgements on <prefix>audit/ack)', async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.stop());
    const site = makeSite();
    cleanups.push(() => site.remove());
    const { collector, store } = collectorFor(site, { mqtt: { url: broker.url, clientId: `collector-${path.basename(site.dir)}` } });
    await collector.start();
    const running = await startAgent(
      site.config(broker.url, {
        bundleFile: site.bundleFile(1, CELL_POLICIES + GRIP_POLICY),
        audit: { sync: { transport: 'mqtt', collectorKey: path.join(site.dir, 'collector.pub'), interval: '100ms' } },
      }),
    );
    cleanups.push(() => running.stop());
    const { agent } = running;
    await waitUntil(() => agent.audit.capacity().syncedSeq > 0 && agent.audit.capacity().unsyncedRecords === 0, 'the log to sync over MQTT', 20_000);
    expect((await storedLog(store, DEVICE)).map((r) => r.seq)).toEqual(Array.from({ length: agent.audit.head().seq }, (_, i) => i + 1));
    expect(agent.status().audit.sync).toMatchObject({ transport: 'mqtt', state: 'connected' });
  });

  it('refuses a sync configuration that cannot work, with the option named', () => {
    const site = makeSite();
    cleanups.push(() => site.remove());
    const problems = (sync: Record<string, unknown>, broker: string | null = null) => {
      try {
        site.config(broker, { audit: { sync } });
        return [];
      } catch (err) {
        return (err as { problems: Array<{ option: string }> }).problems.map((p) => p.option);
      }
    };
    expect(problems({ url: 'https://collector:8443' })).toEqual(['audit.sync.collectorKey']);
    expect(problems({ url: 'http://collector.example:8080', collectorKey: 'c.pub' })).toEqual(['audit.sync.url']);
    expect(problems({ transport: 'mqtt', collectorKey: 'c.pub' })).toEqual(['audit.sync.transport']);
    expect(problems({ transport: 'carrier-pigeon', collectorKey: 'c.pub' })).toEqual(['audit.sync.transport']);
    expect(problems({ batchRecords: 10 })).toEqual(['audit.sync.url', 'audit.sync.collectorKey']);
    expect(problems({ url: 'https://c', collectorKey: 'c.pub', cert: 'a.crt', colour: 'blue' })).toEqual(['audit.sync.colour', 'audit.sync.key']);
    expect(problems({ url: 'http://127.0.0.1:8443', collectorKey: 'c.pub' })).toEqual([]);
    expect(() => new HttpsSyncTransport({ url: 'http://collector.example' })).toThrow(expect.objectContaining({ code: 'SYNC_URL_INVALID' }));
  });
});

async function httpsGet(url: string, tls: { ca: string; clientCert: string; clientKey: string }, token?: string): Promise<{ status: number; json: unknown }> {
  const https = await import('node:https');
  return new Promise((resolve, reject) => {
    const req = https.request(
      url,
      { ca: fs.readFileSync(tls.ca), cert: fs.readFileSync(tls.clientCert), key: fs.readFileSync(tls.clientKey), headers: token === undefined ? {} : { authorization: `Bearer ${token}` } },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) as unknown }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}
