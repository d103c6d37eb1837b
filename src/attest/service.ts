// The attestation service: measures the files of the device's firmware profile, judges them
// against the active bundle's reference values, and answers challenges with signed evidence.
//
// When it measures: once at start (before the agent takes commands), on the profile's
// interval, when a bundle is activated, and promptly when a measured file changes — fs.watch on
// the files and their directories, debounced; the interval is the backstop for the events
// watches miss. Measurements never overlap (a trigger during one runs once after it) and never
// block the event loop for long: reads are asynchronous and hashing goes in 256 KiB steps.
//
// With a TPM, each new composite is extended into the PCR before it is published, so evidence
// always carries a quote whose log ends with the composite it reports.
import { type FSWatcher, watch } from 'node:fs';
import fsp from 'node:fs/promises';
import path from 'node:path';
import { bytesEqual, fromHex, toHex } from '../crypto/bytes.js';
import { type PrivateKey, publicKeyToPem } from '../crypto/keys.js';
import { ChallengeGuard } from './challenge.js';
import { type Assessment, type Mismatch, type Posture, type ReferenceValues, assess } from './compare.js';
import { AttestError } from './errors.js';
import { type RootOfTrust, signEvidence } from './evidence.js';
import { type MeasureOptions, type DigestCache, expandTargets, hostPath, measurePaths } from './measure.js';
import type { FirmwareProfile } from './profile.js';
import type { MeasurementRecord } from './record.js';
import { Tpm, type TpmOptions } from './tpm.js';

export type MeasureTrigger = 'start' | 'interval' | 'bundle' | 'watch' | 'request';

/** What policies see as `context.attestation`. */
export interface AttestationFacts {
  readonly posture: Posture;
  /** Paths that differ from their references (any reason), sorted. */
  readonly mismatches: readonly string[];
  readonly composite: string;
  /** Whether the active bundle holds references for this profile. */
  readonly referenced: boolean;
  readonly rootOfTrust: RootOfTrust;
  readonly measuredAtMs: number;
  /** Code of a measurement that could not be made (then posture is untrusted). */
  readonly error: string | null;
}

export interface AttestationState {
  readonly seq: number;
  readonly trigger: MeasureTrigger;
  readonly measuredAtMs: number;
  readonly records: readonly MeasurementRecord[];
  readonly assessment: Assessment;
  readonly error: AttestError | null;
}

export type AttestationEvent =
  /** Posture, composite, mismatches or error differ from the previous measurement's. */
  | {
      readonly kind: 'changed';
      readonly atMs: number;
      readonly trigger: MeasureTrigger;
      readonly previous: Posture | null;
      readonly posture: Posture;
      readonly previousComposite: string | null;
      readonly composite: string;
      readonly mismatches: readonly Mismatch[];
      readonly error: { readonly code: string; readonly message: string } | null;
    }
  /** Something around measuring failed (a watch, the TPM); measuring goes on. */
  | { readonly kind: 'problem'; readonly atMs: number; readonly code: string; readonly message: string };

export type AttestationListener = (event: AttestationEvent) => void;

export interface AttestationServiceOptions {
  readonly deviceId: string;
  readonly profile: FirmwareProfile;
  /** Where device paths are found (default "/"). */
  readonly root?: string;
  /** The device key: signs evidence. */
  readonly key: PrivateKey;
  readonly agentVersion: string;
  /** Open this TPM at start: composites are extended into it and evidence carries quotes. */
  readonly tpm?: TpmOptions;
  /** Default: the profile's interval. */
  readonly intervalMs?: number;
  /** Quiet time after a file event before measuring (default 150 ms; at most 1 s after the first event). */
  readonly debounceMs?: number;
  /** Default true. */
  readonly watch?: boolean;
  readonly now?: () => number;
  /** Measuring internals (file system, concurrency, digest cache age). */
  readonly measure?: Omit<MeasureOptions, 'root' | 'cache'>;
  readonly challenges?: { readonly limit?: number; readonly windowMs?: number };
}

const MAX_WATCHES = 1024;
const MAX_DEBOUNCE_MS = 1000;
/** Unchanged files are hashed again at least this often even with the digest cache. */
const DEFAULT_CACHE_MAX_AGE_MS = 3_600_000;

export class AttestationService {
  readonly profile: FirmwareProfile;
  readonly #options: AttestationServiceOptions;
  readonly #root: string;
  readonly #now: () => number;
  readonly #guard: ChallengeGuard;
  readonly #listeners = new Set<AttestationListener>();
  readonly #cache: DigestCache = new Map();
  readonly #watchers = new Map<string, FSWatcher>();
  #tpm: Tpm | null = null;
  #references: ReferenceValues | null = null;
  #bundle: { revision: number; digest: string } | null = null;
  #state: AttestationState | null = null;
  #seq = 0;
  #running: Promise<void> | null = null;
  #again: MeasureTrigger | null = null;
  #interval: NodeJS.Timeout | null = null;
  #debounce: NodeJS.Timeout | null = null;
  #firstEventAt = 0;
  #stopped = true;
  /** The composite last extended into the TPM. */
  #extended: Uint8Array | null = null;

  constructor(options: AttestationServiceOptions) {
    this.#options = options;
    this.profile = options.profile;
    this.#root = options.root ?? '/';
    this.#now = options.now ?? Date.now;
    this.#guard = new ChallengeGuard({ ...options.challenges, now: this.#now });
  }

  /** Opens the TPM (when configured), measures once, then watches and re-measures on the interval. */
  async start(): Promise<void> {
    if (!this.#stopped) return;
    this.#stopped = false;
    if (this.#options.tpm !== undefined) this.#tpm = await Tpm.open(this.#options.tpm);
    await this.measureNow('start');
    const interval = this.#options.intervalMs ?? this.profile.intervalMs;
    this.#interval = setInterval(() => this.#trigger('interval'), interval);
    this.#interval.unref();
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#interval !== null) clearInterval(this.#interval);
    if (this.#debounce !== null) clearTimeout(this.#debounce);
    this.#interval = this.#debounce = null;
    for (const watcher of this.#watchers.values()) watcher.close();
    this.#watchers.clear();
    await this.#running?.catch(() => undefined);
  }

  on(listener: AttestationListener): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** Untrusted until the first measurement: nothing is vouched for before it. */
  get posture(): Posture {
    return this.#state?.assessment.posture ?? 'untrusted';
  }

  get state(): AttestationState | null {
    return this.#state;
  }

  get rootOfTrust(): RootOfTrust {
    return this.#options.tpm === undefined ? 'software-only' : 'tpm2';
  }

  /** The attestation key's public key, when a TPM is in use. */
  get ak() {
    return this.#tpm?.ak ?? null;
  }

  facts(): AttestationFacts {
    const state = this.#state;
    return {
      posture: this.posture,
      mismatches: state?.assessment.mismatches.map((m) => m.path) ?? [],
      composite: state?.assessment.composite ?? '',
      referenced: state?.assessment.referenced ?? false,
      rootOfTrust: this.rootOfTrust,
      measuredAtMs: state?.measuredAtMs ?? 0,
      error: state === null ? 'ATTEST_NOT_READY' : (state.error?.code ?? null),
    };
  }

  /** For status displays: posture and what is wrong, without digests of files that match. */
  status() {
    const state = this.#state;
    return {
      posture: this.posture,
      profile: this.profile.name,
      rootOfTrust: this.rootOfTrust,
      composite: state?.assessment.composite ?? null,
      measuredAt: state === null ? null : new Date(state.measuredAtMs).toISOString(),
      files: state?.records.length ?? 0,
      referenced: state?.assessment.referenced ?? false,
      mismatches: state?.assessment.mismatches.map((m) => ({ path: m.path, reason: m.reason, critical: m.critical })) ?? [],
      error: state?.error === null || state === null ? null : { code: state.error.code, message: state.error.message },
      // The AK's public key, for enrolment (a verifier pins it with `attest verify --ak`).
      ...(this.#tpm === null ? {} : { tpm: { pcr: this.#tpm.pcr, logLength: this.#tpm.log.length, akKid: toHex(this.#tpm.ak.kid), ak: publicKeyToPem(this.#tpm.ak) } }),
    };
  }

  /**
   * New reference values from an activated bundle (null: it has none for this profile); the
   * files are measured again right away.
   */
  setReferences(references: ReferenceValues | null, bundle: { revision: number; digest: string } | null): void {
    this.#references = references;
    this.#bundle = bundle;
    if (!this.#stopped) this.#trigger('bundle');
  }

  /** Measures now (or right after the measurement in progress); resolves with the state. */
  async measureNow(trigger: MeasureTrigger = 'request'): Promise<AttestationState> {
    if (this.#running !== null) {
      this.#again = trigger;
      // The measurement in progress runs once more for this trigger before it resolves.
      await this.#running;
      return this.#state!;
    }
    const run = this.#loop(trigger);
    this.#running = run;
    try {
      await run;
    } finally {
      if (this.#running === run) this.#running = null;
    }
    return this.#state!;
  }

  /**
   * Signed evidence for a challenge: the nonce must be 8-64 bytes, new, and within the rate
   * limit (ATTEST_NONCE_INVALID / _REUSED / ATTEST_RATE_LIMITED).
   */
  async evidence(nonce: Uint8Array): Promise<Uint8Array> {
    if (this.#state === null) throw new AttestError('ATTEST_NOT_READY', 'nothing has been measured yet');
    this.#guard.admit(nonce);
    for (let attempt = 0; attempt < 3; attempt++) {
      const state: AttestationState = this.#state!;
      const base = {
        key: this.#options.key,
        deviceId: this.#options.deviceId,
        nonce,
        now: this.#now(),
        profile: this.profile.name,
        records: state.records,
        composite: fromHex(state.assessment.composite)!,
        measuredAtMs: state.measuredAtMs,
        posture: state.assessment.posture,
        mismatches: state.assessment.mismatches.map((m) => m.path),
        bundle: this.#bundle,
        agentVersion: this.#options.agentVersion,
      };
      if (this.#tpm === null) return signEvidence(base);
      const { quote, log } = await this.#tpm.quote(nonce);
      // A newer measurement may have been extended meanwhile: then quote its state instead.
      if (log.length > 0 && bytesEqual(log.at(-1)!, base.composite)) return signEvidence({ ...base, tpm: { quote, log, ak: this.#tpm.ak } });
      if (this.#state === state) break;
    }
    throw new AttestError('TPM_COMMAND_FAILED', 'the TPM does not hold the latest measurement (its extend failed); see the agent log');
  }

  async #loop(trigger: MeasureTrigger): Promise<void> {
    let next: MeasureTrigger | null = trigger;
    while (next !== null && !(this.#stopped && next !== 'start' && next !== 'request')) {
      this.#again = null;
      await this.#measureOnce(next);
      next = this.#again;
    }
  }

  #trigger(trigger: MeasureTrigger): void {
    if (this.#stopped) return;
    void this.measureNow(trigger).catch((err: unknown) => this.#problem('ATTEST_MEASURE_FAILED', String(err)));
  }

  /** A file event: measure once things are quiet for debounceMs (at most 1 s after the first event). */
  #fileEvent(): void {
    if (this.#stopped) return;
    const now = Date.now();
    if (this.#debounce === null) this.#firstEventAt = now;
    else clearTimeout(this.#debounce);
    const wait = Math.min(this.#options.debounceMs ?? 150, Math.max(0, this.#firstEventAt + MAX_DEBOUNCE_MS - now));
    this.#debounce = setTimeout(() => {
      this.#debounce = null;
      this.#trigger('watch');
    }, wait);
  }

  async #measureOnce(trigger: MeasureTrigger): Promise<void> {
    const options: MeasureOptions = {
      cacheMaxAgeMs: DEFAULT_CACHE_MAX_AGE_MS,
      ...this.#options.measure,
      root: this.#root,
      cache: this.#cache,
    };
    let records: MeasurementRecord[] = [];
    let error: AttestError | null = null;
    let assessment: Assessment;
    try {
      records = await measurePaths(await expandTargets(this.profile.measure, options), options);
      assessment = assess(records, this.profile.measure, this.#references);
    } catch (err) {
      if (!(err instanceof AttestError)) throw err;
      // A profile that cannot be measured as written vouches for nothing.
      error = err;
      assessment = { posture: 'untrusted', mismatches: [], composite: '', referenced: this.#references !== null, compositeMatches: null };
    }
    if (this.#tpm !== null && error === null) await this.#extend(fromHex(assessment.composite)!);
    const previous = this.#state;
    const state: AttestationState = { seq: ++this.#seq, trigger, measuredAtMs: this.#now(), records, assessment, error };
    this.#state = state;
    if (previous === null || changed(previous, state)) {
      this.#emit({
        kind: 'changed',
        atMs: state.measuredAtMs,
        trigger,
        previous: previous?.assessment.posture ?? null,
        posture: assessment.posture,
        previousComposite: previous?.assessment.composite ?? null,
        composite: assessment.composite,
        mismatches: assessment.mismatches,
        error: error === null ? null : { code: error.code, message: error.message },
      });
    }
    if (this.#options.watch !== false && !this.#stopped) await this.#rewatch(records).catch((err: unknown) => this.#problem('ATTEST_WATCH_FAILED', String(err)));
  }

  async #extend(composite: Uint8Array): Promise<void> {
    if (this.#extended !== null && bytesEqual(this.#extended, composite)) return;
    try {
      await this.#tpm!.extend(composite);
      this.#extended = composite;
    } catch (err) {
      this.#problem(err instanceof AttestError ? err.code : 'TPM_COMMAND_FAILED', (err as Error).message);
    }
  }

  /** Watches the measured files and the directories they are (or would be) in. */
  async #rewatch(records: readonly MeasurementRecord[]): Promise<void> {
    const dirs = new Set<string>();
    for (const entry of this.profile.measure) {
      const literal = entry.path.segments.findIndex((s) => !('literal' in s));
      const levels = entry.path.text.split('/').slice(1);
      const dirLevels = literal === -1 ? levels.slice(0, -1) : levels.slice(0, literal);
      dirs.add(await this.#existingDir(`/${dirLevels.join('/')}`));
    }
    for (const record of records) dirs.add(await this.#existingDir(path.posix.dirname(record.path)));
    const files = records.filter((r) => r.state === 'file').map((r) => hostPath(this.#root, r.path));
    const wanted = [...dirs, ...files].slice(0, MAX_WATCHES);
    const keep = new Set(wanted);
    for (const [file, watcher] of this.#watchers) {
      if (keep.has(file)) continue;
      watcher.close();
      this.#watchers.delete(file);
    }
    for (const file of wanted) {
      if (this.#watchers.has(file)) continue;
      try {
        const watcher = watch(file, { persistent: false }, () => this.#fileEvent());
        watcher.on('error', () => {
          // A watched file that was deleted or replaced: watch again after the next measurement.
          watcher.close();
          if (this.#watchers.get(file) === watcher) this.#watchers.delete(file);
          this.#fileEvent();
        });
        this.#watchers.set(file, watcher);
      } catch {
        // Vanished between measuring and watching: the directory watch or the interval covers it.
      }
    }
  }

  /** The host directory of `deviceDir`, or its nearest existing ancestor (within the root). */
  async #existingDir(deviceDir: string): Promise<string> {
    let dir = deviceDir;
    for (;;) {
      const host = hostPath(this.#root, dir);
      try {
        if ((await fsp.stat(host)).isDirectory()) return host;
      } catch {
        // not there: try the parent
      }
      if (dir === '/' || dir === '') return hostPath(this.#root, '/');
      dir = path.posix.dirname(dir);
    }
  }

  #problem(code: string, message: string): void {
    this.#emit({ kind: 'problem', atMs: this.#now(), code, message });
  }

  #emit(event: AttestationEvent): void {
    for (const listener of this.#listeners) listener(event);
  }
}

function changed(a: AttestationState, b: AttestationState): boolean {
  if (a.assessment.posture !== b.assessment.posture || a.assessment.composite !== b.assessment.composite) return true;
  if ((a.error?.code ?? null) !== (b.error?.code ?? null)) return true;
  const key = (s: AttestationState) => s.assessment.mismatches.map((m) => `${m.path}\u0000${m.reason}\u0000${m.found}`).join('\u0001');
  return key(a) !== key(b);
}
