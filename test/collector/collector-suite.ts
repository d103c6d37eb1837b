// The collector's behaviour, run against each store (sqlite.test.ts, postgres.test.ts call it):
// devices' logs stored exactly once, in order, verified; resends stored once; batches that
// overtake their predecessor; and every kind of tampering refused and reported with the device
// and the seq, with nothing of the refused batch stored.
import { afterEach, describe, expect, it } from 'vitest';
import { readBatch } from '../../src/audit/sync.js';
import { encodeBatch, verifyAck } from '../../src/audit/sync-protocol.js';
import { recordHash } from '../../src/audit/chain.js';
import type { CollectorStore, DeviceState } from '../../src/collector/store.js';
import { CompactRange, leafHash } from '../../src/audit/merkle.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { waitUntil } from '../support/wait.js';
import { T0, body, expectSameLog, makeCollector, makeDevice, makeSync, type TestCollector, type TestDevice } from './support.js';

export function collectorSuite(label: string, openStore: () => Promise<CollectorStore>): void {
  describe(`collector on ${label}`, () => {
    const cleanups: Array<() => unknown> = [];
    afterEach(async () => {
      for (const c of cleanups.splice(0).reverse()) await c();
    });

    async function setup(id = 'arm-1', everyRecords = 100): Promise<{ device: TestDevice; c: TestCollector }> {
      const c = makeCollector(await openStore());
      cleanups.push(() => c.close());
      const device = makeDevice(id, { everyRecords });
      cleanups.push(() => device.close());
      c.register(device);
      return { device, c };
    }

    /** Sends records from..(at most maxRecords) as the sync would; returns the verified answer. */
    async function send(device: TestDevice, c: TestCollector, from: number, maxRecords = 1000, tamper?: (b: NonNullable<Awaited<ReturnType<typeof readBatch>>>) => void) {
      const batch = (await readBatch(device.log, from, maxRecords, 1 << 30))!;
      tamper?.(batch);
      const encoded = await encodeBatch({ device: device.id, first: from, records: batch.records, head: device.log.head().seq, timeMs: device.clock.ms, ...(batch.cover ? { cover: batch.cover, proof: batch.proof } : {}), key: device.key });
      const answer = await c.collector.receive(encoded.bytes);
      if (answer.kind !== 'ack') throw new Error(`rejected: ${answer.code} ${answer.message}`);
      return { ...verifyAck(answer.ack, c.signingKey.publicKey), httpStatus: answer.status, last: encoded.last };
    }

    it('commits only on the device state it was checked against (collectors sharing a database)', async () => {
      const store = await openStore();
      cleanups.push(() => store.close());
      const record = (seq: number, prev: Uint8Array) => {
        const b = body(`r${seq}`);
        return { seq, timeMs: T0 + seq, kind: 'command' as const, body: b, hash: recordHash(prev, seq, T0 + seq, 'command', b) };
      };
      const r1 = record(1, new Uint8Array(32));
      const r2 = record(2, r1.hash);
      const one: DeviceState = {
        device: 'plc-7',
        lastSeq: 1,
        lastHash: r1.hash,
        frontier: CompactRange.EMPTY.append(leafHash(r1.hash)).range,
        origin: null,
        checkpoint: null,
        headSeq: 5,
        firstSeenMs: T0,
        lastSeenMs: T0,
      };
      const two: DeviceState = { ...one, lastSeq: 2, lastHash: r2.hash, frontier: one.frontier.append(leafHash(r2.hash)).range, checkpoint: { seq: 2, size: 1, root: r1.hash, timeMs: T0 }, lastSeenMs: T0 + 9 };
      const batch = (first: number, last: number) => ({ first, last, digest: new Uint8Array(32).fill(first), receivedMs: T0 });
      expect(await store.commit({ expected: null, state: one, records: [r1], batch: batch(1, 1) })).toBe(true);
      expect(await store.commit({ expected: null, state: one, records: [r1], batch: batch(1, 1) })).toBe(false);
      expect(await store.commit({ expected: { ...one, lastSeq: 0 }, state: two, records: [r2], batch: batch(2, 2) })).toBe(false);
      expect((await store.records('plc-7', 1, 10, 10)).map((r) => r.seq)).toEqual([1]);
      expect(await store.commit({ expected: one, state: two, records: [r2], batch: batch(2, 2) })).toBe(true);
      expect(await store.device('plc-7')).toEqual(two);
      expect(await store.records('plc-7', 1, 10, 10)).toEqual([r1, r2]);
      expect(await store.frontierAtOrBefore('plc-7', 1)).toEqual(one.frontier);
      expect(await store.frontierAtOrBefore('plc-7', 9)).toEqual(two.frontier);
      expect((await store.devices()).map((d) => d.device)).toEqual(['plc-7']);
    });

    it('stores a log synced in batches exactly once, in order, every checkpoint verified, and moves the watermark', async () => {
      const { device, c } = await setup();
      await device.append(2345);
      const sync = makeSync(device, c);
      sync.start();
      cleanups.push(() => sync.stop());
      await waitUntil(() => device.log.capacity().unsyncedRecords === 0, 'the backlog to drain');
      const head = device.log.head().seq;
      const { checkpoints } = await expectSameLog(c.store, device, head);
      expect(checkpoints).toBeGreaterThanOrEqual(23);
      const state = (await c.store.device(device.id))!;
      expect(state).toMatchObject({ lastSeq: head, headSeq: head, origin: 'ztedge/site-1/arm-1' });
      expect(state.checkpoint!.seq).toBe(device.log.latestCheckpoint()!.seq);
      expect(state.frontier.root()).toEqual(device.log.root().root);
      expect(sync.status()).toMatchObject({ state: 'connected', syncedSeq: head, backlog: { records: 0, bytes: 0, oldestAgeMs: null }, lastError: null });
      // More records later: only they travel.
      const sentBefore = sync.status().recordsSent;
      await device.append(10);
      sync.poke();
      await waitUntil(() => device.log.capacity().unsyncedRecords === 0, 'the new records to sync');
      expect(sync.status().recordsSent - sentBefore).toBeLessThanOrEqual(12);
      await expectSameLog(c.store, device, device.log.head().seq);
    });

    it('stores a resent batch once, and a batch resent from inside the stored log only past its end', async () => {
      const { device, c } = await setup();
      await device.append(450);
      const first = await send(device, c, 1, 150);
      expect(first).toMatchObject({ status: 'stored', seq: first.last, httpStatus: 200 });
      expect(await send(device, c, 1, 150)).toMatchObject({ status: 'stored', seq: first.last });
      const overlapping = await send(device, c, 51, 300);
      expect(overlapping).toMatchObject({ status: 'stored', seq: overlapping.last });
      expect(overlapping.last).toBe(350);
      await expectSameLog(c.store, device, 350);
    });

    it('answers a batch that starts past the next seq needed with "ahead", storing nothing', async () => {
      const { device, c } = await setup();
      await device.append(300);
      const stored = await send(device, c, 1, 100);
      const ahead = await send(device, c, 151, 100);
      expect(ahead).toMatchObject({ status: 'ahead', seq: stored.last, httpStatus: 409 });
      expect((await c.store.device(device.id))!.lastSeq).toBe(stored.last);
      expect(await c.store.reports(device.id, 10)).toEqual([]);
    });

    it('takes batches that overtook their predecessor in order once it arrives', async () => {
      const { device, c } = await setup();
      await device.append(300);
      const a = (await readBatch(device.log, 1, 100, 1 << 30))!;
      const encode = (from: number, b: typeof a) => encodeBatch({ device: device.id, first: from, records: b.records, head: 300, timeMs: 0, ...(b.cover ? { cover: b.cover, proof: b.proof } : {}), key: device.key });
      const first = await encode(1, a);
      const b = (await readBatch(device.log, first.last + 1, 100, 1 << 30))!;
      const second = await encode(first.last + 1, b);
      const late = c.collector.receive(second.bytes);
      await new Promise((r) => setTimeout(r, 5));
      await c.collector.receive(first.bytes);
      const answer = await late;
      expect(answer.kind === 'ack' && verifyAck(answer.ack, c.signingKey.publicKey)).toMatchObject({ status: 'stored', seq: second.last });
    });

    it('refuses an unknown device without storing or reporting anything', async () => {
      const { c } = await setup();
      const stranger = makeDevice('stranger');
      cleanups.push(() => stranger.close());
      await stranger.append(20);
      const batch = (await readBatch(stranger.log, 1, 100, 1 << 30))!;
      const { bytes } = await encodeBatch({ device: 'stranger', records: batch.records, head: 21, timeMs: 0, cover: batch.cover!, proof: batch.proof!, key: stranger.key });
      expect(await c.collector.receive(bytes)).toMatchObject({ kind: 'error', status: 403, code: 'SYNC_UNKNOWN_DEVICE' });
      expect(await c.store.devices()).toEqual([]);
      expect(await c.store.reports(undefined, 10)).toEqual([]);
    });

    it('refuses and reports a batch signed by another device’s key', async () => {
      const { device, c } = await setup();
      const other = makeDevice('arm-2');
      cleanups.push(() => other.close());
      c.register(other);
      await device.append(50);
      const batch = (await readBatch(device.log, 1, 100, 1 << 30))!;
      const { bytes } = await encodeBatch({ device: device.id, records: batch.records, head: 51, timeMs: 0, cover: batch.cover!, proof: batch.proof!, key: other.key });
      const answer = await c.collector.receive(bytes);
      expect(answer.kind === 'ack' && verifyAck(answer.ack, c.signingKey.publicKey)).toMatchObject({ status: 'refused', code: 'SYNC_UNKNOWN_KEY', at: 1 });
      expect(await c.store.device(device.id)).toBeUndefined();
      expect(await c.store.reports(device.id, 10)).toEqual([expect.objectContaining({ device: device.id, seq: 1, code: 'SYNC_UNKNOWN_KEY' })]);
    });

    it('refuses and reports a rewritten record (edited in the device database), storing nothing of its batch', async () => {
      const { device, c } = await setup();
      await device.append(300);
      const ok = await send(device, c, 1, 120);
      device.log.reader.db.exec('DROP TRIGGER audit_no_update');
      device.log.reader.db.prepare('UPDATE audit SET body = ? WHERE seq = 170').run(body('move arm to 9999'));
      const refused = await send(device, c, ok.last + 1, 120);
      expect(refused).toMatchObject({ status: 'refused', code: 'AUDIT_HASH_MISMATCH', at: 170, seq: ok.last, httpStatus: 422 });
      expect((await c.store.device(device.id))!.lastSeq).toBe(ok.last);
      expect(await c.store.reports(device.id, 10)).toEqual([expect.objectContaining({ seq: 170, code: 'AUDIT_HASH_MISMATCH' })]);
    });

    it('refuses a rewritten record whose chain was recomputed: the signed checkpoint no longer matches', async () => {
      const { device, c } = await setup();
      await device.append(300);
      const ok = await send(device, c, 1, 120);
      const refused = await send(device, c, ok.last + 1, 150, (batch) => {
        // Record 150 rewritten, and every hash after it recomputed, as someone with the
        // database but not the device key could.
        let prev = device.log.reader.record(ok.last)!.hash;
        for (const r of batch.records) {
          if (r.seq === 150) r.body = body('move arm to 9999');
          r.hash = recordHash(prev, r.seq, r.timeMs, r.kind, r.body);
          prev = r.hash;
        }
      });
      expect(refused).toMatchObject({ status: 'refused', code: 'AUDIT_CHECKPOINT_ROOT' });
      expect(refused.at).toBeGreaterThan(150);
      expect((await c.store.device(device.id))!.lastSeq).toBe(ok.last);
    });

    it('refuses and reports a deleted record as a gap', async () => {
      const { device, c } = await setup();
      await device.append(300);
      const ok = await send(device, c, 1, 120);
      device.log.reader.db.exec('DROP TRIGGER audit_prune_synced_only');
      device.log.reader.db.prepare('DELETE FROM audit WHERE seq = 160').run();
      const refused = await send(device, c, ok.last + 1, 120);
      expect(refused).toMatchObject({ status: 'refused', code: 'AUDIT_SEQ_GAP', at: 160 });
      expect((await c.store.device(device.id))!.lastSeq).toBe(ok.last);
      // Deleted right at a batch's start: the gap is still named.
      device.log.reader.db.prepare('DELETE FROM audit WHERE seq = ?').run(ok.last + 1);
      expect(await send(device, c, ok.last + 1, 50)).toMatchObject({ status: 'refused', code: 'AUDIT_SEQ_GAP', at: ok.last + 1 });
    });

    it('refuses and reports a device that rolled its database back and re-sends a different history (a fork)', async () => {
      const { device, c } = await setup();
      await device.append(150);
      const early = await send(device, c, 1, 80); // synced watermark of the copy
      await device.log.markSynced(early.last);
      const copy = device.snapshot(); // head 151, synced early.last
      await device.append(200);
      const synced = await send(device, c, early.last + 1, 1000);
      expect(synced.status).toBe('stored');
      // The restored copy writes another history after its head and sends from its watermark.
      device.reopen(copy);
      expect(device.log.head().seq).toBe(151);
      await device.append(300, 'other');
      const refused = await send(device, c, early.last + 1, 1000);
      expect(refused).toMatchObject({ status: 'refused', code: 'AUDIT_FORK', at: 152 });
      expect((await c.store.device(device.id))!.lastSeq).toBe(synced.last);
      expect(await c.store.reports(device.id, 10)).toEqual([expect.objectContaining({ device: device.id, seq: 152, code: 'AUDIT_FORK' })]);
      // What the collector holds is still the first history, whole.
      device.reopen(copy.replace(/snapshot-0\.db$/, 'state.db'));
      await expectSameLog(c.store, device, synced.last);
    });

    it('refuses a stored record sent again with other content, and keeps the stored one', async () => {
      const { device, c } = await setup();
      await device.append(250);
      const ok = await send(device, c, 1, 200);
      const rewrite = await send(device, c, 1, 200, (batch) => {
        batch.records[40]!.body = body('another past');
      });
      expect(rewrite).toMatchObject({ status: 'refused', code: 'AUDIT_HASH_MISMATCH', at: 41 });
      const rechained = await send(device, c, 1, 200, (batch) => {
        let prev: Uint8Array = new Uint8Array(32);
        for (const r of batch.records) {
          if (r.seq === 41) r.body = body('another past');
          r.hash = recordHash(prev, r.seq, r.timeMs, r.kind, r.body);
          prev = r.hash;
        }
      });
      expect(rechained).toMatchObject({ status: 'refused', code: 'AUDIT_REWRITTEN', at: 41 });
      await expectSameLog(c.store, device, ok.last);
    });

    it('refuses a batch whose covering checkpoint is another log’s', async () => {
      const { device, c } = await setup('arm-1', 1000);
      const other = makeDevice('arm-1', { key: device.key, everyRecords: 1000 });
      cleanups.push(() => other.close());
      await device.append(60);
      await other.append(60, 'elsewhere');
      const foreign = (await readBatch(other.log, 1, 1000, 1 << 30))!;
      const refused = await send(device, c, 1, 1000, (batch) => {
        batch.cover = foreign.cover;
      });
      expect(refused).toMatchObject({ status: 'refused', code: 'AUDIT_CHECKPOINT_ROOT', at: foreign.cover!.seq });
      expect(await c.store.device(device.id)).toBeUndefined();
    });

    it('reports refusals newest first, per device, and keeps the acknowledgement signed by the collector only', async () => {
      const { device, c } = await setup();
      await device.append(50);
      const batch = (await readBatch(device.log, 1, 100, 1 << 30))!;
      const wrongKey = generatePrivateKey('ed25519');
      for (let i = 0; i < 3; i++) {
        const { bytes } = await encodeBatch({ device: device.id, first: 1 + i, records: batch.records.slice(i), head: 51, timeMs: 0, cover: batch.cover!, proof: batch.proof!, key: wrongKey });
        const answer = await c.collector.receive(bytes);
        expect(answer.kind).toBe('ack');
        if (answer.kind === 'ack') expect(() => verifyAck(answer.ack, wrongKey.publicKey)).toThrow();
      }
      expect((await c.store.reports(device.id, 10)).map((r) => r.seq)).toEqual([3, 2, 1]);
      expect(await c.store.reports('arm-9', 10)).toEqual([]);
    });
  });
}
