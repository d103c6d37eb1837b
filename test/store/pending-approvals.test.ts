import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { PendingApprovals, PendingFullError, type PendingCommand } from '../../src/store/pending-approvals.js';

const cmd = (n: number, over: Partial<PendingCommand> = {}): PendingCommand => ({
  digest: new Uint8Array(32).fill(n),
  envelope: new Uint8Array([0xd2, n]),
  principal: 'Agent::"planner"',
  action: 'Action::"move"',
  resource: 'Arm::"arm-01"',
  required: 2,
  approvers: ['Role::"supervisor"'],
  expiresMs: 10_000,
  createdMs: 1000,
  reply: { route: { topic: 'reply/here', correlation: 'abcd' }, source: 'mqtt' },
  ...over,
});

describe('PendingApprovals', () => {
  it('reaches quorum with distinct approvers only, and survives a restart', () => {
    const path = join(mkdtempSync(join(tmpdir(), 'ztedge-pending-')), 'state.db');
    let db = openStateDb(path);
    let pending = new PendingApprovals(db, 10);
    expect(pending.hold(cmd(1))).toBe(true);
    expect(pending.hold(cmd(1))).toBe(false);
    expect(pending.approve(cmd(1).digest, 'User::"alice"', 2000)).toEqual({ status: 'counted', approvals: 1, required: 2 });
    expect(pending.approve(cmd(1).digest, 'User::"alice"', 2001)).toEqual({ status: 'duplicate', approvals: 1, required: 2 });
    db.close();

    db = openStateDb(path);
    pending = new PendingApprovals(db, 10);
    expect(pending.get(cmd(1).digest)).toEqual(cmd(1));
    expect(pending.approve(cmd(1).digest, 'User::"bob"', 3000)).toEqual({ status: 'quorum', approvals: 2, required: 2 });
    expect(pending.approversOf(cmd(1).digest)).toEqual(['User::"alice"', 'User::"bob"']);
    expect(pending.remove(cmd(1).digest)).toBe(true);
    expect(pending.approve(cmd(1).digest, 'User::"carol"', 3000)).toEqual({ status: 'unknown-command' });
    expect(db.prepare('SELECT count(*) AS n FROM pending_approvals').get()).toEqual({ n: 0 });
    db.close();
  });

  it('does not count approvals after expiry and lists expired commands', () => {
    const pending = new PendingApprovals(openStateDb(':memory:'), 10);
    pending.hold(cmd(1, { expiresMs: 5000 }));
    pending.hold(cmd(2, { expiresMs: 9000 }));
    expect(pending.approve(cmd(1).digest, 'User::"alice"', 5000)).toEqual({ status: 'expired' });
    expect(pending.expired(6000).map((c) => c.digest[0])).toEqual([1]);
    expect(pending.all().map((c) => c.digest[0])).toEqual([1, 2]);
  });

  it('refuses new commands when the queue is full', () => {
    const pending = new PendingApprovals(openStateDb(':memory:'), 2);
    pending.hold(cmd(1));
    pending.hold(cmd(2));
    expect(() => pending.hold(cmd(3))).toThrow(PendingFullError);
    expect(pending.size()).toBe(2);
  });

  it("keeps each requester to its share of the queue, so one cannot lock the others' commands out", () => {
    const pending = new PendingApprovals(openStateDb(':memory:'), 5); // two keys: a share of 2
    const planner = (n: number) => cmd(n);
    const operator = (n: number) => cmd(n, { principal: 'User::"olga"' });
    expect(pending.hold(planner(1), 2)).toBe(true);
    expect(pending.hold(planner(2), 2)).toBe(true);
    expect(() => pending.hold(planner(3), 2)).toThrow(expect.objectContaining({ code: 'APPROVAL_QUEUE_SHARE_FULL' }));
    expect(pending.hold(planner(2), 2)).toBe(false); // the same command again is not a new one
    expect(pending.hold(operator(4), 2)).toBe(true);
    expect(pending.hold(operator(5), 2)).toBe(true);
    expect(() => pending.hold(operator(6), 2)).toThrow(expect.objectContaining({ code: 'APPROVAL_QUEUE_SHARE_FULL' }));
    pending.remove(planner(1).digest);
    expect(pending.hold(planner(3), 2)).toBe(true);
    expect(pending.hold(operator(7))).toBe(true); // no share given: only the whole queue's bound
    expect(() => pending.hold(cmd(8, { principal: 'User::"nina"' }), 2)).toThrow(expect.objectContaining({ code: 'APPROVAL_QUEUE_FULL' }));
  });
});
