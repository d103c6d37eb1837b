// Kills the agent's bundle manager (SIGKILL) at random moments while it activates real signed
// bundles, then restarts it on the same state: exactly one complete bundle must be active — the
// last one whose activation returned, or the one in flight — and it must verify.
// CRASH_ITERATIONS sets the number of kills (default 5; `npm run test:crash` runs 60).
import { randomInt } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type BundleEvent, BundleManager } from '../../src/bundle/activation.js';
import { BundleStore } from '../../src/bundle/store.js';
import { type TrustOptions, verifyBundle } from '../../src/bundle/verify.js';
import { CRASH_SOURCES, signCrashBundle } from './fixtures/crash-bundles.js';
import { NOW_MS, REPO_ROOT, type Roots, buildPayload, makeRoots, tempDir, trustOf } from './support.js';
import { runAndKill as runChildAndKill } from '../support/kill-child.js';

const ITERATIONS = Number(process.env.CRASH_ITERATIONS ?? 5);
const CHILD = fileURLToPath(new URL('./fixtures/manager-activate-child.ts', import.meta.url));
/** What open() may clean up after a kill; anything else means a referenced file was damaged. */
const CRASH_DEBRIS = ['TEMP_FILE_REMOVED', 'UNREFERENCED_BLOB_REMOVED', 'FLOOR_RAISED'];
/**
 * The kill lands up to this long after the first `begin`: about the time the child takes for its
 * first ten activations (~5–250 ms each), so most kills land inside one, weighted by its length.
 */
const MAX_KILL_DELAY_MS = 800;

const clock = { now: () => NOW_MS };
let roots: Roots;
let trust: TrustOptions;
let dir: string;

beforeAll(() => {
  roots = makeRoots();
  trust = trustOf(roots);
  dir = tempDir('manager-crash');
});

afterAll(() => {
  fs.rmSync(roots.dir, { recursive: true, force: true });
  fs.rmSync(dir, { recursive: true, force: true });
});

interface Ref {
  revision: number;
  digest: string;
}

interface ChildLog {
  /** Revision the child found active at its start. */
  readyRevision: number | null;
  /** Last revision whose activate() returned. */
  done: Ref | null;
  /** Revision whose activate() was running when the child died, if any. */
  inFlight: Ref | null;
}

function parseLog(text: string): ChildLog {
  const log: ChildLog = { readyRevision: null, done: null, inFlight: null };
  for (const line of text.split('\n').filter((l) => l.length > 0)) {
    const [kind, revision, digest] = line.split(' ') as [string, string, string];
    if (kind === 'ready') log.readyRevision = Number(revision);
    if (kind === 'begin') log.inFlight = { revision: Number(revision), digest };
    if (kind === 'done') {
      log.done = { revision: Number(revision), digest };
      log.inFlight = null;
    }
  }
  return log;
}

/** Starts the child and kills it `delayMs` after its first `begin` line. */
async function runAndKill(delayMs: number): Promise<ChildLog> {
  return parseLog(await runChildAndKill({ script: CHILD, args: [dir, roots.dir], cwd: REPO_ROOT, killAfter: 'begin ', delayMs }));
}

/** Restarts a manager on the state directory, as the agent does after a crash. */
function restart(): { manager: BundleManager; store: BundleStore; events: BundleEvent[] } {
  const store = new BundleStore(dir);
  const manager = new BundleManager({ store, trust, clock });
  const events: BundleEvent[] = [];
  manager.on((event) => events.push(event));
  manager.start();
  return { manager, store, events };
}

describe('bundle manager under SIGKILL', () => {
  it('uses sources that pass the full build (compile and embedded tests)', () => {
    for (const source of CRASH_SOURCES) expect(() => buildPayload({}, source)).not.toThrow();
  });

  it(
    `restarts with one verified bundle, the old or the new, across ${ITERATIONS} kills`,
    async () => {
      // Seed revision 1, so that from the first kill on there is an old bundle to fall back on.
      const seed = signCrashBundle(roots, 1);
      restart().manager.activate(seed.bytes);
      let previous: Ref = { revision: seed.revision, digest: seed.digest };
      const outcomes = { old: 0, new: 0, betweenActivations: 0 };

      for (let i = 0; i < ITERATIONS; i++) {
        const log = await runAndKill(randomInt(0, MAX_KILL_DELAY_MS + 1));
        // The child continued from where the previous restart left off.
        expect(log.readyRevision).toBe(previous.revision);

        const { manager, store, events } = restart();
        // The restart loaded the active bundle as it was: nothing refused, nothing rolled back,
        // and nothing repaired beyond crash debris.
        expect(events.at(-1)).toMatchObject({ kind: 'loaded' });
        for (const event of events.slice(0, -1)) {
          expect(event.kind).toBe('store-recovered');
          if (event.kind !== 'store-recovered') continue;
          for (const action of event.actions) expect(CRASH_DEBRIS).toContain(action.code);
        }

        const status = store.status();
        const current = manager.current;
        expect(current).not.toBeNull();
        const active = { revision: current!.manifest.revision, digest: current!.digest };
        expect(status.active).toEqual(active);
        const old = log.done ?? previous;
        const allowed = log.inFlight === null ? [old] : [old, log.inFlight];
        expect(allowed).toContainEqual(active);

        // The stored bytes verify on their own against the roots, as a new bundle would.
        const stored = store.readActive()!;
        const verified = verifyBundle(stored.bytes, { ...trust, now: NOW_MS });
        expect({ revision: verified.manifest.revision, digest: verified.digest }).toEqual(active);

        // Only the active and last-known-good bundles remain on disk.
        const blobs = fs.readdirSync(path.join(dir, 'blobs')).sort();
        expect(blobs).toEqual([status.active?.digest, status.lkg?.digest].filter((d) => d !== undefined).sort());

        expect(status.floor).toBeGreaterThanOrEqual(active.revision);
        expect(status.floor).toBeLessThanOrEqual(Math.max(...allowed.map((b) => b.revision)));
        expect(manager.status().rolledBack).toBe(false);

        if (log.inFlight === null) outcomes.betweenActivations++;
        else if (active.revision === log.inFlight.revision) outcomes.new++;
        else outcomes.old++;
        previous = active;
      }
      // The test is meaningless if no kill landed inside an activation. Most land in verification
      // (the old bundle stays); over a long run some must also land past the commit point.
      expect(outcomes.old + outcomes.new).toBeGreaterThan(0);
      if (ITERATIONS >= 50) {
        expect(outcomes.old).toBeGreaterThan(0);
        expect(outcomes.new).toBeGreaterThan(0);
      }
    },
    ITERATIONS * 10_000,
  );
});
