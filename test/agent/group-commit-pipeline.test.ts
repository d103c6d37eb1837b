// Commands handled concurrently share group commits: what each writes before it may act (replay
// entry, decision record) is committed in one transaction with the others of the same turn, and
// a command executes only once that transaction is durable.
import Database from 'better-sqlite3';
import { afterEach, describe, expect, it } from 'vitest';
import type { ExecutionOutcome, ExecutionRequest } from '../../src/agent/executors/types.js';
import { nativeVerifier } from '../../src/crypto/native-verifier.js';
import type { SignatureVerifier } from '../../src/crypto/verifier.js';
import { decodeCbor } from '../../src/envelope/cbor.js';
import { command, type Core, makeCore, makeKeys, RecordingExecutor, T0 } from './fixture.js';

/**
 * The agent checks signatures on the thread pool, so how many commands share a turn depends on
 * when the checks return. These tests are about what shares a commit, so their signature checks
 * answer in the turn they are asked (same verdicts, no thread pool).
 */
const sameTurnVerifier: SignatureVerifier = { ...nativeVerifier, verifyAsync: (key, message, signature) => Promise.resolve(nativeVerifier.verify(key, message, signature)) };

/** Checks, when asked to execute, that another connection already sees the command's records. */
class DurabilityCheckingExecutor extends RecordingExecutor {
  readonly notYetDurable: string[] = [];
  private reader: Database.Database | null = null;

  watch(dbPath: string): void {
    this.reader = new Database(dbPath, { readonly: true });
  }

  override async execute(request: ExecutionRequest): Promise<ExecutionOutcome> {
    // The executor id is the envelope digest, which the decision record's CBOR body carries (with the cti).
    const digest = Buffer.from(request.commandId, 'hex');
    const decisions = this.reader!.prepare("SELECT body FROM audit WHERE kind = 'decision' AND instr(body, ?) > 0").all(digest) as Array<{ body: Buffer }>;
    const cti = decisions.length === 1 ? Buffer.from((decodeCbor(decisions[0]!.body, { maxBytes: 1 << 20, maxDepth: 32 }) as Map<string, Uint8Array>).get('cti')!) : Buffer.alloc(0);
    const replay = this.reader!.prepare('SELECT count(*) AS n FROM replay_seen WHERE cti = ?').get(cti) as { n: number };
    const unsettled = this.reader!.prepare('SELECT count(*) AS n FROM unsettled_commands WHERE digest = ?').get(digest) as { n: number };
    if (replay.n !== 1 || decisions.length !== 1 || unsettled.n !== 1) this.notYetDurable.push(request.commandId);
    return super.execute(request);
  }

  close(): void {
    this.reader?.close();
  }
}

const cores: Core[] = [];
const executors: DurabilityCheckingExecutor[] = [];
afterEach(() => {
  for (const e of executors.splice(0)) e.close();
  for (const c of cores.splice(0)) c.close();
});

function core(): { core: Core; executor: DurabilityCheckingExecutor } {
  const executor = new DurabilityCheckingExecutor();
  const c = makeCore(makeKeys(), undefined, { ms: T0 }, executor, { verifier: sameTurnVerifier });
  executor.watch(c.dbPath);
  cores.push(c);
  executors.push(executor);
  return { core: c, executor };
}

const count = (c: Core, sql: string) => {
  const reader = new Database(c.dbPath, { readonly: true });
  try {
    return (reader.prepare(sql).get() as { n: number }).n;
  } finally {
    reader.close();
  }
};

describe('commands under group commit', () => {
  it('commits the replay entries and decisions of 20 concurrent commands in one transaction, each durable before it executes', async () => {
    const { core: c, executor } = core();
    // estop: permitted for operators, no rate limit, no approval.
    const envelopes = Array.from({ length: 20 }, () => command(c.keys.planner, c.clock.ms, 'estop'));
    const before = c.commits.stats();
    let recordedCalls = 0;
    const outcomes = await Promise.all(envelopes.map((bytes) => c.pipeline.handleCommand({ bytes, source: 'mqtt', onRecorded: () => recordedCalls++ })));
    expect(outcomes.map((o) => o.outcome)).toEqual(Array(20).fill('executed'));
    expect(executor.calls).toHaveLength(20);
    expect(recordedCalls).toBe(20);
    expect(executor.notYetDurable).toEqual([]);
    const after = c.commits.stats();
    // One transaction for 20 replay entries + 20 decision records + 20 unsettled rows, one for the
    // 20 execution records and the removal of the 20 rows: no transaction or flush of their own.
    expect({ batches: after.batches - before.batches, writes: after.writes - before.writes }).toEqual({ batches: 2, writes: 100 });
    expect(after.largestBatch).toBe(60);
    expect(c.audit.verify()).toBeUndefined();
    expect(c.audit.head().seq).toBe(40);
  });

  it('refuses the second copy of an envelope arriving in the same batch as the first', async () => {
    const { core: c, executor } = core();
    const bytes = command(c.keys.planner, c.clock.ms, 'estop');
    const [first, second] = await Promise.all([
      c.pipeline.handleCommand({ bytes, source: 'mqtt' }),
      c.pipeline.handleCommand({ bytes, source: 'mqtt' }),
    ]);
    expect([first!.outcome, second!.reasons]).toEqual(['executed', ['ENVELOPE_REPLAY']]);
    expect(executor.calls).toHaveLength(1);
  });

  it('fails every command of a batch whose commit fails, executes none, and leaves them free to be sent again', async () => {
    const { core: c, executor } = core();
    const envelopes = Array.from({ length: 5 }, () => command(c.keys.planner, c.clock.ms, 'estop'));
    // Storage fails on the third record of the batch only; the whole transaction rolls back.
    const db = new Database(c.dbPath);
    db.exec("CREATE TRIGGER fail_third BEFORE INSERT ON audit WHEN NEW.seq = 3 BEGIN SELECT RAISE(ABORT, 'disk I/O error'); END");
    const recordedCalls: number[] = [];
    const failed = await Promise.all(
      envelopes.map((bytes, i) => c.pipeline.handleCommand({ bytes, source: 'mqtt', onRecorded: () => recordedCalls.push(i) })),
    );
    expect(failed.map((o) => [o.decision, o.reasons, o.outcome])).toEqual(Array(5).fill(['deny', ['AUDIT_UNAVAILABLE'], 'not_executed']));
    expect(executor.calls).toEqual([]);
    expect(count(c, 'SELECT count(*) AS n FROM audit')).toBe(0);
    expect(count(c, 'SELECT count(*) AS n FROM replay_seen')).toBe(0);
    // The transport is still told once per message (it acks the refusal it is about to send).
    expect(recordedCalls.sort()).toEqual([0, 1, 2, 3, 4]);

    db.exec('DROP TRIGGER fail_third');
    db.close();
    const retried = await Promise.all(envelopes.map((bytes) => c.pipeline.handleCommand({ bytes, source: 'mqtt' })));
    expect(retried.map((o) => o.outcome)).toEqual(Array(5).fill('executed'));
    expect(executor.notYetDurable).toEqual([]);
    expect(c.audit.verify()).toBeUndefined();
  });

  it('queues the execution record once the reply is prepared, so both share one transaction', async () => {
    const { core: c } = core();
    const bytes = command(c.keys.planner, c.clock.ms, 'estop');
    const batches: number[] = [];
    let replyBatch = -1;
    let executionCommittedAtReply = -1;
    const outcome = await c.pipeline.handleCommand({
      bytes,
      source: 'mqtt',
      // Like the agent: the reply is signed off the event loop, then queued on the group commit.
      onOutcome: async () => {
        await new Promise((resolve) => setTimeout(resolve, 5));
        executionCommittedAtReply = count(c, "SELECT count(*) AS n FROM audit WHERE kind = 'execution'");
        void c.commits.run(() => (replyBatch = c.commits.stats().batches));
      },
      onRecorded: () => batches.push(c.commits.stats().batches),
    });
    expect(outcome.outcome).toBe('executed');
    // The execution record was not committed before the reply was queued, and it landed in the
    // same batch as the reply: the last batch, the one after the decision's.
    expect(executionCommittedAtReply).toBe(0);
    expect(count(c, "SELECT count(*) AS n FROM audit WHERE kind = 'execution'")).toBe(1);
    const after = c.commits.stats();
    expect(replyBatch).toBe(after.batches - 1);
    expect(after.batches - batches[0]!).toBe(1);
  });

  it('writes the execution record even when preparing the reply fails', async () => {
    const { core: c, executor } = core();
    for (const onOutcome of [() => Promise.reject(new Error('signing failed')), () => { throw new Error('thrown'); }]) {
      const outcome = await c.pipeline.handleCommand({ bytes: command(c.keys.planner, c.clock.ms, 'estop'), source: 'mqtt', onOutcome });
      expect(outcome.outcome).toBe('executed');
    }
    expect(executor.calls).toHaveLength(2);
    expect(count(c, "SELECT count(*) AS n FROM audit WHERE kind = 'execution'")).toBe(2);
  });
});
