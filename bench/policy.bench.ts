// Policy engine benchmark: ztedge's native Cedar engine vs cedar-wasm, same process, same run,
// same robot-cell policy set (200+ policies, ~120 entities) and the same seeded requests.
//
//   npm run bench:policy [-- --requests N] [-- --seed S]
//
// cedar-wasm is called the fast way it offers: the policy set pre-parsed once
// (`preparsePolicySet`), `statefulIsAuthorized` per request; its API takes the entities on every
// call. ztedge evaluates requests already built from JSON (the agent builds them once per
// command); a separate line shows the cost including request JSON reading.
import { Entities, PolicySet, isAuthorized, requestFromJson } from '../src/policy/index.js';
import type { AuthzRequest, Decision } from '../src/policy/index.js';
import { PreparsedOraclePolicySet, cedarVersion } from '../test/policy/support/cedar-wasm.js';
import type { OracleDecision } from '../test/policy/support/cedar-wasm.js';
import { robotCellFixture } from './robot-cell-fixture.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  const value = i === -1 ? undefined : Number(process.argv[i + 1]);
  if (value === undefined) return fallback;
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} needs a positive integer`);
  return value;
}

interface Timing {
  perSecond: number;
  p50us: number;
  p99us: number;
}

function percentile(sortedNs: Float64Array, q: number): number {
  return sortedNs[Math.min(sortedNs.length - 1, Math.floor(q * sortedNs.length))]! / 1000;
}

/**
 * Latency from one timed pass (a clock read per call), throughput from untimed passes repeated
 * for at least `minMs` (so fast engines are not dominated by the clock).
 */
function measure<R>(items: readonly R[], run: (item: R) => unknown, minMs: number): Timing {
  const latencies = new Float64Array(items.length);
  for (let i = 0; i < items.length; i++) {
    const t0 = process.hrtime.bigint();
    run(items[i]!);
    latencies[i] = Number(process.hrtime.bigint() - t0);
  }
  latencies.sort();
  let calls = 0;
  const start = performance.now();
  let elapsed = 0;
  do {
    for (const item of items) run(item);
    calls += items.length;
    elapsed = performance.now() - start;
  } while (elapsed < minMs);
  return { perSecond: (calls / elapsed) * 1000, p50us: percentile(latencies, 0.5), p99us: percentile(latencies, 0.99) };
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const line = (label: string, t: Timing) =>
  `${label.padEnd(34)} ${fmt(t.perSecond).padStart(12)} decisions/s   p50 ${fmt(t.p50us, 2).padStart(9)} µs   p99 ${fmt(t.p99us, 2).padStart(9)} µs`;

function sameDecision(ours: Decision, theirs: OracleDecision): boolean {
  const errored = ours.errors.map((e) => e.policyId).sort();
  return (
    ours.decision === theirs.decision &&
    [...ours.reasons].sort().join() === theirs.reasons.join() &&
    errored.join() === theirs.errored.join()
  );
}

function main(): void {
  const requestCount = option('requests', 10_000);
  const fixture = robotCellFixture(requestCount, option('seed', 20250314));
  const entitiesText = JSON.stringify(fixture.entities);
  const requestTexts = fixture.requests.map((r) => JSON.stringify(r));

  const policySet = PolicySet.fromText(fixture.policies, { source: 'robot-cell' });
  const entities = Entities.fromJson(entitiesText);
  const requests: AuthzRequest[] = requestTexts.map((t) => requestFromJson(t));
  const oracle = new PreparsedOraclePolicySet(fixture.policies);

  console.log(`policy benchmark: ${fixture.policyCount} policies, ${entities.size} entities, ${requestCount} requests; cedar-wasm ${cedarVersion}`);

  // Warm-up: let both JITs (and Wasm tier-up) settle.
  for (let pass = 0; pass < 3; pass++) for (const r of requests) isAuthorized(policySet, entities, r);
  for (const r of fixture.requests.slice(0, 300)) oracle.isAuthorized(fixture.entities, r);

  const ours = measure(requests, (r) => isAuthorized(policySet, entities, r), 2000);
  const oursWithJson = measure(requestTexts, (t) => isAuthorized(policySet, entities, requestFromJson(t)), 2000);
  const theirs = measure(fixture.requests, (r) => oracle.isAuthorized(fixture.entities, r), 0);

  let allow = 0;
  let errored = 0;
  let mismatches = 0;
  for (let i = 0; i < requestCount; i++) {
    const d = isAuthorized(policySet, entities, requests[i]!);
    const expected = oracle.isAuthorized(fixture.entities, fixture.requests[i]!);
    if (d.decision === 'allow') allow++;
    if (d.errors.length > 0) errored++;
    if (!sameDecision(d, expected)) {
      if (mismatches < 5) {
        console.log(`mismatch on request ${i}: ${requestTexts[i]}`);
        console.log(`  ztedge:     ${d.decision} [${d.reasons.join(', ')}] errors [${d.errors.map((e) => e.policyId).join(', ')}]`);
        console.log(`  cedar-wasm: ${expected.decision} [${expected.reasons.join(', ')}] errors [${expected.errored.join(', ')}]`);
      }
      mismatches++;
    }
  }

  console.log(line('ztedge (request built)', ours));
  console.log(line('ztedge (incl. request JSON)', oursWithJson));
  console.log(line('cedar-wasm (preparsed, stateful)', theirs));
  console.log(
    `mix: allow ${fmt((100 * allow) / requestCount, 1)}%, deny ${fmt((100 * (requestCount - allow)) / requestCount, 1)}%, ` +
      `with errored policies ${fmt((100 * errored) / requestCount, 1)}%`,
  );
  console.log(`decisions and reasons identical: ${mismatches === 0 ? 'yes' : 'no'} (${requestCount - mismatches}/${requestCount})`);
  console.log(`ratio vs cedar-wasm: ${(ours.perSecond / theirs.perSecond).toFixed(1)}x`);
  console.log(`mismatches: ${mismatches}`);
  process.exitCode = mismatches === 0 ? 0 : 1;
}

main();
