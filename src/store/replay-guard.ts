// Replay guard: remembers every accepted command's (issuer, cti) until the command could no longer
// pass the expiry check, so each signed command is accepted at most once — across restarts too.
//
// Keyed on signed claims, never on signature bytes: an ECDSA signature can be re-encoded into a
// different valid signature over the same payload.
//
// Durability: an accepted entry must be durable before the command may act, or a crash after the
// action could forget the entry and let the command run again after reboot. Two ways to get there:
// - reserve() checks now, against the table and the entries reserved but not yet committed, and
//   queues the insert on the state database's group commit (store/group-commit.ts); its promise
//   resolves once durable. The command path uses this: the entry shares one transaction and one
//   WAL flush with the decision's audit record and with every other command of the same turn.
// - checkAndRecord() commits its own transaction before returning: one WAL fsync per entry
//   (bench/store.bench.ts: ~0.2 ms on fast storage, ~4 ms on a slow virtual disk). Run inside an
//   outer db.transaction() it becomes a savepoint of that transaction.
//
// Window: an entry lives while now < exp + skew (the verifier accepts up to exp + skew) and is
// pruned after, on an interval driven by the calls themselves and whenever the store is full.
// Pruning records a watermark: anything expiring at or before it may have been forgotten, so it
// is refused even if the clock later reads earlier (an RTC reset after a reboot, a clock that was
// ahead and got corrected). The price of forgetting safely: after a prune at a clock reading far
// in the future, commands are refused until real time passes that reading — failing closed rather
// than accepting a replay. When the store is full of live entries the guard also fails closed
// rather than evict a live entry.
import { GroupCommit } from './group-commit.js';
import type { Database } from './state-db.js';
import { migrate } from './state-db.js';
import { EnvelopeError } from '../envelope/errors.js';
import { MAX_TIME_MS } from './trusted-clock.js';

export interface ReplayEntry {
  /** The `iss` claim of the verified envelope. */
  issuer: string;
  /** The `cti` claim (the command's nonce). */
  cti: Uint8Array;
  /** The `exp` claim, in milliseconds since the epoch. */
  expMs: number;
}

export interface ReplayGuardOptions {
  /** Tolerance added to exp; at least the verifier's clock skew, longer is safe (default 60 s). */
  clockSkewMs?: number;
  /** Most entries kept; beyond this, new commands are refused until entries expire (default 1,000,000). */
  maxEntries?: number;
  /** Expired entries are pruned by the first call at least this long after the last prune (default 60 s). */
  pruneIntervalMs?: number;
  /** The database's shared group commit, used by reserve(); without one the guard has its own. */
  commits?: GroupCommit;
}

/** Admits a command's (issuer, cti) once; what the command pipeline needs from the guard. */
export interface ReplayReserver {
  /**
   * Throws EnvelopeError at once when the entry is refused; otherwise returns a promise that
   * resolves once the entry is durably recorded (and rejects if that commit fails).
   */
  reserve(entry: ReplayEntry, nowMs: number): Promise<void>;
}

const MIGRATIONS = [
  `CREATE TABLE replay_seen (
     issuer TEXT NOT NULL,
     cti BLOB NOT NULL,
     expires_ms INTEGER NOT NULL,
     PRIMARY KEY (issuer, cti)
   ) STRICT, WITHOUT ROWID;
   CREATE INDEX replay_seen_expiry ON replay_seen (expires_ms);
   CREATE TABLE replay_watermark (
     id INTEGER PRIMARY KEY CHECK (id = 1),
     pruned_through_ms INTEGER NOT NULL
   ) STRICT;
   INSERT INTO replay_watermark (id, pruned_through_ms) VALUES (1, 0);`,
];

type RecordOutcome = 'inserted' | 'refreshed' | 'replay' | 'full';

const MAX_ISSUER_BYTES = 1024;
const MAX_CTI_BYTES = 64;

const DEFAULTS = { clockSkewMs: 60_000, maxEntries: 1_000_000, pruneIntervalMs: 60_000 };

export class ReplayGuard implements ReplayReserver {
  private readonly clockSkewMs: number;
  private readonly maxEntries: number;
  private readonly pruneIntervalMs: number;
  private readonly select;
  private readonly insert;
  private readonly refresh;
  private readonly upsert;
  private readonly record;
  private readonly commits: GroupCommit;
  private readonly pruneExpired;
  private readonly countRows: () => number;
  /**
   * Row count kept in memory to avoid counting per call. It can only run high (an enclosing
   * transaction rolled back an insert), so it is recounted before the guard declares itself full.
   */
  private entries: number;
  private prunedThroughMs: number;
  private lastPruneMs = Number.NEGATIVE_INFINITY;
  /** Entries reserved and queued for the next group commit, by key(). */
  private readonly reserved = new Set<string>();

  constructor(
    db: Database,
    opts: ReplayGuardOptions = {},
  ) {
    this.clockSkewMs = nonNegativeInteger('clockSkewMs', opts.clockSkewMs ?? DEFAULTS.clockSkewMs);
    this.maxEntries = nonNegativeInteger('maxEntries', opts.maxEntries ?? DEFAULTS.maxEntries);
    if (this.maxEntries === 0) throw new RangeError('ReplayGuard maxEntries must be at least 1');
    this.pruneIntervalMs = nonNegativeInteger('pruneIntervalMs', opts.pruneIntervalMs ?? DEFAULTS.pruneIntervalMs);
    this.commits = opts.commits ?? new GroupCommit(db);
    migrate(db, 'replay', MIGRATIONS);

    this.select = db.prepare<[string, Buffer], { expires_ms: number }>(
      'SELECT expires_ms FROM replay_seen WHERE issuer = ? AND cti = ?',
    );
    this.insert = db.prepare<[string, Buffer, number]>(
      'INSERT INTO replay_seen (issuer, cti, expires_ms) VALUES (?, ?, ?)',
    );
    this.refresh = db.prepare<[number, string, Buffer]>(
      'UPDATE replay_seen SET expires_ms = ? WHERE issuer = ? AND cti = ?',
    );
    this.upsert = db.prepare<[string, Buffer, number]>(
      'INSERT INTO replay_seen (issuer, cti, expires_ms) VALUES (?, ?, ?) ON CONFLICT (issuer, cti) DO UPDATE SET expires_ms = excluded.expires_ms',
    );
    const deleteExpired = db.prepare<[number]>('DELETE FROM replay_seen WHERE expires_ms <= ?');
    const saveWatermark = db.prepare<[number]>(
      'UPDATE replay_watermark SET pruned_through_ms = max(pruned_through_ms, ?) WHERE id = 1',
    );
    this.pruneExpired = db.transaction((nowMs: number): number => {
      saveWatermark.run(nowMs);
      return deleteExpired.run(nowMs).changes;
    });
    this.record = db.transaction((issuer: string, cti: Buffer, expiresMs: number, nowMs: number): RecordOutcome => {
      if (this.reserved.has(key(issuer, cti))) return 'replay';
      const seen = this.select.get(issuer, cti);
      if (seen !== undefined && seen.expires_ms > nowMs) return 'replay';
      if (seen !== undefined) {
        // Expired but not yet pruned: the same (issuer, cti) on a fresh, valid envelope is new.
        this.refresh.run(expiresMs, issuer, cti);
        return 'refreshed';
      }
      if (!this.hasRoom()) return 'full';
      this.insert.run(issuer, cti, expiresMs);
      return 'inserted';
    });

    const count = db.prepare('SELECT count(*) FROM replay_seen').pluck();
    this.countRows = () => count.get() as number;
    this.entries = this.countRows();
    this.prunedThroughMs = (
      db.prepare('SELECT pruned_through_ms AS t FROM replay_watermark WHERE id = 1').get() as { t: number }
    ).t;
  }

  /**
   * Records (issuer, cti) until exp + skew, committed before this returns. Throws EnvelopeError
   * ENVELOPE_REPLAY if it is already recorded (or reserved), ENVELOPE_EXPIRED if it is outside the
   * window this guard can vouch for, ENVELOPE_REPLAY_STORE_FULL when full of live entries,
   * ENVELOPE_MALFORMED for bad input. `nowMs` is trusted time (TrustedClock.now()).
   */
  checkAndRecord(entry: ReplayEntry, nowMs: number): void {
    const { issuer, cti, expiresMs } = this.admissible(entry, nowMs);
    let outcome = this.record(issuer, cti, expiresMs, nowMs);
    if (outcome === 'full') {
      this.prune(nowMs);
      outcome = this.record(issuer, cti, expiresMs, nowMs);
    }
    switch (outcome) {
      case 'replay':
        throw replayError(issuer, cti);
      case 'full':
        throw this.fullError();
      case 'inserted':
        this.entries++;
        return;
      case 'refreshed':
        return;
    }
  }

  /**
   * The same checks as checkAndRecord, made now against the table and the entries already
   * reserved (so a second copy in the same batch is a replay); the record itself joins the next
   * group commit. Throws EnvelopeError at once when refused; the promise resolves once the
   * record is committed and rejects (GroupCommitError) if that commit fails, which frees the
   * reservation again.
   */
  reserve(entry: ReplayEntry, nowMs: number): Promise<void> {
    const { issuer, cti, expiresMs } = this.admissible(entry, nowMs);
    const k = key(issuer, cti);
    if (this.reserved.has(k)) throw replayError(issuer, cti);
    const seen = this.select.get(issuer, cti);
    if (seen !== undefined && seen.expires_ms > nowMs) throw replayError(issuer, cti);
    if (seen === undefined && !this.hasRoom()) {
      this.prune(nowMs);
      if (!this.hasRoom()) throw this.fullError();
    }
    this.reserved.add(k);
    let added = false;
    return this.commits.run(
      () => {
        // A prune may have removed an expired row since the check; count what the upsert adds.
        added = this.select.get(issuer, cti) === undefined;
        this.upsert.run(issuer, cti, expiresMs);
      },
      (committed) => {
        this.reserved.delete(k);
        if (committed && added) this.entries++;
      },
    );
  }

  /** Deletes entries expired at `nowMs`; returns how many. */
  prune(nowMs: number): number {
    checkTime('nowMs', nowMs);
    this.lastPruneMs = nowMs;
    if (nowMs <= this.prunedThroughMs) return 0;
    const removed = this.pruneExpired(nowMs);
    this.prunedThroughMs = nowMs;
    this.entries -= removed;
    return removed;
  }

  /** Number of entries currently stored (live or awaiting prune). */
  size(): number {
    return this.countRows();
  }

  /** Input, expiry and watermark checks shared by both ways in; also runs the periodic prune. */
  private admissible(entry: ReplayEntry, nowMs: number): { issuer: string; cti: Buffer; expiresMs: number } {
    const { issuer, cti, expMs } = checkEntry(entry);
    checkTime('nowMs', nowMs);
    const expiresMs = expMs + this.clockSkewMs;
    if (expiresMs <= nowMs) {
      throw new EnvelopeError('ENVELOPE_EXPIRED', `command expired at ${expMs} (+${this.clockSkewMs} ms skew)`);
    }
    if (expiresMs <= this.prunedThroughMs) {
      throw new EnvelopeError(
        'ENVELOPE_EXPIRED',
        `command expiring at ${expMs} (+${this.clockSkewMs} ms skew) is before the replay store's pruning watermark ${this.prunedThroughMs}`,
      );
    }
    if (nowMs - this.lastPruneMs >= this.pruneIntervalMs) this.prune(nowMs);
    return { issuer, cti, expiresMs };
  }

  /** Room for one more entry, counting reservations; recounts before saying no. */
  private hasRoom(): boolean {
    if (this.entries + this.reserved.size < this.maxEntries) return true;
    this.entries = this.countRows();
    return this.entries + this.reserved.size < this.maxEntries;
  }

  private fullError(): EnvelopeError {
    return new EnvelopeError(
      'ENVELOPE_REPLAY_STORE_FULL',
      `replay store holds ${this.entries} entries and ${this.reserved.size} pending (limit ${this.maxEntries}); refusing new commands`,
    );
  }
}

/** Identifies (issuer, cti) in memory; the length prefix keeps any issuer text unambiguous. */
function key(issuer: string, cti: Buffer): string {
  return `${issuer.length}:${issuer}${cti.toString('hex')}`;
}

function replayError(issuer: string, cti: Uint8Array): EnvelopeError {
  return new EnvelopeError('ENVELOPE_REPLAY', `command ${hex(cti)} from '${issuer}' was already accepted`);
}

function checkEntry(entry: ReplayEntry): { issuer: string; cti: Buffer; expMs: number } {
  const { issuer, cti, expMs } = entry;
  if (typeof issuer !== 'string' || issuer.length === 0 || Buffer.byteLength(issuer) > MAX_ISSUER_BYTES) {
    throw new EnvelopeError('ENVELOPE_MALFORMED', `issuer must be a non-empty string of at most ${MAX_ISSUER_BYTES} bytes`);
  }
  if (!(cti instanceof Uint8Array) || cti.length === 0 || cti.length > MAX_CTI_BYTES) {
    throw new EnvelopeError('ENVELOPE_MALFORMED', `cti must be 1..${MAX_CTI_BYTES} bytes`);
  }
  checkTime('expMs', expMs);
  return { issuer, cti: Buffer.from(cti.buffer, cti.byteOffset, cti.byteLength), expMs };
}

function checkTime(name: string, value: number): void {
  if (!Number.isSafeInteger(value) || value < 0 || value > MAX_TIME_MS) {
    throw new EnvelopeError('ENVELOPE_MALFORMED', `${name} must be whole milliseconds since the epoch, up to year 9999; got ${value}`);
  }
}

function nonNegativeInteger(name: string, value: number): number {
  if (!Number.isSafeInteger(value) || value < 0) {
    throw new RangeError(`ReplayGuard ${name} must be a non-negative integer, got ${value}`);
  }
  return value;
}

function hex(bytes: Uint8Array): string {
  return Buffer.from(bytes).toString('hex');
}
