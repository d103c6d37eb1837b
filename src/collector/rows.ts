// The rows both collector stores keep (the same columns in SQLite and PostgreSQL), and their
// mapping to and from the store interface's values.
import { GENESIS_HASH } from '../audit/chain.js';
import { CompactRange } from '../audit/merkle.js';
import type { DeviceState, StoredRecord } from './store.js';

export type DeviceRow = {
  id: number;
  device: string;
  last_seq: number;
  last_hash: Buffer;
  frontier: Buffer;
  origin: string | null;
  cp_seq: number | null;
  cp_size: number | null;
  cp_root: Buffer | null;
  cp_time_ms: number | null;
  head_seq: number;
  first_seen_ms: number;
  last_seen_ms: number;
};
export type RecordRow = { seq: number; time_ms: number; kind: string; body: Buffer; hash: Buffer };

/** A device's state as the columns of its row. */
export function stateParams(s: DeviceState) {
  return {
    device: s.device,
    last_seq: s.lastSeq,
    last_hash: s.lastHash,
    frontier: s.frontier.encode(),
    origin: s.origin,
    cp_seq: s.checkpoint?.seq ?? null,
    cp_size: s.checkpoint?.size ?? null,
    cp_root: s.checkpoint?.root ?? null,
    cp_time_ms: s.checkpoint?.timeMs ?? null,
    head_seq: s.headSeq,
    first_seen_ms: s.firstSeenMs,
    last_seen_ms: s.lastSeenMs,
  };
}

export function toState(row: DeviceRow): DeviceState {
  return {
    device: row.device,
    lastSeq: row.last_seq,
    lastHash: row.last_seq === 0 ? GENESIS_HASH : new Uint8Array(row.last_hash),
    frontier: CompactRange.decode(row.last_seq, new Uint8Array(row.frontier)),
    origin: row.origin,
    checkpoint:
      row.cp_seq === null ? null : { seq: row.cp_seq, size: row.cp_size!, root: new Uint8Array(row.cp_root!), timeMs: row.cp_time_ms! },
    headSeq: row.head_seq,
    firstSeenMs: row.first_seen_ms,
    lastSeenMs: row.last_seen_ms,
  };
}

export function toRecord(r: RecordRow): StoredRecord {
  return { seq: r.seq, timeMs: r.time_ms, kind: r.kind as StoredRecord['kind'], body: new Uint8Array(r.body), hash: new Uint8Array(r.hash) };
}
