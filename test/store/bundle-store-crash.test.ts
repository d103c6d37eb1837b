// Kills a process that is activating bundles (SIGKILL, at a random moment) and checks that the
// store it leaves behind opens with exactly one complete bundle active — the last one whose
// activation returned, or the one being activated — and a floor at or above its revision.
// CRASH_ITERATIONS sets the number of kills (default 10; `npm run test:crash` runs 200).
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { BundleStore } from '../../src/bundle/store.js';
import { listStore, sha256Hex } from './bundle-fixtures.js';
import { runAndKill as runChildAndKill } from '../support/kill-child.js';

const ITERATIONS = Number(process.env.CRASH_ITERATIONS ?? 10);
const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const CHILD = fileURLToPath(new URL('./fixtures/activate-child.ts', import.meta.url));
const CRASH_DEBRIS = ['TEMP_FILE_REMOVED', 'UNREFERENCED_BLOB_REMOVED', 'FLOOR_RAISED'];
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-crash-'));
const dir = path.join(tmp, 'bundles');

afterAll(() => {
  fs.rmSync(tmp, { recursive: true, force: true });
});

interface ChildLog {
  ready: boolean;
  /** Last revision whose activate() returned, with its digest. */
  done: { revision: number; digest: string } | null;
  /** Revision whose activate() was running when the child died, if any. */
  inFlight: { revision: number; digest: string } | null;
}

function parseLog(text: string): ChildLog {
  const log: ChildLog = { ready: false, done: null, inFlight: null };
  // A partial last line cannot happen (each line is one write), but ignore one defensively.
  for (const line of text.split('\n').filter((l) => l.length > 0)) {
    const [kind, revision, digest] = line.split(' ');
    if (kind === 'ready') log.ready = true;
    if (kind === 'begin') log.inFlight = { revision: Number(revision), digest };
    if (kind === 'done') {
      log.done = { revision: Number(revision), digest };
      log.inFlight = null;
    }
  }
  return log;
}

/** Starts the child, kills it `delayMs` after it is ready, and returns what it reported. */
async function runAndKill(delayMs: number): Promise<ChildLog> {
  return parseLog(await runChildAndKill({ script: CHILD, args: [dir], cwd: REPO_ROOT, killAfter: 'ready', delayMs }));
}

describe('bundle store under SIGKILL', () => {
  it(
    `keeps exactly one complete bundle active across ${ITERATIONS} kills`,
    async () => {
      let previous: { revision: number; digest: string } | null = null;
      let killsMidActivation = 0;
      for (let i = 0; i < ITERATIONS; i++) {
        const log = await runAndKill(randomInt(0, 80));
        expect(log.ready).toBe(true);
        if (log.inFlight !== null) killsMidActivation++;

        const store = new BundleStore(dir);
        const { status, actions } = store.open();
        // A crash leaves only debris to clean up; nothing referenced may be missing or damaged.
        for (const action of actions) expect(CRASH_DEBRIS).toContain(action.code);
        // The old bundle is the last one whose activation returned (in this run or an earlier
        // one; none before the first); the new one is the activation in flight at the kill.
        const old = log.done ?? previous;
        const outcomes = log.inFlight === null ? [old] : [old, log.inFlight];
        const active = status.active === null ? null : { revision: status.active.revision, digest: status.active.digest };
        expect(outcomes).toContainEqual(active);
        const highest = Math.max(0, ...outcomes.map((b) => b?.revision ?? 0));
        expect(status.floor).toBeLessThanOrEqual(highest);

        if (active !== null) {
          const stored = store.readActive()!;
          expect(sha256Hex(stored.bytes)).toBe(active.digest);
          expect(status.floor).toBeGreaterThanOrEqual(active.revision);
        }
        if (log.inFlight !== null && active?.revision === log.inFlight.revision) {
          // The new bundle took over: the old one is the last-known-good.
          expect(status.lkg).toEqual(old);
        } else if (status.lkg !== null) {
          expect(status.lkg.revision).toBeLessThan(active!.revision);
        }
        const left = listStore(dir);
        expect(left.top.filter((name) => name.startsWith('.tmp-'))).toEqual([]);
        expect(left.blobs).toEqual(
          [status.active?.digest, status.lkg?.digest].filter((d) => d !== undefined).sort(),
        );
        previous = status.active;
      }
      // Most kills land inside an activation; the test is meaningless if none did.
      expect(killsMidActivation).toBeGreaterThan(0);
    },
    ITERATIONS * 10_000,
  );
});
