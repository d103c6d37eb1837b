// Is the decision cache a win? On the robot-cell benchmark set (228 policies, 10,000 varied
// requests) this compares, per request: deciding (strict enforce), a hit in the in-memory LRU
// (key hashing included), and a hit in the SQLite table (after the LRU lost the entry, e.g. a
// restart). Each repeated request pattern is measured the same way; the verdict lines say which
// paths the agent should use the cache on.
//
//   npm run bench:cache
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { openStateDb } from '../src/store/state-db.js';
import { DecisionCache, contextReadsOf, decisionKey } from '../src/store/decision-cache.js';
import { Entities, PolicySet, enforce, requestFromJson, type AuthzRequest } from '../src/policy/index.js';
import { robotCellFixture } from './robot-cell-fixture.js';

const fixture = robotCellFixture(10_000);
const policies = PolicySet.fromText(fixture.policies);
const entities = Entities.fromJson(JSON.stringify(fixture.entities));
const requests: AuthzRequest[] = fixture.requests.map((r) => requestFromJson(JSON.stringify(r)));
const reads = contextReadsOf(policies);
const digest = 'ab'.repeat(32);
const NOW = 1_000_000;

function cpuNs(): bigint {
  const { user, system } = process.cpuUsage();
  return BigInt(user + system) * 1000n;
}

/** Operations per CPU-second over repeated passes (at least 1.5 s of CPU). */
function rate(name: string, run: (r: AuthzRequest) => unknown): number {
  for (const r of requests) run(r); // warm-up
  let ops = 0;
  const start = cpuNs();
  while (cpuNs() - start < 1_500_000_000n) {
    for (const r of requests) run(r);
    ops += requests.length;
  }
  const perSecond = ops / (Number(cpuNs() - start) / 1e9);
  console.log(`${name.padEnd(44)} ${Math.round(perSecond).toLocaleString('en-US').padStart(12)} /CPU-s  ${(1e6 / perSecond).toFixed(2).padStart(8)} µs each`);
  return perSecond;
}

const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-cache-bench-'));
const db = openStateDb(path.join(dir, 'state.db'));
const cache = new DecisionCache(db, requests.length * 2);

console.log(`decision cache benchmark: ${policies.policies.length} policies, ${requests.length} requests, context reads: ${reads === 'all' ? 'all' : reads.length + ' paths'}`);
const decide = rate('decide (strict enforce)', (r) => enforce(policies, entities, r));
const keyOnly = rate('cache key only (read attributes)', (r) => decisionKey(digest, r, reads));

db.exec('BEGIN');
for (const r of requests) cache.set(decisionKey(digest, r, reads), enforce(policies, entities, r), NOW, 60_000);
db.exec('COMMIT');
const lruHit = rate('LRU hit (key + lookup)', (r) => cache.get(decisionKey(digest, r, reads), NOW));

const cold = new DecisionCache(db, 1); // an LRU of one: every lookup goes to the table
const tableHit = rate('table hit (key + SHA-256 + SQLite read + parse)', (r) => cold.get(decisionKey(digest, r, reads), NOW));
const missAndFill = rate('miss: key + lookup + decide', (r) => {
  const key = decisionKey(digest, r, reads);
  return cold.get(key + '#', NOW) ?? enforce(policies, entities, r);
});
db.close();
const memory = new DecisionCache(null, 1024);
let n = 0;
const lruMiss = rate('miss, memory only: key + lookup + decide + insert', (r) => {
  const key = decisionKey(digest, r, reads) + String(n++);
  const d = enforce(policies, entities, r);
  memory.get(key, NOW);
  memory.set(key, d, NOW, 60_000);
  return d;
});

// Break-even hit rate h for the memory cache: h/lruHit + (1-h)/lruMiss = 1/decide.
const breakEven = (1 / lruMiss - 1 / decide) / (1 / lruMiss - 1 / lruHit);
console.log(`lru vs decide: ${(lruHit / decide).toFixed(2)}x`);
console.log(`memory cache break-even hit rate: ${(breakEven * 100).toFixed(0)}%`);
console.log(`table vs decide: ${(tableHit / decide).toFixed(2)}x`);
console.log(`miss overhead with the table: ${((decide / missAndFill - 1) * 100).toFixed(0)}%`);
// The pipeline sees mostly distinct commands (fresh args, and `context.now` wherever a policy
// reads it), so its hit rate is far below any break-even above ~50%.
const useInPipeline = lruHit > decide && breakEven < 0.5;
console.log(`verdict lru: ${lruHit > decide ? `hit is ${(lruHit / decide).toFixed(2)}x faster, but pays only above ${(breakEven * 100).toFixed(0)}% hits` : 'loss'}`);
console.log(`verdict table: ${tableHit > decide ? 'win' : 'loss'}`);
console.log(`decision cache in the command pipeline: ${useInPipeline ? 'yes' : 'no'}`);
void keyOnly;
