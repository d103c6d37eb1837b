// Policy engine benchmark: ztedge's native Cedar engine vs cedar-wasm, same process, same run,
// same robot-cell policy set (200+ policies, ~120 entities) and the same seeded requests.
//
//   npm run bench:policy [-- --requests N] [-- --seed S]
//
// cedar-wasm is called the fast way it offers: the policy set pre-parsed once
// (`preparsePolicySet`), `statefulIsAuthorized` per request; its API takes the entities on every
// call. ztedge evaluates requests already built from JSON (the agent builds them once per
// command); a separate line shows the cost including request JSON reading.
// Throughput is counted per CPU-second of this process, so a busy machine skews it less than
// wall time would; latencies are wall clock.
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

interface Timing<T> {
  perSecond: number;
  p50us: number;
  p99us: number;
  /** Results of the timed pass, in input order. */
  results: T[];
}

function percentile(sortedNs: Float64Array, q: number): number {
  return sortedNs[Math.min(sortedNs.length - 1, Math.floor(q * sortedNs.length))]! / 1000;
}

/** CPU time (user + system) of this process in ms: unlike wall time, it ignores time spent descheduled on a busy machine. */
function cpuMs(): number {
  const { user, system } = process.cpuUsage();
  return (user + system) / 1000;
}

/**
 * Latency (wall clock) from one timed pass, with a clock read per call. Throughput in decisions
 * per CPU-second: from further untimed passes repeated for at least `minCpuMs` (so fast engines
 * are not dominated by the clock), or with minCpuMs 0 (slow engines) from the timed pass itself.
 */
function measure<R, T>(items: readonly R[], run: (item: R) => T, minCpuMs: number): Timing<T> {
  const latencies = new Float64Array(items.length);
  const results: T[] = [];
  let cpuStart = cpuMs();
  for (let i = 0; i < items.length; i++) {
    const t0 = process.hrtime.bigint();
    results.push(run(items[i]!));
    latencies[i] = Number(process.hrtime.bigint() - t0);
  }
  let calls = items.length;
  let cpu = cpuMs() - cpuStart;
  if (minCpuMs > 0) {
    calls = 0;
    cpuStart = cpuMs();
    do {
      for (const item of items) run(item);
      calls += items.length;
      cpu = cpuMs() - cpuStart;
    } while (cpu < minCpuMs);
  }
  latencies.sort();
  return { perSecond: (calls / cpu) * 1000, p50us: percentile(latencies, 0.5), p99us: percentile(latencies, 0.99), results };
}

const fmt = (n: number, digits = 0) => n.toLocaleString('en-US', { maximumFractionDigits: digits, minimumFractionDigits: digits });
const line = (label: string, t: Timing<unknown>) =>
  `${label.padEnd(34)} ${fmt(t.perSecond).padStart(12)} decisions/CPU-s   p50 ${fmt(t.p50us, 2).padStart(9)} µs   p99 ${fmt(t.p99us, 2).padStart(9)} µs`;

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
    const d = ours.results[i]!;
    const expected = theirs.results[i]!;
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
