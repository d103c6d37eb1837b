// The bundle manager: which verified bundle is enforced right now, and the only way to change it.
//
// The engine switch is one reference swap. Readers take `manager.current` once per request and
// use that object throughout, so a request never sees policies of one bundle with entities of
// another. A new bundle is verified at trusted time, stored durably (the store's atomic commit),
// and only then swapped in; a refused bundle leaves everything as it was and is recorded (store
// rejections + an event for the audit log and status).
//
// An active bundle past its `expires` stays in force — a device offline for weeks keeps its last
// good policy — but is reported stale (`context.bundle.stale`), so policies can tighten.
// At start the active bundle is re-verified (roots or agent version may have changed); if it no
// longer verifies, the last-known-good one takes its place. An operator may roll back to the
// last-known-good bundle on purpose: the one case where a lower revision becomes active, and it
// is announced as such.
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import type { BundleRef, BundleRejection, BundleStore, RecoveryAction, StoredBundle } from './store.js';
import { BundleError } from './errors.js';
import { DEFAULT_BUNDLE_MAX_BYTES } from './format.js';
import { ROLLBACK_MAX_BYTES, verifyRollback } from './rollback.js';
import { type TrustOptions, type VerifiedBundle, verifyBundle } from './verify.js';

/** Trusted time (e.g. TrustedClock): never earlier than times seen in verified signed data. */
export interface BundleClock {
  now(): number;
  /** Told the creation time of every bundle that activates (signed by the roots). */
  observe?(signedTimeMs: number): void;
}

export type BundleEvent =
  | { kind: 'store-recovered'; atMs: number; actions: readonly RecoveryAction[] }
  | { kind: 'loaded'; atMs: number; revision: number; digest: string; stale: boolean }
  | { kind: 'activated'; atMs: number; revision: number; digest: string; previousRevision: number | null }
  | { kind: 'rejected'; atMs: number; code: string; message: string; revision: number | null; digest: string | null }
  | {
      kind: 'rolled-back';
      atMs: number;
      /**
       * `operator`: on demand on the device (`ztedge bundle rollback`); `instruction`: a signed
       * rollback instruction; `active-invalid`: the active bundle no longer verified at start.
       */
      reason: 'operator' | 'instruction' | 'active-invalid';
      fromRevision: number | null;
      revision: number;
      digest: string;
    };

export type BundleListener = (event: BundleEvent) => void;

/**
 * The audit record body of a bundle event (kind `bundle`), the same whether the running agent or
 * an operator command on a stopped agent's state directory changed the bundle.
 */
export function bundleEventRecord(event: BundleEvent): Record<string, string | number | boolean | null> {
  const body: Record<string, string | number | boolean | null> = { event: event.kind, atMs: event.atMs };
  if ('revision' in event) body.revision = event.revision;
  if ('digest' in event) body.digest = event.digest;
  if (event.kind === 'rejected') {
    body.code = event.code;
    body.message = event.message.slice(0, 300);
  } else if (event.kind === 'rolled-back') {
    body.reason = event.reason;
    body.fromRevision = event.fromRevision;
  } else if (event.kind === 'activated') {
    body.previousRevision = event.previousRevision;
  }
  return body;
}

export interface ActiveStatus {
  readonly id: string;
  readonly revision: number;
  readonly digest: string;
  /** Seconds since the epoch. */
  readonly expires: number;
  readonly stale: boolean;
}

export interface BundleStatus {
  readonly active: ActiveStatus | null;
  readonly lkg: BundleRef | null;
  /** Highest revision ever activated. */
  readonly floor: number;
  /** The active revision is below the floor: an operator rolled back, or a bad bundle was dropped. */
  readonly rolledBack: boolean;
  readonly lastRejection: BundleRejection | null;
}

export type ActivationResult =
  | { readonly status: 'activated'; readonly bundle: VerifiedBundle }
  /** The same bytes as the active bundle (a retained message seen again): nothing to do. */
  | { readonly status: 'unchanged'; readonly bundle: VerifiedBundle };

export interface BundleManagerOptions {
  readonly store: BundleStore;
  readonly trust: TrustOptions;
  readonly clock: BundleClock;
}

/** Whether `bundle` is past its expiry at `nowMs` (still enforced, but stale). */
export function isStale(bundle: VerifiedBundle, nowMs: number): boolean {
  return Math.floor(nowMs / 1000) >= bundle.manifest.expires;
}

export class BundleManager {
  #current: VerifiedBundle | null = null;
  readonly #listeners = new Set<BundleListener>();
  readonly #store: BundleStore;
  readonly #trust: TrustOptions;
  readonly #clock: BundleClock;

  constructor(options: BundleManagerOptions) {
    this.#store = options.store;
    this.#trust = options.trust;
    this.#clock = options.clock;
  }

  /** The enforced bundle; take it once per request. Null: nothing to enforce, deny everything. */
  get current(): VerifiedBundle | null {
    return this.#current;
  }

  get maxBytes(): number {
    return this.#trust.maxBytes ?? DEFAULT_BUNDLE_MAX_BYTES;
  }

  /** Subscribes to bundle events; returns the unsubscribe function. */
  on(listener: BundleListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Opens the store and loads the active bundle, re-verified; falls back to last-known-good. */
  start(): VerifiedBundle | null {
    const { actions } = this.#store.open();
    const now = this.#clock.now();
    if (actions.length > 0) this.#emit({ kind: 'store-recovered', atMs: now, actions });
    this.#current = null;
    const active = this.#store.readActive();
    if (active === null) return null;
    const bundle = this.#reverify(active, now);
    if (bundle !== null) {
      this.#current = bundle;
      this.#emit({ kind: 'loaded', atMs: now, revision: active.revision, digest: active.digest, stale: bundle.expired });
      return bundle;
    }
    const lkg = this.#store.readLkg();
    const fallback = lkg === null ? null : this.#reverify(lkg, now);
    if (lkg === null || fallback === null) return null;
    this.#store.rollback();
    this.#current = fallback;
    this.#emit({ kind: 'rolled-back', atMs: now, reason: 'active-invalid', fromRevision: active.revision, revision: lkg.revision, digest: lkg.digest });
    return fallback;
  }

  /**
   * Verifies `bytes` at trusted time against the active revision and the floor, stores them
   * atomically and swaps them in. A refusal is recorded and thrown as BundleError; the active
   * bundle is then unchanged.
   */
  activate(bytes: Uint8Array): ActivationResult {
    const now = this.#clock.now();
    const digest = bytes.length <= this.maxBytes ? toHex(sha256(bytes)) : null;
    const previous = this.#current;
    if (previous !== null && digest === previous.digest) return { status: 'unchanged', bundle: previous };
    const { active, floor } = this.#store.status();
    let bundle: VerifiedBundle;
    try {
      bundle = verifyBundle(bytes, {
        ...this.#trust,
        now,
        activeRevision: active?.revision ?? 0,
        revisionFloor: floor,
      });
    } catch (err) {
      if (err instanceof BundleError) this.recordRefusal(err, digest);
      throw err;
    }
    this.#store.activate(bytes, bundle.manifest.revision, bundle.digest);
    this.#current = bundle;
    this.#clock.observe?.(bundle.manifest.created * 1000);
    this.#emit({
      kind: 'activated',
      atMs: now,
      revision: bundle.manifest.revision,
      digest: bundle.digest,
      previousRevision: previous?.manifest.revision ?? null,
    });
    return { status: 'activated', bundle };
  }

  /** Operator rollback to the last-known-good bundle, re-verified first (expiry aside). */
  rollback(reason: 'operator' | 'instruction' = 'operator'): VerifiedBundle {
    const now = this.#clock.now();
    const lkg = this.#store.readLkg();
    if (lkg === null) throw new BundleError('BUNDLE_NO_LKG', 'there is no last-known-good bundle to roll back to');
    const bundle = verifyStored(lkg, this.#trust, now, (err) => this.recordRefusal(err, lkg.digest));
    const from = this.#store.status().active;
    this.#store.rollback();
    this.#current = bundle;
    this.#emit({ kind: 'rolled-back', atMs: now, reason, fromRevision: from?.revision ?? null, revision: lkg.revision, digest: lkg.digest });
    return bundle;
  }

  /**
   * Carries out a signed rollback instruction (rollback.ts): verified against the roots at
   * trusted time, and only from the active bundle it names to the last-known-good it names; the
   * target is re-verified as for any rollback. A refusal is recorded (status, audit) under the
   * instruction's digest and thrown; nothing changes then.
   */
  applyRollback(bytes: Uint8Array): VerifiedBundle {
    const digest = bytes.length <= ROLLBACK_MAX_BYTES ? toHex(sha256(bytes)) : null;
    try {
      const { instruction } = verifyRollback(bytes, { ...this.#trust, now: this.#clock.now() });
      const { active, lkg } = this.#store.status();
      const same = (a: BundleRef | null, b: BundleRef) => a !== null && a.revision === b.revision && a.digest === b.digest;
      if (!same(active, instruction.from)) {
        throw new BundleError(
          'ROLLBACK_NOT_ACTIVE',
          `the instruction rolls back from revision ${instruction.from.revision} (${instruction.from.digest.slice(0, 12)}…); the active bundle is ${describeRef(active)}`,
          { revision: instruction.to.revision },
        );
      }
      if (!same(lkg, instruction.to)) {
        throw new BundleError(
          'ROLLBACK_NOT_LKG',
          `the instruction's target revision ${instruction.to.revision} (${instruction.to.digest.slice(0, 12)}…) is not the last-known-good bundle, which is ${describeRef(lkg)}`,
          { revision: instruction.to.revision },
        );
      }
    } catch (err) {
      if (err instanceof BundleError) this.recordRefusal(err, digest);
      throw err;
    }
    return this.rollback('instruction');
  }

  /**
   * Records a refused bundle (also for refusals before the bytes reached the manager, such as a
   * transport that stopped reading at the size cap). A repeat of the latest refusal — the same
   * digest refused for the same reason, e.g. a retained message redelivered — is not recorded
   * again, so a stuck sender cannot wear out the disk or flood the audit log.
   */
  recordRefusal(err: BundleError, digest: string | null): void {
    const last = this.#store.status().rejections.at(-1);
    if (last !== undefined && last.code === err.code && last.digest === digest) return;
    const atMs = this.#clock.now();
    const revision = err.revision ?? null;
    this.#store.recordRejection({ revision, digest, code: err.code, atMs });
    this.#emit({ kind: 'rejected', atMs, code: err.code, message: err.message, revision, digest });
  }

  status(): BundleStatus {
    const store = this.#store.status();
    const bundle = this.#current;
    const now = this.#clock.now();
    return {
      active:
        bundle === null
          ? null
          : {
              id: bundle.manifest.id,
              revision: bundle.manifest.revision,
              digest: bundle.digest,
              expires: bundle.manifest.expires,
              stale: isStale(bundle, now),
            },
      lkg: store.lkg,
      floor: store.floor,
      rolledBack: bundle !== null && bundle.manifest.revision < store.floor,
      lastRejection: store.rejections.at(-1) ?? null,
    };
  }

  #reverify(stored: StoredBundle, now: number): VerifiedBundle | null {
    try {
      return verifyStored(stored, this.#trust, now, (err) => this.recordRefusal(err, stored.digest));
    } catch (err) {
      if (err instanceof BundleError) return null;
      throw err;
    }
  }

  #emit(event: BundleEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}

function describeRef(ref: BundleRef | null): string {
  return ref === null ? 'none' : `revision ${ref.revision} (${ref.digest.slice(0, 12)}…)`;
}

/**
 * Re-verifies a bundle the store holds: everything but the revision rule (it was activated
 * once) and expiry (an expired bundle stays in force, stale). The store's record of its
 * revision must match the signed one: an older bundle under a newer record is a rollback.
 */
function verifyStored(stored: StoredBundle, trust: TrustOptions, now: number, refused: (err: BundleError) => void): VerifiedBundle {
  try {
    const bundle = verifyBundle(stored.bytes, { ...trust, now, allowExpired: true });
    const signed = bundle.manifest.revision;
    if (signed < stored.revision) {
      throw new BundleError('BUNDLE_ROLLBACK', `stored as revision ${stored.revision} but signed as revision ${signed}`, { revision: signed });
    }
    if (signed > stored.revision) {
      throw new BundleError('BUNDLE_MALFORMED', `stored as revision ${stored.revision} but signed as revision ${signed}`, { revision: signed });
    }
    return bundle;
  } catch (err) {
    if (err instanceof BundleError) refused(err);
    throw err;
  }
}
