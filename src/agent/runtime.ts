// The running agent: wires configuration, keys, the state database, the bundle manager, the
// command pipeline, the MQTT link with its durable outbox, executors and the local HTTP API,
// and owns their lifecycle. Everything decided here is imperative shell; the decisions themselves
// live in the pure modules it calls.
//
// The MQTT link hands over one message at a time and reads no further packets (PUBACKs and
// execution acknowledgements included) until the handler returns. So handlers return as soon as
// what must be durable is durable — a command's decision record, an approval's count — and
// execution, which waits for the controller's acknowledgement over the same link, runs after.
import fs from 'node:fs';
import type { Server as HttpServer } from 'node:http';
import path from 'node:path';
import type { ServerType } from '@hono/node-server';
import { serve } from '@hono/node-server';
import { SqliteAuditLog } from '../audit/log.js';
import { AuditSync, type SyncTransport } from '../audit/sync.js';
import { HttpsSyncTransport } from '../transport/audit-https.js';
import { MqttSyncTransport, auditAckTopic } from '../transport/audit-mqtt.js';
import { BundleManager, type BundleEvent, bundleEventRecord } from '../bundle/activation.js';
import { BundleError } from '../bundle/errors.js';
import { watchBundleFile, type BundleFileWatcher } from '../bundle/file-source.js';
import { BundleStore } from '../bundle/store.js';
import { type Grant, GrantStore } from '../store/grants.js';
import { type PendingCommand, PendingApprovals } from '../store/pending-approvals.js';
import { RateLimiter } from '../store/rate-limiter.js';
import { UnsettledCommands } from '../store/unsettled-commands.js';
import type { ReplyRoute } from '../store/reply-route.js';
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { readPrivateKeyFile, readPublicKeyFile } from '../crypto/key-files.js';
import type { PrivateKey, PublicKey } from '../crypto/keys.js';
import { encodeCbor } from '../envelope/cbor.js';
import { ReplayGuard } from '../store/replay-guard.js';
import { RESULT_TOPIC, signResultAsync } from '../envelope/result.js';
import { signApprovalAnswerAsync } from '../envelope/approval-answer.js';
import { TrustedClock } from '../store/trusted-clock.js';
import { MqttLink, type InboundMessage, type OversizeReport } from '../transport/mqtt-link.js';
import { Outbox } from '../transport/outbox.js';
import { deviceTopics, type DeviceTopics } from '../transport/topics.js';
import { type ApprovalsView, type AttestAnswer, createApi, type DecideResult, type Readiness } from '../api/app.js';
import { encodeRefusal } from '../attest/challenge.js';
import { referencesFor } from '../attest/compare.js';
import { AttestError } from '../attest/errors.js';
import { loadProfile, loadShippedProfile } from '../attest/profile.js';
import { type AttestationEvent, AttestationService } from '../attest/service.js';
import { answerClientErrors } from '../api/client-errors.js';
import { type AgentConfig, ConfigError, type Posture } from './config.js';
import type { LogLevel } from './config-options.js';
import { ExecExecutor } from './executors/exec.js';
import { HttpExecutor } from './executors/http.js';
import { MqttAckRouter, MqttExecutor } from './executors/mqtt.js';
import { type Executor, MAX_EXECUTOR_REPLY_BYTES } from './executors/types.js';
import { Metrics } from './metrics.js';
import { type FirstArrival, RecentResults } from './recent-results.js';
import { type ApprovalAnswer, type CommandOutcome, CommandPipeline, type FailClosedState } from './pipeline.js';
import { GroupCommit } from '../store/group-commit.js';
import { openStateDb, type Database } from '../store/state-db.js';
import { StateDirLock } from '../store/state-lock.js';
import { readAdminToken } from './admin-token.js';
import { permittedActions } from './permitted-actions.js';
import { bundleStoreDir, stateDbPath } from './state-dir.js';
import { AGENT_VERSION } from '../version.js';

/** How long stop() waits for commands in progress (an execution waits for its controller). */
const DEFAULT_DRAIN_MS = 10_000;
/** Results kept to answer repeats of a command (recent-results.ts). */
const RECENT_RESULTS = 4096;
/** How often the summary of refusals that went without a record of their own is written. */
const REFUSAL_WINDOW_MS = 60_000;
/** Longest MQTT 5 correlation data echoed on a result (the outbox's bound). */
const MAX_CORRELATION_BYTES = 1024;

export interface AgentLogger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

/** One JSON object per event, one per line; never secrets (keys, passwords, tokens are never passed in). */
export function jsonLogger(writeLine: (line: string) => void): AgentLogger {
  const line = (level: string, message: string, fields?: Record<string, unknown>) =>
    writeLine(JSON.stringify({ level, time: new Date().toISOString(), message, ...fields }));
  return { info: (message, fields) => line('info', message, fields), warn: (message, fields) => line('warn', message, fields) };
}

/** `logger` without the lines below `level` (the `logLevel` option). */
export function atLevel(logger: AgentLogger, level: LogLevel): AgentLogger {
  return level === 'warn' ? { info: () => {}, warn: (message, fields) => logger.warn(message, fields) } : logger;
}

export const stdoutLogger: AgentLogger = jsonLogger((line) => process.stdout.write(`${line}\n`));

export interface AgentOptions {
  config: AgentConfig;
  logger?: AgentLogger;
  /** Wall clock; tests inject one. */
  now?: () => number;
}

export class Agent {
  readonly config: AgentConfig;
  readonly metrics = new Metrics();
  readonly topics: DeviceTopics;
  readonly pipeline: CommandPipeline;
  readonly bundles: BundleManager;
  readonly audit: SqliteAuditLog;
  /** Measures this device and answers challenges; null when attestation is not configured. */
  readonly attestation: AttestationService | null;
  private readonly logger: AgentLogger;
  private readonly db: Database;
  /** This process's hold on the state directory, released by stop(). */
  private readonly lock: StateDirLock;
  private readonly adminToken: Uint8Array | undefined;
  /** The readiness last logged, so that each change is logged once. */
  private readinessLogged = '';
  /** One transaction per turn for the replay guard, audit log, rate limiter and outbox. */
  private readonly commits: GroupCommit;
  private readonly deviceKey: PrivateKey;
  private readonly clock: TrustedClock;
  private readonly replay: ReplayGuard;
  private readonly rate: RateLimiter;
  private readonly grants: GrantStore;
  private readonly pending: PendingApprovals;
  private readonly unsettled: UnsettledCommands;
  private readonly ackRouter = new MqttAckRouter();
  private readonly executors = new Map<string, Executor>();
  private readonly failClosed: FailClosedState = { active: false };
  private posture: Posture;
  private link: MqttLink | null = null;
  /**
   * The controller's side (exec/<action> out, exec/+/ack in) on a connection of its own: on the
   * command connection an ack would queue at the broker behind every command not yet read, so
   * under a backlog (or once the broker drops queued messages at its limit) executions that ran
   * would time out. Only when an executor is of kind mqtt.
   */
  private execLink: MqttLink | null = null;
  private outbox: Outbox | null = null;
  /** Upstream sync of the audit log (audit.sync), its transport, and the collector key it trusts. */
  private sync: AuditSync | null = null;
  private syncTransport: (SyncTransport & { close(): void }) | null = null;
  private readonly collectorKey: PublicKey | null;
  private server: ServerType | null = null;
  private watcher: BundleFileWatcher | null = null;
  private timers: NodeJS.Timeout[] = [];
  private readonly inFlight = new Set<Promise<unknown>>();
  private readonly recent = new RecentResults(RECENT_RESULTS);
  /** Inbound messages held back while stopping; failed at the end so the broker keeps them. */
  private readonly parked: Array<() => void> = [];
  private started = false;
  private stopping = false;

  constructor(opts: AgentOptions) {
    this.config = opts.config;
    this.logger = atLevel(opts.logger ?? stdoutLogger, opts.config.logLevel);
    const now = opts.now ?? Date.now;
    const { config } = this;
    this.posture = config.posture;
    this.topics = deviceTopics({ site: config.device.site, device: config.device.id, prefix: config.broker.topicPrefix, replyPrefix: config.broker.replyTopicPrefix });
    this.deviceKey = readPrivateKeyFile(config.deviceKey);
    const roots = config.roots.keys.map((file) => ({ publicKey: readPublicKeyFile(file) }));
    this.adminToken = config.http.adminTokenFile === undefined ? undefined : readAdminToken(config.http.adminTokenFile);
    this.collectorKey = config.audit.sync === undefined ? null : readPublicKeyFile(config.audit.sync.collectorKey);

    // The state directory is locked before anything in it is opened: a second agent on it stops here.
    performance.mark('ztedge:keys-read');
    fs.mkdirSync(config.stateDir, { recursive: true, mode: 0o700 });
    this.lock = StateDirLock.acquire(config.stateDir, 'ztedge run');
    try {
      this.db = openStateDb(stateDbPath(config.stateDir));
    } catch (err) {
      this.lock.release();
      throw err;
    }
    performance.mark('ztedge:state-opened');
    this.clock = new TrustedClock(this.db, now);
    this.commits = new GroupCommit(this.db);
    this.replay = new ReplayGuard(this.db, { clockSkewMs: config.limits.clockSkewMs, commits: this.commits });
    this.audit = new SqliteAuditLog(this.db, {
      now: () => this.clock.now(),
      commits: this.commits,
      checkpoints: { key: this.deviceKey, device: config.device.id, origin: `ztedge/${config.device.site}/${config.device.id}`, everyRecords: config.audit.checkpointEvery, everyMs: config.audit.checkpointIntervalMs },
      cap: { capBytes: config.audit.capBytes, reserveBytes: config.audit.reserveBytes },
      retentionMs: config.audit.retentionMs,
    });
    this.rate = new RateLimiter(this.db, { commits: this.commits });
    this.grants = new GrantStore(this.db);
    this.pending = new PendingApprovals(this.db, config.limits.maxPendingApprovals);
    this.unsettled = new UnsettledCommands(this.db, { commits: this.commits });
    this.bundles = new BundleManager({
      store: new BundleStore(bundleStoreDir(config.stateDir), { maxBundleBytes: config.limits.bundleMaxBytes }),
      trust: {
        roots,
        threshold: config.roots.threshold,
        device: config.device.id,
        site: config.device.site,
        profile: config.device.profile,
        agentVersion: AGENT_VERSION,
        maxBytes: config.limits.bundleMaxBytes,
      },
      clock: this.clock,
    });
    this.bundles.on((event) => this.onBundleEvent(event));
    this.attestation = config.attestation === undefined ? null : this.createAttestation();

    this.pipeline = new CommandPipeline({
      deviceId: config.device.id,
      bundle: () => this.bundles.current,
      replay: this.replay,
      clock: this.clock,
      posture: () => this.posture,
      ...(this.attestation === null ? {} : { attestation: () => this.attestation!.facts() }),
      online: () => this.link?.online ?? false,
      failClosed: () => this.failClosed,
      audit: {
        // A failing audit store switches the agent to fail-closed mode until appends succeed again.
        // A full log is not a failing one: the pipeline denies AUDIT_FULL itself (auditFull).
        append: (kind, body, options) =>
          this.audit.append(kind, body, options).then(
            (ref) => {
              if (this.failClosed.active && this.failClosed.reason === 'AUDIT_WRITE_FAILED') {
                this.failClosed.active = false;
                this.noteReadiness();
              }
              return ref;
            },
            (err: unknown) => {
              if ((err as { code?: unknown }).code !== 'AUDIT_FULL') {
                this.failClosed.active = true;
                this.failClosed.reason = 'AUDIT_WRITE_FAILED';
              }
              this.noteReadiness();
              throw err;
            },
          ),
      },
      auditFull: () => this.audit.capacity().full,
      rate: this.rate,
      grants: this.grants,
      pending: this.pending,
      unsettled: this.unsettled,
      executor: (action) => this.executors.get(action),
      metrics: this.metrics,
      limits: config.limits,
    });
    this.metrics.collect(() => {
      const status = this.bundles.status();
      this.metrics.set('ztedge_bundle_revision', 'Active bundle revision (0: none)', status.active?.revision ?? 0);
      this.metrics.set('ztedge_bundle_stale', 'Active bundle is past its expiry', status.active?.stale ? 1 : 0);
      this.metrics.set('ztedge_pending_approvals', 'Commands held for approval', this.pending.size());
      this.metrics.set('ztedge_audit_head_seq', 'Sequence number of the newest audit record', this.audit.head().seq);
      this.metrics.set('ztedge_fail_closed', 'Fail-closed mode (only @safety actions pass)', this.failClosed.active ? 1 : 0);
      this.metrics.set('ztedge_mqtt_online', 'Connected to the broker', this.link?.online ? 1 : 0);
      this.collectSyncMetrics();
    });
  }

  /**
   * Loads the active bundle, opens the API, connects to the broker. Resolves when listening (the
   * broker may still be unreachable: the link keeps trying). On failure everything started is
   * stopped again before the error is thrown.
   */
  async start(): Promise<void> {
    if (this.started) return;
    this.started = true;
    try {
      await this.startParts();
    } catch (err) {
      await this.stop().catch(() => undefined);
      throw err;
    }
  }

  private async startParts(): Promise<void> {
    const { config } = this;
    await this.auditSystem({ event: 'start', version: AGENT_VERSION, device: config.device.id });
    await this.audit.checkpoint(); // signs what a crash may have left unsigned, and the start
    performance.mark('ztedge:audit-started');
    this.bundles.start();
    performance.mark('ztedge:bundle-activated');

    // The firmware profile's executors are defaults for actions the configuration does not name.
    const executorSpecs = Object.entries({ ...this.attestation?.profile.executors, ...config.executors });
    if (config.broker.url !== null) this.createMqtt(config.broker.url, executorSpecs.some(([, spec]) => spec.kind === 'mqtt'));
    if (config.audit.sync !== undefined) this.createSync(config.audit.sync);
    for (const [action, spec] of executorSpecs) {
      if (spec.kind === 'exec') this.executors.set(action, new ExecExecutor(spec.command, spec.timeoutMs));
      else if (spec.kind === 'http') this.executors.set(action, new HttpExecutor(spec.url, spec.timeoutMs));
      else if (spec.kind === 'mqtt' && this.execLink !== null) {
        this.executors.set(action, new MqttExecutor(this.execLink, this.ackRouter, this.topics.exec(action), spec.timeoutMs));
      }
    }
    // Before anything new arrives: commands a crash left between decision and execution record.
    await this.reconcile();
    if (config.bundleFile !== undefined) {
      const onError = (err: unknown) => this.logger.warn('bundle file check failed', { error: String(err) });
      this.watcher = watchBundleFile(config.bundleFile, this.bundles, { onError });
      // Looked at once now, so a bundle placed there before the start is enforced from the start.
      await this.watcher.check().catch(onError);
    }
    performance.mark('ztedge:bundle-file-checked');
    // Measured before the first command is taken, against the active bundle's references.
    await this.attestation?.start();
    performance.mark('ztedge:attestation-measured');
    // The API first: a port already in use stops the start before the agent appears on the broker.
    if (config.http.enabled) await this.startHttp();
    performance.mark('ztedge:http-listening');
    this.outbox?.start();
    this.execLink?.start();
    this.link?.start();
    this.sync?.start();
    this.timers.push(
      setInterval(() => {
        this.track(this.expirePending(), 'expiring held commands failed');
        this.noteReadiness();
      }, 1000),
    );
    this.timers.push(setInterval(() => this.housekeeping(), 60_000));
    this.timers.push(setInterval(() => this.track(this.pipeline.refusals.flush(), 'refusal summary failed'), REFUSAL_WINDOW_MS));
    for (const t of this.timers) t.unref();
    this.publishStatus();
    this.noteReadiness();
    // Start-up milestones (performance marks cost next to nothing): NODE_DEBUG=ztedge-start prints them.
    performance.mark('ztedge:started');
    this.logger.info('agent started', {
      device: config.device.id,
      site: config.device.site,
      bundleRevision: this.bundles.current?.manifest.revision ?? null,
      broker: config.broker.url ?? 'none',
      http: config.http.enabled ? `${config.http.host}:${this.httpPort()}` : 'off',
    });
  }

  /** Ends the current refusal window now: writes its summary record if refusals went unrecorded. */
  flushRefusals(): Promise<void> {
    return this.pipeline.refusals.flush();
  }

  /** The port the local API listens on (resolved when configured as 0). */
  httpPort(): number {
    const address = this.server?.address();
    return typeof address === 'object' && address !== null ? address.port : this.config.http.port;
  }

  setPosture(posture: Posture): void {
    if (posture === this.posture) return;
    this.posture = posture;
    this.publishStatus();
  }

  status() {
    const bundle = this.bundles.status();
    return {
      device: this.config.device.id,
      site: this.config.device.site,
      profile: this.config.device.profile,
      version: AGENT_VERSION,
      online: this.link?.online ?? false,
      posture: this.posture,
      ready: this.readiness(),
      failClosed: this.failClosed.active ? { reason: this.failClosed.reason ?? 'UNKNOWN' } : null,
      bundle: bundle.active === null ? null : { id: bundle.active.id, revision: bundle.active.revision, digest: bundle.active.digest, stale: bundle.active.stale },
      lastKnownGood: bundle.lkg,
      lastRejection: bundle.lastRejection,
      pendingApprovals: this.pending.size(),
      audit: this.auditStatus(),
      attestation: this.attestation?.status() ?? null,
    };
  }

  /** Commands held for approval, with the approvals they have, and live just-in-time grants. */
  approvals(limit = 1000): ApprovalsView {
    const now = this.clock.now();
    return {
      pendingCount: this.pending.size(),
      pending: this.pending.all(limit).map((held) => ({
        command: toHex(held.digest),
        principal: held.principal,
        action: held.action,
        resource: held.resource,
        required: held.required,
        approvers: held.approvers,
        approvals: this.pending.approvalsOf(held.digest),
        createdMs: held.createdMs,
        expiresMs: held.expiresMs,
      })),
      grantCount: this.grants.count(now),
      grants: this.grants.list(now, limit).map((grant) => ({
        principal: grant.principal,
        action: grant.action,
        resource: grant.resource,
        policies: grant.policies,
        command: toHex(grant.commandDigest),
        bundleRevision: grant.bundleRevision,
        grantedMs: grant.grantedMs,
        expiresMs: grant.expiresMs,
      })),
    };
  }

  /**
   * Ready to enforce: a policy bundle is active, the agent is not fail-closed (its audit log
   * takes records) and the audit log is not at its cap. Every reason it is not is listed (in
   * words that do not change while the reason lasts: each change is logged once).
   */
  readiness(): Readiness {
    const reasons: Readiness['reasons'] = [];
    if (this.bundles.current === null) reasons.push({ code: 'NO_ACTIVE_BUNDLE', message: 'no policy bundle is active: every command is denied' });
    if (this.failClosed.active) {
      const why = this.failClosed.reason ?? 'UNKNOWN';
      const detail = why === 'AUDIT_WRITE_FAILED' ? 'the audit log cannot be written' : why;
      reasons.push({ code: 'FAIL_CLOSED', message: `fail-closed (${why}): ${detail}; only @safety actions pass` });
    }
    if (this.audit.capacity().full) {
      reasons.push({
        code: 'AUDIT_FULL',
        message: 'the audit log holds as many records not yet synced upstream as its cap allows (audit.capBytes): every command not marked @safety is denied AUDIT_FULL until the upstream has them',
      });
    }
    return { ready: reasons.length === 0, reasons };
  }

  /** Logs a change of readiness (checked on every bundle event, audit failure and each second). */
  private noteReadiness(): void {
    const readiness = this.readiness();
    const key = JSON.stringify(readiness.reasons);
    if (key === this.readinessLogged) return;
    this.readinessLogged = key;
    if (readiness.ready) this.logger.info('agent ready');
    else this.logger.warn('agent not ready', { reasons: readiness.reasons });
  }

  /**
   * Stops taking work (the API closes; new commands, approvals and bundles are left with the
   * broker for the next start), lets commands in progress finish (at most `drainMs`), then sends
   * what it can, says offline and closes the state database. An agent runs once: to run again,
   * construct a new one on the same configuration.
   */
  async stop(drainMs = DEFAULT_DRAIN_MS): Promise<void> {
    if (!this.started || this.stopping) return;
    this.stopping = true;
    for (const t of this.timers) clearInterval(t);
    this.timers = [];
    await this.watcher?.stop();
    await this.attestation?.stop();
    if (this.server !== null) {
      const server = this.server;
      this.server = null;
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await this.drain(drainMs);
    await this.sync?.stop();
    this.syncTransport?.close();
    for (const release of this.parked.splice(0)) release();
    await this.pipeline.refusals.flush();
    await this.auditSystem({ event: 'stop' }).catch(() => undefined);
    await this.audit.close().catch(() => undefined); // the shutdown checkpoint
    await this.outbox?.close();
    await this.link?.close();
    await this.execLink?.close();
    this.commits.flush(); // writes still queued (e.g. deletes of messages acknowledged just now)
    this.clock.persist();
    this.db.close();
    this.lock.release();
    this.started = false;
    this.logger.info('agent stopped', { device: this.config.device.id });
  }

  /** Waits for tracked work, including work it starts, until none is left or `ms` have passed. */
  private async drain(ms: number): Promise<void> {
    const deadline = Date.now() + ms;
    while (this.inFlight.size > 0) {
      const left = deadline - Date.now();
      if (left <= 0) {
        this.logger.warn('stopping with work still in progress', { inFlight: this.inFlight.size });
        return;
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([Promise.allSettled([...this.inFlight]), new Promise((resolve) => (timer = setTimeout(resolve, left)))]);
      clearTimeout(timer);
    }
  }

  private createMqtt(url: string, withExecutors: boolean): void {
    const { broker } = this.config;
    const password = broker.passwordFile === undefined ? undefined : readPasswordFile(broker.passwordFile);
    const offline = Buffer.from(JSON.stringify({ state: 'offline', device: this.config.device.id }));
    const clientId = broker.clientId ?? `ztedge-${this.config.device.site}-${this.config.device.id}`;
    const connection = {
      url,
      username: broker.username,
      password,
      // TLS files only for mqtts://; the link refuses them on a plain connection.
      ...(broker.ca === undefined && broker.cert === undefined ? {} : { tls: { caFile: broker.ca, certFile: broker.cert, keyFile: broker.key } }),
    };
    if (withExecutors) {
      this.execLink = new MqttLink({
        ...connection,
        clientId: `${clientId}-exec`,
        subscriptions: [`${this.topics.prefix}exec/+/ack`],
        maxPayloadBytes: this.config.limits.envelopeMaxBytes,
        payloadLimit: (topic) => this.payloadLimit(topic),
        onMessage: async (message) => this.onExecutorAck(message),
      });
      this.execLink.on('online', () => this.logger.info('executor connection to the broker up'));
      this.execLink.on('offline', () => this.logger.warn('executor connection to the broker lost; reconnecting'));
      this.execLink.on('problem', (err) => this.logger.warn('transport problem (executor connection)', { code: err.code, error: err.message }));
      this.execLink.on('oversize', (r) => this.onOversize(r));
    }
    this.link = new MqttLink({
      ...connection,
      clientId,
      will: { topic: this.topics.status, payload: offline, retain: true },
      subscriptions: [
        ...this.topics.inbound,
        ...(this.config.audit.sync?.transport === 'mqtt' ? [auditAckTopic(this.topics.prefix)] : []),
      ],
      maxPayloadBytes: this.config.limits.envelopeMaxBytes,
      // Each topic at its own limit, applied as the packet header is read: only bundles may be large.
      payloadLimit: (topic) => this.payloadLimit(topic),
      onMessage: (message) => this.onMessage(message),
    });
    this.link.on('online', ({ protocolVersion }) => {
      this.logger.info('broker connected', { protocolVersion });
      this.publishStatus();
    });
    this.link.on('offline', () => this.logger.warn('broker connection lost; enforcing locally and reconnecting'));
    this.link.on('problem', (err) => this.logger.warn('transport problem', { code: err.code, error: err.message }));
    this.link.on('oversize', (r) => this.onOversize(r));
    this.outbox = new Outbox(this.db, this.link, {
      maxMessages: this.config.limits.outboxMaxMessages,
      maxBytes: 256 * 1024 * 1024,
      commits: this.commits,
    });
    this.outbox.on('problem', (err) => this.logger.warn('outbox problem', { error: err.message }));
  }

  /**
   * A subscribed topic as a metric or refusal label: relative to the prefix, with the action of an
   * ack topic folded to `+` (a publisher picks it, and labels must stay a bounded set).
   */
  private topicLabel(topic: string): string {
    const relative = topic.startsWith(this.topics.prefix) ? topic.slice(this.topics.prefix.length) : 'other';
    return relative.startsWith('exec/') ? 'exec/+/ack' : relative.slice(0, 64);
  }

  private payloadLimit(topic: string): number {
    const { limits } = this.config;
    if (topic === this.topics.bundle) return limits.bundleMaxBytes;
    if (topic.startsWith(`${this.topics.prefix}exec/`)) return MAX_EXECUTOR_REPLY_BYTES;
    return limits.envelopeMaxBytes;
  }

  /**
   * A message cut at its topic's size cap (its payload was never buffered). A bundle is recorded
   * as a refused bundle (audit log, status); anything else as a refused input, and a command is
   * answered (its properties survived the cut) so its sender learns why.
   */
  private onOversize(report: OversizeReport): void {
    const topic = this.topicLabel(report.topic);
    this.metrics.inc('ztedge_oversize_dropped_total', 'Messages cut at their topic\'s size cap, by topic', { topic });
    const why = `${report.payloadBytes} bytes on ${topic} exceeds its limit of ${report.limit}`;
    if (report.topic === this.topics.bundle) {
      this.bundles.recordRefusal(new BundleError('BUNDLE_TOO_LARGE', why), null);
      return;
    }
    const recorded = this.pipeline.recordOversize(topic, report.payloadBytes, report.limit);
    if (report.topic !== this.topics.cmd) {
      this.track(recorded, 'oversize record failed');
      return;
    }
    const message: InboundMessage = {
      topic: report.topic,
      payload: Buffer.alloc(0),
      qos: report.qos === 0 ? 0 : 1,
      retain: false,
      duplicate: false,
      ...(report.responseTopic === undefined ? {} : { responseTopic: report.responseTopic }),
      ...(report.correlationData === undefined ? {} : { correlationData: report.correlationData }),
    };
    const reply = this.replyRefusal(message) === undefined ? routeFor(message, this.topics) : { topic: this.topics.cmdResult };
    const outcome: CommandOutcome = { decision: 'deny', policies: [], reasons: ['ENVELOPE_TOO_LARGE'], outcome: 'rejected' };
    this.track(recorded.then((answer) => (answer ? this.sendWhenSigned(this.signOutcome(outcome), reply) : undefined)), 'answering an oversize command failed');
  }

  private async startHttp(): Promise<void> {
    const refused = (code: string) => this.metrics.inc('ztedge_http_refusals_total', 'HTTP requests refused before a decision, by code', { code });
    const app = createApi({
      decide: (bytes) => this.handleHttpCommand(bytes),
      status: () => this.status(),
      ready: () => this.readiness(),
      metrics: () => this.metrics.render(),
      audit: (from, limit) => ({ records: this.audit.read(from, limit), headSeq: this.audit.head().seq }),
      approvals: (limit) => this.approvals(limit),
      ...(this.adminToken === undefined ? {} : { adminToken: this.adminToken }),
      maxBodyBytes: this.config.limits.envelopeMaxBytes,
      ...(this.attestation === null ? {} : { attest: (nonce: Uint8Array) => this.answerChallenge(nonce) }),
      refused,
    });
    await new Promise<void>((resolve, reject) => {
      const server = serve({ fetch: app.fetch, hostname: this.config.http.host, port: this.config.http.port }, () => resolve());
      server.once('error', reject);
      answerClientErrors(server as HttpServer, refused);
      this.server = server;
    });
  }

  /**
   * Settles the commands a crash left decided `allow` without an execution record: the controller
   * may or may not have acted, so each gets an execution record saying `unknown` and a result
   * saying so (to where its first result would have gone), in one transaction with the removal
   * of its row. None is run again.
   */
  private async reconcile(): Promise<void> {
    const left = this.unsettled.all();
    if (left.length > 0) this.logger.warn('commands left unsettled by an earlier run: outcome unknown', { count: left.length });
    for (const command of left) {
      const outcome: CommandOutcome = {
        digest: command.digest,
        ctiHex: toHex(command.cti),
        decision: 'allow',
        policies: command.policies,
        reasons: [...command.reasons, 'OUTCOME_UNKNOWN'],
        outcome: 'unknown',
      };
      const result = await this.signOutcome(outcome);
      const recorded = this.audit.append(
        'execution',
        encodeCbor({ cmd: command.digest, action: command.action, outcome: 'unknown', code: 'OUTCOME_UNKNOWN', message: 'the agent stopped after the decision and before the execution was recorded' }),
      );
      this.enqueueResult(result, routeOf(command.reply, this.topics));
      await Promise.all([recorded, this.unsettled.settle(command.digest)]);
      this.metrics.inc('ztedge_commands_unknown_total', 'Commands settled as outcome unknown after a restart');
    }
  }

  /** Handles one inbound MQTT message; resolves when it is safe to acknowledge it. */
  private async onMessage(message: InboundMessage): Promise<void> {
    const { topics } = this;
    // Executor acks are read on the executor connection; a session kept from an agent of before
    // may still deliver them here, where they are not news.
    if (message.topic.startsWith(`${topics.prefix}exec/`) && message.topic.endsWith('/ack')) return;
    if (message.topic === auditAckTopic(topics.prefix)) {
      if (this.syncTransport instanceof MqttSyncTransport) this.syncTransport.deliver(message.payload);
      return;
    }
    if (this.stopping) return this.park();
    if (message.topic === topics.cmd) {
      await this.onCommand(message);
    } else if (message.topic === topics.approve) {
      this.onApproval(message);
    } else if (message.topic === topics.bundle) {
      if (message.payload.length === 0) return; // a cleared retained message
      try {
        this.bundles.activate(message.payload);
      } catch (err) {
        if (!(err instanceof BundleError)) throw err;
        // Recorded by the manager (store rejection + event → audit, status).
      }
    } else if (message.topic === topics.rollback) {
      if (message.payload.length === 0) return;
      try {
        this.bundles.applyRollback(message.payload);
      } catch (err) {
        if (!(err instanceof BundleError)) throw err;
        // Recorded by the manager, as for bundles.
      }
    }
    else if (message.topic === topics.attestChallenge) this.onChallenge(message);
  }

  /** An executor's ack, on the executor connection: to the execution waiting for it. */
  private onExecutorAck(message: InboundMessage): void {
    const { topics } = this;
    if (!message.topic.startsWith(`${topics.prefix}exec/`) || !message.topic.endsWith('/ack')) return;
    const action = message.topic.slice(`${topics.prefix}exec/`.length, -'/ack'.length);
    const { verdict, id } = this.ackRouter.deliver(action, message.payload);
    if (verdict !== 'ACCEPTED') {
      // Anyone who can publish there can send these: counted and sampled like other refusals.
      this.track(this.pipeline.refusals.refuse('mqtt:exec-ack', verdict, 'execution', { ack: verdict, action: action.slice(0, 128), ...(id === undefined ? {} : { id }) }).recorded);
    }
  }

  /**
   * An approval: counted (durably) before handleApproval first yields, so the message may be
   * acknowledged then; the quorum's execution must not hold up the link. The approver is answered
   * on its response topic (MQTT 5, inside the reply namespace) or on `approve/result`.
   */
  private onApproval(message: InboundMessage): void {
    const refusal = this.replyRefusal(message);
    if (refusal !== undefined) {
      // Not decided: its approver would never hear the answer. Answered on the default answer topic.
      const correlation = message.correlationData !== undefined && message.correlationData.length <= MAX_CORRELATION_BYTES ? toHex(message.correlationData) : undefined;
      const route = { topic: this.topics.approveResult, ...(correlation === undefined ? {} : { correlation }) };
      this.track(this.pipeline.refuseApprovalInput(message.payload, refusal.code, refusal.message).then((answer) => this.answerApproval(answer, route)), 'refusing an approval failed');
      return;
    }
    const route = routeFor(message, this.topics, this.topics.approveResult);
    this.track(
      this.pipeline.handleApproval(message.payload, (answer) => this.answerApproval(answer, route)).then((result) => {
        this.metrics.inc('ztedge_approvals_total', 'Approval envelopes, by result', { code: result.code });
        if (result.settled) this.settled(result.settled);
      }),
      'approval handling failed',
    );
  }

  /** Signs an approval's answer with the device key and queues it on the approver's route. */
  private answerApproval(answer: ApprovalAnswer, route: ReplyRoute): void {
    if (answer.unanswered) return;
    const signed = signApprovalAnswerAsync({
      key: this.deviceKey,
      deviceId: this.config.device.id,
      approval: answer.approval,
      ...(answer.command === undefined ? {} : { command: answer.command }),
      code: answer.code,
      message: answer.message,
      ...(answer.approvals === undefined ? {} : { approvals: answer.approvals }),
      ...(answer.required === undefined ? {} : { required: answer.required }),
      ...(answer.grantExpiresMs === undefined ? {} : { grantExpiresMs: answer.grantExpiresMs }),
      now: this.clock.now(),
    });
    void this.sendWhenSigned(signed, route);
  }

  /** Resolves once the decision is recorded; execution and the result follow in the background. */
  private async onCommand(message: InboundMessage): Promise<void> {
    const refusal = this.replyRefusal(message);
    if (refusal !== undefined) {
      // Not decided: its sender would never hear the result. Answered on the default result topic.
      const outcome = await this.pipeline.refuseInput(message.payload, refusal.code, refusal.message, 'mqtt');
      if (outcome.unanswered) return;
      const correlation = message.correlationData !== undefined && message.correlationData.length <= MAX_CORRELATION_BYTES ? toHex(message.correlationData) : undefined;
      void this.sendWhenSigned(this.signOutcome(outcome), { topic: this.topics.cmdResult, ...(correlation === undefined ? {} : { correlation }) });
      return;
    }
    const reply = routeFor(message, this.topics);
    const digest = toHex(sha256(message.payload));
    const arrival = this.recent.arrive(digest);
    await new Promise<void>((recorded) => {
      const handled = this.pipeline
        .handleCommand({
          bytes: message.payload,
          source: 'mqtt',
          reply,
          onRecorded: recorded,
          // The execution record is queued once the signed result is: both share one commit.
          onOutcome: (outcome) => this.answer(outcome, digest, arrival, reply),
        })
        .catch((err: unknown) => {
          if (arrival.first) arrival.settle(null);
          throw err;
        });
      this.track(handled, 'command handling failed');
    });
  }

  /**
   * Sends a command's result; a repeat of bytes already answered gets the first answer again.
   * Resolves once the result is queued on the outbox (never rejects): the pipeline queues the
   * execution record right after, in the same transaction.
   */
  private answer(outcome: CommandOutcome, digest: string, arrival: FirstArrival, reply: ReplyRoute): Promise<void> | undefined {
    if (outcome.unanswered) {
      // A refusal over the answer rate (garbage, replays): counted, not signed or sent.
      if (arrival.first) arrival.settle(null);
      return undefined;
    }
    if (!arrival.first && outcome.reasons[0] === 'ENVELOPE_REPLAY') {
      const repeated = arrival.earlier.then(async (earlier) => {
        if (earlier !== null) this.metrics.inc('ztedge_command_repeats_total', 'Repeats of a command answered with its first result');
        this.enqueueResult(earlier ?? (await this.signOutcome(outcome)), reply);
      });
      this.track(repeated, 'answering a repeated command failed');
      return undefined;
    }
    // Signed on the thread pool.
    const signed = this.signOutcome(outcome);
    if (arrival.first) arrival.settle(signed.catch(() => null));
    else this.recent.update(digest, signed);
    return this.sendWhenSigned(signed, reply);
  }

  /**
   * Response topics are honoured only inside the reply namespace, which never holds one of the
   * device's control topics (a result published onto `exec/estop` would reach the controller).
   */
  private replyRefusal(message: InboundMessage): { code: string; message: string } | undefined {
    const named = message.responseTopic ?? message.refusedResponseTopic;
    if (named !== undefined && (message.refusedResponseTopic !== undefined || !this.topics.isReplyTopic(named))) {
      return { code: 'REPLY_TOPIC_REFUSED', message: `response topic ${JSON.stringify(named.slice(0, 120))} is outside ${this.topics.replyPrefix}` };
    }
    if (message.correlationData !== undefined && message.correlationData.length > MAX_CORRELATION_BYTES) {
      return { code: 'REPLY_CORRELATION_TOO_LONG', message: `correlation data of ${message.correlationData.length} bytes exceeds ${MAX_CORRELATION_BYTES}` };
    }
    return undefined;
  }

  /** A held command was approved, rejected or expired: its settled result goes where the first one went. */
  private settled({ command, outcome }: { command: PendingCommand; outcome: CommandOutcome }): void {
    const signed = this.signOutcome(outcome);
    this.recent.update(toHex(command.digest), signed);
    void this.sendWhenSigned(signed, routeOf(command.reply.route, this.topics));
  }

  /** Queues a result once it is signed; resolves when queued and never rejects (a failure is logged). */
  private sendWhenSigned(signed: Promise<Uint8Array>, route: ReplyRoute): Promise<void> {
    const queued = signed.then((result) => this.enqueueResult(result, route));
    this.track(queued, 'signing a result failed');
    return queued.catch(() => undefined);
  }

  /** Holds a message until stop() fails it: unacknowledged, the broker keeps it for the next start. */
  private park(): Promise<void> {
    return new Promise((_resolve, reject) => this.parked.push(() => reject(new Error('agent stopping; left with the broker'))));
  }

  private async handleHttpCommand(bytes: Uint8Array): Promise<DecideResult> {
    const outcome = await this.pipeline.handleCommand({ bytes, source: 'http', reply: { topic: this.topics.cmdResult } });
    return { ...outcome, result: await this.signOutcome(outcome) };
  }

  private signOutcome(outcome: CommandOutcome): Promise<Uint8Array> {
    return signResultAsync({
      key: this.deviceKey,
      deviceId: this.config.device.id,
      topic: RESULT_TOPIC,
      commandDigest: outcome.digest ?? new Uint8Array(32),
      decision: outcome.decision,
      policies: outcome.policies,
      reasons: outcome.reasons,
      outcome: outcome.outcome,
      ...(outcome.grantExpiresMs === undefined ? {} : { grantExpiresMs: outcome.grantExpiresMs }),
      now: this.clock.now(),
      // The command's cti: MQTT 3.1.1 senders (no correlation data) match results by it.
      ...(outcome.ctiHex === undefined ? {} : { cti: Buffer.from(outcome.ctiHex, 'hex') }),
    });
  }

  /** Results join the group commit (with the execution record when queued in its turn). */
  private enqueueResult(result: Uint8Array, route: ReplyRoute): void {
    if (this.outbox === null) return;
    this.outbox
      .enqueueGrouped({
        topic: route.topic,
        payload: result,
        qos: 1,
        critical: true,
        ...(route.correlation === undefined ? {} : { correlationData: Buffer.from(route.correlation, 'hex') }),
      })
      .catch((err: unknown) => this.logger.warn('result could not be queued', { error: (err as Error).message }));
  }

  private publishStatus(): void {
    if (this.outbox === null) return;
    const payload = Buffer.from(JSON.stringify({ state: 'online', time: new Date(this.clock.now()).toISOString(), ...this.status() }));
    try {
      this.outbox.enqueue({ topic: this.topics.status, payload, qos: 1, retain: true });
    } catch (err) {
      this.logger.warn('status could not be queued', { error: (err as Error).message });
    }
  }

  private onBundleEvent(event: BundleEvent): void {
    const body = bundleEventRecord(event);
    if (event.kind === 'rejected') {
      this.logger.warn('bundle rejected', { code: event.code, revision: event.revision });
    } else if (event.kind === 'activated' || event.kind === 'loaded' || event.kind === 'rolled-back') {
      this.logger.info(`bundle ${event.kind}`, { revision: event.revision });
      this.warnUnexecutable();
    }
    this.track(this.audit.append('bundle', encodeCbor(body), { area: 'reserve' }), 'bundle audit record failed');
    if (event.kind === 'activated' || event.kind === 'loaded' || event.kind === 'rolled-back') this.reconcileGrants();
    this.publishStatus();
    if (this.started) this.noteReadiness();
  }

  /**
   * The bundle in force changed (or was loaded, perhaps other than the one the grants were made
   * under): grants survive only under policies the bundle still carries with a grant. Those
   * dropped or cut short are logged and recorded.
   */
  private reconcileGrants(): void {
    const bundle = this.bundles.current;
    if (bundle === null) return;
    const grantTimes = new Map<string, number>();
    for (const [id, obligations] of bundle.obligations) if (obligations.grantTtlMs !== undefined) grantTimes.set(id, obligations.grantTtlMs);
    const { dropped, shortened } = this.grants.reconcile(grantTimes);
    if (dropped.length === 0 && shortened.length === 0) return;
    const describe = (g: Grant) => ({ principal: g.principal, action: g.action, resource: g.resource, policies: g.policies, expiresMs: g.expiresMs });
    this.logger.info('just-in-time grants changed with the bundle', { revision: bundle.manifest.revision, dropped: dropped.map(describe), shortened: shortened.map(describe) });
    const body = { event: 'grants', bundle: bundle.manifest.revision, dropped: dropped.map(describe), shortened: shortened.map(describe) };
    this.track(this.audit.append('system', encodeCbor(body), { area: 'reserve' }), 'grant audit record failed');
  }

  /** Names the actions the active bundle permits that no configured executor runs. */
  private warnUnexecutable(): void {
    const bundle = this.bundles.current;
    if (bundle === null) return;
    const { executors, broker } = this.config;
    const runs = (action: string) => executors[action] !== undefined && (executors[action].kind !== 'mqtt' || broker.url !== null);
    const { actions, anyAction } = permittedActions(bundle);
    const missing = actions.filter((action) => !runs(action));
    if (missing.length === 0 && anyAction.length === 0) return;
    this.logger.warn('permitted actions have no executor: such commands are allowed and audited, then fail with NO_EXECUTOR', {
      revision: bundle.manifest.revision,
      actions: missing,
      ...(anyAction.length === 0 ? {} : { anyActionPolicies: anyAction }),
    });
  }

  private async expirePending(): Promise<void> {
    for (const settled of await this.pipeline.expirePending()) this.settled(settled);
  }

  /**
   * The audit log's upstream sync: its own loop, never in a command's path. The collector's
   * signed time in each acknowledgement feeds the trusted clock (the upstream time seam:
   * TrustedClock.observe raises the floor from signed time; an observeUpstream of its own, where
   * the clock has one, is the place for it).
   */
  private createSync(sync: NonNullable<AgentConfig['audit']['sync']>): void {
    const transport =
      sync.transport === 'mqtt'
        ? new MqttSyncTransport(this.link!, this.topics.prefix)
        : new HttpsSyncTransport({
            url: sync.url!,
            ...(sync.ca === undefined ? {} : { caFile: sync.ca }),
            ...(sync.cert === undefined ? {} : { certFile: sync.cert, keyFile: sync.key! }),
            // One request per batch in flight: fewer sockets would hold batches back in the client.
            maxSockets: sync.inFlight,
          });
    this.syncTransport = transport;
    this.sync = new AuditSync({
      log: this.audit,
      transport,
      device: this.config.device.id,
      deviceKey: this.deviceKey,
      collectorKey: this.collectorKey!,
      maxRecords: sync.batchRecords,
      maxBytes: sync.batchBytes,
      maxInFlight: sync.inFlight,
      intervalMs: sync.intervalMs,
      timeoutMs: sync.timeoutMs,
      backoff: { initialMs: Math.min(1000, sync.backoffMaxMs), maxMs: sync.backoffMaxMs },
      now: () => this.clock.now(),
      onUpstreamTime: (timeMs) => this.clock.observeUpstream(timeMs),
    });
    this.sync.on('state', (state) => {
      this.logger.info('audit upstream', { state, transport: transport.name });
      this.publishStatus();
    });
    // The error's text goes in `error`: a `message` field would replace the line's own message.
    this.sync.on('problem', ({ code, message, seq, atMs }) => this.logger.warn('audit sync problem', { code, error: message, ...(seq === undefined ? {} : { seq }), atMs }));
    this.sync.on('stored', () => this.metrics.inc('ztedge_audit_sync_batches_total', 'Audit batches stored upstream'));
    this.link?.on('online', () => this.sync?.poke());
  }

  private auditStatus() {
    const capacity = this.audit.capacity();
    return {
      headSeq: capacity.headSeq,
      syncedSeq: capacity.syncedSeq,
      full: capacity.full,
      capBytes: capacity.capBytes,
      reserveBytes: capacity.reserveBytes,
      unsyncedBytes: capacity.unsyncedBytes,
      unsyncedRecords: capacity.unsyncedRecords,
      sync: this.sync === null ? null : this.sync.status(),
    };
  }

  private collectSyncMetrics(): void {
    const capacity = this.audit.capacity();
    const status = this.sync?.status();
    this.metrics.set('ztedge_audit_backlog_records', 'Audit records not yet stored upstream', capacity.unsyncedRecords);
    this.metrics.set('ztedge_audit_backlog_bytes', 'Bytes of audit records not yet stored upstream (counted against the cap)', capacity.unsyncedBytes);
    this.metrics.set('ztedge_audit_full', 'Audit cap reached: commands not marked @safety are denied AUDIT_FULL', capacity.full ? 1 : 0);
    this.metrics.set('ztedge_audit_cap_bytes', 'Unsynced audit bytes at which the agent fails closed (audit.capBytes; 0: no cap)', capacity.capBytes ?? 0);
    this.metrics.set('ztedge_audit_reserve_bytes', 'Part of the cap kept for AUDIT_FULL denials and lifecycle records', capacity.reserveBytes);
    if (status === undefined) return;
    this.metrics.set('ztedge_audit_backlog_oldest_seconds', 'Age of the oldest audit record not yet stored upstream', (status.backlog.oldestAgeMs ?? 0) / 1000);
    this.metrics.set('ztedge_audit_last_sync_timestamp_seconds', 'When a batch was last stored upstream (0: never)', (status.lastSyncMs ?? 0) / 1000);
    for (const state of ['starting', 'connected', 'offline', 'unreachable', 'refused', 'stopped'] as const) {
      this.metrics.set('ztedge_audit_upstream_state', 'Audit upstream state (1 for the current one)', status.state === state ? 1 : 0, { state });
    }
  }

  private housekeeping(): void {
    const now = this.clock.now();
    this.replay.prune(now);
    this.rate.prune(now);
    this.grants.prune(now);
    this.track(this.audit.prune(now), 'audit pruning failed');
    this.clock.persist();
  }

  private auditSystem(body: Record<string, string>) {
    return this.audit.append('system', encodeCbor(body), { area: 'reserve' });
  }

  // ---------------------------------------------------------------------------------------
  // Attestation

  private createAttestation(): AttestationService {
    const { config } = this;
    const settings = config.attestation!;
    const service = new AttestationService({
      deviceId: config.device.id,
      profile: settings.profiles === undefined ? loadShippedProfile(config.device.profile) : loadProfile(settings.profiles, config.device.profile),
      root: settings.measureRoot,
      key: this.deviceKey,
      agentVersion: AGENT_VERSION,
      ...(settings.tpm === undefined ? {} : { tpm: { tcti: settings.tpm, pcr: settings.pcr, stateDir: path.join(config.stateDir, 'tpm') } }),
      ...(settings.intervalMs === undefined ? {} : { intervalMs: settings.intervalMs }),
      challenges: { limit: settings.challengesPerMinute, windowMs: 60_000 },
    });
    service.on((event) => this.onAttestationEvent(event));
    this.posture = service.posture; // untrusted until the first measurement
    // Every bundle that comes into force brings its reference values (or none) and a measurement.
    const useBundle = () => {
      const bundle = this.bundles.current;
      service.setReferences(
        referencesFor(bundle?.attestation, config.device.profile),
        bundle === null ? null : { revision: bundle.manifest.revision, digest: bundle.digest },
      );
    };
    this.bundles.on((event) => {
      if (event.kind === 'loaded' || event.kind === 'activated' || event.kind === 'rolled-back') useBundle();
    });
    this.metrics.collect(() => {
      const facts = service.facts();
      for (const posture of ['trusted', 'degraded', 'untrusted'] as const) {
        this.metrics.set('ztedge_attestation_posture', 'Measured posture (1 for the current one)', facts.posture === posture ? 1 : 0, { posture });
      }
      this.metrics.set('ztedge_attestation_mismatches', 'Measured files that differ from their references', facts.mismatches.length);
      this.metrics.set('ztedge_attestation_measured_timestamp_seconds', 'When the files were last measured', Math.floor(facts.measuredAtMs / 1000));
    });
    return service;
  }

  /** Posture follows the measurement; every change is audited with paths and digests. */
  private onAttestationEvent(event: AttestationEvent): void {
    if (event.kind === 'problem') {
      this.logger.warn('attestation problem', { code: event.code, error: event.message.slice(0, 300) });
      return;
    }
    const shown = event.mismatches.slice(0, 64);
    const body = {
      event: 'measured',
      trigger: event.trigger,
      atMs: event.atMs,
      from: event.previous,
      posture: event.posture,
      composite: event.composite,
      previousComposite: event.previousComposite,
      mismatches: shown.map((m) => ({ path: m.path, reason: m.reason, critical: m.critical, expected: [...m.expected], found: m.found })),
      ...(event.mismatches.length > shown.length ? { moreMismatches: event.mismatches.length - shown.length } : {}),
      ...(event.error === null ? {} : { error: event.error.code, message: event.error.message.slice(0, 300) }),
    };
    this.track(this.audit.append('attestation', encodeCbor(body)), 'attestation audit record failed');
    if (event.previous !== event.posture) {
      const log = event.posture === 'trusted' ? this.logger.info : this.logger.warn;
      log.call(this.logger, `posture ${event.posture}`, { from: event.previous, mismatches: shown.map((m) => `${m.path} (${m.reason})`), ...(event.error === null ? {} : { error: event.error.code }) });
    }
    this.setPosture(event.posture);
  }

  /** attest/challenge: answered on the response topic (MQTT 5) or attest/evidence, never queued. */
  private onChallenge(message: InboundMessage): void {
    const nonce = new Uint8Array(message.payload);
    const topic = message.responseTopic ?? this.topics.attestEvidence;
    const options = { qos: 1 as const, ...(message.correlationData === undefined ? {} : { correlationData: message.correlationData }) };
    const answered = this.answerChallenge(nonce).then((answer) => {
      this.metrics.inc('ztedge_attest_challenges_total', 'Attestation challenges, by result', { code: answer.ok ? 'EVIDENCE' : answer.code });
      return this.link?.publish(topic, answer.ok ? answer.evidence : encodeRefusal(answer.code, answer.message, nonce), options);
    });
    this.track(answered, 'answering an attestation challenge failed');
  }

  private async answerChallenge(nonce: Uint8Array): Promise<AttestAnswer> {
    if (this.attestation === null) return { ok: false, code: 'ATTEST_NOT_CONFIGURED', message: 'this device does not attest' };
    try {
      return { ok: true, evidence: await this.attestation.evidence(nonce), posture: this.attestation.posture };
    } catch (err) {
      if (err instanceof AttestError) return { ok: false, code: err.code, message: err.message };
      throw err;
    }
  }

  /** Keeps background work visible to stop(); a failure is logged, never unhandled. */
  private track(p: Promise<unknown>, failure = 'background task failed'): void {
    const tracked = p.then(
      () => undefined,
      (err: unknown) => this.logger.warn(failure, { error: String(err) }),
    );
    this.inFlight.add(tracked);
    void tracked.finally(() => this.inFlight.delete(tracked));
  }
}

function readPasswordFile(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new ConfigError([{ option: 'broker.passwordFile', message: `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}` }]);
  }
}

/** Where a command's result (an approval's answer) goes: its response topic (already checked) and correlation data, or the default topic. */
function routeFor(message: InboundMessage, topics: DeviceTopics, fallback = topics.cmdResult): ReplyRoute {
  return {
    topic: message.responseTopic ?? fallback,
    ...(message.correlationData === undefined ? {} : { correlation: toHex(message.correlationData) }),
  };
}

/** A stored route (held or unsettled command); none, or one that is no reply topic, falls back to the default. */
function routeOf(route: ReplyRoute | null, topics: DeviceTopics): ReplyRoute {
  return route !== null && topics.isReplyTopic(route.topic) ? route : { topic: topics.cmdResult };
}

export { AGENT_VERSION };
