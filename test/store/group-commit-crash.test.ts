// Crash safety of group commit: a process killed the instant a command starts executing has
// already committed that command's replay entry and decision record, so after a restart the
// same envelope is refused as a replay and the audit log says what was decided.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { openStateDb } from '../../src/store/state-db.js';
import { SqliteAuditLog } from '../../src/audit/log.js';
import { decodeCbor } from '../../src/envelope/cbor.js';
import { EnvelopeError } from '../../src/envelope/errors.js';
import { ReplayGuard } from '../../src/store/replay-guard.js';
import { T0 } from '../agent/fixture.js';

const CHILD = new URL('./group-commit-crash-child.ts', import.meta.url).pathname;
const dirs: string[] = [];
afterEach(() => {
  for (const dir of dirs.splice(0)) fs.rmSync(dir, { recursive: true, force: true });
});

function runChild(dir: string): Promise<{ signal: NodeJS.Signals | null; lines: string[] }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
    child.once('error', reject);
    child.once('exit', (_code, signal) => resolve({ signal, lines: out.split('\n').filter(Boolean) }));
  });
}

describe('group commit under a crash', () => {
  it('has the replay entry and decision record on disk when a command is killed at execution', async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-crash-'));
    dirs.push(dir);
    const { signal, lines } = await runChild(dir);
    expect(signal).toBe('SIGKILL');
    const { executing } = JSON.parse(lines.at(-1)!) as { executing: string };
    const cti = Buffer.from(executing, 'hex');

    const db = openStateDb(path.join(dir, 'state.db'));
    try {
      const guard = new ReplayGuard(db, { clockSkewMs: 30_000 });
      let refusal: string | undefined;
      try {
        guard.checkAndRecord({ issuer: 'test-sender', cti, expMs: T0 + 60_000 }, T0 + 1000);
      } catch (err) {
        refusal = (err as EnvelopeError).code;
      }
      expect(refusal).toBe('ENVELOPE_REPLAY');

      const audit = new SqliteAuditLog(db, { now: () => T0 });
      expect(audit.verify()).toBeUndefined();
      const records = audit.read(1, 10);
      expect(records.map((r) => r.kind)).toEqual(['decision']);
      const decision = decodeCbor(records[0]!.body, { maxBytes: 1 << 20, maxDepth: 32 }) as Map<string, unknown>;
      expect([decision.get('decision'), Buffer.from(decision.get('cti') as Uint8Array).toString('hex')]).toEqual(['allow', executing]);
    } finally {
      db.close();
    }
  });
});
