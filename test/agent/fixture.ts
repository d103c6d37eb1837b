// A complete in-process agent core for tests: real keys, a real signed bundle (robot cell
// policies with rate, approval and safety obligations), a real state database on disk with one
// group commit shared by its writers (as in the agent), and the command pipeline wired to them.
// No broker.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { GroupCommit } from '../../src/store/group-commit.js';
import { openStateDb } from '../../src/store/state-db.js';
import { Metrics } from '../../src/agent/metrics.js';
import { CommandPipeline, type FailClosedState } from '../../src/agent/pipeline.js';
import type { ExecutionRequest, Executor, ExecutionOutcome } from '../../src/agent/executors/types.js';
import type { Posture } from '../../src/agent/config.js';
import { type AuditSink, SqliteAuditLog } from '../../src/audit/log.js';
import { buildBundle, type BundleSource } from '../../src/bundle/build.js';
import { DEFAULT_SETTINGS } from '../../src/bundle/format.js';
import { signBundle } from '../../src/bundle/sign.js';
import { verifyBundle, type VerifiedBundle } from '../../src/bundle/verify.js';
import { GrantStore } from '../../src/store/grants.js';
import { PendingApprovals } from '../../src/store/pending-approvals.js';
import { UnsettledCommands } from '../../src/store/unsettled-commands.js';
import { RateLimiter } from '../../src/store/rate-limiter.js';
import { generatePrivateKey, type PrivateKey } from '../../src/crypto/keys.js';
import { COSE_ALG } from '../../src/crypto/algorithms.js';
import type { SignatureVerifier } from '../../src/crypto/verifier.js';
import { signCommand } from '../../src/envelope/command.js';
import { signApproval } from '../../src/envelope/approval.js';
import { ReplayGuard } from '../../src/store/replay-guard.js';
import { TrustedClock } from '../../src/store/trusted-clock.js';

export const DEVICE = 'arm-01';
export const T0 = Date.UTC(2026, 5, 1, 8, 0, 0);

export const CELL_POLICIES = `
@id("operators-move")
@rate("3/60s")
permit (principal in Role::"operator", action == Action::"move", resource in Cell::"cell-1")
when { context.args.speed <= 100 && context.posture != "untrusted" };

@id("estop")
@safety("true")
permit (principal in Role::"operator", action == Action::"estop", resource);

@id("weld-needs-approval")
@approval("2")
@approvers("Role::\\"supervisor\\"")
@grant_ttl("5m")
permit (principal in Role::"operator", action == Action::"weld", resource in Cell::"cell-1");

@id("supervisors-approve")
permit (principal in Role::"supervisor", action == Action::"approve", resource);

@id("speed-cap")
forbid (principal, action, resource) when { context.args has speed && context.args.speed > 250 };
`;

export const CELL_ENTITIES = JSON.stringify([
  { uid: { type: 'Role', id: 'operator' }, attrs: {}, parents: [] },
  { uid: { type: 'Role', id: 'supervisor' }, attrs: {}, parents: [] },
  { uid: { type: 'Agent', id: 'planner' }, attrs: {}, parents: [{ type: 'Role', id: 'operator' }] },
  { uid: { type: 'User', id: 'alice' }, attrs: {}, parents: [{ type: 'Role', id: 'supervisor' }] },
  { uid: { type: 'User', id: 'bob' }, attrs: {}, parents: [{ type: 'Role', id: 'supervisor' }] },
  { uid: { type: 'User', id: 'mallory' }, attrs: {}, parents: [] },
  { uid: { type: 'Cell', id: 'cell-1' }, attrs: {}, parents: [] },
  { uid: { type: 'Device', id: 'arm-01' }, attrs: {}, parents: [] },
  // The arm is in its cell and hosted on the device that runs the agent in front of it.
  { uid: { type: 'Arm', id: 'arm-01' }, attrs: {}, parents: [{ type: 'Cell', id: 'cell-1' }, { type: 'Device', id: 'arm-01' }] },
]);

export interface Keys {
  root: PrivateKey;
  device: PrivateKey;
  planner: PrivateKey;
  alice: PrivateKey;
  bob: PrivateKey;
  mallory: PrivateKey;
  stranger: PrivateKey;
}

export function makeKeys(): Keys {
  return {
    root: generatePrivateKey('ed25519'),
    device: generatePrivateKey('ed25519'),
    planner: generatePrivateKey('ed25519'),
    alice: generatePrivateKey('p256'),
    bob: generatePrivateKey('ed25519'),
    mallory: generatePrivateKey('ed25519'),
    stranger: generatePrivateKey('ed25519'),
  };
}

function issuer(key: PrivateKey, principal: string) {
  return {
    kid: key.publicKey.kid,
    alg: key.keyType === 'ed25519' ? COSE_ALG.EdDSA : COSE_ALG.ES256,
    publicKey: key.publicKey.raw,
    principal,
  };
}

export interface CellBundleOptions {
  /** Creation time in ms (expiry is 30 days later). Default T0. */
  nowMs?: number;
  id?: string;
  sites?: string[];
}

export function cellBundle(keys: Keys, revision = 1, policies = CELL_POLICIES, opts: CellBundleOptions = {}): Uint8Array {
  const nowS = Math.floor((opts.nowMs ?? T0) / 1000);
  const source: BundleSource = {
    policies: [{ file: 'cell.cedar', text: policies }],
    entities: CELL_ENTITIES,
    issuers: [
      issuer(keys.planner, 'Agent::"planner"'),
      issuer(keys.alice, 'User::"alice"'),
      issuer(keys.bob, 'User::"bob"'),
      issuer(keys.mallory, 'User::"mallory"'),
    ],
    attestation: [],
    settings: DEFAULT_SETTINGS,
    tests: [],
  };
  const built = buildBundle(source, {
    id: opts.id ?? 'cell-test',
    revision,
    created: nowS - 60,
    expires: nowS + 30 * 86_400,
    scope: { sites: opts.sites ?? [], devices: [DEVICE], profiles: [] },
    minAgentVersion: '0.1.0',
  });
  return signBundle(built.bytes, keys.root);
}

export class RecordingExecutor implements Executor {
  readonly calls: ExecutionRequest[] = [];
  outcome: ExecutionOutcome = { status: 'ok', detail: { done: true } };
  async execute(request: ExecutionRequest): Promise<ExecutionOutcome> {
    this.calls.push(request);
    return this.outcome;
  }
}

export interface Core {
  dir: string;
  /** The state database file. */
  dbPath: string;
  commits: GroupCommit;
  keys: Keys;
  clock: { ms: number };
  pipeline: CommandPipeline;
  executor: RecordingExecutor;
  audit: SqliteAuditLog;
  posture: { value: Posture };
  failClosed: FailClosedState;
  bundle: { current: VerifiedBundle };
  /** The trusted clock the pipeline decides by (system clock: `clock.ms`). */
  trusted: TrustedClock;
  metrics: Metrics;
  close(): void;
  /** Re-creates everything on the same state directory (a restart). */
  restart(): Core;
}

export function makeCore(
  keys: Keys = makeKeys(),
  dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-core-')),
  clock = { ms: T0 },
  executor = new RecordingExecutor(),
  options: { verifier?: SignatureVerifier; audit?: AuditSink; replayMaxEntries?: number; policies?: string } = {},
): Core {
  const dbPath = path.join(dir, 'state.db');
  const db = openStateDb(dbPath);
  const commits = new GroupCommit(db);
  const bundleBytes = cellBundle(keys, 1, options.policies);
  const bundle = {
    current: verifyBundle(bundleBytes, {
      roots: [{ publicKey: keys.root.publicKey }],
      threshold: 1,
      device: DEVICE,
      agentVersion: '0.1.0',
      now: clock.ms,
    }),
  };
  const audit = new SqliteAuditLog(db, { now: () => clock.ms, commits });
  const posture = { value: 'degraded' as Posture };
  const failClosed: FailClosedState = { active: false };
  const rate = new RateLimiter(db, { commits });
  const trusted = new TrustedClock(db, () => clock.ms);
  const metrics = new Metrics();
  const pipeline = new CommandPipeline({
    deviceId: DEVICE,
    bundle: () => bundle.current,
    replay: new ReplayGuard(db, { clockSkewMs: 30_000, commits, ...(options.replayMaxEntries === undefined ? {} : { maxEntries: options.replayMaxEntries }) }),
    clock: trusted,
    posture: () => posture.value,
    online: () => true,
    failClosed: () => failClosed,
    audit,
    rate,
    grants: new GrantStore(db),
    pending: new PendingApprovals(db, 100),
    unsettled: new UnsettledCommands(db, { commits }),
    executor: (action) => (['move', 'estop', 'weld'].includes(action) ? executor : undefined),
    metrics,
    limits: { envelopeMaxBytes: 64 * 1024, clockSkewMs: 30_000, maxLifetimeMs: 3_600_000 },
    ...(options.verifier === undefined ? {} : { verifier: options.verifier }),
    ...(options.audit === undefined ? {} : { audit: options.audit }),
  });
  const core: Core = {
    dir,
    dbPath,
    commits,
    keys,
    clock,
    pipeline,
    executor,
    audit,
    posture,
    failClosed,
    bundle,
    trusted,
    metrics,
    close: () => {
      commits.flush();
      trusted.persist();
      db.close();
    },
    restart: () => {
      core.close();
      return makeCore(keys, dir, clock, undefined, options);
    },
  };
  return core;
}

export function command(
  key: PrivateKey,
  now: number,
  action: string,
  args: Record<string, string | number | boolean> = {},
  over: { resource?: string; device?: string; lifetimeMs?: number; topic?: string; issuer?: string } = {},
): Uint8Array {
  return signCommand({
    key,
    // No iss: the agent takes the principal the key belongs to.
    ...(over.issuer === undefined ? {} : { issuer: over.issuer }),
    deviceId: over.device ?? DEVICE,
    topic: over.topic ?? 'cmd',
    action,
    resource: over.resource ?? 'Arm::"arm-01"',
    args,
    now,
    lifetimeMs: over.lifetimeMs ?? 60_000,
  });
}

export function approval(key: PrivateKey, now: number, commandDigest: Uint8Array, decision: 'approve' | 'reject' = 'approve'): Uint8Array {
  return signApproval({ key, deviceId: DEVICE, topic: 'approve', commandDigest, decision, now, lifetimeMs: 60_000 });
}
