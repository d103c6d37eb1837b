// kill -9 while the audit log records at full speed: after every kill the log reopens (the
// restart), every record whose append had resolved is there with the same hash, seq is
// gap-free, and the chain, the stored tree and every checkpoint verify. The same state
// directory goes through several kills in a row (a fresh one every 10).
// CRASH_ITERATIONS sets the number of kills (default 3; `npm run test:crash` runs 50).
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { SqliteAuditLog } from '../../src/audit/log.js';
import { verifyStoredLog } from '../../src/audit/verify.js';
import { runAndKill } from '../support/kill-child.js';
import { deviceKey, tempStateDir, writeKeyFiles } from './support.js';

const ITERATIONS = Number(process.env.CRASH_ITERATIONS ?? 3);
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/append-child.ts', import.meta.url));
const work = tempStateDir('ztedge-audit-crash-');
afterAll(() => work.remove());

describe('the audit log under kill -9', () => {
  it(
    `keeps every acknowledged record, gap-free and verifiable, over ${ITERATIONS} kills`,
    async () => {
      const key = deviceKey();
      const keyFile = writeKeyFiles(work.dir, 'device', key).privatePath;
      let dir = '';
      let reportedTotal = 0;
      for (let i = 0; i < ITERATIONS; i++) {
        if (i % 10 === 0) {
          dir = path.join(work.dir, `state-${i}`);
          fs.mkdirSync(dir, { mode: 0o700 });
        }
        const out = await runAndKill({ script: CHILD, args: [dir, keyFile], cwd: REPO_ROOT, killAfter: 'ready\n', delayMs: randomInt(30, 400) });
        const acknowledged = new Map<number, string>();
        for (const line of out.split('\n')) {
          const m = /^ok (\d+) ([0-9a-f]{64})$/.exec(line);
          if (m !== null) acknowledged.set(Number(m[1]), m[2]!);
        }
        reportedTotal += acknowledged.size;

        // The restart: the log opens on what the killed process left.
        const db = openStateDb(path.join(dir, 'state.db'));
        try {
          const log = new SqliteAuditLog(db, { now: Date.now });
          for (const [seq, hash] of acknowledged) {
            const record = log.reader.record(seq);
            expect(record, `acknowledged record ${seq} (kill ${i})`).toBeDefined();
            expect(Buffer.from(record!.hash).toString('hex')).toBe(hash);
          }
          const report = verifyStoredLog(log.reader, { keys: [key.publicKey], device: 'arm-1' });
          expect(report.failure, `kill ${i}: ${JSON.stringify(report.failure)}`).toBeUndefined();
          expect(report.firstSeq).toBe(1);
          expect(report.lastSeq).toBe(log.head().seq);
          expect(report.lastSeq).toBeGreaterThanOrEqual(Math.max(0, ...acknowledged.keys()));
          if (report.lastSeq > 200) expect(report.checkpoints).toBeGreaterThan(0);
        } finally {
          db.close();
        }
      }
      // The kills landed while records were being written, not before.
      expect(reportedTotal).toBeGreaterThan(ITERATIONS * 50);
    },
    ITERATIONS * 20_000 + 30_000,
  );
});
