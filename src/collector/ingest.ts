// The collector's checks on each batch, in order, before anything is stored:
//   1. shape and size; the device is registered (unknown devices are refused, nothing recorded);
//   2. the head's signature by that device's key (a batch signed by any other key is refused and
//      reported), and the data matches the signed digest;
//   3. per device, one batch at a time: the batch starts at or before the next seq the collector
//      needs (else "ahead": nothing stored, the agent resends from there — a batch that overtook
//      its predecessor waits briefly for it first), and its records are consecutive (a missing
//      one is a gap);
//   4. the hash chain from the last stored record (every record's hash recomputed), each
//      checkpoint in the batch (signature, placement, root = the root of the tree the collector
//      computed from what it stored plus the batch, link to the checkpoint before it), and the
//      checkpoint covering the batch's end: consistent with the records (RFC 9162 consistency
//      proof from the collector's own tree). Every accepted checkpoint's tree thus extends the
//      one before it;
//   5. a record the collector already holds must come back identical: a resend stores nothing
//      twice. A different record there is a rewritten record, or — when the different history
//      is signed by the device's key all the same — a fork: the device signed two histories.
// A refused batch stores nothing; the refusal (device, seq, code, why) is answered, logged and
// kept as a report. Only then is the batch committed (one durable transaction) and answered
// "stored" with the newest seq held.
import { GENESIS_HASH } from '../audit/chain.js';
import { CheckpointError, type VerifiedCheckpoint, readUnverifiedCheckpoint, verifyCheckpointBody } from '../audit/checkpoint.js';
import { CompactRange, EMPTY_ROOT, MerkleError, hashesEqual, leafHash, verifyConsistency } from '../audit/merkle.js';
import { type Ack, type BatchRecord, type DecodedBatch, SyncProtocolError, batchId, decodeBatch, decodeBatchRecords, verifyBatchHead } from '../audit/sync-protocol.js';
import { LogVerifier, type VerifyFailure } from '../audit/verify.js';
import { toHex } from '../crypto/bytes.js';
import type { PublicKey } from '../crypto/keys.js';
import type { CheckpointRef, CollectorStore, DeviceState, SyncReport } from './store.js';

/** Looks up a device's registered public keys (none: unknown device). */
export interface DeviceKeys {
  keysOf(device: string): readonly PublicKey[];
}

/** What the collector answers a batch with. */
export type IngestOutcome =
  /** Refused before the device was established: a plain error, nothing signed, nothing reported. */
  | { kind: 'rejected'; status: 400 | 403 | 413; code: string; message: string }
  /** An answer to sign and send back (stored, ahead or refused), and the report of a refusal. */
  | { kind: 'answer'; ack: Omit<Ack, 'timeMs'>; report?: SyncReport; records: number };

export interface IngestorOptions {
  store: CollectorStore;
  keys: DeviceKeys;
  now?: () => number;
  /** Largest batch accepted, in bytes. */
  maxBatchBytes?: number;
  /** How long a batch that overtook its predecessor waits for it (default 2 s). */
  reorderWaitMs?: number;
}

export const DEFAULT_MAX_BATCH_BYTES = 32 * 1024 * 1024;
const COMMIT_RETRIES = 3;
/**
 * The collector holds every record of a device from seq 1, so when none of them is a checkpoint,
 * the next checkpoint must link to the empty tree, as a device's first checkpoint does.
 */
const NO_CHECKPOINT: CheckpointRef = { seq: 0, size: 0, root: EMPTY_ROOT, timeMs: 0 };

/** A refusal after the batch's signature verified. */
class Refusal {
  constructor(
    readonly code: string,
    readonly seq: number,
    readonly message: string,
  ) {}
}

export class Ingestor {
  private readonly store: CollectorStore;
  private readonly now: () => number;
  private readonly maxBatchBytes: number;
  private readonly reorderWaitMs: number;
  /** Per device: the tail of its queue (batches of one device are checked one at a time, in arrival order). */
  private readonly queues = new Map<string, Promise<unknown>>();
  /** Per device: commits made by this process, and who waits for the next one. */
  private readonly commits = new Map<string, { count: number; waiters: Array<() => void> }>();

  constructor(private readonly opts: IngestorOptions) {
    this.store = opts.store;
    this.now = opts.now ?? Date.now;
    this.maxBatchBytes = opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
    this.reorderWaitMs = opts.reorderWaitMs ?? 2000;
  }

  /**
   * Checks and stores one batch. Everything up to the device's queue runs synchronously, so
   * batches of one device are taken in the order they arrived.
   */
  ingest(bytes: Uint8Array): Promise<IngestOutcome> {
    let batch: DecodedBatch;
    try {
      batch = decodeBatch(bytes, this.maxBatchBytes);
    } catch (err) {
      if (!(err instanceof SyncProtocolError)) throw err;
      return Promise.resolve({ kind: 'rejected', status: err.code === 'SYNC_TOO_LARGE' ? 413 : 400, code: err.code, message: err.message });
    }
    const { device, first } = batch.head;
    const keys = this.opts.keys.keysOf(device);
    if (keys.length === 0) return Promise.resolve({ kind: 'rejected', status: 403, code: 'SYNC_UNKNOWN_DEVICE', message: `device ${device} is not registered with this collector` });
    const id = batchId(batch.headBytes);
    try {
      verifyBatchHead(batch, keys);
    } catch (err) {
      if (!(err instanceof SyncProtocolError)) throw err;
      return Promise.resolve(this.refused(batch, id, new Refusal(err.code, first, err.message), 0));
    }
    return this.checkInOrder(batch, id, keys);
  }

  private async checkInOrder(batch: DecodedBatch, id: Uint8Array, keys: readonly PublicKey[]): Promise<IngestOutcome> {
    const { device } = batch.head;
    const records = decodeBatchRecords(batch).catch((err: unknown) => err as Error);
    for (let waited = false; ; waited = true) {
      const seen = this.commitCount(device);
      const outcome = await this.serialize(device, () => this.check(batch, id, keys, records));
      if (outcome.kind === 'answer' && outcome.ack.status === 'ahead' && !waited) {
        await this.nextCommit(device, seen);
        continue;
      }
      return outcome;
    }
  }

  private async check(batch: DecodedBatch, id: Uint8Array, keys: readonly PublicKey[], decoded: Promise<BatchRecord[] | Error>): Promise<IngestOutcome> {
    const { head } = batch;
    for (let attempt = 0; ; attempt++) {
      const stored = await this.store.device(head.device);
      const lastSeq = stored?.lastSeq ?? 0;
      if (head.first > lastSeq + 1) {
        return { kind: 'answer', ack: { device: head.device, batch: id, status: 'ahead', seq: lastSeq, message: `the next seq needed is ${lastSeq + 1}` }, records: 0 };
      }
      const records = await decoded;
      if (records instanceof Error) {
        const code = records instanceof SyncProtocolError ? records.code : 'SYNC_MALFORMED';
        return this.refused(batch, id, new Refusal(code, head.first, records.message), lastSeq);
      }
      let result: { state: DeviceState; fresh: BatchRecord[] };
      try {
        result = await this.verify(batch, records, keys, stored);
      } catch (err) {
        if (err instanceof Refusal) return this.refused(batch, id, err, lastSeq);
        throw err;
      }
      const committed = await this.store.commit({
        expected: stored ?? null,
        state: result.state,
        records: result.fresh,
        batch: { first: head.first, last: head.last, digest: id, receivedMs: result.state.lastSeenMs },
      });
      if (committed) {
        this.noteCommit(head.device);
        return { kind: 'answer', ack: { device: head.device, batch: id, status: 'stored', seq: result.state.lastSeq }, records: result.fresh.length };
      }
      // Another collector on the same database moved this device on: check again from there.
      if (attempt >= COMMIT_RETRIES) {
        return this.refused(batch, id, new Refusal('SYNC_CONFLICT', head.first, 'the device log kept changing under this batch'), lastSeq, false);
      }
    }
  }

  /** Checks a batch against what is stored; resolves with the state after it, or throws a Refusal. */
  private async verify(batch: DecodedBatch, records: BatchRecord[], keys: readonly PublicKey[], stored: DeviceState | undefined): Promise<{ state: DeviceState; fresh: BatchRecord[] }> {
    const { head } = batch;
    const { device } = head;
    const now = this.now();
    const state: DeviceState = stored ?? {
      device,
      lastSeq: 0,
      lastHash: GENESIS_HASH,
      frontier: CompactRange.EMPTY,
      origin: null,
      checkpoint: null,
      headSeq: 0,
      firstSeenMs: now,
      lastSeenMs: now,
    };
    for (let i = 0; i < records.length; i++) {
      const r = records[i]!;
      if (r.seq !== head.first + i) throw new Refusal('AUDIT_SEQ_GAP', head.first + i, `record ${head.first + i} is missing (the batch goes on with ${r.seq})`);
    }
    if (records[records.length - 1]!.seq !== head.last) throw new Refusal('SYNC_MALFORMED', head.first, `the batch's records end at ${records[records.length - 1]!.seq}, its head says ${head.last}`);

    // Where the batch starts: the end of the stored log, or (a resend) a point inside it.
    const start = head.first === state.lastSeq + 1 ? { prevHash: state.lastHash, tree: state.frontier, checkpoint: state.checkpoint ?? NO_CHECKPOINT } : await this.pointInLog(device, head.first - 1, state);
    const verifier = new LogVerifier({
      keys,
      device,
      ...(state.origin === null ? {} : { origin: state.origin }),
      start: { seq: head.first, prevHash: start.prevHash, tree: start.tree, checkpoint: start.checkpoint },
    });
    const overlap = head.first <= state.lastSeq ? await this.store.records(device, head.first, Math.min(head.last, state.lastSeq), head.last - head.first + 1) : [];
    let divergence: number | undefined;
    let newest: CheckpointRef | null = state.checkpoint;
    for (const r of records) {
      // Each record links to the one before it through its hash, recomputed from that one's.
      const failure = verifier.pushLinked(r);
      if (failure !== undefined) throw this.chainRefusal(failure, divergence);
      if (overlap.length > 0) {
        const held = overlap[r.seq - head.first];
        if (held !== undefined && divergence === undefined && !hashesEqual(held.hash, r.hash)) divergence = r.seq;
      }
      if (r.kind === 'checkpoint' && r.seq > state.lastSeq) newest = { ...verifier.lastCheckpoint! };
    }
    const last = records[records.length - 1]!;
    if (last.kind !== 'checkpoint') this.checkCover(batch, verifier, keys, divergence);
    else if (head.cover !== undefined) throw new Refusal('SYNC_MALFORMED', head.last, 'a batch ending with a checkpoint carries no cover');
    if (divergence !== undefined) {
      const held = await this.store.checkpointAfter(device, divergence - 1);
      throw new Refusal(
        'AUDIT_FORK',
        divergence,
        `device ${device} signed a history that differs from the stored one from seq ${divergence}` +
          (held === undefined ? '' : ` (stored checkpoint ${held.seq} covers the other)`) +
          `; the new history's checkpoints verify with the device key: two inconsistent signed checkpoints`,
      );
    }
    const fresh = head.first > state.lastSeq ? records : records.filter((r) => r.seq > state.lastSeq);
    const grows = fresh.length > 0;
    return {
      fresh,
      state: {
        ...state,
        lastSeq: grows ? last.seq : state.lastSeq,
        lastHash: grows ? last.hash : state.lastHash,
        frontier: grows ? verifier.range() : state.frontier,
        origin: verifier.checkpointOrigin ?? state.origin,
        checkpoint: newest,
        headSeq: Math.max(state.headSeq, head.head),
        lastSeenMs: now,
      },
    };
  }

  /** The chain state after record `seq` of the stored log (a batch resent from inside it). */
  private async pointInLog(device: string, seq: number, state: DeviceState): Promise<{ prevHash: Uint8Array; tree: CompactRange; checkpoint: CheckpointRef }> {
    if (seq === 0) return { prevHash: GENESIS_HASH, tree: CompactRange.EMPTY, checkpoint: NO_CHECKPOINT };
    let tree = (await this.store.frontierAtOrBefore(device, seq)) ?? CompactRange.EMPTY;
    if (tree.size < seq) {
      for (const r of await this.store.records(device, tree.size + 1, seq, seq - tree.size)) tree = tree.append(leafHash(r.hash)).range;
    }
    const [record] = await this.store.records(device, seq, seq, 1);
    if (record === undefined || tree.size !== seq) throw new Error(`collector database: device ${device} has no record ${seq} below its last ${state.lastSeq}`);
    const cp = await this.store.checkpointAtOrBefore(device, seq);
    if (cp === undefined) return { prevHash: record.hash, tree, checkpoint: NO_CHECKPOINT };
    const c = readUnverifiedCheckpoint(cp.body);
    return { prevHash: record.hash, tree, checkpoint: { seq: cp.seq, size: c.size, root: c.root, timeMs: c.timeMs } };
  }

  /** The checkpoint after the batch covers it: signed by the device, linked, consistent with the records. */
  private checkCover(batch: DecodedBatch, verifier: LogVerifier, keys: readonly PublicKey[], divergence: number | undefined): void {
    const { head } = batch;
    const cover = head.cover;
    if (cover === undefined) throw new Refusal('SYNC_UNCOVERED', head.last, `no checkpoint covers records up to ${head.last}`);
    let verified: VerifiedCheckpoint;
    try {
      verified = verifyCheckpointBody(cover.body, keys);
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      throw new Refusal(err.code === 'CHECKPOINT_MALFORMED' ? 'AUDIT_CHECKPOINT_MALFORMED' : 'AUDIT_CHECKPOINT_SIGNATURE', cover.seq, `covering checkpoint ${cover.seq}: ${err.message}`);
    }
    const cp = verified.checkpoint;
    const origin = verifier.checkpointOrigin;
    if (cp.device !== head.device || (origin !== undefined && cp.origin !== origin)) {
      throw new Refusal('AUDIT_CHECKPOINT_DEVICE', cover.seq, `covering checkpoint ${cover.seq} is for ${cp.origin} (${cp.device})`);
    }
    if (cp.size !== cover.seq - 1) throw new Refusal('AUDIT_CHECKPOINT_MISPLACED', cover.seq, `checkpoint ${cover.seq} claims size ${cp.size}`);
    const link = verifier.previousCheckpoint ?? NO_CHECKPOINT;
    if (cp.prevSize !== link.size || !hashesEqual(cp.prevRoot, link.root)) {
      throw new Refusal('AUDIT_CHECKPOINT_LINK', cover.seq, `checkpoint ${cover.seq} links to size ${cp.prevSize}, but the checkpoint before it covers ${link.size}`);
    }
    try {
      verifyConsistency(head.last, cp.size, verifier.root(), cp.root, head.proof ?? []);
    } catch (err) {
      if (!(err instanceof MerkleError)) throw err;
      const rewritten = `the device's signed checkpoint ${cover.seq} does not extend records ${head.first}…${head.last} as sent (${err.message}): they were rewritten`;
      throw divergence !== undefined ? new Refusal('AUDIT_REWRITTEN', divergence, rewritten) : new Refusal('AUDIT_CHECKPOINT_ROOT', cover.seq, rewritten);
    }
  }

  private chainRefusal(failure: VerifyFailure, divergence: number | undefined): Refusal {
    // A record the collector holds came back different, and no signature backs the new version.
    if (divergence !== undefined) return new Refusal('AUDIT_REWRITTEN', divergence, `record ${divergence} differs from the stored one, and the batch does not verify: ${failure.message}`);
    return new Refusal(failure.code, failure.seq, failure.message);
  }

  private refused(batch: DecodedBatch, id: Uint8Array, refusal: Refusal, seq: number, report = true): IngestOutcome {
    const { device } = batch.head;
    return {
      kind: 'answer',
      ack: { device, batch: id, status: 'refused', seq, code: refusal.code, at: refusal.seq, message: refusal.message },
      ...(report ? { report: { device, seq: refusal.seq, code: refusal.code, message: refusal.message, timeMs: this.now(), batch: id } } : {}),
      records: 0,
    };
  }

  private serialize<T>(device: string, fn: () => Promise<T>): Promise<T> {
    const tail = this.queues.get(device) ?? Promise.resolve();
    const run = tail.then(fn, fn);
    const settled = run.then(
      () => undefined,
      () => undefined,
    );
    this.queues.set(device, settled);
    void settled.then(() => {
      if (this.queues.get(device) === settled) this.queues.delete(device);
    });
    return run;
  }

  private commitCount(device: string): number {
    return this.commits.get(device)?.count ?? 0;
  }

  private noteCommit(device: string): void {
    const entry = this.commits.get(device) ?? { count: 0, waiters: [] };
    entry.count++;
    for (const wake of entry.waiters.splice(0)) wake();
    this.commits.set(device, entry);
  }

  /** Resolves at the device's next commit after `seen` commits, or after the reorder wait. */
  private nextCommit(device: string, seen: number): Promise<void> {
    if (this.commitCount(device) > seen) return Promise.resolve();
    return new Promise((resolve) => {
      const entry = this.commits.get(device) ?? { count: 0, waiters: [] };
      this.commits.set(device, entry);
      const timer = setTimeout(done, this.reorderWaitMs);
      function done() {
        clearTimeout(timer);
        resolve();
      }
      entry.waiters.push(done);
    });
  }
}

/** A short form of a batch id for logs. */
export const shortId = (id: Uint8Array) => toHex(id).slice(0, 16);
