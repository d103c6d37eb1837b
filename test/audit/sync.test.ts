// The agent's sync loop against a real collector in process: retries with growing, jittered
// delays while the upstream is away; at most `maxInFlight` batches travel at once; the watermark
// moves only on an acknowledgement signed by the pinned collector key, for the batch sent; a
// restart resumes from the watermark; a refusal leaves the watermark and says why.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { AuditSync } from '../../src/audit/sync.js';
import { signAck } from '../../src/audit/sync-protocol.js';
import { SqliteCollectorStore } from '../../src/collector/sqlite-store.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { sleep, waitUntil } from '../support/wait.js';
import { expectSameLog, makeCollector, makeDevice, makeSync } from '../collector/support.js';

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function setup() {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-sync-'));
  cleanups.push(() => fs.rmSync(dir, { recursive: true, force: true }));
  const c = makeCollector(new SqliteCollectorStore(path.join(dir, 'collector.db')));
  cleanups.push(() => c.close());
  const device = makeDevice('arm-1');
  cleanups.push(() => device.close());
  c.register(device);
  return { c, device };
}

function started(sync: AuditSync): AuditSync {
  sync.start();
  cleanups.push(() => sync.stop());
  return sync;
}

describe('audit sync', () => {
  it('retries with exponential, jittered, capped delays while the upstream is away, then drains', async () => {
    const { c, device } = setup();
    await device.append(300);
    const attempts: number[] = [];
    const send = c.transport.send.bind(c.transport);
    c.transport.send = (bytes: Uint8Array, id: Uint8Array, timeoutMs: number) => {
      attempts.push(performance.now());
      return send(bytes, id, timeoutMs);
    };
    c.transport.up = false;
    const sync = started(makeSync(device, c, { backoff: { initialMs: 20, maxMs: 160 }, random: () => 0.99, maxInFlight: 1 }));
    await waitUntil(() => attempts.length >= 7, 'seven attempts');
    const gaps = attempts.slice(1).map((t, i) => t - attempts[i]!);
    // Ceilings 20, 40, 80, 160, 160, …; with this jitter each delay is close to its ceiling (only
    // lower bounds are checked: a loaded machine makes delays longer, never shorter). The cap
    // itself is backoffDelayMs's, tested in transport/backoff.test.ts.
    expect(gaps[0]).toBeGreaterThanOrEqual(18);
    expect(gaps[2]).toBeGreaterThanOrEqual(75);
    expect(gaps[3]).toBeGreaterThanOrEqual(150);
    expect(gaps[5]).toBeGreaterThanOrEqual(150);
    expect(sync.status()).toMatchObject({ state: 'unreachable', syncedSeq: 0, lastSyncMs: null, lastError: { code: 'SYNC_UNREACHABLE' } });
    expect(sync.status().backlog.records).toBe(device.log.head().seq);
    c.transport.up = true;
    await waitUntil(() => sync.status().backlog.records === 0, 'the drain');
    expect(sync.status()).toMatchObject({ state: 'connected', lastError: null });
    await expectSameLog(c.store, device, device.log.head().seq);
  });

  it('keeps at most maxInFlight batches travelling', async () => {
    const { c, device } = setup();
    await device.append(1000);
    let travelling = 0;
    let most = 0;
    const send = c.transport.send.bind(c.transport);
    c.transport.send = async (bytes: Uint8Array, id: Uint8Array, timeoutMs: number) => {
      most = Math.max(most, ++travelling);
      await sleep(15);
      try {
        return await send(bytes, id, timeoutMs);
      } finally {
        travelling--;
      }
    };
    const sync = started(makeSync(device, c, { maxRecords: 50, maxInFlight: 3 }));
    await waitUntil(() => sync.status().backlog.records === 0, 'the drain');
    expect(most).toBe(3);
    await expectSameLog(c.store, device, device.log.head().seq);
  });

  it('moves the watermark only on an acknowledgement signed by the pinned collector key for the batch sent', async () => {
    const { c, device } = setup();
    await device.append(100);
    const impostor = generatePrivateKey('ed25519');
    const forged = started(
      makeSync(device, c, {
        transport: { name: 'forged', ready: () => true, send: async () => signAck({ device: device.id, batch: new Uint8Array(32), status: 'stored', seq: 10_000, timeMs: Date.now() }, impostor) },
      }),
    );
    await waitUntil(() => forged.status().lastError !== null, 'the forged acknowledgement to be refused');
    expect(forged.status()).toMatchObject({ syncedSeq: 0, state: 'unreachable', lastError: { code: 'SYNC_BAD_SIGNATURE' } });
    await forged.stop();
    // Signed by the collector, but for another batch.
    const replayed = started(
      makeSync(device, c, {
        transport: { name: 'replayed', ready: () => true, send: async () => signAck({ device: device.id, batch: new Uint8Array(32), status: 'stored', seq: 10_000, timeMs: Date.now() }, c.signingKey) },
      }),
    );
    await waitUntil(() => replayed.status().lastError !== null, 'the misdirected acknowledgement to be refused');
    expect(replayed.status()).toMatchObject({ syncedSeq: 0, lastError: { code: 'SYNC_BAD_ACK' } });
    expect(device.log.capacity().syncedSeq).toBe(0);
  });

  it('resumes from the watermark after a restart, sending only what was not acknowledged', async () => {
    const { c, device } = setup();
    await device.append(1000);
    const first = started(makeSync(device, c, { maxRecords: 100, maxInFlight: 1 }));
    await waitUntil(() => first.status().syncedSeq >= 300, 'part of the log to sync');
    await first.stop();
    const synced = device.log.capacity().syncedSeq;
    device.reopen();
    const second = started(makeSync(device, c, { maxRecords: 100 }));
    await waitUntil(() => second.status().backlog.records === 0, 'the rest');
    // At most the batch in flight at the stop is sent again.
    expect(second.status().recordsSent).toBeLessThanOrEqual(device.log.head().seq - synced + 100);
    await expectSameLog(c.store, device, device.log.head().seq);
  });

  it('leaves the watermark where it is when the collector refuses, and says why', async () => {
    const { c, device } = setup();
    await device.append(250);
    const ok = started(makeSync(device, c, { maxRecords: 120 }));
    await waitUntil(() => ok.status().backlog.records === 0, 'the log to sync');
    await ok.stop();
    const synced = device.log.capacity().syncedSeq;
    await device.append(50);
    device.log.reader.db.exec('DROP TRIGGER audit_no_update');
    device.log.reader.db.prepare('UPDATE audit SET time_ms = time_ms + 1 WHERE seq = ?').run(synced + 10);
    const refused = started(makeSync(device, c));
    await waitUntil(() => refused.status().state === 'refused', 'the refusal');
    expect(refused.status()).toMatchObject({ syncedSeq: synced, lastError: { code: 'AUDIT_HASH_MISMATCH', seq: synced + 10 } });
    expect(refused.status().batches.refused).toBeGreaterThanOrEqual(1);
  });
});
