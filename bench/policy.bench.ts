// Policy engine benchmark: ztedge's native Cedar engine vs cedar-wasm, same process, same run,
// same robot-cell policy set (200+ policies, ~120 entities) and the same seeded requests.
//
//   npm run bench:policy [-- --requests N] [-- --seed S]
//
// cedar-wasm is called the fast way it offers: the policy set pre-parsed once
// (`preparsePolicySet`), `statefulIsAuthorized` per request. Its API has no preparsed entities:
// every call is handed the entities as JavaScript values, which cross into Wasm each time. So it
// runs twice: with all entities (how its API is used with a bundle's entity set), and with only
// the entities each request can reach (principal, action, resource and entities named in the
// context, with their ancestors and the entities their attributes and tags name, transitively;
// computed beforehand, untimed) — a fairer peer, whose decisions must be identical (checked).
// ztedge runs twice too: on requests already built (the agent builds one per command) and on
// requests read from JSON per call, the like-for-like row against cedar-wasm (which is handed
// request objects it must convert). Every ratio is printed; the summary line is from the
// like-for-like row against cedar-wasm with all entities.
// Throughput is counted per CPU-second of this process, so a busy machine skews it less than
// wall time would; latencies are wall clock.
import { Entities, PolicySet, isAuthorized, requestFromJson } from '../src/policy/index.js';
import type { AuthzRequest, Decision } from '../src/policy/index.js';
import { PreparsedOraclePolicySet, cedarVersion } from '../test/policy/support/cedar-wasm.js';
import type { EntityJson, OracleDecision, OracleRequest } from '../test/policy/support/cedar-wasm.js';
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

/** Key of an entity uid in the fixture's entity list. */
const uidKey = (u: { type: string; id: string }) => `${u.type}\u0000${u.id}`;

/** Entity uids a Cedar JSON value names: `{"__entity": {type, id}}`, or `{type, id}` as Cedar also reads it. */
function entityRefs(value: unknown, out: Array<{ type: string; id: string }>): void {
  if (Array.isArray(value)) {
    for (const v of value) entityRefs(v, out);
  } else if (typeof value === 'object' && value !== null) {
    const record = value as Record<string, unknown>;
    if ('__extn' in record) return;
    const escaped = record.__entity as { type?: unknown; id?: unknown } | undefined;
    if (escaped !== undefined && typeof escaped.type === 'string' && typeof escaped.id === 'string') out.push({ type: escaped.type, id: escaped.id });
    else if (typeof record.type === 'string' && typeof record.id === 'string') out.push({ type: record.type, id: record.id });
    for (const v of Object.values(record)) entityRefs(v, out);
  }
}

/** The entities a request can reach (see the top of this file), in the list's order. */
function reachableEntities(all: EntityJson[], byKey: Map<string, EntityJson>, request: OracleRequest): EntityJson[] {
  const seen = new Set<string>();
  const todo = [request.principal, request.action, request.resource];
  entityRefs(request.context, todo);
  while (todo.length > 0) {
    const key = uidKey(todo.pop()!);
    if (seen.has(key)) continue;
    seen.add(key);
    const entity = byKey.get(key);
    if (entity === undefined) continue;
    todo.push(...((entity.parents ?? []) as Array<{ type: string; id: string }>));
    entityRefs(entity.attrs, todo);
    if (entity.tags !== undefined) entityRefs(entity.tags, todo);
  }
  return all.filter((e) => seen.has(uidKey(e.uid as { type: string; id: string })));
}

function compare<A, B>(count: number, left: (i: number) => A, right: (i: number) => B, same: (a: A, b: B) => boolean, show: (i: number, a: A, b: B) => void): number {
  let mismatches = 0;
  for (let i = 0; i < count; i++) {
    const [a, b] = [left(i), right(i)];
    if (same(a, b)) continue;
    if (mismatches < 5) show(i, a, b);
    mismatches++;
  }
  return mismatches;
}

const oracleText = (d: OracleDecision) => `${d.decision} [${d.reasons.join(', ')}] errors [${d.errored.join(', ')}]`;

function main(): void {
  const requestCount = option('requests', 10_000);
  const fixture = robotCellFixture(requestCount, option('seed', 20250314));
  const entitiesText = JSON.stringify(fixture.entities);
  const requestTexts = fixture.requests.map((r) => JSON.stringify(r));

  const policySet = PolicySet.fromText(fixture.policies, { source: 'robot-cell' });
  const entities = Entities.fromJson(entitiesText);
  const requests: AuthzRequest[] = requestTexts.map((t) => requestFromJson(t));
  const oracle = new PreparsedOraclePolicySet(fixture.policies);
  const byKey = new Map(fixture.entities.map((e) => [uidKey(e.uid as { type: string; id: string }), e]));
  const slices = fixture.requests.map((r) => reachableEntities(fixture.entities, byKey, r));
  const meanSlice = slices.reduce((n, s) => n + s.length, 0) / slices.length;
  const indexes = fixture.requests.map((_, i) => i);

  console.log(`policy benchmark: ${fixture.policyCount} policies, ${entities.size} entities, ${requestCount} requests; cedar-wasm ${cedarVersion}`);
  console.log(
    `cedar-wasm's API has no preparsed entities: statefulIsAuthorized is handed all ${fixture.entities.length} entities on every call ` +
      `(JavaScript values converted into Wasm each time); the reachable-entities row hands it ${fmt(meanSlice, 1)} on average`,
  );

  // Warm-up: let both JITs (and Wasm tier-up) settle.
  for (let pass = 0; pass < 3; pass++) for (const r of requests) isAuthorized(policySet, entities, r);
  for (const r of fixture.requests.slice(0, 300)) oracle.isAuthorized(fixture.entities, r);
  for (const i of indexes.slice(0, 300)) oracle.isAuthorized(slices[i]!, fixture.requests[i]!);

  const ours = measure(requests, (r) => isAuthorized(policySet, entities, r), 2000);
  const oursWithJson = measure(requestTexts, (t) => isAuthorized(policySet, entities, requestFromJson(t)), 2000);
  const theirs = measure(fixture.requests, (r) => oracle.isAuthorized(fixture.entities, r), 0);
  const theirsReachable = measure(indexes, (i) => oracle.isAuthorized(slices[i]!, fixture.requests[i]!), 0);

  let allow = 0;
  let errored = 0;
  for (const d of ours.results) {
    if (d.decision === 'allow') allow++;
    if (d.errors.length > 0) errored++;
  }
  const ourMismatches = compare(
    requestCount,
    (i) => ours.results[i]!,
    (i) => theirs.results[i]!,
    sameDecision,
    (i, d, expected) => {
      console.log(`mismatch on request ${i}: ${requestTexts[i]}`);
      console.log(`  ztedge:     ${d.decision} [${d.reasons.join(', ')}] errors [${d.errors.map((e) => e.policyId).join(', ')}]`);
      console.log(`  cedar-wasm: ${oracleText(expected)}`);
    },
  );
  const jsonMismatches = compare(requestCount, (i) => oursWithJson.results[i]!, (i) => theirs.results[i]!, sameDecision, (i) => console.log(`mismatch (request from JSON) on request ${i}`));
  const sliceMismatches = compare(
    requestCount,
    (i) => theirsReachable.results[i]!,
    (i) => theirs.results[i]!,
    (a, b) => oracleText(a) === oracleText(b),
    (i, a, b) => console.log(`cedar-wasm differs with reachable entities only on request ${i}: ${oracleText(a)} vs ${oracleText(b)} with all`),
  );

  console.log(line('ztedge (request built)', ours));
  console.log(line('ztedge (request from JSON)', oursWithJson));
  console.log(line(`cedar-wasm (all ${fixture.entities.length} entities)`, theirs));
  console.log(line('cedar-wasm (reachable entities)', theirsReachable));
  console.log(
    `mix: allow ${fmt((100 * allow) / requestCount, 1)}%, deny ${fmt((100 * (requestCount - allow)) / requestCount, 1)}%, ` +
      `with errored policies ${fmt((100 * errored) / requestCount, 1)}%`,
  );
  const agree = (n: number) => `${n === 0 ? 'yes' : 'NO'} (${requestCount - n}/${requestCount})`;
  console.log(`decisions and reasons identical: ztedge vs cedar-wasm ${agree(ourMismatches)}, from JSON ${agree(jsonMismatches)}; cedar-wasm reachable vs all entities ${agree(sliceMismatches)}`);
  const ratio = (a: Timing<unknown>, b: Timing<unknown>) => `${(a.perSecond / b.perSecond).toFixed(1)}x`;
  console.log(`ratios (decisions per CPU-second)   vs cedar-wasm, all entities   vs cedar-wasm, reachable entities`);
  console.log(`  ztedge, request built             ${ratio(ours, theirs).padStart(10)}                    ${ratio(ours, theirsReachable).padStart(10)}`);
  console.log(`  ztedge, request from JSON         ${ratio(oursWithJson, theirs).padStart(10)}                    ${ratio(oursWithJson, theirsReachable).padStart(10)}`);
  const mismatches = ourMismatches + jsonMismatches + sliceMismatches;
  console.log(`ratio vs cedar-wasm given reachable entities: ${ratio(oursWithJson, theirsReachable)}`);
  console.log(`ratio vs cedar-wasm: ${ratio(oursWithJson, theirs)}`);
  console.log(`mismatches: ${mismatches}`);
  process.exitCode = mismatches === 0 ? 0 : 1;
}

main();
