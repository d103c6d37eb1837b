import { describe, expect, it } from 'vitest';
import type { AuditKind } from '../../src/audit/chain.js';
import type { Encodable } from '../../src/envelope/cbor.js';
import { Metrics } from '../../src/agent/metrics.js';
import { RefusalLog } from '../../src/agent/refusal-log.js';

function harness(opts: { samplesPerReason?: number; samplesPerWindow?: number; answersPerSecond?: number; answerBurst?: number } = {}) {
  const clock = { ms: 1_000_000 };
  const records: Array<{ kind: AuditKind; body: Record<string, Encodable> }> = [];
  const metrics = new Metrics();
  const log = new RefusalLog({ record: async (kind, body) => void records.push({ kind, body }), metrics, now: () => clock.ms, windowMs: 60_000, ...opts });
  return { clock, records, metrics, log };
}

describe('RefusalLog', () => {
  it('records the first few of each source and reason, counts the rest, and sums them up once per window', async () => {
    const { clock, records, metrics, log } = harness({ samplesPerReason: 2, samplesPerWindow: 100 });
    for (let i = 0; i < 50; i++) await log.refuse('mqtt:cmd', 'ENVELOPE_BAD_SIGNATURE', 'command', { i }).recorded;
    await log.refuse('mqtt:cmd', 'ENVELOPE_REPLAY', 'command', { i: 'r' }).recorded;
    await log.refuse('mqtt:approve', 'ENVELOPE_BAD_SIGNATURE', 'decision', { i: 'a' }).recorded;
    // A new kind of refusal is recorded even deep into a flood of another.
    expect(records.map((r) => [r.kind, r.body.source, r.body.i])).toEqual([
      ['command', 'mqtt:cmd', 0],
      ['command', 'mqtt:cmd', 1],
      ['command', 'mqtt:cmd', 'r'],
      ['decision', 'mqtt:approve', 'a'],
    ]);
    expect(metrics.render()).toContain('ztedge_refusals_total{source="mqtt:cmd",reason="ENVELOPE_BAD_SIGNATURE"} 50');
    // The next window's first refusal writes the summary of the last.
    clock.ms += 60_000;
    await log.refuse('mqtt:cmd', 'ENVELOPE_BAD_SIGNATURE', 'command', { i: 'next' }).recorded;
    const summary = records[4]!;
    expect(summary.kind).toBe('command');
    expect(summary.body).toMatchObject({ recorded: 4, unrecorded: 48, fromMs: 1_000_000, toMs: 1_060_000 });
    expect(summary.body.refusals).toEqual(
      new Map([
        ['mqtt:cmd', new Map([['ENVELOPE_BAD_SIGNATURE', 50], ['ENVELOPE_REPLAY', 1]])],
        ['mqtt:approve', new Map([['ENVELOPE_BAD_SIGNATURE', 1]])],
      ]),
    );
    expect(records[5]!.body.i).toBe('next');
    // Nothing unrecorded in a window: no summary.
    clock.ms += 60_000;
    await log.flush();
    expect(records).toHaveLength(6);
  });

  it('caps the records of a window as a whole', async () => {
    const { records, log } = harness({ samplesPerReason: 5, samplesPerWindow: 7 });
    for (let i = 0; i < 20; i++) await log.refuse('mqtt:cmd', `REASON_${i}`, 'command', {}).recorded;
    expect(records).toHaveLength(7);
    await log.flush();
    expect(records.at(-1)!.body).toMatchObject({ recorded: 7, unrecorded: 13 });
  });

  it('answers refusals from a token bucket', () => {
    const { clock, log } = harness({ answersPerSecond: 10, answerBurst: 3 });
    const answers = () => log.refuse('mqtt:cmd', 'X', 'command', {}).answer;
    expect([answers(), answers(), answers(), answers()]).toEqual([true, true, true, false]);
    clock.ms += 100;
    expect([answers(), answers()]).toEqual([true, false]);
    clock.ms += 10_000;
    expect([answers(), answers(), answers(), answers()]).toEqual([true, true, true, false]);
  });
});
