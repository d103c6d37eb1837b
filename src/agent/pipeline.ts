// The path of one command, the shell around the pure decision (decide.ts): verify → decide →
// replay entry reserved → rate counted → held for approval → decision recorded, once per verdict
// → executor → execution recorded. Every step that refuses says why with a stable reason code,
// and nothing is executed without its decision record committed first.
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
import { type VerifiedBundle, issuerKey } from '../bundle/verify.js';
import type { GrantStore } from '../store/grants.js';
import { type PendingApprovals, type PendingCommand, PendingFullError } from '../store/pending-approvals.js';
import type { RateLimiter } from '../store/rate-limiter.js';
import type { ReplyRoute } from '../store/reply-route.js';
import { type Encodable, encodeCbor } from '../envelope/cbor.js';
import { type VerifiedCommand, COMMAND_TOPIC, type ReplayRecorder, verifyCommand, verifyCommandAsync } from '../envelope/command.js';
import { APPROVAL_TOPIC, type VerifiedApproval, verifyApproval } from '../envelope/approval.js';
import { APPROVAL_ACCEPTED_CODES } from '../envelope/approval-answer.js';
import { EnvelopeError } from '../envelope/errors.js';
import type { ReplayReserver } from '../store/replay-guard.js';
import type { TimeSource } from '../store/trusted-clock.js';
import type { UnsettledCommands } from '../store/unsettled-commands.js';
import type { EnvelopeVerifyOptions } from '../envelope/signed-claims.js';
import { type EntityUid, enforce } from '../policy/index.js';
import type { Posture } from './config.js';
import { type ApprovalHold, type DecisionFacts, type FailClosedState, type Verdict, decide } from './decide.js';
import type { ExecutionOutcome, Executor } from './executors/types.js';
import type { Metrics } from './metrics.js';
import { RefusalLog } from './refusal-log.js';
import { type CommandSource, RequestBuildError, argsToJson, buildApprovalRequest, resourceUid } from './request-context.js';

export type { FailClosedState };

export type FinalDecision = 'allow' | 'deny' | 'pending';

/** What happened to one command; the runtime turns it into a signed result. */
export interface CommandOutcome {
  /** SHA-256 of the envelope bytes (also of refused bytes, so a sender can match the result). */
  digest?: Uint8Array;
  ctiHex?: string;
  issuer?: string;
  decision: FinalDecision;
  /** Determining policy ids. */
  policies: readonly string[];
  /** Stable reason codes, e.g. NO_PERMIT, FORBIDDEN, RATE_LIMITED, ENVELOPE_EXPIRED. */
  reasons: readonly string[];
  /** executed | failed | timeout | not_executed | pending_approval | rejected */
  outcome: string;
  detail?: unknown;
  /** Expiry of the just-in-time grant the command created (APPROVED) or was allowed by (JIT_GRANT). */
  grantExpiresMs?: number;
  /** A refusal over the answer rate (refusal-log.ts): not to be answered with a signed result. */
  unanswered?: true;
}

/** What became of one approval: the approver's answer. */
export interface ApprovalAnswer {
  /** APPROVAL_COUNTED, APPROVAL_QUORUM, APPROVAL_REJECTED (accepted), or why it was refused. */
  code: string;
  /** The same, in words. */
  message: string;
  /** SHA-256 of the approval envelope. */
  approval: Uint8Array;
  /** The command the approval names, once read. */
  command?: Uint8Array;
  /** The quorum so far, where known. */
  approvals?: number;
  required?: number;
  /** Expiry of the just-in-time grant the quorum created. */
  grantExpiresMs?: number;
  /** A refusal over the answer rate (refusal-log.ts): not to be answered. */
  unanswered?: true;
}

export interface ApprovalOutcome extends ApprovalAnswer {
  /** Set when this approval (or a rejection, or expiry) settled the held command. */
  settled?: { command: PendingCommand; outcome: CommandOutcome };
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
  /** Where the result goes, stored with a command held for approval (or allowed, until it is settled). */
  reply?: ReplyRoute;
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

  /**
   * The shell around decide(): verify, decide, reserve the replay entry, count the rate, hold,
   * record the decision once, execute.
   */
  private async decideAndRun(input: CommandInput, report: OutcomeReport): Promise<CommandOutcome> {
    const bundle = this.deps.bundle();
    const now = this.deps.clock.now();
    // When trusted time is only a lower bound of the real time (the system clock reads earlier
    // than the floor), an iat ahead of it may be honest: decide() lets only a @safety action through then.
    const clockInDoubt = this.deps.clock.inDoubt();
    const refuse = (code: string, message: string) => this.refuse(input.bytes, code, message, refusalSource(input.source));
    if (bundle === null) return refuse('NO_ACTIVE_BUNDLE', 'no policy bundle is active');
    if (input.bytes.length > this.deps.limits.envelopeMaxBytes) {
      return refuse('ENVELOPE_TOO_LARGE', `${input.bytes.length} bytes exceeds ${this.deps.limits.envelopeMaxBytes}`);
    }

    let command: VerifiedCommand;
    let principal: string;
    let replayRecorded: Promise<void>;
    let verdict: Verdict;
    try {
      // The signature is checked on libuv's thread pool; the bundle and time read at receipt
      // stay the ones this command is decided by.
      command = await verifyCommandAsync(input.bytes, { ...this.verifyOptions(bundle, COMMAND_TOPIC, now), tolerateEarly: clockInDoubt });
      const issuer = bundle.issuersByKid.get(toHex(command.kid))!;
      principal = issuer.principal.key;
      verdict = decide({ deviceId: this.deps.deviceId, command, issuer, bundle, facts: this.facts(bundle, input.source, now), grants: this.deps.grants, rate: this.deps.rate });
      if (verdict.decision === 'refused') return refuse(verdict.reasons[0]!, verdict.note!);
      // Each issuer key of the bundle has its own share of the replay store: none can crowd out another.
      replayRecorded = this.deps.replay.reserve({ keyId: command.kid, cti: command.claims.cti, expMs: command.claims.expMs }, now, bundle.issuersByKid.size);
    } catch (err) {
      if (err instanceof EnvelopeError) return refuse(err.code, err.message);
      throw err;
    }
    // Awaited with the decision record below; this only keeps an early throw from leaving it unobserved.
    replayRecorded.catch(() => undefined);
    const base = { digest: command.digest, ctiHex: toHex(command.claims.cti), issuer: command.issuer };

    let decision = verdict.decision;
    let reasons = verdict.reasons;
    let note = verdict.note;
    if (decision === 'pending') {
      try {
        this.deps.pending.hold(this.held(command, input, principal, verdict.hold!, now), bundle.issuersByKid.size);
      } catch (err) {
        if (!(err instanceof PendingFullError)) throw err;
        decision = 'deny';
        reasons = [err.code];
        note = err.message;
      }
    }
    // Queued before the decision record, so it commits with it or earlier.
    if (decision !== 'deny') this.deps.rate.record(verdict.count, principal, command.claims.act, now);
    // The decision record is queued in this same turn, so it commits together with the replay entry.
    const decisionRecord = this.recordDecision(command, principal, bundle, decision, reasons, verdict, note);
    if (decision !== 'allow') {
      await Promise.all([replayRecorded, decisionRecord]);
      const outcome = decision === 'pending' ? 'pending_approval' : 'not_executed';
      // A reason the code alone does not say (e.g. RESOURCE_NOT_ON_DEVICE) goes back to the sender.
      return { ...base, decision, policies: verdict.policies, reasons, outcome, ...(verdict.note === undefined ? {} : { detail: verdict.note }) };
    }

    try {
      const unsettled = this.deps.unsettled.add({ digest: command.digest, cti: command.claims.cti, action: command.claims.act, policies: verdict.policies, reasons, reply: input.reply ?? null, decidedMs: now });
      await Promise.all([replayRecorded, decisionRecord, unsettled]);
    } catch {
      // Without a committed record (decision and replay entry) there is no execution, so nothing
      // is left unsettled either (the row is gone with a rolled-back batch, or removed here).
      this.deps.unsettled.settle(command.digest).catch(() => undefined);
      return { ...base, decision: 'deny', policies: verdict.policies, reasons: ['AUDIT_UNAVAILABLE'], outcome: 'not_executed' };
    }
    input.onRecorded?.();
    return this.execute(withGrant(base, verdict), command.claims.act, principal, command.claims.res, command.claims.args, verdict.policies, reasons, report);
  }

  /** The row a command held for approval keeps: its envelope (re-verified at quorum) and where its result goes. */
  private held(command: VerifiedCommand, input: CommandInput, principal: string, hold: ApprovalHold, now: number): PendingCommand {
    return {
      digest: command.digest,
      envelope: input.bytes,
      principal,
      action: command.claims.act,
      resource: command.claims.res,
      required: hold.required,
      approvers: hold.approvers,
      expiresMs: command.claims.expMs,
      createdMs: now,
      reply: { route: input.reply ?? null, source: input.source },
    };
  }

  /**
   * Verifies an approval envelope and counts it toward its held command's quorum. `onAnswer` is
   * told once what became of the approval (the approver's answer), as soon as that is recorded:
   * for the approval that completes a quorum, once the command is decided again and recorded,
   * before it executes. Never rejects: a failure (a store, a bug) is recorded and answered as
   * APPROVAL_FAILED.
   */
  async handleApproval(bytes: Uint8Array, onAnswer?: (answer: ApprovalAnswer) => void): Promise<ApprovalOutcome> {
    const answer = once(onAnswer);
    let outcome: ApprovalOutcome;
    try {
      outcome = await this.decideApproval(bytes, sha256(bytes), answer);
    } catch (err) {
      const message = err instanceof Error ? `${err.name}: ${err.message}` : String(err);
      await this.auditApproval(undefined, 'APPROVAL_FAILED', { message: message.slice(0, 200), digest: sha256(bytes) });
      outcome = { code: 'APPROVAL_FAILED', message: 'the agent could not decide this approval (recorded); send it again', approval: sha256(bytes) };
    }
    answer(outcome);
    return outcome;
  }

  private async decideApproval(bytes: Uint8Array, digest: Uint8Array, answer: (answer: ApprovalAnswer) => void): Promise<ApprovalOutcome> {
    const bundle = this.deps.bundle();
    const now = this.deps.clock.now();
    if (bundle === null) return this.refuseApproval(digest, 'NO_ACTIVE_BUNDLE', 'no policy bundle is active', bytes.length);
    let approval: VerifiedApproval;
    try {
      const options = this.verifyOptions(bundle, APPROVAL_TOPIC, now);
      approval = verifyApproval(bytes, options);
      // Committed before this returns: approvals come at human pace, and the count below must
      // be durable before handleApproval first yields (the transport may ack the message then).
      this.deps.replay.checkAndRecord({ keyId: approval.kid, cti: approval.claims.cti, expMs: approval.claims.expMs }, now, bundle.issuersByKid.size);
    } catch (err) {
      if (!(err instanceof EnvelopeError)) throw err;
      return this.refuseApproval(digest, err.code, err.message, bytes.length);
    }
    const approver = bundle.issuersByKid.get(toHex(approval.kid))!.principal;
    const base = { approval: digest, command: approval.claims.cmd };
    /** A verified approval's fate: recorded (with the approver and why), then answered. */
    const decided = async (code: string, message: string, extra: Partial<ApprovalOutcome> = {}, record: Record<string, Encodable> = {}): Promise<ApprovalOutcome> => {
      await this.auditApproval(approval, code, { approver: approver.key, ...(APPROVAL_ACCEPTED_CODES.has(code) ? {} : { message: message.slice(0, 200) }), ...record });
      return { ...base, code, message, ...extra };
    };
    const held = this.deps.pending.get(approval.claims.cmd);
    if (held === undefined) {
      return decided('APPROVAL_UNKNOWN_COMMAND', `no command ${toHex(approval.claims.cmd)} is held for approval on this device (never held, already settled, or expired)`);
    }
    const counts = { required: held.required };
    const reopened = this.reopen(bundle, held, now);
    if (reopened instanceof EnvelopeError) {
      const outcome = await decided('APPROVAL_EXPIRED', `the held command can no longer run (${reopened.code}: ${reopened.message}); it is denied`, counts, { code: reopened.code });
      answer(outcome);
      return { ...outcome, settled: { command: held, outcome: await this.settleDenied(held, reopened.code === 'ENVELOPE_EXPIRED' ? 'APPROVAL_EXPIRED' : reopened.code) } };
    }
    const refusal = this.approverRefusal(bundle, approver, held, reopened, now);
    if (refusal !== undefined) return decided(refusal.code, refusal.message, counts);
    if (approval.claims.dec === 'reject') {
      const outcome = await decided('APPROVAL_REJECTED', `${approver.key} rejected the command: it is denied`, counts);
      answer(outcome);
      return { ...outcome, settled: { command: held, outcome: await this.settleDenied(held, 'APPROVAL_REJECTED') } };
    }
    const counted = this.deps.pending.approve(held.digest, approver.key, now);
    switch (counted.status) {
      case 'unknown-command':
        return decided('APPROVAL_UNKNOWN_COMMAND', `no command ${toHex(held.digest)} is held for approval on this device (settled meanwhile)`);
      case 'expired':
        return decided('APPROVAL_EXPIRED', 'the held command expired before this approval counted', counts);
      case 'duplicate':
        return decided('APPROVAL_DUPLICATE', `${approver.key} has already approved this command (${counted.approvals} of ${counted.required}); an approver counts once`, { approvals: counted.approvals, required: counted.required });
      case 'counted':
        return decided('APPROVAL_COUNTED', `approval ${counted.approvals} of ${counted.required} counted; the command waits for ${counted.required - counted.approvals} more`, { approvals: counted.approvals, required: counted.required });
      case 'quorum': {
        const quorum = await decided('APPROVAL_QUORUM', `approval ${counted.approvals} of ${counted.required}: quorum reached`, { approvals: counted.approvals, required: counted.required });
        const settled = await this.settleApproved(bundle, held, now, (result) => {
          const said = result.decision === 'allow' ? 'the command is allowed and runs' : `the command was decided again and denied (${result.reasons.join(', ')})`;
          answer({ ...quorum, message: `${quorum.message}; ${said}`, ...(result.grantExpiresMs === undefined ? {} : { grantExpiresMs: result.grantExpiresMs }) });
        });
        return { ...quorum, settled: { command: held, outcome: settled } };
      }
    }
  }

  /** An approval refused before it was read (anyone can send these): counted and sampled, answered within the rate. */
  private async refuseApproval(digest: Uint8Array, code: string, message: string, size: number): Promise<ApprovalOutcome> {
    const verdict = this.refusals.refuse('mqtt:approve', code, 'decision', { approval: code, message: message.slice(0, 200), size, digest });
    await verdict.recorded;
    return { code, message, approval: digest, ...(verdict.answer ? {} : { unanswered: true as const }) };
  }

  /**
   * Refuses an approval without reading it, for a reason found outside the envelope (e.g. its
   * transport properties), recorded like every refusal.
   */
  refuseApprovalInput(bytes: Uint8Array, code: string, message: string): Promise<ApprovalOutcome> {
    return this.refuseApproval(sha256(bytes), code, message, bytes.length);
  }

  /** Denies held commands whose expiry passed before their quorum. */
  async expirePending(): Promise<Array<{ command: PendingCommand; outcome: CommandOutcome }>> {
    const now = this.deps.clock.now();
    const settled = [];
    for (const held of this.deps.pending.expired(now)) settled.push({ command: held, outcome: await this.settleDenied(held, 'APPROVAL_EXPIRED') });
    return settled;
  }

  /** A held command reached its quorum: decided again now, recorded once with its approvers, executed if allowed. */
  private async settleApproved(bundle: VerifiedBundle, held: PendingCommand, now: number, onDecided: (outcome: CommandOutcome) => void): Promise<CommandOutcome> {
    const base = { digest: held.digest, issuer: held.principal };
    // Read before the row goes: the record names every approver counted.
    const approvers = this.deps.pending.approversOf(held.digest);
    this.deps.pending.remove(held.digest);
    // The policy is asked again at quorum time: the bundle, the posture or the mode may have changed.
    const command = this.reopen(bundle, held, now);
    if (command instanceof EnvelopeError) {
      await this.auditRecord('decision', { cmd: held.digest, decision: 'deny', reasons: [command.code], via: 'approval', approvers });
      const denied: CommandOutcome = { ...base, decision: 'deny', policies: [], reasons: [command.code], outcome: 'not_executed' };
      onDecided(denied);
      return denied;
    }
    const issuer = bundle.issuersByKid.get(toHex(command.kid))!;
    const facts = this.facts(bundle, held.reply.source, now);
    const verdict = decide({ deviceId: this.deps.deviceId, command, issuer, bundle, facts, grants: this.deps.grants, rate: this.deps.rate, approved: { approvals: approvers.length } });
    const withCti = { ...base, ctiHex: toHex(command.claims.cti) };
    if (verdict.decision !== 'allow') {
      await this.recordDecision(command, held.principal, bundle, 'deny', verdict.reasons, verdict, verdict.note ?? 'denied at quorum: the policy or the device changed since the command was held', approvers);
      const denied: CommandOutcome = { ...withCti, decision: 'deny', policies: verdict.policies, reasons: verdict.reasons, outcome: 'not_executed' };
      onDecided(denied);
      return denied;
    }
    if (verdict.grant !== undefined) {
      this.deps.grants.grant({
        principal: held.principal,
        action: held.action,
        resource: held.resource,
        grantedMs: now,
        expiresMs: verdict.grant.expiresMs,
        bundleRevision: bundle.manifest.revision,
        commandDigest: held.digest,
        policies: verdict.grant.policies,
      });
    }
    const { reasons, policies } = verdict;
    const unsettled = this.deps.unsettled.add({ digest: held.digest, cti: command.claims.cti, action: held.action, policies, reasons, reply: held.reply.route, decidedMs: now });
    await Promise.all([this.recordDecision(command, held.principal, bundle, 'allow', reasons, verdict, undefined, approvers), unsettled]);
    const allowed = withGrant(withCti, verdict);
    onDecided({ ...allowed, decision: 'allow', policies, reasons, outcome: 'executing' });
    return this.execute(allowed, held.action, held.principal, held.resource, command.claims.args, policies, reasons, () => {});
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
    base: Pick<CommandOutcome, 'ctiHex' | 'issuer' | 'grantExpiresMs'> & { digest: Uint8Array },
    action: string,
    principal: string,
    resource: string,
    args: VerifiedCommand['claims']['args'],
    policies: readonly string[],
    reasons: readonly string[],
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

  /** Why `approver` may not approve `held`, in a code and in words; undefined when it may. */
  private approverRefusal(bundle: VerifiedBundle, approver: EntityUid, held: PendingCommand, command: VerifiedCommand, now: number): { code: string; message: string } | undefined {
    if (approver.key === held.principal) return { code: 'APPROVAL_SELF', message: `${approver.key} sent this command and cannot approve it` };
    if (held.approvers.length > 0) {
      const inRole = held.approvers.some((uid) => {
        try {
          return bundle.entities.isIn(approver, resourceUid(uid));
        } catch {
          return false;
        }
      });
      if (!inRole) return { code: 'APPROVAL_NOT_APPROVER', message: `${approver.key} is not in ${held.approvers.join(' or ')}, whose approval this command needs` };
    }
    // The approver must itself be permitted to approve this action on this resource.
    let request;
    try {
      request = buildApprovalRequest(approver, held, command.claims.args, this.facts(bundle, 'mqtt', now));
    } catch (err) {
      if (err instanceof RequestBuildError) return { code: err.code, message: err.message };
      throw err;
    }
    const decision = enforce(bundle.policies, bundle.entities, request, { strict: true });
    if (decision.decision === 'allow') return undefined;
    return { code: 'APPROVAL_NOT_PERMITTED', message: `no policy permits ${approver.key} to approve ${held.action} on ${held.resource} (${decision.reasonCodes.join(', ')})` };
  }

  private facts(bundle: VerifiedBundle, source: CommandSource, now: number): DecisionFacts {
    const facts: DecisionFacts = {
      nowMs: now,
      posture: this.deps.posture(),
      online: this.deps.online(),
      bundle: { revision: bundle.manifest.revision, stale: Math.floor(now / 1000) >= bundle.manifest.expires },
      source,
      failClosed: this.deps.failClosed(),
      auditFull: this.deps.auditFull?.() === true,
    };
    if (this.deps.attestation !== undefined) facts.attestation = this.deps.attestation();
    return facts;
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

  /** The one decision record of a decided command, in the area its verdict names. */
  private recordDecision(
    command: VerifiedCommand,
    principal: string,
    bundle: VerifiedBundle,
    decision: FinalDecision,
    reasons: readonly string[],
    verdict: Verdict,
    /** Why, in words (the verdict's note unless another is given). */
    note: string | undefined = verdict.note,
    /** The approvers counted, for a command decided at its quorum. */
    approvers?: readonly string[],
  ): Promise<void> {
    const body: Record<string, Encodable> = {
      cmd: command.digest,
      cti: command.claims.cti,
      kid: command.kid,
      iss: command.issuer,
      principal,
      action: command.claims.act,
      resource: command.claims.res,
      args: toEncodable(argsToJson(command.claims.args)),
      bundle: bundle.manifest.revision,
      decision,
      policies: verdict.policies,
      reasons,
      errors: verdict.errors.map((e) => ({ policy: e.policyId, code: e.code })),
    };
    if (approvers !== undefined) body.approvers = approvers;
    // The grant the approval created (APPROVED), or the one that allowed it (JIT_GRANT).
    if (verdict.grant !== undefined && decision === 'allow') body.grant = { expiresMs: verdict.grant.expiresMs, policies: verdict.grant.policies };
    if (note !== undefined) body.note = note;
    // A hold turned into a denial (queue full) goes where the hold would: both are kept out of the safety area.
    return this.deps.audit.append('decision', encodeCbor(body), { area: verdict.area }).then(() => undefined);
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

function withGrant<T extends object>(base: T, verdict: Verdict): T & { grantExpiresMs?: number } {
  return verdict.grant === undefined ? base : { ...base, grantExpiresMs: verdict.grant.expiresMs };
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
