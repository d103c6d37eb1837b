// Commands decided `allow` whose execution has not been recorded yet. A row is written in the
// same transaction as the command's allow record and deleted in the same transaction as its
// execution record, so after a crash (kill -9, power loss) the rows left are exactly the
// commands that may or may not have run: the controller may have acted, the agent never learnt
// how it went. At start the agent settles each one as `outcome unknown` (an audit record and a
// result to its sender), never by running it again.
import { GroupCommit } from './group-commit.js';
import type { Database } from './state-db.js';
import { type ReplyRoute, readReplyRoute } from './reply-route.js';
import { migrate } from './state-db.js';

const MIGRATIONS = [
  `CREATE TABLE unsettled_commands (
     digest BLOB PRIMARY KEY CHECK (length(digest) = 32),
     cti BLOB NOT NULL,
     action TEXT NOT NULL,
     policies TEXT NOT NULL,
     reasons TEXT NOT NULL,
     reply TEXT NOT NULL,
     decided_ms INTEGER NOT NULL
   ) STRICT, WITHOUT ROWID;`,
];

export interface UnsettledCommand {
  /** SHA-256 of the command envelope. */
  digest: Uint8Array;
  cti: Uint8Array;
  action: string;
  /** Determining policy ids and reasons of the allow decision. */
  policies: string[];
  reasons: string[];
  /** Where its result goes; null for the default result topic. */
  reply: ReplyRoute | null;
  decidedMs: number;
}

export class UnsettledCommands {
  private readonly commits: GroupCommit;
  private readonly insert;
  private readonly remove;
  private readonly selectAll;

  constructor(db: Database, opts: { commits?: GroupCommit } = {}) {
    this.commits = opts.commits ?? new GroupCommit(db);
    migrate(db, 'unsettled_commands', MIGRATIONS);
    this.insert = db.prepare<[Buffer, Buffer, string, string, string, string, number]>(
      'INSERT OR REPLACE INTO unsettled_commands (digest, cti, action, policies, reasons, reply, decided_ms) VALUES (?, ?, ?, ?, ?, ?, ?)',
    );
    this.remove = db.prepare<[Buffer]>('DELETE FROM unsettled_commands WHERE digest = ?');
    this.selectAll = db.prepare<[], { digest: Buffer; cti: Buffer; action: string; policies: string; reasons: string; reply: string; decided_ms: number }>(
      'SELECT digest, cti, action, policies, reasons, reply, decided_ms FROM unsettled_commands ORDER BY decided_ms, digest',
    );
  }

  /** Queued on the group commit: call in the turn the allow record is queued, so both share a transaction. */
  add(command: UnsettledCommand): Promise<void> {
    const row = [
      Buffer.from(command.digest),
      Buffer.from(command.cti),
      command.action,
      JSON.stringify(command.policies),
      JSON.stringify(command.reasons),
      JSON.stringify(command.reply ?? null),
      command.decidedMs,
    ] as const;
    return this.commits.run(() => void this.insert.run(...row));
  }

  /** Queued on the group commit: call in the turn the execution record is queued. */
  settle(digest: Uint8Array): Promise<void> {
    const key = Buffer.from(digest);
    return this.commits.run(() => void this.remove.run(key));
  }

  /** Every command left unsettled, oldest first. */
  all(): UnsettledCommand[] {
    return this.selectAll.all().map((r) => ({
      digest: new Uint8Array(r.digest),
      cti: new Uint8Array(r.cti),
      action: r.action,
      policies: JSON.parse(r.policies) as string[],
      reasons: JSON.parse(r.reasons) as string[],
      reply: readReplyRoute(JSON.parse(r.reply)),
      decidedMs: r.decided_ms,
    }));
  }
}
