// Durable-state costs on this machine's disk: replay-guard records (one synchronous=FULL commit
// each), trusted-clock observations, and bundle activations (four fsynced renames).
// Run: npx tsx bench/store.bench.ts [--replays N] [--bundle-kib N]
import { createHash, randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { openStateDb } from '../src/store/state-db.js';
import { BundleStore } from '../src/bundle/store.js';
import { ReplayGuard } from '../src/store/replay-guard.js';
import { TrustedClock } from '../src/store/trusted-clock.js';

const { values } = parseArgs({
  options: { replays: { type: 'string', default: '5000' }, 'bundle-kib': { type: 'string', default: '256' } },
});
const replays = Number(values.replays);
const bundleBytes = Number(values['bundle-kib']) * 1024;

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-bench-store-'));

function perSecond(count: number, ms: number): string {
  return `${Math.round((count / ms) * 1000).toLocaleString('en-US')}/s`;
}

try {
  const db = openStateDb(path.join(tmp, 'state.db'));
  const guard = new ReplayGuard(db);
  const now = Date.now();
  let start = performance.now();
  for (let i = 0; i < replays; i++) {
    guard.checkAndRecord({ issuer: 'bench', cti: randomBytes(16), expMs: now + 300_000 }, now);
  }
  let ms = performance.now() - start;
  console.log(`replay guard: ${replays} checkAndRecord in ${ms.toFixed(0)} ms, ${perSecond(replays, ms)} (${((ms / replays) * 1000).toFixed(0)} µs each)`);

  const clock = new TrustedClock(db, () => now);
  const observations = 100_000;
  start = performance.now();
  for (let i = 0; i < observations; i++) clock.observe(now + i * 10); // one write per 60 s of signed time
  ms = performance.now() - start;
  console.log(`trusted clock: ${observations} observe (10 ms apart) in ${ms.toFixed(0)} ms, ${perSecond(observations, ms)}`);
  db.close();

  const store = new BundleStore(path.join(tmp, 'bundles'));
  store.open();
  const activations = 20;
  start = performance.now();
  for (let revision = 1; revision <= activations; revision++) {
    const bytes = randomBytes(bundleBytes);
    store.activate(bytes, revision, createHash('sha256').update(bytes).digest('hex'));
  }
  ms = performance.now() - start;
  console.log(`bundle store: ${activations} activations of ${bundleBytes / 1024} KiB, ${(ms / activations).toFixed(1)} ms each`);
  start = performance.now();
  new BundleStore(path.join(tmp, 'bundles')).open();
  console.log(`bundle store: open (verifies both blobs) ${(performance.now() - start).toFixed(1)} ms`);
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
