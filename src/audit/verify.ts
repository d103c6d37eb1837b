// Verifying a whole audit log: the hash chain, every checkpoint (signature, placement, root,
// link to the previous one) and, against the database's own bookkeeping, the stored tree.
//
// LogVerifier is pure and streaming: fed the records in seq order, it recomputes the Merkle tree
// from the record hashes as it goes, so each checkpoint's root is checked against the records
// before it. Two checkpoints whose roots both match the recomputed tree are consistent by
// construction (one tree is a prefix of the other); each one's prev_size/prev_root must also
// name the checkpoint before it. verifyStoredLog() drives it over a database and adds the
// checks only the database can answer (truncation against the stored tree head, stored tree
// nodes, a checkpoint the verifier trusts from elsewhere).
import type { PublicKey } from '../crypto/keys.js';
import { type AuditRecord, GENESIS_HASH, recordHash } from './chain.js';
import { type Checkpoint, CheckpointError, verifyCheckpointBody } from './checkpoint.js';
import { CompactRange, EMPTY_ROOT, type CompletedNode, GrowingRange, hashesEqual, leafHash } from './merkle.js';
import type { AuditReader } from './reader.js';
import { storedNodes } from './tree-store.js';

export type VerifyFailureCode =
  /** A record's content does not match its hash: it was edited. */
  | 'AUDIT_HASH_MISMATCH'
  /** A record does not link to the one before it: records were reordered, replaced or inserted. */
  | 'AUDIT_PREV_MISMATCH'
  /** A seq is missing: a record was deleted. */
  | 'AUDIT_SEQ_GAP'
  /** The log ends before the tree head stored with it says: records were cut from its end. */
  | 'AUDIT_TRUNCATED'
  /** A checkpoint's signature does not verify under the device key it names: forged or altered. */
  | 'AUDIT_CHECKPOINT_SIGNATURE'
  /** A checkpoint is signed by a key that is not the device's: re-signed by someone else. */
  | 'AUDIT_CHECKPOINT_KEY'
  /** A checkpoint's root is not the root of the records before it: they were rewritten. */
  | 'AUDIT_CHECKPOINT_ROOT'
  /** A checkpoint's previous size/root is not the checkpoint before it. */
  | 'AUDIT_CHECKPOINT_LINK'
  /** A checkpoint claims a size other than its own seq − 1: it was moved. */
  | 'AUDIT_CHECKPOINT_MISPLACED'
  /** A checkpoint names another device or origin. */
  | 'AUDIT_CHECKPOINT_DEVICE'
  /** A checkpoint record that cannot be decoded. */
  | 'AUDIT_CHECKPOINT_MALFORMED'
  /** The log is shorter than a checkpoint the verifier holds: it was rolled back. */
  | 'AUDIT_ROLLED_BACK'
  /** The log's root at a trusted checkpoint's size differs: another history. */
  | 'AUDIT_FORK'
  /** The stored tree (nodes or head) disagrees with the records. */
  | 'AUDIT_TREE_MISMATCH'
  /** An exported record's inclusion proof, or a checkpoint's consistency proof, fails. */
  | 'AUDIT_PROOF_INVALID';

export interface VerifyFailure {
  code: VerifyFailureCode;
  /** The first seq found bad. */
  seq: number;
  message: string;
}

export interface CheckpointSummary {
  seq: number;
  size: number;
  root: Uint8Array;
  timeMs: number;
}

export interface VerifyReport {
  failure?: VerifyFailure;
  firstSeq: number;
  lastSeq: number;
  records: number;
  checkpoints: number;
  lastCheckpoint?: CheckpointSummary;
  /** Records after the newest checkpoint (chained, not yet signed). */
  uncovered: number;
}

/** A checkpoint the verifier got from elsewhere (an earlier export, the collector). */
export interface TrustedCheckpoint {
  size: number;
  root: Uint8Array;
}

export interface LogVerifierOptions {
  /** The device keys checkpoints may be signed with. */
  keys: readonly PublicKey[];
  /** Expected device id; default: whatever the first checkpoint says (then all must agree). */
  device?: string;
  /** Expected C2SP origin; default: whatever the first checkpoint says (then all must agree). */
  origin?: string;
  /**
   * Where the records start: seq 1 from genesis unless the log was pruned, or a verifier resumes
   * (the collector, batch after batch): the hash of record seq − 1, the tree of seq − 1 records
   * and, to keep checking links, the newest checkpoint before it.
   */
  start?: { seq: number; prevHash: Uint8Array; tree: CompactRange; checkpoint?: { seq: number; size: number; root: Uint8Array } };
  /** Keep, after each push, the stored-level tree nodes it completed (`completed`, for the database check). */
  storedNodes?: boolean;
}

export class LogVerifier {
  private nextSeq: number;
  private prevHash: Uint8Array;
  private readonly tree: GrowingRange;
  private readonly storedNodes: boolean;
  private readonly keys: readonly PublicKey[];
  private device: string | undefined;
  private origin: string | undefined;
  private previous: { seq: number; size: number; root: Uint8Array } | undefined;
  private readonly startSize: number;
  private readonly startRoot: Uint8Array;
  readonly firstSeq: number;
  records = 0;
  checkpoints = 0;
  lastCheckpoint: CheckpointSummary | undefined;
  /** Stored-level tree nodes completed by the last push (with `storedNodes`, for the database check). */
  completed: CompletedNode[] = [];

  constructor(opts: LogVerifierOptions) {
    const start = opts.start ?? { seq: 1, prevHash: GENESIS_HASH, tree: CompactRange.EMPTY };
    this.firstSeq = start.seq;
    this.nextSeq = start.seq;
    this.prevHash = start.prevHash;
    this.tree = new GrowingRange(start.tree);
    this.storedNodes = opts.storedNodes === true;
    this.startSize = start.tree.size;
    this.startRoot = start.tree.root();
    this.keys = opts.keys;
    this.device = opts.device;
    this.origin = opts.origin;
    // From genesis, the first checkpoint links to the empty tree.
    this.previous = start.checkpoint ?? (start.seq === 1 ? { seq: 0, size: 0, root: EMPTY_ROOT } : undefined);
  }

  /** The tree of every record pushed so far. */
  get size(): number {
    return this.tree.size;
  }

  /** Where a later verifier resumes after the records pushed so far (see `start`). */
  resumePoint(): NonNullable<LogVerifierOptions['start']> {
    return { seq: this.nextSeq, prevHash: this.prevHash, tree: this.tree.range(), ...(this.previous === undefined ? {} : { checkpoint: this.previous }) };
  }

  root(): Uint8Array {
    return this.tree.root();
  }

  /** The tree of every record pushed so far (and of the start). */
  range(): CompactRange {
    return this.tree.range();
  }

  /** The newest checkpoint record seen (pushed or given at the start). */
  get previousCheckpoint(): { seq: number; size: number; root: Uint8Array } | undefined {
    return this.previous;
  }

  /** The origin the checkpoints so far named (or the one expected). */
  get checkpointOrigin(): string | undefined {
    return this.origin;
  }

  push(r: AuditRecord): VerifyFailure | undefined {
    if (r.seq === this.nextSeq && !hashesEqual(r.prevHash, this.prevHash)) return fail('AUDIT_PREV_MISMATCH', r.seq, `record ${r.seq} does not link to record ${r.seq - 1}`);
    return this.pushLinked(r);
  }

  /**
   * A record that carries no previous hash (a sync batch's): it is linked to the record before
   * it by its hash, recomputed here from that record's.
   */
  pushLinked(r: Omit<AuditRecord, 'prevHash'>): VerifyFailure | undefined {
    if (r.seq !== this.nextSeq) {
      return fail('AUDIT_SEQ_GAP', this.nextSeq, r.seq > this.nextSeq ? `record ${this.nextSeq} is missing (the next is ${r.seq})` : `record ${r.seq} appears again after ${this.nextSeq - 1}`);
    }
    if (!hashesEqual(recordHash(this.prevHash, r.seq, r.timeMs, r.kind, r.body), r.hash)) {
      return fail('AUDIT_HASH_MISMATCH', r.seq, `record ${r.seq} does not match its hash: its content was changed`);
    }
    if (r.kind === 'checkpoint') {
      const failure = this.checkpoint(r);
      if (failure !== undefined) return failure;
    }
    if (this.storedNodes) {
      const completed: CompletedNode[] = [];
      this.tree.append(leafHash(r.hash), completed);
      this.completed = storedNodes(completed);
    } else {
      this.tree.append(leafHash(r.hash));
    }
    this.prevHash = r.hash;
    this.nextSeq++;
    this.records++;
    return undefined;
  }

  private checkpoint(r: Omit<AuditRecord, 'prevHash'>): VerifyFailure | undefined {
    let cp: Checkpoint;
    try {
      cp = verifyCheckpointBody(r.body, this.keys).checkpoint;
    } catch (err) {
      if (!(err instanceof CheckpointError)) throw err;
      return fail(checkpointFailure(err), r.seq, `checkpoint ${r.seq}: ${err.message}`);
    }
    if (this.device !== undefined && cp.device !== this.device) {
      return fail('AUDIT_CHECKPOINT_DEVICE', r.seq, `checkpoint ${r.seq} is for device ${cp.device}, not ${this.device}`);
    }
    if (this.origin !== undefined && cp.origin !== this.origin) {
      return fail('AUDIT_CHECKPOINT_DEVICE', r.seq, `checkpoint ${r.seq} has origin ${cp.origin}, earlier ones ${this.origin}`);
    }
    this.device = cp.device;
    this.origin = cp.origin;
    if (cp.size !== r.seq - 1) return fail('AUDIT_CHECKPOINT_MISPLACED', r.seq, `checkpoint ${r.seq} claims size ${cp.size}; at seq ${r.seq} it must cover ${r.seq - 1}`);
    if (!hashesEqual(cp.root, this.tree.root())) {
      return fail('AUDIT_CHECKPOINT_ROOT', r.seq, `checkpoint ${r.seq} does not match the records before it: records ${(this.previous?.seq ?? this.firstSeq - 1) + 1}…${r.seq - 1} were rewritten`);
    }
    const link = this.previous;
    if (link !== undefined && (cp.prevSize !== link.size || !hashesEqual(cp.prevRoot, link.root))) {
      return fail('AUDIT_CHECKPOINT_LINK', r.seq, `checkpoint ${r.seq} links to size ${cp.prevSize}, but the checkpoint before it covers ${link.size}`);
    }
    if (link === undefined && cp.prevSize === this.startSize && !hashesEqual(cp.prevRoot, this.startRoot)) {
      return fail('AUDIT_CHECKPOINT_LINK', r.seq, `checkpoint ${r.seq} links to a root of size ${cp.prevSize} that is not the pruned log's`);
    }
    this.previous = { seq: r.seq, size: cp.size, root: cp.root };
    this.checkpoints++;
    this.lastCheckpoint = { seq: r.seq, size: cp.size, root: cp.root, timeMs: cp.timeMs };
    return undefined;
  }

  report(failure?: VerifyFailure): VerifyReport {
    const lastSeq = this.nextSeq - 1;
    return {
      ...(failure === undefined ? {} : { failure }),
      firstSeq: this.firstSeq,
      lastSeq,
      records: this.records,
      checkpoints: this.checkpoints,
      ...(this.lastCheckpoint === undefined ? {} : { lastCheckpoint: this.lastCheckpoint }),
      uncovered: lastSeq - (this.lastCheckpoint?.seq ?? this.firstSeq - 1),
    };
  }
}

export interface StoredLogVerifyOptions {
  keys: readonly PublicKey[];
  device?: string;
  /** Checkpoints held from before (e.g. exported earlier): the log must contain their trees. */
  trusted?: readonly TrustedCheckpoint[];
}

/** Verifies the log in a database, in one read snapshot. */
export function verifyStoredLog(reader: AuditReader, opts: StoredLogVerifyOptions): VerifyReport {
  return reader.snapshot(() => {
    const meta = reader.meta();
    const start = { seq: meta.prunedSeq + 1, prevHash: meta.prunedHash, tree: meta.prunedSeq === 0 ? CompactRange.EMPTY : CompactRange.fromSource(meta.prunedSeq, reader.tree()) };
    const verifier = new LogVerifier({ keys: opts.keys, device: opts.device, start, storedNodes: true });
    const trusted = [...(opts.trusted ?? [])].sort((a, b) => a.size - b.size);
    const storedNode = reader.db.prepare<[number, number], { hash: Buffer }>('SELECT hash FROM audit_tree WHERE level = ? AND idx = ?');
    const checkTrusted = (): VerifyFailure | undefined => {
      while (trusted.length > 0 && trusted[0]!.size <= verifier.size) {
        const t = trusted.shift()!;
        if (t.size < start.tree.size) continue; // pruned away: nothing left to compare with
        if (t.size === verifier.size && !hashesEqual(t.root, verifier.root())) {
          return fail('AUDIT_FORK', t.size, `the log's records 1…${t.size} have another root than the trusted checkpoint of that size: the history was rewritten`);
        }
      }
      return undefined;
    };
    let failure = checkTrusted();
    if (failure === undefined) {
      for (const record of reader.iterate(start.seq)) {
        failure = verifier.push(record);
        if (failure !== undefined) break;
        for (const node of verifier.completed) {
          const row = storedNode.get(node.level, node.index);
          if (row === undefined || !hashesEqual(new Uint8Array(row.hash), node.hash)) {
            failure = fail('AUDIT_TREE_MISMATCH', record.seq, `stored tree node ${node.level}/${node.index} (records up to ${record.seq}) does not match the records`);
            break;
          }
        }
        failure ??= checkTrusted();
        if (failure !== undefined) break;
      }
    }
    if (failure === undefined) {
      const head = reader.treeHead();
      const last = verifier.size;
      if (head.size > last) failure = fail('AUDIT_TRUNCATED', last + 1, `the log ends at ${last} but its tree head says ${head.size}: records ${last + 1}…${head.size} were removed`);
      else if (head.size === last && !hashesEqual(head.frontier.root(), verifier.root())) failure = fail('AUDIT_TREE_MISMATCH', last, 'the stored tree head does not match the records');
    }
    if (failure === undefined && trusted.length > 0) {
      const t = trusted[trusted.length - 1]!;
      failure = fail('AUDIT_ROLLED_BACK', verifier.size + 1, `the log ends at ${verifier.size}, but a trusted checkpoint covers ${t.size} records: it was rolled back or truncated`);
    }
    return verifier.report(failure);
  });
}

export function checkpointFailure(err: CheckpointError): VerifyFailureCode {
  if (err.code === 'CHECKPOINT_MALFORMED') return 'AUDIT_CHECKPOINT_MALFORMED';
  if (err.code === 'CHECKPOINT_UNKNOWN_KEY') return 'AUDIT_CHECKPOINT_KEY';
  return 'AUDIT_CHECKPOINT_SIGNATURE';
}

function fail(code: VerifyFailureCode, seq: number, message: string): VerifyFailure {
  return { code, seq, message };
}
