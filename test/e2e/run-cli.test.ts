// `ztedge run` as its own process: configuration problems all at once before anything starts,
// a readable device key refused, and a clean start and stop on SIGTERM.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { DEVICE, PREFIX, SITE, makeSite, spawnCli } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

function siteOnDisk() {
  const site = makeSite();
  cleanups.push(() => site.remove());
  return site;
}

describe('ztedge run', () => {
  it('reports every configuration problem at once and starts nothing', async () => {
    const site = siteOnDisk();
    const file = path.join(site.dir, 'agent.yaml');
    fs.writeFileSync(
      file,
      [
        'device: { id: "arm 01", site: site-1 }',
        'stateDir: ./state',
        'roots: { keys: [] }',
        'broker: { url: "http://broker.local" }',
        'limits: { clockSkew: soon }',
        'colour: blue',
      ].join('\n'),
    );
    const run = spawnCli(['run', '--config', file]);
    expect((await run.exited).code).toBe(2);
    const problems = run.stderr();
    expect(problems).toMatch(/^CONFIG_INVALID: invalid configuration \(6 problems\):/);
    for (const option of ['device.id', 'deviceKey', 'roots.keys', 'broker.url', 'limits.clockSkew', 'colour']) expect(problems).toContain(`  ${option}: `);
    expect(run.stdout()).toBe('');
    expect(fs.existsSync(path.join(site.dir, 'state'))).toBe(false);
  });

  it('refuses a device key that the group or others can read', async () => {
    const site = siteOnDisk();
    fs.chmodSync(site.keyFile('device'), 0o640);
    const file = path.join(site.dir, 'agent.json');
    fs.writeFileSync(file, JSON.stringify({ device: { id: DEVICE, site: SITE }, stateDir: 'state', deviceKey: 'device.key', roots: { keys: ['root.pub'] } }));
    const run = spawnCli(['run', '--config', file]);
    expect((await run.exited).code).toBe(2);
    expect(run.stderr()).toMatch(/^KEY_FILE_PERMISSIONS: private key file .*device\.key has mode 0640/);
    expect(fs.existsSync(path.join(site.dir, 'state'))).toBe(false);
  });

  it('runs from the environment alone and stops cleanly on SIGTERM', async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.stop());
    const site = siteOnDisk();
    const watcher = await MqttPeer.connect(broker);
    cleanups.push(() => watcher.close());
    await watcher.subscribe(`${PREFIX}status`);
    const run = spawnCli(['run'], {
      ZTEDGE_DEVICE_ID: DEVICE,
      ZTEDGE_DEVICE_SITE: SITE,
      ZTEDGE_STATE_DIR: site.stateDir,
      ZTEDGE_DEVICE_KEY: site.keyFile('device'),
      ZTEDGE_ROOTS_KEYS: site.pubFile('root'),
      ZTEDGE_BROKER_URL: broker.url,
      ZTEDGE_HTTP_PORT: '0',
      ZTEDGE_BUNDLE_FILE: site.bundleFile(3),
    });
    cleanups.push(() => run.kill('SIGKILL'));
    const logLines = () => run.stdout().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    await waitUntil(() => logLines().some((l) => l.message === 'broker connected'), 'the agent on the broker', 30_000);
    const started = logLines().find((l) => l.message === 'agent started')!;
    expect(started).toMatchObject({ level: 'info', device: DEVICE, site: SITE, bundleRevision: 3, broker: broker.url });
    const health = await fetch(`http://${String(started.http)}/healthz`);
    expect(await health.json()).toEqual({ status: 'ok' });
    const status = () => watcher.on(`${PREFIX}status`).map((m) => JSON.parse(m.payload.toString()) as { state: string; bundle: { revision: number } | null });
    await waitUntil(() => status().at(-1)?.state === 'online', 'status online');
    expect(status().at(-1)?.bundle?.revision).toBe(3);

    run.kill('SIGTERM');
    expect(await run.exited).toEqual({ code: 0, signal: null });
    expect(logLines().at(-1)).toMatchObject({ message: 'agent stopped' });
    expect(run.stderr()).toBe('');
    // The last word on the broker: the device is offline.
    await waitUntil(() => status().at(-1)?.state === 'offline', 'status offline');
  });
});

describe('ztedge run owns its state directory', () => {
  /** An agent without a broker, with its config in a file; resolves once it listens. */
  async function startRun(site: ReturnType<typeof siteOnDisk>, extra: Record<string, unknown> = {}) {
    const file = path.join(site.dir, 'agent.json');
    fs.writeFileSync(
      file,
      JSON.stringify({ device: { id: DEVICE, site: SITE }, stateDir: 'state', deviceKey: 'device.key', roots: { keys: ['root.pub'] }, http: { port: 0 }, bundleFile: site.bundleFile(2), ...extra }),
    );
    const run = spawnCli(['run', '--config', file]);
    cleanups.push(() => run.kill('SIGKILL'));
    const logLines = () => run.stdout().split('\n').filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>);
    await waitUntil(() => logLines().some((l) => l.message === 'agent started'), 'the agent to start', 30_000);
    const base = `http://${String(logLines().find((l) => l.message === 'agent started')!.http)}`;
    return { run, file, logLines, base };
  }

  it('refuses a second agent on the same state directory before it touches anything', async () => {
    const site = siteOnDisk();
    const first = await startRun(site);
    const status = async () => (await (await fetch(`${first.base}/v1/status`)).json()) as { audit: { headSeq: number }; ready: { ready: boolean } };
    const before = await status();
    const entries = fs.readdirSync(site.stateDir).sort();

    const second = spawnCli(['run', '--config', first.file]);
    cleanups.push(() => second.kill('SIGKILL'));
    expect((await second.exited).code).toBe(1);
    expect(second.stderr()).toMatch(new RegExp(`^STATE_DIR_LOCKED: state directory ${site.stateDir} is in use by another process \\(pid \\d+, ztedge run, since [0-9T:.Z-]+\\)`));
    expect(second.stdout()).toBe('');

    // The first agent is untouched: same audit head (no start record of the second), still ready.
    expect(await status()).toMatchObject({ audit: { headSeq: before.audit.headSeq }, ready: { ready: true } });
    expect((await fetch(`${first.base}/readyz`)).status).toBe(200);
    expect(fs.readdirSync(site.stateDir).sort()).toEqual(entries);

    // Once the first has stopped, the directory is free again.
    first.run.kill('SIGTERM');
    expect((await first.run.exited).code).toBe(0);
    const third = await startRun(site);
    third.run.kill('SIGTERM');
    expect((await third.run.exited).code).toBe(0);
  });

  it('ignores SIGHUP with a log line and keeps running', async () => {
    const site = siteOnDisk();
    const agent = await startRun(site);
    agent.run.kill('SIGHUP');
    await waitUntil(() => agent.logLines().some((l) => l.message === 'SIGHUP ignored: the agent does not reload its configuration; restart it to apply changes'), 'the SIGHUP log line');
    expect(agent.logLines().find((l) => String(l.message).startsWith('SIGHUP'))).toMatchObject({ level: 'warn' });
    expect(await (await fetch(`${agent.base}/healthz`)).json()).toEqual({ status: 'ok' });
    agent.run.kill('SIGTERM');
    expect(await agent.run.exited).toEqual({ code: 0, signal: null });
  });
});
