// The agent killed with SIGKILL in the middle of a stream of commands, as a process against a
// real broker and the simulated arm, its durable state then read from the state database:
//   - the audit chain is intact;
//   - every command the arm acted on has its allow record on disk (nothing ran before its record
//     was durable), and was sent to the arm once;
//   - every result a sender received has its execution record on disk (a result is queued in the
//     transaction of that record);
//   - the unsettled rows are exactly the allowed commands without an execution record;
//   - every decided command has its replay entry.
// After a restart on the same state, every command is sent again: none runs a second time (the
// decided ones are refused as replays, the unsettled ones are settled as outcome unknown), and
// the ones the agent never decided run once.
import { randomBytes } from 'node:crypto';
import path from 'node:path';
import Database from 'better-sqlite3';
import mqtt, { type MqttClient } from 'mqtt';
import { afterEach, describe, expect, it } from 'vitest';
import { AgentProcess, PREFIX, bundleAgent, makeBenchSite, signBenchCommand, type BenchSite } from '../../bench/pipeline-load.js';
import { type SimArm, startSimArm } from '../../scripts/sim-arm.js';
import { toHex } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { verifyChain, type AuditKind } from '../../src/audit/chain.js';
import { decodeCbor } from '../../src/envelope/cbor.js';
import { decodeSign1 } from '../../src/envelope/cose.js';
import { readUnverifiedResult } from '../../src/envelope/result.js';
import { startBroker, type TestBroker } from '../support/broker.js';
import { sleep, waitUntil } from '../support/wait.js';

const COMMANDS = 1500;
/** Results received before the kill. */
const KILL_AFTER = 300;
/** Commands outstanding per sender. */
const WINDOW = 24;

const cleanups: Array<() => unknown> = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

interface Stream {
  envelopes: Uint8Array[];
  digests: string[];
  /** Results by command index: outcome and first reason of each, as received. */
  results: Map<number, Array<{ outcome: string; reason: string }>>;
}

/** A sender that keeps WINDOW commands outstanding (all of `indices`), answered or not. */
const correlation = (i: number) => {
  const data = Buffer.alloc(4);
  data.writeUInt32BE(i);
  return data;
};

interface Sender {
  client: MqttClient;
  /** Sends these commands, WINDOW outstanding at a time (each result lets the next one go). */
  send(indices: number[]): void;
  /** Sends these commands at `perSecond`, whatever comes back. */
  pace(indices: number[], perSecond: number): Promise<void>;
}

async function sender(broker: TestBroker, site: BenchSite, stream: Stream, issuer: number): Promise<Sender> {
  const client = await mqtt.connectAsync(broker.url, { protocolVersion: 5, clientId: `kill-test-${issuer}-${randomBytes(3).toString('hex')}`, reconnectPeriod: 200 });
  const replyTopic = `${PREFIX}cmd/result/${site.issuers[issuer]!.name}`;
  await client.subscribeAsync(replyTopic, { qos: 1 });
  let queue: number[] = [];
  let outstanding = 0;
  const refill = () => {
    while (outstanding < WINDOW && queue.length > 0) {
      const i = queue.shift()!;
      outstanding++;
      client.publish(`${PREFIX}cmd`, Buffer.from(stream.envelopes[i]!), { qos: 1, properties: { responseTopic: replyTopic, correlationData: correlation(i) } });
    }
  };
  client.on('message', (_topic, payload, packet) => {
    const i = packet.properties?.correlationData?.readUInt32BE(0);
    if (i === undefined) return;
    const result = readUnverifiedResult(payload);
    stream.results.set(i, [...(stream.results.get(i) ?? []), { outcome: result.outcome, reason: result.reasons[0] ?? '' }]);
    outstanding--;
    refill();
  });
  return {
    client,
    send(indices) {
      queue = indices;
      outstanding = 0;
      refill();
    },
    async pace(indices, perSecond) {
      // Refusals of replays are answered only within a rate: these are sent whatever comes back.
      for (const i of indices) {
        client.publish(`${PREFIX}cmd`, Buffer.from(stream.envelopes[i]!), { qos: 1, properties: { responseTopic: replyTopic, correlationData: correlation(i) } });
        await sleep(1000 / perSecond);
      }
    },
  };
}

/** The durable state as the killed agent left it. */
function readState(site: BenchSite) {
  const db = new Database(path.join(site.stateDir, 'state.db'), { readonly: true });
  try {
    const rows = db.prepare('SELECT seq, time_ms AS timeMs, kind, body, prev_hash AS prevHash, hash FROM audit ORDER BY seq').all() as Array<{
      seq: number;
      timeMs: number;
      kind: AuditKind;
      body: Buffer;
      prevHash: Buffer;
      hash: Buffer;
    }>;
    const bodies = rows.map((r) => ({ kind: r.kind, body: decodeCbor(r.body, { maxBytes: 1 << 20, maxDepth: 32 }) as Map<string, unknown> }));
    const hexOf = (value: unknown) => toHex(value as Uint8Array);
    const decisions = new Map<string, string>();
    const executions = new Map<string, string>();
    for (const { kind, body } of bodies) {
      if (kind === 'decision' && body.has('cmd') && body.has('decision')) decisions.set(hexOf(body.get('cmd')), body.get('decision') as string);
      if (kind === 'execution' && body.has('cmd')) executions.set(hexOf(body.get('cmd')), body.get('outcome') as string);
    }
    const unsettled = new Set((db.prepare('SELECT digest FROM unsettled_commands').all() as Array<{ digest: Buffer }>).map((r) => toHex(r.digest)));
    const replay = new Set((db.prepare('SELECT cti FROM replay_seen').all() as Array<{ cti: Buffer }>).map((r) => toHex(r.cti)));
    return { chainBreak: verifyChain(rows), decisions, executions, unsettled, replay };
  } finally {
    db.close();
  }
}

describe('the agent killed mid-stream', () => {
  it('leaves durable state that accounts for every command, and runs none twice after a restart', async () => {
    const broker = await startBroker({ kind: 'mosquitto', log: 'quiet' });
    cleanups.push(() => broker.stop());
    const site = makeBenchSite(broker.url, 4);
    cleanups.push(() => site.remove());
    const entry = await bundleAgent(site.dir);
    let agent = await AgentProcess.start(entry, site.configFile, broker.url);
    cleanups.push(() => agent.stop());
    // The controller stays up through the agent's crash and restart.
    const arm: SimArm = await startSimArm({ url: broker.url, prefix: PREFIX, motionMs: 0 });
    cleanups.push(() => arm.stop());

    // Every exec message the broker routes, per command id: a second one would be a second execution.
    const execs = new Map<string, number>();
    const observer = await mqtt.connectAsync(broker.url, { protocolVersion: 5 });
    cleanups.push(() => observer.endAsync(true));
    observer.on('message', (topic, payload) => {
      if (topic.endsWith('/ack')) return;
      const id = (JSON.parse(payload.toString()) as { commandId: string }).commandId;
      execs.set(id, (execs.get(id) ?? 0) + 1);
    });
    await observer.subscribeAsync(`${PREFIX}exec/+`, { qos: 1 });

    const now = Date.now();
    const envelopes = Array.from({ length: COMMANDS }, (_, i) => signBenchCommand(site.issuers[i % site.issuers.length]!, i, now, 600_000));
    const stream: Stream = { envelopes, digests: envelopes.map((e) => toHex(sha256(e))), results: new Map() };
    const ctiByDigest = new Map(envelopes.map((e, i) => [stream.digests[i]!, ctiOf(e)]));
    const senders = await Promise.all(site.issuers.map((_, s) => sender(broker, site, stream, s)));
    cleanups.push(() => Promise.all(senders.map((s) => s.client.endAsync(true))));
    const indicesOf = (s: number) => Array.from({ length: COMMANDS }, (_, i) => i).filter((i) => i % senders.length === s);
    senders.forEach((s, n) => s.send(indicesOf(n)));

    await waitUntil(() => stream.results.size >= KILL_AFTER, `${KILL_AFTER} results`, 60_000);
    process.kill(agent.pid, 'SIGKILL');
    await waitUntil(() => !isAlive(agent.pid), 'the agent to die');
    const answeredBeforeKill = new Map(stream.results);
    expect(answeredBeforeKill.size).toBeLessThan(COMMANDS); // the kill landed mid-stream
    // Exec messages and acks already on their way settle at the arm.
    await sleep(500);
    const executedBeforeRestart = new Set(arm.executed.map((r) => r.commandId));

    const state = readState(site);
    expect(state.chainBreak).toBeUndefined();
    // Nothing ran without its allow record on disk.
    for (const id of executedBeforeRestart) expect(state.decisions.get(id), `decision of executed command ${id}`).toBe('allow');
    // Every result received has its execution record on disk.
    for (const [i, [result]] of answeredBeforeKill) {
      expect(result!.outcome, `result of command ${i}`).toBe('executed');
      expect(state.executions.get(stream.digests[i]!), `execution record of answered command ${i}`).toBe('executed');
    }
    // Unsettled: exactly the allowed commands without an execution record.
    const allowedUnrecorded = [...state.decisions].filter(([id, d]) => d === 'allow' && !state.executions.has(id)).map(([id]) => id);
    expect([...state.unsettled].sort()).toEqual(allowedUnrecorded.sort());
    // Every decided command has its replay entry.
    for (const id of state.decisions.keys()) expect(state.replay.has(ctiByDigest.get(id)!), `replay entry of ${id}`).toBe(true);

    // Restart on the same state (the broker redelivers what the agent had not acknowledged); send every command again.
    stream.results.clear();
    agent = await AgentProcess.start(entry, site.configFile, broker.url);
    await Promise.all(senders.map((s, n) => s.pace(indicesOf(n), 75)));
    // Every command ends with its execution on record: run now, run before, or settled as outcome unknown.
    for (let waited = 0; ; waited += 250) {
      const { executions } = readState(site);
      const missing = stream.digests.filter((id) => !executions.has(id));
      if (missing.length === 0) break;
      if (waited > 60_000) throw new Error(`no execution record for ${missing.length} commands after 60 s`);
      await sleep(250);
    }
    await sleep(500);

    const after = readState(site);
    expect(after.chainBreak).toBeUndefined();
    expect(after.unsettled.size).toBe(0);
    for (const id of state.unsettled) expect(after.executions.get(id), `settled ${id}`).toBe('unknown');
    for (let i = 0; i < COMMANDS; i++) {
      const id = stream.digests[i]!;
      // Sent to the arm at most once over both lives of the agent.
      expect(execs.get(id) ?? 0, `exec messages for command ${i}`).toBeLessThanOrEqual(1);
      const answers = stream.results.get(i) ?? [];
      if (state.decisions.has(id)) {
        // Decided before the kill: refused as a replay now, or answered with what was on record
        // (a result left in the outbox, or the settlement of an unsettled command).
        const onRecord = state.unsettled.has(id) ? 'unknown' : state.executions.get(id);
        for (const a of answers) expect([a.outcome, a.reason], `command ${i} sent again`).toSatisfy(([outcome, reason]: string[]) => reason === 'ENVELOPE_REPLAY' || outcome === onRecord);
      } else {
        // Never decided before the kill: run once now, and answered so (a copy that arrives again,
        // redelivered by the broker and sent again, gets the same result or a replay refusal).
        expect(after.executions.get(id), `command ${i}`).toBe('executed');
        expect(answers.some((a) => a.outcome === 'executed'), `results of command ${i}`).toBe(true);
        for (const a of answers) expect([a.outcome, a.reason], `results of command ${i}`).toSatisfy(([outcome, reason]: string[]) => outcome === 'executed' || reason === 'ENVELOPE_REPLAY');
        expect(execs.get(id), `exec messages for command ${i}`).toBe(1);
      }
    }
  }, 180_000);
});

/** The cti claim of a command envelope. */
function ctiOf(envelope: Uint8Array): string {
  const claims = decodeCbor(decodeSign1(envelope).payload, { maxBytes: 4096, maxDepth: 8 }) as Map<number, unknown>;
  return toHex(claims.get(7) as Uint8Array);
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}
