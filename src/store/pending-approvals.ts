// Commands held for approval (`@approval("N")`). A held command waits until N distinct approvers
// have approved it, or until it expires. Held commands and their approvals are kept in the state
// database, so a restart neither forgets a pending command nor the approvals it has collected.
import type { Database, Statement } from 'better-sqlite3';
import { type ReplyRoute, readReplyRoute } from './reply-route.js';
import { migrate } from './state-db.js';
import { ZtedgeError } from '../errors.js';

const SCHEMA = `
CREATE TABLE IF NOT EXISTS pending_commands (
  digest BLOB PRIMARY KEY,
  envelope BLOB NOT NULL,
  principal TEXT NOT NULL,
  action TEXT NOT NULL,
  resource TEXT NOT NULL,
  required INTEGER NOT NULL,
  approvers TEXT NOT NULL,
  expires_ms INTEGER NOT NULL,
  created_ms INTEGER NOT NULL,
  reply TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS pending_approvals (
  digest BLOB NOT NULL REFERENCES pending_commands (digest) ON DELETE CASCADE,
  approver TEXT NOT NULL,
  time_ms INTEGER NOT NULL,
  PRIMARY KEY (digest, approver)
);
`;

export interface PendingCommand {
  digest: Uint8Array;
  /** The command envelope exactly as received (re-verified before it executes). */
  envelope: Uint8Array;
  principal: string;
  action: string;
  resource: string;
  required: number;
  /** Entity uids an approver must be in; empty = any approver the policy allows. */
  approvers: readonly string[];
  expiresMs: number;
  createdMs: number;
  /** Where the settled result goes, and how the command came. */
  reply: HeldReply;
}

/** What a held command keeps of its arrival for when it is settled. */
export interface HeldReply {
  /** Where the settled result goes; null: the default result topic. */
  route: ReplyRoute | null;
  /** How the command arrived: at quorum the policy is asked again with the same `context.source`. */
  source: 'mqtt' | 'http';
}

export type ApprovalOutcome =
  | { status: 'counted'; approvals: number; required: number }
  | { status: 'quorum'; approvals: number; required: number }
  | { status: 'duplicate'; approvals: number; required: number }
  | { status: 'unknown-command' }
  | { status: 'expired' };

/** The queue is full, or the requester holds its whole share of it. */
export class PendingFullError extends ZtedgeError<'APPROVAL_QUEUE_FULL' | 'APPROVAL_QUEUE_SHARE_FULL'> {}

export class PendingApprovals {
  private readonly insertCommand: Statement;
  private readonly insertApproval: Statement;
  private readonly countApprovals: Statement;
  private readonly selectCommand: Statement;
  private readonly countByPrincipal: Statement;

  constructor(
    private readonly db: Database,
    private readonly maxPending: number,
  ) {
    migrate(db, 'pending_approvals', [SCHEMA]);
    this.insertCommand = db.prepare(`INSERT OR IGNORE INTO pending_commands
      (digest, envelope, principal, action, resource, required, approvers, expires_ms, created_ms, reply)
      VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`);
    this.insertApproval = db.prepare('INSERT OR IGNORE INTO pending_approvals (digest, approver, time_ms) VALUES (?, ?, ?)');
    this.countApprovals = db.prepare('SELECT count(*) AS n FROM pending_approvals WHERE digest = ?');
    this.selectCommand = db.prepare('SELECT * FROM pending_commands WHERE digest = ?');
    this.countByPrincipal = db.prepare('SELECT count(*) AS n FROM pending_commands WHERE principal = ?');
  }

  /**
   * Holds a command; returns false if it is already held. Refuses when the queue is full and, with
   * `sharedBy` keys sharing the queue (the active bundle's issuers), when the requesting principal
   * already holds maxPending / sharedBy commands: one key holder permitted to ask for approvals
   * cannot fill the queue and lock everyone else's approval-gated commands out.
   */
  hold(cmd: PendingCommand, sharedBy?: number): boolean {
    if (this.size() >= this.maxPending) throw new PendingFullError('APPROVAL_QUEUE_FULL', `approval queue is full (${this.maxPending} commands)`);
    if (sharedBy !== undefined) {
      const share = Math.max(1, Math.floor(this.maxPending / Math.max(1, Math.floor(sharedBy))));
      const held = (this.countByPrincipal.get(cmd.principal) as { n: number }).n;
      if (held >= share && this.selectCommand.get(Buffer.from(cmd.digest)) === undefined) {
        throw new PendingFullError('APPROVAL_QUEUE_SHARE_FULL', `${cmd.principal} already holds its share of the approval queue (${share} of ${this.maxPending} commands)`);
      }
    }
    const r = this.insertCommand.run(
      Buffer.from(cmd.digest), Buffer.from(cmd.envelope), cmd.principal, cmd.action, cmd.resource,
      cmd.required, JSON.stringify(cmd.approvers), cmd.expiresMs, cmd.createdMs, JSON.stringify(cmd.reply),
    );
    return r.changes === 1;
  }

  /** Counts one approval by `approver` (distinct approvers only). The caller has already checked the approver may approve. */
  approve(digest: Uint8Array, approver: string, nowMs: number): ApprovalOutcome {
    return this.db.transaction((): ApprovalOutcome => {
      const cmd = this.get(digest);
      if (cmd === undefined) return { status: 'unknown-command' };
      if (cmd.expiresMs <= nowMs) return { status: 'expired' };
      const added = this.insertApproval.run(Buffer.from(digest), approver, nowMs).changes === 1;
      const approvals = (this.countApprovals.get(Buffer.from(digest)) as { n: number }).n;
      if (!added) return { status: 'duplicate', approvals, required: cmd.required };
      return { status: approvals >= cmd.required ? 'quorum' : 'counted', approvals, required: cmd.required };
    })();
  }

  get(digest: Uint8Array): PendingCommand | undefined {
    const row = this.selectCommand.get(Buffer.from(digest)) as Record<string, unknown> | undefined;
    return row === undefined ? undefined : fromRow(row);
  }

  approversOf(digest: Uint8Array): string[] {
    return this.approvalsOf(digest).map((a) => a.approver);
  }

  /** The approvals counted for a held command, in the order they came. */
  approvalsOf(digest: Uint8Array): Array<{ approver: string; timeMs: number }> {
    const rows = this.db.prepare('SELECT approver, time_ms FROM pending_approvals WHERE digest = ? ORDER BY time_ms, approver').all(Buffer.from(digest)) as Array<{ approver: string; time_ms: number }>;
    return rows.map((r) => ({ approver: r.approver, timeMs: r.time_ms }));
  }

  /** Removes a command (executed, denied or expired) with its approvals. */
  remove(digest: Uint8Array): boolean {
    return this.db.prepare('DELETE FROM pending_commands WHERE digest = ?').run(Buffer.from(digest)).changes === 1;
  }

  /** Commands whose expiry has passed, oldest first (the caller denies and removes them). */
  expired(nowMs: number): PendingCommand[] {
    const rows = this.db.prepare('SELECT * FROM pending_commands WHERE expires_ms <= ? ORDER BY expires_ms').all(nowMs) as Array<Record<string, unknown>>;
    return rows.map(fromRow);
  }

  /** Held commands, oldest first (at most `limit`). */
  all(limit = -1): PendingCommand[] {
    const rows = this.db.prepare('SELECT * FROM pending_commands ORDER BY created_ms, digest LIMIT ?').all(limit) as Array<Record<string, unknown>>;
    return rows.map(fromRow);
  }

  size(): number {
    return (this.db.prepare('SELECT count(*) AS n FROM pending_commands').get() as { n: number }).n;
  }
}

function fromRow(r: Record<string, unknown>): PendingCommand {
  return {
    digest: new Uint8Array(r.digest as Buffer),
    envelope: new Uint8Array(r.envelope as Buffer),
    principal: r.principal as string,
    action: r.action as string,
    resource: r.resource as string,
    required: r.required as number,
    approvers: JSON.parse(r.approvers as string) as string[],
    expiresMs: r.expires_ms as number,
    createdMs: r.created_ms as number,
    reply: readHeldReply(JSON.parse(r.reply as string)),
  };
}

/** A stored reply read back (rows of older agents kept the route under `reply`). */
function readHeldReply(value: unknown): HeldReply {
  const stored = (typeof value === 'object' && value !== null ? value : {}) as { route?: unknown; reply?: unknown; source?: unknown };
  return { route: readReplyRoute(stored.route ?? stored.reply), source: stored.source === 'http' ? 'http' : 'mqtt' };
}
