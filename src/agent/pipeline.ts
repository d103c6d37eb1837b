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
import type { AttestationFacts } from '../attest/service.js';
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import type { SignatureVerifier } from '../crypto/verifier.js';
import type { AuditKind } from '../audit/chain.js';
import { type AppendArea, AuditError, type AuditSink } from '../audit/log.js';
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
import type { TimeSource } from '../store/trusted-clock.js';
import type { UnsettledCommands } from '../store/unsettled-commands.js';
import type { EnvelopeVerifyOptions, ResolvedKey } from '../envelope/signed-claims.js';
import { type EntityUid, enforce, type EnforcedDecision } from '../policy/index.js';
import type { Posture } from './config.js';
import type { ExecutionOutcome, Executor } from './executors/types.js';
import type { Metrics } from './metrics.js';
import { ObligationError, type Obligations, obligationsOf } from './obligations.js';
import { RefusalLog } from './refusal-log.js';
import { type CommandSource, type ContextFacts, RequestBuildError, argsToJson, buildApprovalRequest, buildRequest, isHostedOn, resourceUid } from './request-context.js';

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
  /** A refusal over the answer rate (refusal-log.ts): not to be answered with a signed result. */
  unanswered?: true;
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
  /**
   * Trusted time, read-only: nothing a command or an approval claims moves it (a key holder could
   * otherwise push it forward until honest commands expire).
   */
  clock: TimeSource;
  posture: () => Posture;
  /** `context.attestation`, when the device measures itself. */
  attestation?: () => AttestationFacts;
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
  /** Where refusals before a decision are counted and sampled; default one on `audit` and `metrics`. */
  refusals?: RefusalLog;
  /**
   * Commands allowed whose execution is not recorded yet: added with the allow record, settled
   * with the execution record (both on the group commit), so a crash leaves exactly those.
   */
  unsettled: Pick<UnsettledCommands, 'add' | 'settle'>;
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
  readonly refusals: RefusalLog;

  constructor(private readonly deps: PipelineDeps) {
    this.refusals = deps.refusals ?? new RefusalLog({ record: (kind, body) => this.auditRecord(kind, body), metrics: deps.metrics });
  }

  async handleCommand(input: CommandInput): Promise<CommandOutcome> {
    const started = performance.now();
    // Each hook runs once: onRecorded before execution (or at the end when nothing executes),
    // onOutcome as soon as the outcome is known.
    const recorded = once(input.onRecorded);
    const report: OutcomeReport = once(input.onOutcome);
    let outcome: CommandOutcome;
    try {
      outcome = await this.decideAndRun({ ...input, onRecorded: recorded }, report);
    } catch (err) {
      // Whatever failed (a store, the audit log, a bug), the sender gets a denial that says so
      // and a record is attempted; nothing was executed (execution is past every throw).
      outcome = await this.failed(input.bytes, err);
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
    // When trusted time is only a lower bound of the real time (the system clock reads earlier
    // than the floor), an iat ahead of it may be honest: only a @safety action is let through then.
    const clockInDoubt = this.deps.clock.inDoubt();
    const refuse = (code: string, message: string) => this.refuse(input.bytes, code, message, refusalSource(input.source));
    if (bundle === null) return refuse('NO_ACTIVE_BUNDLE', 'no policy bundle is active');
    if (input.bytes.length > this.deps.limits.envelopeMaxBytes) {
      return refuse('ENVELOPE_TOO_LARGE', `${input.bytes.length} bytes exceeds ${this.deps.limits.envelopeMaxBytes}`);
    }

    let command: VerifiedCommand;
    let replayRecorded: Promise<void>;
    try {
      // The signature is checked on libuv's thread pool; the bundle and time read at receipt
      // stay the ones this command is decided by.
      command = await verifyCommandAsync(input.bytes, { ...this.verifyOptions(bundle, COMMAND_TOPIC, now), tolerateEarly: clockInDoubt });
      if (command.early !== undefined && !this.isSafetyAction(bundle, command, input.source, now)) {
        return refuse(command.early.code, `${command.early.message} (trusted time is in doubt; only @safety actions are let through)`);
      }
      // Each issuer key of the bundle has its own share of the replay store: none can crowd out another.
      replayRecorded = this.deps.replay.reserve({ keyId: command.kid, cti: command.claims.cti, expMs: command.claims.expMs }, now, bundle.issuersByKid.size);
    } catch (err) {
      if (err instanceof EnvelopeError) return refuse(err.code, err.message);
      throw err;
    }
    // Awaited with the decision record below; this only keeps an early throw from leaving it unobserved.
    replayRecorded.catch(() => undefined);
    // The decision record is queued in this same turn, so it commits together with the replay entry.
    const recorded = (decisionRecord: Promise<void>) => Promise.all([replayRecorded, decisionRecord]);
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
    if (command.early !== undefined) reasons.push('CLOCK_IN_DOUBT');
    try {
      const unsettled = this.deps.unsettled.add({ digest: command.digest, cti: command.claims.cti, action: command.claims.act, policies, reasons, reply: input.reply ?? null, decidedMs: now });
      await Promise.all([recorded(this.auditDecision(command, issuer, bundle, 'allow', policies, reasons, undefined, decision)), unsettled]);
    } catch {
      // Without a committed record (decision and replay entry) there is no execution, so nothing
      // is left unsettled either (the row is gone with a rolled-back batch, or removed here).
      this.deps.unsettled.settle(command.digest).catch(() => undefined);
      return { ...base, decision: 'deny', policies, reasons: ['AUDIT_UNAVAILABLE'], outcome: 'not_executed' };
    }
    input.onRecorded?.();
    return this.execute(base, command.claims.act, issuer.principal.key, command.claims.res, command.claims.args, policies, reasons, report);
  }

  /**
   * Verifies an approval envelope and counts it toward its held command's quorum. Never rejects:
   * a failure (a store, a bug) is recorded and answered as APPROVAL_FAILED.
   */
  async handleApproval(bytes: Uint8Array): Promise<ApprovalOutcome> {
    try {
      return await this.decideApproval(bytes);
    } catch (err) {
      const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      await this.auditApproval(undefined, 'APPROVAL_FAILED', { message: message.slice(0, 200), digest: sha256(bytes) });
      return { code: 'APPROVAL_FAILED' };
    }
  }

  private async decideApproval(bytes: Uint8Array): Promise<ApprovalOutcome> {
    const bundle = this.deps.bundle();
    const now = this.deps.clock.now();
    if (bundle === null) {
      await this.refusals.refuse('mqtt:approve', 'NO_ACTIVE_BUNDLE', 'decision', { approval: 'NO_ACTIVE_BUNDLE', digest: sha256(bytes) }).recorded;
      return { code: 'NO_ACTIVE_BUNDLE' };
    }
    let approval: VerifiedApproval;
    try {
      const options = this.verifyOptions(bundle, APPROVAL_TOPIC, now);
      approval = verifyApproval(bytes, options);
      // Committed before this returns: approvals come at human pace, and the count below must
      // be durable before handleApproval first yields (the transport may ack the message then).
      this.deps.replay.checkAndRecord({ keyId: approval.kid, cti: approval.claims.cti, expMs: approval.claims.expMs }, now, bundle.issuersByKid.size);
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      // Before verification (or a replay): anyone can send these, so they are counted and sampled.
      const body = { approval: err.code, message: err.message.slice(0, 200), size: bytes.length, digest: sha256(bytes) };
      await this.refusals.refuse('mqtt:approve', err.code, 'decision', body).recorded;
      return { code: err.code };
    }
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
    const reply = (held.reply as { reply?: unknown } | null)?.reply ?? null;
    const unsettled = this.deps.unsettled.add({ digest: held.digest, cti: command.claims.cti, action: held.action, policies, reasons, reply, decidedMs: now });
    await Promise.all([this.auditDecision(command, issuer, bundle, 'allow', policies, reasons, { approvers: this.deps.pending.approversOf(held.digest) }), unsettled]);
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
    base: Pick<CommandOutcome, 'ctiHex' | 'issuer'> & { digest: Uint8Array },
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
        result = await executor.execute({ commandId: toHex(base.digest!), action, principal, resource, args: argsToJson(args) });
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
      cmd: base.digest,
      action,
      outcome,
      ...(result.status === 'failed' ? { code: result.code, message: result.message } : {}),
      ...(result.status === 'timeout' ? { afterMs: result.afterMs } : {}),
    });
    // Same transaction: settled exactly when its execution record is durable.
    const settledRecorded = this.deps.unsettled.settle(base.digest);
    // The action already happened; a failed execution record is reported by the audit layer.
    await Promise.all([executionRecorded.catch(() => undefined), settledRecorded.catch(() => undefined)]);
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
      if (!isHostedOn(bundle.entities, resourceUid(command.claims.res), this.deps.deviceId)) {
        return {
          refused: 'RESOURCE_NOT_ON_DEVICE',
          message: `${command.claims.res.slice(0, 200)} is neither Device::"${this.deps.deviceId}" nor declared in the bundle as hosted on it`,
        };
      }
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

  /** Whether the command would be allowed now, by permits that are all `@safety`. */
  private isSafetyAction(bundle: VerifiedBundle, command: VerifiedCommand, source: CommandSource, now: number): boolean {
    const issuer = bundle.issuersByKid.get(toHex(command.kid))!;
    const evaluated = this.evaluate(bundle, issuer.principal, command, source, now);
    return !('refused' in evaluated) && evaluated.decision.decision === 'allow' && evaluated.obligations.safety;
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
      ...(this.deps.attestation === undefined ? {} : { attestation: this.deps.attestation() }),
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

  /**
   * Refuses an input without deciding it, for a reason found outside the envelope (e.g. its
   * transport properties), recorded like every refusal.
   */
  refuseInput(bytes: Uint8Array, code: string, message: string, source: CommandSource): Promise<CommandOutcome> {
    this.deps.metrics.inc('ztedge_commands_total', 'Commands handled, by decision and outcome', { decision: 'deny', outcome: 'rejected' });
    return this.refuse(bytes, code, message, refusalSource(source));
  }

  /**
   * Records a message cut at its topic's size cap before any of it was read; says whether it may
   * be answered.
   */
  async recordOversize(topic: string, bytes: number, limit: number): Promise<boolean> {
    const code = topic === COMMAND_TOPIC ? 'ENVELOPE_TOO_LARGE' : 'MESSAGE_TOO_LARGE';
    const verdict = this.refusals.refuse(`mqtt:${topic}`, code, 'command', { rejected: code, oversize: topic, bytes, limit });
    await verdict.recorded;
    return verdict.answer;
  }

  private async failed(bytes: Uint8Array, err: unknown): Promise<CommandOutcome> {
    const code = err instanceof AuditError ? 'AUDIT_UNAVAILABLE' : 'INTERNAL_ERROR';
    this.deps.metrics.inc('ztedge_command_failures_total', 'Commands that could not be decided, by reason', { code });
    const digest = sha256(bytes);
    const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
    await this.auditRecord('command', { failed: code, message: message.slice(0, 200), size: bytes.length, digest }).catch(() => undefined);
    return { digest, decision: 'deny', policies: [], reasons: [code], outcome: 'not_executed' };
  }

  /** A refusal before any decision: counted, sampled into the audit log, answered within the rate. */
  private async refuse(bytes: Uint8Array, code: string, message: string, source: string): Promise<CommandOutcome> {
    const digest = sha256(bytes);
    const verdict = this.refusals.refuse(source, code, 'command', { rejected: code, message: message.slice(0, 200), size: bytes.length, digest });
    await verdict.recorded;
    return { digest, decision: 'deny', policies: [], reasons: [code], outcome: 'rejected', detail: message, ...(verdict.answer ? {} : { unanswered: true as const }) };
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
        kid: command.kid,
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
  private async auditRecord(kind: AuditKind, body: Record<string, Encodable>, allowed = kind === 'execution'): Promise<void> {
    const area: AppendArea = this.deps.auditFull?.() !== true ? 'normal' : allowed ? 'safety' : 'reserve';
    await this.deps.audit.append(kind, encodeCbor(body), { area });
  }
}

/** The label refusals of commands are counted under. */
function refusalSource(source: CommandSource): string {
  return source === 'mqtt' ? 'mqtt:cmd' : source;
}

function once<A extends unknown[], R>(fn: ((...args: A) => R) | undefined): (...args: A) => R | undefined {
  let called = false;
  return (...args) => {
    if (called) return undefined;
    called = true;
    return fn?.(...args);
  };
}

const NO_OBLIGATIONS: Obligations = { approvals: 0, approvers: [], rates: [], safety: false };

function grantTtl(decision: EnforcedDecision): number {
  for (const d of decision.determining) {
    const text = d.annotations.grant_ttl;
    const m = text === undefined ? null : /^(\d{1,9})(ms|s|m|h)$/.exec(text);
    if (m) return Number(m[1]) * { ms: 1, s: 1000, m: 60_000, h: 3_600_000 }[m[2] as 'ms' | 's' | 'm' | 'h'];
  }
  return DEFAULT_GRANT_TTL_MS;
}

/**
 * A key is trusted only while its issuer entry is inside its validity window, and only for its
 * principal: an envelope's iss must be that principal (or absent).
 */
function issuerKey(bundle: VerifiedBundle, kid: Uint8Array, now: number): ResolvedKey | undefined {
  const issuer = bundle.issuersByKid.get(toHex(kid));
  if (issuer === undefined) return undefined;
  if (issuer.notBeforeMs !== undefined && now < issuer.notBeforeMs) return undefined;
  if (issuer.notAfterMs !== undefined && now >= issuer.notAfterMs) return undefined;
  return { key: issuer.key, issuer: issuer.principal.key };
}

/** JSON-safe data → CBOR-encodable (drops undefined, which CBOR would need a special value for). */
function toEncodable(value: unknown): Encodable {
  if (value === undefined || value === null) return null;
  if (typeof value === 'string' || typeof value === 'boolean' || typeof value === 'bigint') return value;
  if (typeof value === 'number') return Number.isInteger(value) ? value : String(value);
  if (value instanceof Uint8Array) return value;
  if (Array.isArray(value)) return value.map(toEncodable);
  if (typeof value === 'object') {
    // A map, not an object: a key such as "__proto__" stays a key.
    const out = new Map<string, Encodable>();
    for (const [k, v] of Object.entries(value)) if (v !== undefined) out.set(k, toEncodable(v));
    return out;
  }
  return String(value);
}
