// The path of one command: verify → replay guard → request context → policy (strict) →
// obligations (fail-closed mode, rate, approval) → audit record committed → executor →
// execution audited. Every step that refuses says why with a stable reason code, and nothing
// is executed without its decision record committed first.
//
// Commands are handled concurrently; signatures are checked off the event loop. Everything a
// command writes before it may act — its replay entry, rate events, decision record — is queued
// synchronously in one turn (the one in which its signature check returns), so it
// lands in one group commit (shared with the other commands of that turn) and the command
// waits for a single WAL flush before executing.
//
// I/O is injected: the bundle in force, the replay guard, trusted clock, audit sink, SQLite
// stores and executors. Replies (signed results) are the caller's job: this module returns what
// happened.
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import type { SignatureVerifier } from '../crypto/verifier.js';
import type { AppendArea, AuditSink } from '../audit/log.js';
import type { BundleIssuer } from '../bundle/content.js';
import type { VerifiedBundle } from '../bundle/verify.js';
import type { GrantStore } from '../store/grants.js';
import { type PendingApprovals, type PendingCommand, PendingFullError } from '../store/pending-approvals.js';
import type { RateLimiter } from '../store/rate-limiter.js';
import { type Encodable, encodeCbor } from '../envelope/cbor.js';
import { type VerifiedCommand, COMMAND_TOPIC, type ReplayRecorder, verifyCommand, verifyCommandAsync } from '../envelope/command.js';
import { APPROVAL_TOPIC, type VerifiedApproval, verifyApproval } from '../envelope/approval.js';
import { EnvelopeError } from '../envelope/errors.js';
import type { ReplayReserver } from '../store/replay-guard.js';
import type { EnvelopeVerifyOptions, ResolvedKey } from '../envelope/signed-claims.js';
import { type EntityUid, enforce, type EnforcedDecision } from '../policy/index.js';
import type { Posture } from './config.js';
import type { ExecutionOutcome, Executor } from './executors/types.js';
import type { Metrics } from './metrics.js';
import { ObligationError, type Obligations, obligationsOf } from './obligations.js';
import { type CommandSource, type ContextFacts, RequestBuildError, argsToJson, buildApprovalRequest, buildRequest, resourceUid } from './request-context.js';

export type FinalDecision = 'allow' | 'deny' | 'pending';

/** What happened to one command; the runtime turns it into a signed result. */
export interface CommandOutcome {
  /** SHA-256 of the envelope bytes (also of refused bytes, so a sender can match the result). */
  digest?: Uint8Array;
  ctiHex?: string;
  issuer?: string;
  decision: FinalDecision;
  /** Determining policy ids. */
  policies: string[];
  /** Stable reason codes, e.g. NO_PERMIT, FORBIDDEN, RATE_LIMITED, ENVELOPE_EXPIRED. */
  reasons: string[];
  /** executed | failed | timeout | not_executed | pending_approval | rejected */
  outcome: string;
  detail?: unknown;
}

export interface ApprovalOutcome {
  code: string;
  /** Set when this approval (or a rejection, or expiry) settled the held command. */
  settled?: { command: PendingCommand; outcome: CommandOutcome };
}

export interface FailClosedState {
  active: boolean;
  reason?: string;
}

export interface PipelineDeps {
  deviceId: string;
  /** The bundle in force; read once per command. */
  bundle: () => VerifiedBundle | null;
  /** reserve() for commands (group-committed with the decision), checkAndRecord() for approvals. */
  replay: ReplayReserver & ReplayRecorder;
  clock: { now(): number; observe(signedTimeMs: number): void };
  posture: () => Posture;
  online: () => boolean;
  failClosed: () => FailClosedState;
  audit: AuditSink;
  /**
   * The audit log's cap is reached (unsynced records): commands not marked @safety are denied
   * AUDIT_FULL, their denials recorded in the log's reserved area; @safety commands go on, their
   * records in the safety area (never refused for space).
   */
  auditFull?: () => boolean;
  rate: RateLimiter;
  grants: GrantStore;
  pending: PendingApprovals;
  executor: (action: string) => Executor | undefined;
  metrics: Metrics;
  limits: { envelopeMaxBytes: number; clockSkewMs: number; maxLifetimeMs: number };
  /** Signature checks; default the native verifier (commands are checked on its thread pool). */
  verifier?: SignatureVerifier;
}

export interface CommandInput {
  bytes: Uint8Array;
  source: CommandSource;
  /** Reply routing, stored with a command held for approval. */
  reply?: unknown;
  /**
   * Called once the decision is durably recorded, before any execution: the transport acks the
   * message here, so a crash before this point makes the broker redeliver it.
   */
  onRecorded?: () => void;
  /**
   * Called once with the outcome as soon as it is known. After an execution it may return a
   * promise (the reply being signed): the execution record is queued in the turn that promise
   * settles, so a reply queued to the outbox's group commit just before shares that record's
   * transaction. handleCommand itself resolves only after the record is committed.
   */
  onOutcome?: (outcome: CommandOutcome) => void | Promise<void>;
}

type OutcomeReport = (outcome: CommandOutcome) => void | Promise<void>;

/** How long an approval-created just-in-time grant lasts unless `@grant_ttl` says otherwise. */
const DEFAULT_GRANT_TTL_MS = 10 * 60_000;

export class CommandPipeline {
  constructor(private readonly deps: PipelineDeps) {}

  async handleCommand(input: CommandInput): Promise<CommandOutcome> {
    const started = performance.now();
    // Each hook runs once: onRecorded before execution (or at the end when nothing executes),
    // onOutcome as soon as the outcome is known.
    const recorded = once(input.onRecorded);
    const report: OutcomeReport = once(input.onOutcome);
    let outcome: CommandOutcome;
    try {
      outcome = await this.decideAndRun({ ...input, onRecorded: recorded }, report);
    } finally {
      recorded();
    }
    report(outcome);
    const { metrics } = this.deps;
    metrics.inc('ztedge_commands_total', 'Commands handled, by decision and outcome', { decision: outcome.decision, outcome: outcome.outcome });
    metrics.observe('ztedge_command_seconds', 'Time from receipt to outcome', (performance.now() - started) / 1000);
    return outcome;
  }

  private async decideAndRun(input: CommandInput, report: OutcomeReport): Promise<CommandOutcome> {
    const bundle = this.deps.bundle();
    const now = this.deps.clock.now();
    if (bundle === null) return this.refuse(input.bytes, 'NO_ACTIVE_BUNDLE', 'no policy bundle is active');
    if (input.bytes.length > this.deps.limits.envelopeMaxBytes) {
      return this.refuse(input.bytes, 'ENVELOPE_TOO_LARGE', `${input.bytes.length} bytes exceeds ${this.deps.limits.envelopeMaxBytes}`);
    }

    let command: VerifiedCommand;
    let replayRecorded: Promise<void>;
    try {
      // The signature is checked on libuv's thread pool; the bundle and time read at receipt
      // stay the ones this command is decided by.
      command = await verifyCommandAsync(input.bytes, this.verifyOptions(bundle, COMMAND_TOPIC, now));
      replayRecorded = this.deps.replay.reserve({ issuer: command.issuer, cti: command.claims.cti, expMs: command.claims.expMs }, now);
    } catch (err) {
      if (err instanceof EnvelopeError) return this.refuse(input.bytes, err.code, err.message);
      throw err;
    }
    // Awaited with the decision record below; this only keeps an early throw from leaving it unobserved.
    replayRecorded.catch(() => undefined);
    // The decision record is queued in this same turn, so it commits together with the replay entry.
    const recorded = (decisionRecord: Promise<void>) => Promise.all([replayRecorded, decisionRecord]);
    this.deps.clock.observe(command.claims.iatMs);
    const issuer = bundle.issuersByKid.get(toHex(command.kid))!;
    const base = { digest: command.digest, ctiHex: toHex(command.claims.cti), issuer: command.issuer };

    const evaluated = this.evaluate(bundle, issuer.principal, command, input.source, now);
    if ('refused' in evaluated) {
      await recorded(this.auditDecision(command, issuer, bundle, 'deny', [], [evaluated.refused], evaluated.message));
      return { ...base, decision: 'deny', policies: [], reasons: [evaluated.refused], outcome: 'not_executed', detail: evaluated.message };
    }
    const { decision, obligations, viaGrant } = evaluated;
    const policies = decision.determining.map((d) => d.id);

    if (decision.decision === 'deny') {
      await recorded(this.auditDecision(command, issuer, bundle, 'deny', policies, decision.reasonCodes, undefined, decision));
      return { ...base, decision: 'deny', policies, reasons: decision.reasonCodes, outcome: 'not_executed' };
    }

    const refusal = this.checkObligations(obligations, issuer.principal.key, command, now);
    if (refusal !== undefined) {
      await recorded(this.auditDecision(command, issuer, bundle, 'deny', policies, [refusal], undefined, decision));
      return { ...base, decision: 'deny', policies, reasons: [refusal], outcome: 'not_executed' };
    }

    if (obligations.approvals > 0 && !viaGrant) {
      const held: PendingCommand = {
        digest: command.digest,
        envelope: input.bytes,
        principal: issuer.principal.key,
        action: command.claims.act,
        resource: command.claims.res,
        required: obligations.approvals,
        approvers: obligations.approvers,
        expiresMs: command.claims.expMs,
        createdMs: now,
        reply: { reply: input.reply ?? null, grantTtlMs: grantTtl(decision), source: input.source },
      };
      try {
        this.deps.pending.hold(held);
      } catch (err) {
        if (!(err instanceof PendingFullError)) throw err;
        await recorded(this.auditDecision(command, issuer, bundle, 'deny', policies, ['APPROVAL_QUEUE_FULL'], err.message, decision));
        return { ...base, decision: 'deny', policies, reasons: ['APPROVAL_QUEUE_FULL'], outcome: 'not_executed' };
      }
      await recorded(this.auditDecision(command, issuer, bundle, 'pending', policies, ['APPROVAL_REQUIRED'], undefined, decision));
      return { ...base, decision: 'pending', policies, reasons: ['APPROVAL_REQUIRED'], outcome: 'pending_approval' };
    }

    const reasons = viaGrant ? ['JIT_GRANT'] : ['PERMITTED'];
    try {
      await recorded(this.auditDecision(command, issuer, bundle, 'allow', policies, reasons, undefined, decision));
    } catch {
      // Without a committed record (decision and replay entry) there is no execution.
      return { ...base, decision: 'deny', policies, reasons: ['AUDIT_UNAVAILABLE'], outcome: 'not_executed' };
    }
    input.onRecorded?.();
    return this.execute(base, command.claims.act, issuer.principal.key, command.claims.res, command.claims.args, policies, reasons, report);
  }

  /** Verifies an approval envelope and counts it toward its held command's quorum. */
  async handleApproval(bytes: Uint8Array): Promise<ApprovalOutcome> {
    const bundle = this.deps.bundle();
    const now = this.deps.clock.now();
    if (bundle === null) return { code: 'NO_ACTIVE_BUNDLE' };
    let approval: VerifiedApproval;
    try {
      const options = this.verifyOptions(bundle, APPROVAL_TOPIC, now);
      approval = verifyApproval(bytes, options);
      // Committed before this returns: approvals come at human pace, and the count below must
      // be durable before handleApproval first yields (the transport may ack the message then).
      this.deps.replay.checkAndRecord({ issuer: approval.issuer, cti: approval.claims.cti, expMs: approval.claims.expMs }, now);
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      await this.auditApproval(undefined, err.code, { message: err.message });
      return { code: err.code };
    }
    this.deps.clock.observe(approval.claims.iatMs);
    const approver = bundle.issuersByKid.get(toHex(approval.kid))!.principal;
    const held = this.deps.pending.get(approval.claims.cmd);
    if (held === undefined) {
      await this.auditApproval(approval, 'APPROVAL_UNKNOWN_COMMAND', { approver: approver.key });
      return { code: 'APPROVAL_UNKNOWN_COMMAND' };
    }
    const reopened = this.reopen(bundle, held, now);
    if (reopened instanceof EnvelopeError) {
      await this.auditApproval(approval, 'APPROVAL_EXPIRED', { approver: approver.key, code: reopened.code });
      const outcome = await this.settleDenied(held, reopened.code === 'ENVELOPE_EXPIRED' ? 'APPROVAL_EXPIRED' : reopened.code);
      return { code: 'APPROVAL_EXPIRED', settled: { command: held, outcome } };
    }
    const refusal = this.approverRefusal(bundle, approver, held, reopened, now);
    if (refusal !== undefined) {
      await this.auditApproval(approval, refusal, { approver: approver.key });
      return { code: refusal };
    }
    if (approval.claims.dec === 'reject') {
      await this.auditApproval(approval, 'APPROVAL_REJECTED', { approver: approver.key });
      const outcome = await this.settleDenied(held, 'APPROVAL_REJECTED');
      return { code: 'APPROVAL_REJECTED', settled: { command: held, outcome } };
    }
    const counted = this.deps.pending.approve(held.digest, approver.key, now);
    await this.auditApproval(approval, `APPROVAL_${counted.status.toUpperCase().replace('-', '_')}`, { approver: approver.key });
    if (counted.status !== 'quorum') return { code: `APPROVAL_${counted.status.toUpperCase().replace('-', '_')}` };
    return { code: 'APPROVAL_QUORUM', settled: { command: held, outcome: await this.settleApproved(bundle, held, now) } };
  }

  /** Denies held commands whose expiry passed before their quorum. */
  async expirePending(): Promise<Array<{ command: PendingCommand; outcome: CommandOutcome }>> {
    const now = this.deps.clock.now();
    const settled = [];
    for (const held of this.deps.pending.expired(now)) settled.push({ command: held, outcome: await this.settleDenied(held, 'APPROVAL_EXPIRED') });
    return settled;
  }

  private async settleApproved(bundle: VerifiedBundle, held: PendingCommand, now: number): Promise<CommandOutcome> {
    const base = { digest: held.digest, issuer: held.principal };
    this.deps.pending.remove(held.digest);
    // The policy is asked again at quorum time: the bundle or the posture may have changed.
    const command = this.reopen(bundle, held, now);
    if (command instanceof EnvelopeError) {
      await this.auditRecord('decision', { cmd: held.digest, decision: 'deny', reasons: [command.code], via: 'approval' });
      return { ...base, decision: 'deny', policies: [], reasons: [command.code], outcome: 'not_executed' };
    }
    const issuer = bundle.issuersByKid.get(toHex(command.kid))!;
    const source = (held.reply as { source?: CommandSource } | null)?.source ?? 'mqtt';
    const evaluated = this.evaluate(bundle, issuer.principal, command, source, now);
    if ('refused' in evaluated || evaluated.decision.decision === 'deny') {
      const reasons = 'refused' in evaluated ? [evaluated.refused] : evaluated.decision.reasonCodes;
      await this.auditDecision(command, issuer, bundle, 'deny', [], reasons, 'policy changed before quorum');
      return { ...base, ctiHex: toHex(command.claims.cti), decision: 'deny', policies: [], reasons, outcome: 'not_executed' };
    }
    const policies = evaluated.decision.determining.map((d) => d.id);
    const ttl = (held.reply as { grantTtlMs?: number } | null)?.grantTtlMs ?? DEFAULT_GRANT_TTL_MS;
    this.deps.grants.grant({
      principal: held.principal,
      action: held.action,
      resource: held.resource,
      grantedMs: now,
      expiresMs: now + ttl,
      bundleRevision: bundle.manifest.revision,
      commandDigest: held.digest,
    });
    const reasons = ['APPROVED'];
    await this.auditDecision(command, issuer, bundle, 'allow', policies, reasons, { approvers: this.deps.pending.approversOf(held.digest) });
    return this.execute({ ...base, ctiHex: toHex(command.claims.cti) }, held.action, held.principal, held.resource, command.claims.args, policies, reasons, () => {});
  }

  /** Re-verifies a held command's envelope now (its replay entry is already recorded). */
  private reopen(bundle: VerifiedBundle, held: PendingCommand, now: number): VerifiedCommand | EnvelopeError {
    try {
      return verifyCommand(held.envelope, this.verifyOptions(bundle, COMMAND_TOPIC, now));
    } catch (err) {
      if (err instanceof EnvelopeError) return err;
      throw err;
    }
  }

  private async settleDenied(held: PendingCommand, code: string): Promise<CommandOutcome> {
    this.deps.pending.remove(held.digest);
    await this.auditRecord('decision', { cmd: held.digest, principal: held.principal, action: held.action, resource: held.resource, decision: 'deny', reasons: [code] });
    return { digest: held.digest, issuer: held.principal, decision: 'deny', policies: [], reasons: [code], outcome: 'not_executed' };
  }

  private async execute(
    base: Pick<CommandOutcome, 'digest' | 'ctiHex' | 'issuer'>,
    action: string,
    principal: string,
    resource: string,
    args: VerifiedCommand['claims']['args'],
    policies: string[],
    reasons: string[],
    report: OutcomeReport,
  ): Promise<CommandOutcome> {
    const executor = this.deps.executor(action);
    let result: ExecutionOutcome;
    if (executor === undefined) result = { status: 'failed', code: 'NO_EXECUTOR', message: `no executor is configured for action ${action}` };
    else {
      try {
        result = await executor.execute({ commandId: base.ctiHex ?? '', action, principal, resource, args: argsToJson(args) });
      } catch (err) {
        result = { status: 'failed', code: 'EXECUTOR_ERROR', message: (err as Error).message };
      }
    }
    const outcome = result.status === 'ok' ? 'executed' : result.status;
    const detail = result.status === 'ok' ? result.detail : result.status === 'failed' ? { code: result.code, message: result.message } : { afterMs: result.afterMs };
    const settled: CommandOutcome = { ...base, decision: 'allow', policies, reasons: result.status === 'ok' ? reasons : [...reasons, result.status === 'failed' ? result.code : 'EXECUTION_TIMEOUT'], outcome, detail };
    // The reply is prepared first, so it and the execution record share one transaction. A
    // failing reply never keeps the record of an action that happened from being written.
    await new Promise<void>((resolve) => resolve(report(settled))).catch(() => undefined);
    const executionRecorded = this.auditRecord('execution', {
      cmd: base.digest ?? null,
      action,
      outcome,
      ...(result.status === 'failed' ? { code: result.code, message: result.message } : {}),
      ...(result.status === 'timeout' ? { afterMs: result.afterMs } : {}),
    });
    // The action already happened; a failed execution record is reported by the audit layer.
    await executionRecorded.catch(() => undefined);
    return settled;
  }

  private evaluate(
    bundle: VerifiedBundle,
    principal: EntityUid,
    command: VerifiedCommand,
    source: CommandSource,
    now: number,
  ): { decision: EnforcedDecision; obligations: Obligations; viaGrant: boolean } | { refused: string; message: string } {
    let request;
    try {
      request = buildRequest(principal, command.claims.act, command.claims.res, command.claims.args, this.facts(bundle, source, now));
    } catch (err) {
      if (err instanceof RequestBuildError) return { refused: err.code, message: err.message };
      throw err;
    }
    const decision = enforce(bundle.policies, bundle.entities, request, { strict: true });
    let viaGrant = false;
    if (decision.decision === 'deny') return { decision, obligations: NO_OBLIGATIONS, viaGrant };
    try {
      const permits = decision.determining.filter((d) => d.effect === 'permit');
      const obligations = obligationsOf(permits);
      // A live grant from an earlier approval of the same (principal, action, resource) waives a
      // new quorum. It never stands in for a permit: a bundle that drops the permit revokes it.
      if (obligations.approvals > 0) viaGrant = this.deps.grants.has(principal.key, command.claims.act, command.claims.res, now);
      return { decision, obligations, viaGrant };
    } catch (err) {
      if (err instanceof ObligationError) return { refused: err.code, message: err.message };
      throw err;
    }
  }

  private checkObligations(obligations: Obligations, principal: string, command: VerifiedCommand, now: number): string | undefined {
    const failClosed = this.deps.failClosed();
    if (failClosed.active && !obligations.safety) return 'FAIL_CLOSED';
    if (!obligations.safety && this.deps.auditFull?.() === true) return 'AUDIT_FULL';
    if (obligations.rates.length > 0) {
      const check = this.deps.rate.consume(obligations.rates, principal, command.claims.act, now);
      if (!check.allowed) return 'RATE_LIMITED';
    }
    return undefined;
  }

  private approverRefusal(bundle: VerifiedBundle, approver: EntityUid, held: PendingCommand, command: VerifiedCommand, now: number): string | undefined {
    if (approver.key === held.principal) return 'APPROVAL_SELF';
    if (held.approvers.length > 0) {
      const inRole = held.approvers.some((uid) => {
        try {
          return bundle.entities.isIn(approver, resourceUid(uid));
        } catch {
          return false;
        }
      });
      if (!inRole) return 'APPROVAL_NOT_APPROVER';
    }
    // The approver must itself be permitted to approve this action on this resource.
    let request;
    try {
      request = buildApprovalRequest(approver, held, command.claims.args, this.facts(bundle, 'mqtt', now));
    } catch (err) {
      if (err instanceof RequestBuildError) return err.code;
      throw err;
    }
    const decision = enforce(bundle.policies, bundle.entities, request, { strict: true });
    return decision.decision === 'allow' ? undefined : 'APPROVAL_NOT_PERMITTED';
  }

  private facts(bundle: VerifiedBundle, source: CommandSource, now: number): ContextFacts {
    return {
      nowMs: now,
      posture: this.deps.posture(),
      online: this.deps.online(),
      bundle: { revision: bundle.manifest.revision, stale: Math.floor(now / 1000) >= bundle.manifest.expires },
      source,
    };
  }

  private verifyOptions(bundle: VerifiedBundle, topic: string, now: number): EnvelopeVerifyOptions {
    return {
      keyResolver: (kid) => issuerKey(bundle, kid, now),
      deviceId: this.deps.deviceId,
      topic,
      now,
      clockSkewMs: this.deps.limits.clockSkewMs,
      maxLifetimeMs: this.deps.limits.maxLifetimeMs,
      maxBytes: this.deps.limits.envelopeMaxBytes,
      ...(this.deps.verifier === undefined ? {} : { verifier: this.deps.verifier }),
    };
  }

  private async refuse(bytes: Uint8Array, code: string, message: string): Promise<CommandOutcome> {
    const digest = sha256(bytes);
    await this.auditRecord('command', { rejected: code, message: message.slice(0, 200), size: bytes.length, digest }).catch(() => undefined);
    return { digest, decision: 'deny', policies: [], reasons: [code], outcome: 'rejected', detail: message };
  }

  private auditDecision(
    command: VerifiedCommand,
    issuer: BundleIssuer,
    bundle: VerifiedBundle,
    decision: FinalDecision,
    policies: string[],
    reasons: string[],
    note?: unknown,
    evaluated?: EnforcedDecision,
  ) {
    return this.auditRecord(
      'decision',
      {
        cmd: command.digest,
        cti: command.claims.cti,
        iss: command.issuer,
        principal: issuer.principal.key,
        action: command.claims.act,
        resource: command.claims.res,
        args: toEncodable(argsToJson(command.claims.args)),
        bundle: bundle.manifest.revision,
        decision,
        policies,
        reasons,
        errors: (evaluated?.errors ?? []).map((e) => ({ policy: e.policyId, code: e.code })),
        ...(note === undefined ? {} : { note: toEncodable(note) }),
      },
      decision === 'allow',
    );
  }

  private auditApproval(approval: VerifiedApproval | undefined, code: string, extra: Record<string, Encodable>) {
    return this.auditRecord('decision', {
      approval: code,
      ...(approval === undefined ? {} : { cmd: approval.claims.cmd, iss: approval.issuer, dec: approval.claims.dec }),
      ...extra,
    }).catch(() => undefined);
  }

  /**
   * While the log is full, an allowed command (only @safety ones are) and its execution are
   * recorded in the safety area, every other record in the reserve.
   */
  private async auditRecord(kind: 'command' | 'decision' | 'execution', body: Record<string, Encodable>, allowed = kind === 'execution'): Promise<void> {
    const area: AppendArea = this.deps.auditFull?.() !== true ? 'normal' : allowed ? 'safety' : 'reserve';
    await this.deps.audit.append(kind, encodeCbor(body), { area });
  }
}

function once<A extends unknown[], R>(fn: ((...args: A) => R) | undefined): (...args: A) => R | undefined {
  let called = false;
  return (...args) => {
    if (called) return undefined;
    called = true;
    return fn?.(...args);
  };
}

const NO_OBLIGATIONS: Obligations = { approvals: 0, approvers: [], rates: [], cacheTtlMs: undefined, safety: false };

function grantTtl(decision: EnforcedDecision): number {
  for (const d of decision.determining) {
    const text = d.annotations.grant_ttl;
    const m = text === undefined ? null : /^(\d{1,9})(ms|s|m|h)$/.exec(text);
    if (m) return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  }
  return DEFAULT_GRANT_TTL_MS;
}

/** A key is trusted only while its issuer entry is inside its validity window. */
function issuerKey(bundle: VerifiedBundle, kid: Uint8Array, now: number): ResolvedKey | undefined {
  const issuer = bundle.issuersByKid.get(toHex(kid));
  if (issuer === undefined) return undefined;
  if (issuer.notBeforeMs !== undefined && now < issuer.notBeforeMs) return undefined;
  if (issuer.notAfterMs !== undefined && now >= issuer.notAfterMs) return undefined;
  return issuer.key;
}

/** JSON-safe data → CBOR-encodable (drops undefined, which CBOR would need a special value for). */
function toEncodable(value: unknown): Encodable {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || typeof value === 'boolean' || typeof value === 'bigint') return value;
  if (typeof value === 'number') return Number.isInteger(value) ? value : String(value);
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map(toEncodable);
  if (typeof value === 'object') {
    const out: Record<string, Encodable> = {};
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out[k] = toEncodable(v);
    return out;
  }
  return String(value);
}
