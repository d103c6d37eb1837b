// Where the collector keeps what devices sent: one small interface, two implementations
// (sqlite-store.ts, the embedded default; postgres-store.ts, for fleets that outgrow one
// machine), and one behavioural test suite that runs against both.
//
// Per device the store holds the records (append-only: never updated, never deleted), the
// device's state after the last accepted batch (newest seq and hash, the compact range of its
// Merkle tree, the newest checkpoint record), the compact range at the end of every accepted
// batch (so the tree at any earlier size is one batch of hashes away: resends and fork checks),
// and the reports of refused batches. commit() is one durable transaction, conditional on the
// device's newest seq being what the caller read: two collectors sharing a database never
// interleave one device's records.
import type { BatchRecord } from '../audit/sync-protocol.js';
import type { CompactRange } from '../audit/merkle.js';
import { ZtedgeError } from '../errors.js';

export interface CheckpointRef {
  seq: number;
  size: number;
  root: Uint8Array;
  timeMs: number;
}

export interface DeviceState {
  device: string;
  /** Newest stored seq (0: nothing stored yet) and its record hash (the genesis hash for 0). */
  lastSeq: number;
  lastHash: Uint8Array;
  /** The Merkle tree of records 1 … lastSeq. */
  frontier: CompactRange;
  /** The log's origin, from its first checkpoint. */
  origin: string | null;
  /** The newest stored checkpoint record. */
  checkpoint: CheckpointRef | null;
  /** The device's newest seq as its last batch said. */
  headSeq: number;
  firstSeenMs: number;
  lastSeenMs: number;
}

export type StoredRecord = BatchRecord;

export interface IngestCommit {
  /** The state read before the batch was checked (null: the device's first batch). */
  expected: DeviceState | null;
  /** The state after it. */
  state: DeviceState;
  /** Records expected.lastSeq + 1 … state.lastSeq, in order (empty for a resend). */
  records: readonly StoredRecord[];
  batch: { first: number; last: number; digest: Uint8Array; receivedMs: number };
}

export type ReportCode = string;

export interface SyncReport {
  device: string;
  /** The seq the refusal names. */
  seq: number;
  code: ReportCode;
  message: string;
  timeMs: number;
  /** SHA-256 of the refused batch's head. */
  batch: Uint8Array;
}

export interface CollectorStore {
  readonly kind: 'sqlite' | 'postgres';
  device(device: string): Promise<DeviceState | undefined>;
  devices(): Promise<DeviceState[]>;
  /** Stored records with seq in [from, to], at most `limit`, in seq order. */
  records(device: string, from: number, to: number, limit: number): Promise<StoredRecord[]>;
  /** The compact range stored at the end of the newest accepted batch ending at or before `seq`. */
  frontierAtOrBefore(device: string, seq: number): Promise<CompactRange | undefined>;
  /** The newest stored checkpoint record at or before `seq`, and the first one after it. */
  checkpointAtOrBefore(device: string, seq: number): Promise<StoredRecord | undefined>;
  checkpointAfter(device: string, seq: number): Promise<StoredRecord | undefined>;
  /**
   * Stores a batch's new records and the device's new state in one durable transaction. Resolves
   * false (storing nothing) when the device's state is no longer `expected`.
   */
  commit(commit: IngestCommit): Promise<boolean>;
  report(report: SyncReport): Promise<void>;
  /** Newest first. */
  reports(device: string | undefined, limit: number): Promise<SyncReport[]>;
  close(): Promise<void>;
}

/** Reports kept per device (the oldest go first): refusals of unauthenticated noise stay bounded. */
export const MAX_REPORTS_PER_DEVICE = 1000;

export class CollectorStoreError extends ZtedgeError<'COLLECTOR_DB_URL' | 'COLLECTOR_DB_OPEN' | 'COLLECTOR_DB_SCHEMA' | 'COLLECTOR_DB_CORRUPT'> {}
