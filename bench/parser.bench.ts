// Cedar parser benchmark: parse (and format) policy bundles of realistic and of condition-heavy
// policies, reporting the median wall time of N runs (default 15) after warm-up, throughput, and
// the mean CPU time per run (steadier than wall time on a busy machine).
//
//   npx tsx bench/parser.bench.ts [--runs N]
//
// The robot-cell fixture's policies are repeated to 1,000+ policies; the condition-heavy bundle
// exercises every expression form with long conditions.
import { formatPolicies } from '../src/policy/format.js';
import { parsePolicies } from '../src/policy/parser.js';
import { robotCellFixture } from './robot-cell-fixture.js';

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} needs a positive integer`);
  return value;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)];
}

/** Median wall milliseconds and mean CPU milliseconds per run. */
function timeRuns(runs: number, body: () => void): { wall: number; cpu: number } {
  for (let i = 0; i < 3; i++) body();
  const times: number[] = [];
  const cpuStart = process.cpuUsage();
  for (let i = 0; i < runs; i++) {
    const start = performance.now();
    body();
    times.push(performance.now() - start);
  }
  const cpu = process.cpuUsage(cpuStart);
  return { wall: median(times), cpu: (cpu.user + cpu.system) / 1000 / runs };
}

/** `count` policies from the robot-cell fixture, repeated as needed. */
function robotCellBundle(count: number): string {
  const fixture = robotCellFixture(1);
  const copies = Math.ceil(count / fixture.policyCount);
  return Array.from({ length: copies }, () => fixture.policies).join('\n');
}

/** Policies with long conditions touching every expression form. */
function conditionHeavyBundle(count: number): string {
  const policies: string[] = [];
  for (let i = 0; i < count; i++) {
    policies.push(`@id("rule-${i}") @approval("${i % 3}") @rate("20/60s")
permit (principal in Role::"role-${i % 10}", action in [Action::"move", Action::"jog", Robot::Action::"grip"], resource is Robot::Arm in Robot::Cell::"c${i % 40}")
when {
  context.args.speed <= ${i % 50} * 2 + 1 && context.args.speed > -${i} &&
  (context has args.payload.kg && context.args.payload.kg < 25 || principal.level >= 3) &&
  ["trusted", "degraded"].contains(context.posture) && !context.bundle.stale &&
  principal.certs.containsAll(resource.requiredCerts) && resource.zone like "zone-*-${i % 7}" &&
  ip(context.args.station).isInRange(ip("10.${i % 255}.0.0/16")) &&
  context.now.toTime() >= duration("6h") && decimal(context.args.torque).lessThan(decimal("12.5")) &&
  (if principal is Agent then context.args.mode == "auto" else {mode: context.args.mode, user: principal}.mode != "program")
}
unless { resource.locked || principal in Group::"suspended" };`);
  }
  return policies.join('\n\n');
}

const runs = option('runs', 15);
for (const [name, text] of [
  ['robot-cell ×1,000+', robotCellBundle(1000)],
  ['condition-heavy ×1,000', conditionHeavyBundle(1000)],
] as const) {
  const policies = parsePolicies(text);
  const bytes = Buffer.byteLength(text);
  const parse = timeRuns(runs, () => parsePolicies(text));
  const format = timeRuns(runs, () => formatPolicies(policies));
  console.log(
    `${name}: ${policies.length} policies, ${(bytes / 1024).toFixed(0)} KiB — ` +
      `parse ${parse.wall.toFixed(1)} ms wall / ${parse.cpu.toFixed(1)} ms CPU ` +
      `(${((bytes / 1024 / 1024) / (parse.wall / 1000)).toFixed(1)} MiB/s, ` +
      `${Math.round(policies.length / (parse.wall / 1000)).toLocaleString('en')} policies/s); ` +
      `format ${format.wall.toFixed(1)} ms wall / ${format.cpu.toFixed(1)} ms CPU`,
  );
}
