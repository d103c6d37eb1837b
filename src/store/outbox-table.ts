// The outbox's table: every message the agent sends waits here, committed, until the broker
// acknowledges it (the sending loop that drives it is transport/outbox.ts).
import { migrate, type Database } from './state-db.js';

const MIGRATIONS = [
  `CREATE TABLE outbox_message (
     id INTEGER PRIMARY KEY AUTOINCREMENT,
     topic TEXT NOT NULL,
     payload BLOB NOT NULL,
     qos INTEGER NOT NULL CHECK (qos IN (0, 1)),
     retain INTEGER NOT NULL CHECK (retain IN (0, 1)),
     response_topic TEXT,
     correlation_data BLOB,
     content_type TEXT,
     size INTEGER NOT NULL,
     enqueued_at INTEGER NOT NULL,
     state TEXT NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'rejected')),
     reason_code INTEGER,
     reason TEXT
   ) STRICT;
   CREATE INDEX outbox_message_pending ON outbox_message (id) WHERE state = 'pending';
   CREATE INDEX outbox_message_retained ON outbox_message (topic) WHERE state = 'pending' AND retain = 1;`,
];


/** One stored message, as the sending loop reads it. */
export interface OutboxRow {
  id: number;
  topic: string;
  payload: Buffer;
  qos: 0 | 1;
  retain: 0 | 1;
  response_topic: string | null;
  correlation_data: Buffer | null;
  content_type: string | null;
  size: number;
  enqueued_at: number;
}

/** Creates or migrates the table and prepares the statements the sending loop uses. */
export function openOutboxTable(db: Database) {
  migrate(db, 'outbox', MIGRATIONS);
  return prepareStatements(db);
}

function prepareStatements(db: Database) {
  return {
    held: db.prepare<[], { messages: number; bytes: number }>(
      'SELECT count(*) AS messages, coalesce(sum(size), 0) AS bytes FROM outbox_message',
    ),
    bounds: db.prepare<[], { firstPending: number | null; nextId: number }>(
      `SELECT (SELECT min(id) FROM outbox_message WHERE state = 'pending') AS firstPending,
              (SELECT coalesce(max(id), 0) + 1 FROM outbox_message) AS nextId`,
    ),
    pending: db.prepare<[number, number, number], OutboxRow>(
      `SELECT id, topic, payload, qos, retain, response_topic, correlation_data, content_type, size, enqueued_at
       FROM outbox_message WHERE state = 'pending' AND id >= ? AND id < ? ORDER BY id LIMIT ?`,
    ),
    retainedOnTopic: db.prepare<[string], { id: number; size: number }>(
      "SELECT id, size FROM outbox_message WHERE state = 'pending' AND retain = 1 AND topic = ?",
    ),
    insert: db.prepare(
      `INSERT INTO outbox_message
         (topic, payload, qos, retain, response_topic, correlation_data, content_type, size, enqueued_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ),
    delete: db.prepare<[number]>('DELETE FROM outbox_message WHERE id = ?'),
    reject: db.prepare<[number | null, string, number]>(
      "UPDATE outbox_message SET state = 'rejected', reason_code = ?, reason = ? WHERE id = ?",
    ),
    rejected: db.prepare<[], { id: number; topic: string; reason_code: number | null; reason: string; enqueued_at: number }>(
      "SELECT id, topic, reason_code, reason, enqueued_at FROM outbox_message WHERE state = 'rejected' ORDER BY id",
    ),
    discardRejected: db.prepare<[], { size: number }>("DELETE FROM outbox_message WHERE state = 'rejected' RETURNING size"),
  };
}
