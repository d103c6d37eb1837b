// The bundle store: the active policy bundle, the last-known-good one, and the highest revision
// ever activated, on disk, so that a crash at any moment leaves exactly one complete bundle
// active — the old one or the new one — and no file juggling can roll the revision back.
// The store handles opaque bytes with a revision and a SHA-256 digest; it knows nothing of
// bundle formats, and callers re-verify signatures of what it hands back.
//
// On-disk layout (directory and files are private to the agent's user: 0700 / 0600):
//
//   blobs/<sha256-hex>   bundle bytes, content-addressed, written once and never modified
//   state.json           the pointer: { active, lkg } as (revision, digest) pairs, plus the last
//                        rejections; replaced atomically as a whole
//   revision-floor       the highest revision ever activated; replaced atomically, only raised
//
// Every replacement is: write a `.tmp-` sibling, fsync it, rename it over the target, fsync the
// directory. Activation of (bytes, revision, digest) is, in this order:
//
//   1. write blobs/<digest> (a complete, fsynced file before anything points at it)
//   2. replace state.json with { active: new, lkg: old active }    ← the commit point
//   3. raise revision-floor to the new revision
//   4. delete blobs no longer referenced (the previous lkg)
//
// A crash before step 2's rename leaves the old state.json, whose blobs steps 1 and 4 never touch:
// the old bundle is active and the new blob is an orphan. A crash after it leaves the new state,
// whose blobs were durable before it was written: the new bundle is active. A crash between 2
// and 3 leaves the floor below the active revision; open() raises it, since a revision that is
// active or last-known-good has been activated. Deleting or restoring state.json forgets bundles
// or brings old ones back, but not below the floor: no older revision can be activated afterwards.
// (Deleting both files is indistinguishable from a new store.)
//
// open() recovers: deletes `.tmp-` debris, checks each referenced blob against its digest, falls
// back to the last-known-good bundle when the active blob is missing or corrupt, raises the floor
// to the revisions in the state, deletes unreferenced blobs, and reports each thing it did.
//
// One process owns the directory. Operations are synchronous so they cannot interleave. If a
// write fails mid-operation the on-disk outcome is unknown to this instance, so it closes itself
// and the next operation must open() again to learn it from disk.
import { createHash } from 'node:crypto';
import * as nodeFs from 'node:fs';
import path from 'node:path';
import {
  type BoundedRead,
  type FileSystem,
  TEMP_PREFIX,
  ensureDirectory,
  fsyncDirectory,
  readFileBounded,
  writeFileAtomic,
} from './atomic-file.js';
import { ZtedgeError } from '../errors.js';

export interface BundleRef {
  readonly revision: number;
  /** SHA-256 of the bundle bytes, lowercase hex. */
  readonly digest: string;
}

export interface StoredBundle extends BundleRef {
  readonly bytes: Uint8Array;
}

export interface BundleRejection {
  /** Null when the bundle was rejected before its revision could be read. */
  readonly revision: number | null;
  readonly digest: string | null;
  /** The rejecting error's stable code, e.g. BUNDLE_EXPIRED. */
  readonly code: string;
  readonly atMs: number;
}

export interface BundleStoreStatus {
  readonly active: BundleRef | null;
  readonly lkg: BundleRef | null;
  /** Highest revision ever activated; a new activation must exceed it. */
  readonly floor: number;
  /** Oldest first. */
  readonly rejections: readonly BundleRejection[];
}

export type RecoveryCode =
  | 'TEMP_FILE_REMOVED'
  | 'STATE_MISSING'
  | 'STATE_UNREADABLE'
  | 'ACTIVE_INVALID'
  | 'LKG_INVALID'
  | 'FELL_BACK_TO_LKG'
  | 'FLOOR_MISSING'
  | 'FLOOR_RAISED'
  | 'UNREFERENCED_BLOB_REMOVED';

export interface RecoveryAction {
  readonly code: RecoveryCode;
  readonly detail: string;
}

export interface OpenReport {
  /** What open() found and repaired, in order; empty after a clean shutdown. */
  readonly actions: readonly RecoveryAction[];
  readonly status: BundleStoreStatus;
}

export type BundleStoreErrorCode =
  | 'BUNDLE_STORE_NOT_OPEN'
  | 'BUNDLE_STORE_BAD_INPUT'
  | 'BUNDLE_STORE_TOO_LARGE'
  | 'BUNDLE_STORE_DIGEST_MISMATCH'
  | 'BUNDLE_STORE_REVISION_NOT_NEWER'
  | 'BUNDLE_STORE_NO_LKG'
  | 'BUNDLE_STORE_BLOB_INVALID'
  | 'BUNDLE_STORE_FLOOR_CORRUPT'
  | 'BUNDLE_STORE_IO';

export class BundleStoreError extends ZtedgeError<BundleStoreErrorCode> {}

export interface BundleStoreOptions {
  /** Injected for failure tests; defaults to node:fs. */
  fs?: FileSystem;
  /** Largest bundle accepted or read back (default 16 MiB). */
  maxBundleBytes?: number;
  /** Rejections kept in the state file (default 20). */
  maxRejections?: number;
}

interface PersistedState {
  active: BundleRef | null;
  lkg: BundleRef | null;
  rejections: BundleRejection[];
}

const STATE_FILE = 'state.json';
const FLOOR_FILE = 'revision-floor';
const BLOB_DIR = 'blobs';
const STATE_FORMAT = 1;
const MAX_STATE_BYTES = 256 * 1024;
const MAX_FLOOR_BYTES = 64;
const DIGEST = /^[0-9a-f]{64}$/;
const CODE = /^[A-Z][A-Z0-9_]{0,63}$/;
const FLOOR_TEXT = /^(0|[1-9][0-9]{0,15})\n$/;
const MAX_TIME_MS = 253_402_300_799_999;
const EMPTY_STATE: PersistedState = { active: null, lkg: null, rejections: [] };

export class BundleStore {
  private readonly fs: FileSystem;
  private readonly blobDir: string;
  private readonly maxBundleBytes: number;
  private readonly maxRejections: number;
  /** Null until open() succeeds, and again after a failed write. */
  private state: PersistedState | null = null;
  private floor = 0;

  constructor(
    readonly dir: string,
    opts: BundleStoreOptions = {},
  ) {
    this.fs = opts.fs ?? nodeFs;
    this.blobDir = path.join(dir, BLOB_DIR);
    this.maxBundleBytes = opts.maxBundleBytes ?? 16 * 1024 * 1024;
    this.maxRejections = opts.maxRejections ?? 20;
    if (!Number.isSafeInteger(this.maxBundleBytes) || this.maxBundleBytes < 1) {
      throw new RangeError(`maxBundleBytes must be a positive integer, got ${this.maxBundleBytes}`);
    }
    if (!Number.isSafeInteger(this.maxRejections) || this.maxRejections < 0) {
      throw new RangeError(`maxRejections must be a non-negative integer, got ${this.maxRejections}`);
    }
  }

  /** Loads the store from disk, repairing what a crash or tampering left behind. */
  open(): OpenReport {
    this.state = null;
    const actions: RecoveryAction[] = [];
    const act = (code: RecoveryCode, detail: string) => actions.push({ code, detail });
    const { state, floor } = this.io(() => {
      ensureDirectory(this.fs, this.dir);
      ensureDirectory(this.fs, this.blobDir);
      this.removeTempFiles(this.dir, act);
      this.removeTempFiles(this.blobDir, act);

      const storedFloor = this.readFloor();
      const stateRead = this.readState();
      // A new store gets its floor file at once, so that its absence later is an anomaly.
      const isNew = storedFloor === null && stateRead.kind === 'missing';
      let state = stateRead.kind === 'ok' ? stateRead.state : { ...EMPTY_STATE, rejections: [] };
      let rewrite = false;
      // No state and a zero floor is a store whose first activation has not completed yet.
      if (stateRead.kind === 'missing' && !isNew && storedFloor !== 0) {
        act('STATE_MISSING', `${STATE_FILE} is missing; no bundle is active`);
        rewrite = true;
      } else if (stateRead.kind === 'unreadable') {
        act('STATE_UNREADABLE', `${STATE_FILE} is unreadable (${stateRead.reason}); no bundle is active`);
        rewrite = true;
      }

      if (state.lkg !== null && !this.blobMatches(state.lkg)) {
        act('LKG_INVALID', `last-known-good blob of revision ${state.lkg.revision} is missing or corrupt; dropped`);
        state = { ...state, lkg: null };
        rewrite = true;
      }
      if (state.active !== null && !this.blobMatches(state.active)) {
        act('ACTIVE_INVALID', `active blob of revision ${state.active.revision} is missing or corrupt`);
        if (state.lkg !== null) {
          act('FELL_BACK_TO_LKG', `revision ${state.lkg.revision} is active again`);
        }
        state = { ...state, active: state.lkg, lkg: null };
        rewrite = true;
      }
      if (rewrite) this.writeState(state);

      if (storedFloor === null && !isNew) {
        act('FLOOR_MISSING', `${FLOOR_FILE} is missing; rebuilt from the state`);
      }
      const floor = Math.max(storedFloor ?? 0, state.active?.revision ?? 0, state.lkg?.revision ?? 0);
      if (floor > (storedFloor ?? 0)) {
        act('FLOOR_RAISED', `revision floor raised from ${storedFloor ?? 0} to ${floor}`);
      }
      if (storedFloor === null || floor > storedFloor) this.writeFloor(floor);
      this.removeUnreferencedBlobs(state, act);
      return { state, floor };
    });
    this.state = state;
    this.floor = floor;
    return { actions, status: this.status() };
  }

  /**
   * Makes `bytes` the active bundle and the previous active one the last-known-good.
   * `revision` must exceed every revision activated before; `digest` must be its SHA-256.
   */
  activate(bytes: Uint8Array, revision: number, digest: string): BundleRef {
    const state = this.opened();
    if (!(bytes instanceof Uint8Array) || bytes.length === 0) {
      throw new BundleStoreError('BUNDLE_STORE_BAD_INPUT', 'bundle bytes must be a non-empty Uint8Array');
    }
    if (bytes.length > this.maxBundleBytes) {
      throw new BundleStoreError('BUNDLE_STORE_TOO_LARGE', `bundle is ${bytes.length} bytes, limit ${this.maxBundleBytes}`);
    }
    checkRevision(revision);
    checkDigest(digest);
    if (sha256Hex(bytes) !== digest) {
      throw new BundleStoreError('BUNDLE_STORE_DIGEST_MISMATCH', 'bundle bytes do not match the given digest');
    }
    if (revision <= this.floor) {
      throw new BundleStoreError(
        'BUNDLE_STORE_REVISION_NOT_NEWER',
        `revision ${revision} is not above the highest revision ever activated (${this.floor})`,
      );
    }
    const ref: BundleRef = { revision, digest };
    const next: PersistedState = { ...state, active: ref, lkg: state.active };
    this.mutate(() => {
      if (!this.blobMatches(ref)) writeFileAtomic(this.fs, this.blobDir, digest, bytes);
      this.writeState(next);
      this.state = next;
      this.floor = revision;
      this.writeFloor(revision);
      this.removeUnreferencedBlobs(next);
    });
    return ref;
  }

  /**
   * Makes the last-known-good bundle active again and returns it for re-verification. The bundle
   * rolled back from is dropped (it cannot be re-activated: its revision is below the floor).
   */
  rollback(): StoredBundle {
    const state = this.opened();
    if (state.lkg === null) throw new BundleStoreError('BUNDLE_STORE_NO_LKG', 'there is no last-known-good bundle');
    const lkg = this.readBlob(state.lkg);
    const next: PersistedState = { ...state, active: state.lkg, lkg: null };
    this.mutate(() => {
      this.writeState(next);
      this.state = next;
      this.removeUnreferencedBlobs(next);
    });
    return lkg;
  }

  /** Remembers why a bundle was refused; the oldest entries beyond the limit are dropped. */
  recordRejection(rejection: BundleRejection): void {
    const state = this.opened();
    const entry = checkRejection(rejection);
    const rejections = this.maxRejections === 0 ? [] : [...state.rejections, entry].slice(-this.maxRejections);
    const next: PersistedState = { ...state, rejections };
    this.mutate(() => {
      this.writeState(next);
      this.state = next;
    });
  }

  /** The active bundle's bytes, checked against its digest; null when none is active. */
  readActive(): StoredBundle | null {
    const state = this.opened();
    return state.active === null ? null : this.readBlob(state.active);
  }

  /** The last-known-good bundle's bytes (to re-verify before a rollback); null when none. */
  readLkg(): StoredBundle | null {
    const state = this.opened();
    return state.lkg === null ? null : this.readBlob(state.lkg);
  }

  status(): BundleStoreStatus {
    const state = this.opened();
    return {
      active: state.active,
      lkg: state.lkg,
      floor: this.floor,
      rejections: state.rejections.slice(),
    };
  }

  private opened(): PersistedState {
    if (this.state === null) {
      throw new BundleStoreError('BUNDLE_STORE_NOT_OPEN', 'bundle store is not open (call open() first)');
    }
    return this.state;
  }

  /** Runs a write sequence; on failure the disk state is uncertain, so the store closes. */
  private mutate(write: () => void): void {
    try {
      this.io(write);
    } catch (err) {
      this.state = null;
      throw err;
    }
  }

  private io<T>(run: () => T): T {
    try {
      return run();
    } catch (err) {
      if (err instanceof BundleStoreError) throw err;
      throw new BundleStoreError('BUNDLE_STORE_IO', `bundle store ${this.dir}: ${(err as Error).message}`, { cause: err });
    }
  }

  private readBlob(ref: BundleRef): StoredBundle {
    let read: BoundedRead;
    try {
      read = readFileBounded(this.fs, path.join(this.blobDir, ref.digest), this.maxBundleBytes);
    } catch {
      read = { status: 'missing' };
    }
    if (read.status !== 'ok' || sha256Hex(read.bytes) !== ref.digest) {
      throw new BundleStoreError('BUNDLE_STORE_BLOB_INVALID', `blob of revision ${ref.revision} is missing or corrupt`);
    }
    return { revision: ref.revision, digest: ref.digest, bytes: read.bytes };
  }

  /** False for a blob that is absent, oversized, not a regular file, unreadable or altered. */
  private blobMatches(ref: BundleRef): boolean {
    try {
      const read = readFileBounded(this.fs, path.join(this.blobDir, ref.digest), this.maxBundleBytes);
      return read.status === 'ok' && sha256Hex(read.bytes) === ref.digest;
    } catch {
      return false;
    }
  }

  private blobNames(): string[] {
    return this.fs.readdirSync(this.blobDir);
  }

  private removeTempFiles(dir: string, act: (code: RecoveryCode, detail: string) => void): void {
    const debris = this.fs.readdirSync(dir).filter((name) => name.startsWith(TEMP_PREFIX));
    for (const name of debris) {
      this.fs.unlinkSync(path.join(dir, name));
      act('TEMP_FILE_REMOVED', path.relative(this.dir, path.join(dir, name)));
    }
    if (debris.length > 0) fsyncDirectory(this.fs, dir);
  }

  private removeUnreferencedBlobs(state: PersistedState, act?: (code: RecoveryCode, detail: string) => void): void {
    const keep = new Set([state.active?.digest, state.lkg?.digest]);
    const unreferenced = this.blobNames().filter((name) => !keep.has(name));
    for (const name of unreferenced) {
      this.fs.unlinkSync(path.join(this.blobDir, name));
      act?.('UNREFERENCED_BLOB_REMOVED', name);
    }
    if (unreferenced.length > 0) fsyncDirectory(this.fs, this.blobDir);
  }

  private readState(): { kind: 'ok'; state: PersistedState } | { kind: 'missing' } | { kind: 'unreadable'; reason: string } {
    const read = readFileBounded(this.fs, path.join(this.dir, STATE_FILE), MAX_STATE_BYTES);
    if (read.status === 'missing') return { kind: 'missing' };
    if (read.status === 'too-large') return { kind: 'unreadable', reason: `${read.size} bytes` };
    try {
      return { kind: 'ok', state: parseState(read.bytes.toString('utf8'), this.maxRejections) };
    } catch (err) {
      return { kind: 'unreadable', reason: (err as Error).message };
    }
  }

  private writeState(state: PersistedState): void {
    const text = JSON.stringify({ format: STATE_FORMAT, ...state }, null, 2) + '\n';
    writeFileAtomic(this.fs, this.dir, STATE_FILE, Buffer.from(text, 'utf8'));
  }

  /** The stored floor, null if the file is absent. A damaged floor is an error, not a zero. */
  private readFloor(): number | null {
    const read = readFileBounded(this.fs, path.join(this.dir, FLOOR_FILE), MAX_FLOOR_BYTES);
    if (read.status === 'missing') return null;
    const text = read.status === 'ok' ? read.bytes.toString('latin1') : '';
    const floor = FLOOR_TEXT.test(text) ? Number(text.trimEnd()) : Number.NaN;
    if (!Number.isSafeInteger(floor)) {
      throw new BundleStoreError(
        'BUNDLE_STORE_FLOOR_CORRUPT',
        `${path.join(this.dir, FLOOR_FILE)} is damaged; refusing to guess the highest activated revision`,
      );
    }
    return floor;
  }

  private writeFloor(floor: number): void {
    writeFileAtomic(this.fs, this.dir, FLOOR_FILE, Buffer.from(`${floor}\n`, 'latin1'));
  }
}

function sha256Hex(bytes: Uint8Array): string {
  return createHash('sha256').update(bytes).digest('hex');
}

function checkRevision(revision: unknown): asserts revision is number {
  if (typeof revision !== 'number' || !Number.isSafeInteger(revision) || revision < 1) {
    throw new BundleStoreError('BUNDLE_STORE_BAD_INPUT', `revision must be a positive safe integer, got ${String(revision)}`);
  }
}

function checkDigest(digest: unknown): asserts digest is string {
  if (typeof digest !== 'string' || !DIGEST.test(digest)) {
    throw new BundleStoreError('BUNDLE_STORE_BAD_INPUT', 'digest must be 64 lowercase hex characters');
  }
}

function checkRejection(value: BundleRejection): BundleRejection {
  const { revision, digest, code, atMs } = value;
  if (revision !== null) checkRevision(revision);
  if (digest !== null) checkDigest(digest);
  if (typeof code !== 'string' || !CODE.test(code)) {
    throw new BundleStoreError('BUNDLE_STORE_BAD_INPUT', 'rejection code must be UPPER_SNAKE, at most 64 characters');
  }
  if (typeof atMs !== 'number' || !Number.isSafeInteger(atMs) || atMs < 0 || atMs > MAX_TIME_MS) {
    throw new BundleStoreError('BUNDLE_STORE_BAD_INPUT', `rejection time must be milliseconds since the epoch, got ${atMs}`);
  }
  return { revision, digest, code, atMs };
}

/** Strict parse of state.json: exact keys, exact types; anything else is unreadable. */
function parseState(text: string, maxRejections: number): PersistedState {
  const value: unknown = JSON.parse(text);
  const record = exactRecord(value, ['format', 'active', 'lkg', 'rejections'], 'state');
  if (record.format !== STATE_FORMAT) throw new Error(`unknown state format ${String(record.format)}`);
  if (!Array.isArray(record.rejections)) throw new Error('rejections is not an array');
  const rejections = record.rejections.map((item) => {
    const r = exactRecord(item, ['revision', 'digest', 'code', 'atMs'], 'rejection');
    return checkRejection(r as unknown as BundleRejection);
  });
  return {
    active: parseRef(record.active, 'active'),
    lkg: parseRef(record.lkg, 'lkg'),
    rejections: maxRejections === 0 ? [] : rejections.slice(-maxRejections),
  };
}

function parseRef(value: unknown, name: string): BundleRef | null {
  if (value === null) return null;
  const record = exactRecord(value, ['revision', 'digest'], name);
  checkRevision(record.revision);
  checkDigest(record.digest);
  return { revision: record.revision, digest: record.digest };
}

function exactRecord(value: unknown, keys: readonly string[], name: string): Record<string, unknown> {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new Error(`${name} is not an object`);
  const actual = Object.keys(value);
  if (actual.length !== keys.length || !keys.every((key) => Object.hasOwn(value, key))) {
    throw new Error(`${name} must have exactly the keys ${keys.join(', ')}`);
  }
  return value as Record<string, unknown>;
}
