import { EventEmitter } from 'node:events';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { GroupCommit } from '../../src/store/group-commit.js';
import { openStateDb, type Database } from '../../src/store/state-db.js';
import { TransportError } from '../../src/transport/errors.js';
import type { PublishOptions } from '../../src/transport/mqtt-link.js';
import { Outbox, type OutboxLink, type OutboxOptions, type RejectedMessage } from '../../src/transport/outbox.js';
import { waitUntil } from '../support/wait.js';

/** A link whose connectivity and acknowledgements the test drives by hand. */
class FakeLink extends EventEmitter implements OutboxLink {
  online = false;
  /** Acknowledge every publish on the next turn, like a broker that keeps up. */
  autoAck = false;
  readonly calls: Array<{
    topic: string;
    payload: string;
    opts: PublishOptions;
    ack: () => void;
    fail: (err: Error) => void;
  }> = [];

  publish(topic: string, payload: Uint8Array, opts: PublishOptions): Promise<void> {
    if (!this.online) return Promise.reject(new TransportError('LINK_OFFLINE', 'offline'));
    return new Promise((resolve, reject) => {
      this.calls.push({ topic, payload: Buffer.from(payload).toString(), opts, ack: resolve, fail: reject });
      if (this.autoAck) setImmediate(resolve);
    });
  }

  goOnline(): void {
    this.online = true;
    this.emit('online');
  }

  sent(): string[] {
    return this.calls.map((c) => c.payload);
  }
}

let dir: string;
let dbPath: string;
const opened: Array<{ db: Database; outbox?: Outbox }> = [];

beforeEach(() => {
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-outbox-'));
  dbPath = path.join(dir, 'state.db');
});

afterEach(async () => {
  for (const { db, outbox } of opened.splice(0)) {
    await outbox?.close();
    if (db.open) db.close();
  }
  fs.rmSync(dir, { recursive: true, force: true });
});

function open(link: OutboxLink, options: Partial<OutboxOptions> = {}): { db: Database; outbox: Outbox; commits: GroupCommit } {
  const db = openStateDb(dbPath);
  const commits = new GroupCommit(db);
  const outbox = new Outbox(db, link, { maxMessages: 1000, maxBytes: 1_000_000, retryDelayMs: 20, closeGraceMs: 50, commits, ...options });
  opened.push({ db, outbox });
  return { db, outbox, commits };
}

/** Queues a write that fails on the group commit: the whole batch it lands in rolls back. */
function failNextBatch(commits: GroupCommit): Promise<unknown> {
  return commits
    .run(() => {
      throw new Error('disk I/O error');
    })
    .catch((err: unknown) => err);
}

/** Acknowledges every publish, in order, as it arrives, until `count` were acknowledged. */
async function ackAll(link: FakeLink, count: number): Promise<void> {
  for (let i = 0; i < count; i++) {
    await waitUntil(() => link.calls.length > i, `publish #${i + 1}`);
    link.calls[i].ack();
  }
}

const msg = (payload: string, extra: Partial<Parameters<Outbox['enqueue']>[0]> = {}) => ({
  topic: 'ztedge/s/d/cmd/result',
  payload: Buffer.from(payload),
  qos: 1 as const,
  ...extra,
});

const flush = () => new Promise((resolve) => setImmediate(resolve));

describe('Outbox', () => {
  it('holds messages while offline, then publishes them in order, at most `window` awaiting PUBACK', async () => {
    const link = new FakeLink();
    const { outbox } = open(link, { window: 4 });
    outbox.start();
    for (let i = 0; i < 10; i++) outbox.enqueue(msg(`m${i}`));
    expect(link.calls).toHaveLength(0);
    expect(outbox.metrics()).toMatchObject({ enqueued: 10, heldMessages: 10, inFlight: 0 });

    link.goOnline();
    expect(link.sent()).toEqual(['m0', 'm1', 'm2', 'm3']);
    link.calls[0].ack();
    await waitUntil(() => link.calls.length === 5, 'a free slot refilled');
    expect(link.sent()).toEqual(['m0', 'm1', 'm2', 'm3', 'm4']);
    expect(outbox.metrics().inFlight).toBe(4);
    for (let i = 1; i < 10; i++) {
      await waitUntil(() => link.calls.length > i, `dispatch of m${i}`);
      link.calls[i].ack();
    }
    await waitUntil(() => outbox.metrics().sent === 10, 'all sent');
    expect(link.sent()).toEqual(Array.from({ length: 10 }, (_, i) => `m${i}`));
    expect(outbox.metrics()).toMatchObject({ sent: 10, heldMessages: 0, heldBytes: 0, inFlight: 0 });
  });

  it('deletes a message only after its PUBACK: unacknowledged ones are sent again after a reopen', async () => {
    const link = new FakeLink();
    const first = open(link);
    first.outbox.start();
    link.goOnline();
    for (const p of ['a', 'b', 'c']) first.outbox.enqueue(msg(p));
    expect(link.sent()).toEqual(['a', 'b', 'c']);
    link.calls[0].ack();
    await waitUntil(() => first.outbox.metrics().sent === 1, 'a acknowledged');
    // The process stops with b and c published but not acknowledged.
    await first.outbox.close();
    first.db.close();

    const relink = new FakeLink();
    relink.online = true;
    const second = open(relink);
    expect(second.outbox.metrics().heldMessages).toBe(2);
    second.outbox.start();
    expect(relink.sent()).toEqual(['b', 'c']);
  });

  it('keeps what was enqueued across a close and reopen of the database, with its properties', async () => {
    const offline = new FakeLink();
    const first = open(offline);
    first.outbox.enqueue(
      msg('reply', { responseTopic: 'ops/replies/9', correlationData: Buffer.from([7, 7]), contentType: 'application/cose' }),
    );
    first.outbox.enqueue(msg('status', { topic: 'ztedge/s/d/status', retain: true, qos: 0 }));
    await first.outbox.close();
    first.db.close();

    const link = new FakeLink();
    const second = open(link);
    second.outbox.start();
    link.goOnline();
    expect(link.calls.map((c) => [c.topic, c.payload])).toEqual([
      ['ztedge/s/d/cmd/result', 'reply'],
      ['ztedge/s/d/status', 'status'],
    ]);
    expect(link.calls[0].opts).toEqual({
      qos: 1,
      retain: false,
      responseTopic: 'ops/replies/9',
      correlationData: Buffer.from([7, 7]),
      contentType: 'application/cose',
    });
    expect(link.calls[1].opts).toEqual({ qos: 0, retain: true });
  });

  it('refuses non-critical messages first, keeping the reserve for critical ones, and says so', () => {
    const { outbox } = open(new FakeLink(), { maxMessages: 10, maxBytes: 1_000_000, criticalReserve: 0.2 });
    const refusals: TransportError[] = [];
    outbox.on('refused', (e) => refusals.push(e));
    for (let i = 0; i < 8; i++) outbox.enqueue(msg(`status-${i}`));
    expect(() => outbox.enqueue(msg('one-too-many'))).toThrow(expect.objectContaining({ code: 'OUTBOX_FULL' }));
    outbox.enqueue(msg('result-1', { critical: true }));
    outbox.enqueue(msg('result-2', { critical: true }));
    expect(() => outbox.enqueue(msg('result-3', { critical: true }))).toThrow(expect.objectContaining({ code: 'OUTBOX_FULL' }));
    expect(refusals.map((e) => e.code)).toEqual(['OUTBOX_FULL', 'OUTBOX_FULL']);
    expect(outbox.metrics()).toMatchObject({ enqueued: 10, refused: 2, heldMessages: 10 });
  });

  it('bounds bytes the same way', () => {
    const { outbox } = open(new FakeLink(), { maxMessages: 1000, maxBytes: 1000, criticalReserve: 0.5 });
    const topicBytes = Buffer.byteLength('ztedge/s/d/cmd/result');
    outbox.enqueue(msg('x'.repeat(500 - topicBytes)));
    expect(() => outbox.enqueue(msg('y'))).toThrow(expect.objectContaining({ code: 'OUTBOX_FULL' }));
    outbox.enqueue(msg('z'.repeat(500 - topicBytes), { critical: true }));
    expect(() => outbox.enqueue(msg('', { critical: true }))).toThrow(expect.objectContaining({ code: 'OUTBOX_FULL' }));
    expect(outbox.metrics().heldBytes).toBe(1000);
  });

  it('lets a retained message supersede unsent retained ones on the same topic, but not one in flight', async () => {
    const link = new FakeLink();
    const { outbox } = open(link, { maxMessages: 3, criticalReserve: 0 });
    outbox.start();
    const status = (s: string) => msg(s, { topic: 'ztedge/s/d/status', retain: true });
    for (let i = 0; i < 10; i++) outbox.enqueue(status(`state-${i}`));
    outbox.enqueue(msg('result'));
    expect(outbox.metrics()).toMatchObject({ heldMessages: 2, superseded: 9 });

    link.goOnline();
    expect(link.sent()).toEqual(['state-9', 'result']);
    outbox.enqueue(status('state-10'));
    expect(outbox.metrics().superseded).toBe(9);
    expect(link.sent()).toEqual(['state-9', 'result', 'state-10']);
  });

  it('keeps and reports a message the broker refuses, moves on, and discards it only when told', async () => {
    const link = new FakeLink();
    const { outbox } = open(link);
    const rejections: RejectedMessage[] = [];
    outbox.on('rejected', (r) => rejections.push(r));
    outbox.start();
    link.goOnline();
    outbox.enqueue(msg('denied', { topic: 'not/allowed' }));
    outbox.enqueue(msg('fine'));
    link.calls[0].fail(new TransportError('PUBLISH_REJECTED', 'not authorized', 0x87));
    link.calls[1].ack();
    await waitUntil(() => outbox.metrics().sent === 1 && rejections.length === 1, 'one sent, one rejected');
    expect(rejections[0]).toMatchObject({ topic: 'not/allowed', reasonCode: 0x87, reason: 'not authorized' });
    expect(outbox.rejected()).toEqual([expect.objectContaining({ id: rejections[0].id, topic: 'not/allowed', reasonCode: 0x87 })]);
    expect(outbox.metrics()).toMatchObject({ rejected: 1, heldMessages: 1 });
    // Not sent again on its own.
    link.emit('online');
    expect(link.sent()).toEqual(['denied', 'fine']);
    expect(outbox.discardRejected()).toBe(1);
    expect(outbox.metrics()).toMatchObject({ heldMessages: 0, heldBytes: 0 });
    expect(outbox.rejected()).toEqual([]);
  });

  it('retries after a transient failure instead of dropping or spinning', async () => {
    const link = new FakeLink();
    const { outbox } = open(link, { retryDelayMs: 30 });
    outbox.start();
    link.goOnline();
    outbox.enqueue(msg('flaky'));
    link.calls[0].fail(new TransportError('LINK_OFFLINE', 'connection dropped'));
    await flush();
    expect(link.calls).toHaveLength(1);
    await waitUntil(() => link.calls.length === 2, 'the retry');
    link.calls[1].ack();
    await waitUntil(() => outbox.metrics().sent === 1, 'sent');
    expect(outbox.metrics()).toMatchObject({ retries: 1, heldMessages: 0 });
  });

  it('sends what was committed in this process from memory, reading the database only for rows of a previous run', async () => {
    const offline = new FakeLink();
    const first = open(offline);
    for (const p of ['old-0', 'old-1', 'old-2']) first.outbox.enqueue(msg(p));
    await first.outbox.close();
    first.db.close();

    const link = new FakeLink();
    const { outbox } = open(link, { window: 2 });
    outbox.enqueue(msg('new-0'));
    await outbox.enqueueGrouped(msg('new-1'));
    outbox.start();
    link.goOnline();
    expect(link.sent()).toEqual(['old-0', 'old-1']);
    // Committed while the previous run's rows are still going out: waits for them.
    await outbox.enqueueGrouped(msg('new-2'));
    link.calls[0].ack();
    await waitUntil(() => link.calls.length === 3, 'the next slot filled');
    expect(link.sent()).toEqual(['old-0', 'old-1', 'old-2']);
    await ackAll(link, 6);
    await waitUntil(() => outbox.metrics().sent === 6, 'all sent');
    expect(link.sent()).toEqual(['old-0', 'old-1', 'old-2', 'new-0', 'new-1', 'new-2']);
    const readsForOldRows = outbox.metrics().reads;
    expect(readsForOldRows).toBeGreaterThan(0);

    // A steady stream from here on (the broker keeps up) never reads back what it just wrote.
    link.autoAck = true;
    for (let batch = 0; batch < 20; batch++) {
      await Promise.all(Array.from({ length: 5 }, (_, i) => outbox.enqueueGrouped(msg(`s${batch * 5 + i}`))));
      await waitUntil(() => outbox.metrics().sent >= 6 + batch * 5, 'the stream flowing');
    }
    await waitUntil(() => outbox.metrics().sent === 106, 'the stream sent');
    expect(link.sent().slice(6)).toEqual(Array.from({ length: 100 }, (_, i) => `s${i}`));
    expect(outbox.metrics()).toMatchObject({ reads: readsForOldRows, heldMessages: 0, inFlight: 0 });
  });

  it('keeps order beyond what memory holds: the oldest copies are dropped and read back when due', async () => {
    const link = new FakeLink();
    // window 2: memory holds at most 8 undispatched messages.
    const { outbox } = open(link, { window: 2 });
    outbox.start();
    for (let i = 0; i < 30; i++) outbox.enqueue(msg(`m${i}`));
    await Promise.all(Array.from({ length: 10 }, (_, i) => outbox.enqueueGrouped(msg(`m${30 + i}`))));
    link.goOnline();
    await ackAll(link, 40);
    await waitUntil(() => outbox.metrics().sent === 40, 'all sent');
    expect(link.sent()).toEqual(Array.from({ length: 40 }, (_, i) => `m${i}`));
    expect(outbox.metrics().reads).toBeGreaterThan(0);
    expect(outbox.metrics()).toMatchObject({ heldMessages: 0, heldBytes: 0 });
  });

  it('resends every failed publish in enqueue order, ahead of newer messages', async () => {
    const link = new FakeLink();
    const { outbox } = open(link, { window: 3 });
    outbox.start();
    link.goOnline();
    await Promise.all(['m0', 'm1', 'm2', 'm3', 'm4'].map((p) => outbox.enqueueGrouped(msg(p))));
    expect(link.sent()).toEqual(['m0', 'm1', 'm2']);
    // The connection drops: every publish in flight fails, the last one first.
    for (const call of [...link.calls].reverse()) call.fail(new TransportError('LINK_OFFLINE', 'connection dropped'));
    await waitUntil(() => link.calls.length === 6, 'the retry');
    expect(link.sent()).toEqual(['m0', 'm1', 'm2', 'm0', 'm1', 'm2']);
    for (const call of link.calls.slice(3)) call.ack();
    await waitUntil(() => link.calls.length === 8, 'the rest');
    link.calls[6].ack();
    link.calls[7].ack();
    await waitUntil(() => outbox.metrics().sent === 5, 'all sent');
    expect(link.sent()).toEqual(['m0', 'm1', 'm2', 'm0', 'm1', 'm2', 'm3', 'm4']);
    expect(outbox.metrics()).toMatchObject({ retries: 3, heldMessages: 0 });
  });

  it('frees the window slot on PUBACK and deletes the row with the next commit anybody makes, or on its own shortly after', async () => {
    const link = new FakeLink();
    const { outbox, commits } = open(link, { window: 1 });
    outbox.start();
    link.goOnline();
    outbox.enqueue(msg('a'));
    outbox.enqueue(msg('b'));
    const batches = commits.stats().batches;
    link.calls[0].ack();
    // b goes out at once (the slot is free), while a's delete has not started a transaction.
    await waitUntil(() => link.calls.length === 2, 'b sent');
    await flush();
    expect(commits.stats().batches).toBe(batches);
    expect(outbox.metrics()).toMatchObject({ inFlight: 1, heldMessages: 2, sent: 0 });
    // Another writer's commit carries it.
    await commits.run(() => 0);
    expect(commits.stats().batches).toBe(batches + 1);
    expect(outbox.metrics()).toMatchObject({ heldMessages: 1, sent: 1 });
    // Alone, b's delete commits by itself soon after its PUBACK.
    link.calls[1].ack();
    await waitUntil(() => outbox.metrics().heldMessages === 0, "b's delete committed");
    expect(commits.stats().batches).toBe(batches + 2);
    expect(link.sent()).toEqual(['a', 'b']);
  });

  it('sends an acknowledged message again when its delete was rolled back, before newer ones', async () => {
    const link = new FakeLink();
    const { outbox, commits } = open(link, { window: 2 });
    const problems: Error[] = [];
    outbox.on('problem', (e) => problems.push(e));
    outbox.start();
    link.goOnline();
    outbox.enqueue(msg('a'));
    outbox.enqueue(msg('b'));
    // The delete of a, queued on its PUBACK, lands in a batch that rolls back.
    const failed = failNextBatch(commits);
    link.calls[0].ack();
    expect(await failed).toMatchObject({ code: 'STATE_COMMIT_FAILED' });
    await waitUntil(() => problems.length === 1, 'the problem reported');
    outbox.enqueue(msg('c'));
    await waitUntil(() => link.calls.length === 3, 'a resent after the retry delay');
    expect(link.sent()).toEqual(['a', 'b', 'a']);
    link.calls[1].ack();
    link.calls[2].ack();
    await waitUntil(() => link.calls.length === 4, 'c sent');
    link.calls[3].ack();
    await waitUntil(() => outbox.metrics().heldMessages === 0, 'all deleted');
    expect(link.sent()).toEqual(['a', 'b', 'a', 'c']);
    expect(outbox.metrics().sent).toBe(3);
  });

  it('never sends a retained message superseded while it waited, and brings it back if the superseding write rolls back', async () => {
    const link = new FakeLink();
    const { outbox, commits } = open(link, { window: 1 });
    outbox.start();
    link.goOnline();
    outbox.enqueue(msg('result')); // in flight: the window is full, so the rest waits
    const status = (s: string) => msg(s, { topic: 'ztedge/s/d/status', retain: true });
    await outbox.enqueueGrouped(status('s0'));
    await outbox.enqueueGrouped(status('s1')); // supersedes s0 in a later batch
    // s3 supersedes s2 in the batch that stores both.
    await Promise.all([outbox.enqueueGrouped(status('s2')), outbox.enqueueGrouped(status('s3'))]);
    outbox.enqueue(status('s4')); // supersedes s3 in a transaction of its own
    // s5 supersedes s4, then the batch rolls back: s4 is stored, and to be sent, again.
    const s5 = outbox.enqueueGrouped(status('s5'));
    const failed = failNextBatch(commits);
    await expect(s5).rejects.toMatchObject({ code: 'STATE_COMMIT_FAILED' });
    await failed;
    await outbox.enqueueGrouped(msg('after'));
    expect(outbox.metrics()).toMatchObject({ superseded: 4, heldMessages: 3 });

    await ackAll(link, 3);
    await waitUntil(() => outbox.metrics().sent === 3, 'all sent');
    expect(link.sent()).toEqual(['result', 's4', 'after']);
    expect(outbox.metrics()).toMatchObject({ heldMessages: 0, heldBytes: 0 });
  });

  it('still sends a retained message when the one meant to supersede it was refused for space', async () => {
    const link = new FakeLink();
    const topicBytes = Buffer.byteLength('ztedge/s/d/status');
    const { outbox } = open(link, { maxBytes: 100, criticalReserve: 0 });
    const status = (s: string) => msg(s, { topic: 'ztedge/s/d/status', retain: true });
    outbox.enqueue(status('small'));
    expect(() => outbox.enqueue(status('x'.repeat(101 - topicBytes)))).toThrow(expect.objectContaining({ code: 'OUTBOX_FULL' }));
    outbox.start();
    link.goOnline();
    await ackAll(link, 1);
    await waitUntil(() => outbox.metrics().sent === 1, 'sent');
    expect(link.sent()).toEqual(['small']);
    expect(outbox.metrics()).toMatchObject({ superseded: 0, refused: 1, heldMessages: 0 });
  });

  it('refuses malformed messages and bad options with typed errors', async () => {
    const { outbox } = open(new FakeLink());
    const bad = [
      msg('x', { topic: 'a/#' }),
      msg('x', { qos: 2 as unknown as 1 }),
      msg('x', { responseTopic: '$SYS/x' }),
      msg('x', { correlationData: Buffer.alloc(2000) }),
      msg('x', { contentType: 'c'.repeat(300) }),
      { ...msg('x'), payload: 'not bytes' as unknown as Uint8Array },
    ];
    for (const m of bad) expect(() => outbox.enqueue(m)).toThrow(expect.objectContaining({ code: 'OUTBOX_MESSAGE_INVALID' }));
    expect(outbox.metrics().heldMessages).toBe(0);
    const db = openStateDb(':memory:');
    for (const options of [{ maxMessages: 0, maxBytes: 1 }, { maxMessages: 1, maxBytes: 1, criticalReserve: 1 }, { maxMessages: 1, maxBytes: 1, window: 0 }]) {
      expect(() => new Outbox(db, new FakeLink(), options)).toThrow(expect.objectContaining({ code: 'OUTBOX_OPTIONS_INVALID' }));
    }
    db.close();
    await outbox.close();
    expect(() => outbox.enqueue(msg('late'))).toThrow(expect.objectContaining({ code: 'OUTBOX_CLOSED' }));
  });
});
