// Refusals of inputs nobody is accountable for: anything refused before a decision (bytes that
// are no envelope, a bad signature, an unknown key, a replay, an expired or oversize envelope, a
// refused reply topic, an acknowledgement that matches no command). Anyone who can publish can
// send those, so each one must not cost a record and a signed result: that would let any
// publisher grow the disk and burn the CPU without bound.
//
// Every refusal is counted, by source and reason (metrics, and the window's summary record). Per
// window, the first few of each (source, reason) are still recorded one by one — the first
// occurrence of a new kind of refusal is always in the audit log — within a cap for the window
// as a whole. When refusals went unrecorded, one summary record at the end of the window says how
// many of each there were. Signed answers to such refusals come from a token bucket.
//
// Sources and reasons are the agent's own labels and codes, never text from the input, so the
// counters stay bounded whatever arrives.
import type { AuditKind } from '../audit/chain.js';
import type { Encodable } from '../envelope/cbor.js';
import type { Metrics } from './metrics.js';

export interface RefusalLogOptions {
  /** Appends one audit record (resolves once durable; a failure is the audit layer's to report). */
  record: (kind: AuditKind, body: Record<string, Encodable>) => Promise<void>;
  metrics: Metrics;
  /** Wall-clock milliseconds, for window boundaries and the answer bucket. Default Date.now. */
  now?: () => number;
  /** Default 60 s. */
  windowMs?: number;
  /** Refusals recorded one by one per (source, reason) and window. Default 5. */
  samplesPerReason?: number;
  /** Refusals recorded one by one per window in all. Default 100. */
  samplesPerWindow?: number;
  /** Signed answers to refusals: sustained rate per second and burst. Default 20/s, 100. */
  answersPerSecond?: number;
  answerBurst?: number;
}

export interface RefusalVerdict {
  /** Resolves once this refusal's own record (if it got one) is written; never rejects. */
  recorded: Promise<void>;
  /** Whether the refusal may be answered with a signed result now. */
  answer: boolean;
}

export class RefusalLog {
  private readonly record: RefusalLogOptions['record'];
  private readonly metrics: Metrics;
  private readonly now: () => number;
  private readonly windowMs: number;
  private readonly samplesPerReason: number;
  private readonly samplesPerWindow: number;
  private readonly answersPerSecond: number;
  private readonly answerBurst: number;
  private windowStart: number;
  /** source → reason → count, this window. */
  private counts = new Map<string, Map<string, number>>();
  private sampled = new Map<string, number>();
  private recordedInWindow = 0;
  private unrecordedInWindow = 0;
  private tokens: number;
  private tokensAt: number;

  constructor(opts: RefusalLogOptions) {
    this.record = opts.record;
    this.metrics = opts.metrics;
    this.now = opts.now ?? Date.now;
    this.windowMs = opts.windowMs ?? 60_000;
    this.samplesPerReason = opts.samplesPerReason ?? 5;
    this.samplesPerWindow = opts.samplesPerWindow ?? 100;
    this.answersPerSecond = opts.answersPerSecond ?? 20;
    this.answerBurst = opts.answerBurst ?? 100;
    this.windowStart = this.now();
    this.tokens = this.answerBurst;
    this.tokensAt = this.windowStart;
  }

  /**
   * Counts one refusal; records `body` (under `kind`) if this (source, reason) still has samples
   * left in the window, and says whether it may be answered.
   */
  refuse(source: string, reason: string, kind: AuditKind, body: Record<string, Encodable>): RefusalVerdict {
    const now = this.now();
    const summary = now - this.windowStart >= this.windowMs ? this.flush() : Promise.resolve();
    this.metrics.inc('ztedge_refusals_total', 'Inputs refused before a decision, by source and reason', { source, reason });
    let reasons = this.counts.get(source);
    if (reasons === undefined) this.counts.set(source, (reasons = new Map()));
    reasons.set(reason, (reasons.get(reason) ?? 0) + 1);
    const key = `${source} ${reason}`;
    const samples = this.sampled.get(key) ?? 0;
    let recorded = summary;
    if (samples < this.samplesPerReason && this.recordedInWindow < this.samplesPerWindow) {
      this.sampled.set(key, samples + 1);
      this.recordedInWindow++;
      recorded = Promise.all([summary, this.record(kind, { ...body, source })]).then(
        () => undefined,
        () => undefined,
      );
    } else {
      this.unrecordedInWindow++;
      this.metrics.inc('ztedge_refusals_unrecorded_total', 'Refusals counted in a summary instead of a record of their own', { source });
    }
    return { recorded, answer: this.takeAnswerToken(now) };
  }

  /**
   * Ends the window: if any refusal in it went without a record of its own, writes one summary
   * record of them all (counts by source and reason). Called when a window has passed, by the
   * agent's timer, and at stop.
   */
  flush(): Promise<void> {
    const counts = this.counts;
    const unrecorded = this.unrecordedInWindow;
    const body: Record<string, Encodable> = {
      refusals: new Map([...counts].map(([source, reasons]) => [source, new Map(reasons)])),
      recorded: this.recordedInWindow,
      unrecorded,
      fromMs: this.windowStart,
      toMs: this.now(),
    };
    this.windowStart = this.now();
    this.counts = new Map();
    this.sampled = new Map();
    this.recordedInWindow = 0;
    this.unrecordedInWindow = 0;
    if (unrecorded === 0) return Promise.resolve();
    return this.record('command', body).catch(() => undefined);
  }

  private takeAnswerToken(now: number): boolean {
    const elapsed = Math.max(0, now - this.tokensAt);
    this.tokensAt = now;
    this.tokens = Math.min(this.answerBurst, this.tokens + (elapsed / 1000) * this.answersPerSecond);
    if (this.tokens < 1) {
      this.metrics.inc('ztedge_refusals_unanswered_total', 'Refusals not answered with a signed result (answer rate limit)');
      return false;
    }
    this.tokens -= 1;
    return true;
  }
}
