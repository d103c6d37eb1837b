// What the pure decision step costs per command, beside the path it replaced, in the same run:
//
//   npx tsx bench/decide.bench.ts
//
//   decide()   the whole verdict for an allowed `move` of the cell fixture (resource hosted,
//              request built, strict enforce, the permit's obligations from the bundle's table,
//              fail-closed / audit-full / rate checks against in-memory state);
//   before     the same steps as the pipeline took them before decide(): the same request and
//              enforce, the determining permits' annotations parsed for every command, the
//              same checks.
// Each is timed over 200,000 calls, alternating, 5 rounds after a warm-up; medians are printed.
// Ends with exactly:
//   decide vs before: <N>%
import { type DecisionFacts, decide } from '../src/agent/decide.js';
import { buildRequest, isHostedOn, resourceUid } from '../src/agent/request-context.js';
import { obligationsOf } from '../src/bundle/obligations.js';
import { issuerKey, verifyBundle } from '../src/bundle/verify.js';
import { toHex } from '../src/crypto/bytes.js';
import { verifyCommand } from '../src/envelope/command.js';
import { enforce } from '../src/policy/index.js';
import { CELL_POLICIES, DEVICE, T0, cellBundle, command, makeKeys } from '../test/agent/fixture.js';

const CALLS = 200_000;
const ROUNDS = 5;

const keys = makeKeys();
const bundle = verifyBundle(cellBundle(keys, 1, CELL_POLICIES), { roots: [{ publicKey: keys.root.publicKey }], threshold: 1, device: DEVICE, agentVersion: '0.1.0', now: T0 });
const verified = verifyCommand(command(keys.planner, T0, 'move', { speed: 50 }), {
  keyResolver: (kid) => issuerKey(bundle, kid, T0),
  deviceId: DEVICE,
  topic: 'cmd',
  now: T0,
  maxLifetimeMs: 3_600_000,
});
const issuer = bundle.issuersByKid.get(toHex(verified.kid))!;
const rate = { check: () => ({ allowed: true }) };
const grants = { find: () => undefined };
const facts = (): DecisionFacts => ({ nowMs: T0, posture: 'degraded', online: true, bundle: { revision: 1, stale: false }, source: 'mqtt', failClosed: { active: false }, auditFull: false });

function viaDecide(): unknown {
  const verdict = decide({ deviceId: DEVICE, command: verified, issuer, bundle, facts: facts(), grants, rate });
  if (verdict.decision !== 'allow') throw new Error(`expected allow, got ${verdict.decision} ${verdict.reasons.join(',')}`);
  return verdict;
}

function before(): unknown {
  const f = facts();
  if (!isHostedOn(bundle.entities, resourceUid(verified.claims.res), DEVICE)) throw new Error('not hosted');
  const decision = enforce(bundle.policies, bundle.entities, buildRequest(issuer.principal, verified.claims.act, verified.claims.res, verified.claims.args, f), { strict: true });
  if (decision.decision !== 'allow') throw new Error('expected allow');
  const obligations = obligationsOf(decision.determining.filter((d) => d.effect === 'permit'));
  if (f.failClosed.active && !obligations.safety) return 'FAIL_CLOSED';
  if (f.auditFull && !obligations.safety) return 'AUDIT_FULL';
  if (obligations.rates.length > 0) rate.check();
  return decision.determining.map((d) => d.id);
}

function nsPerCall(fn: () => unknown): number {
  const start = process.hrtime.bigint();
  for (let i = 0; i < CALLS; i++) fn();
  return Number(process.hrtime.bigint() - start) / CALLS;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)]!;
for (let i = 0; i < 3; i++) nsPerCall(viaDecide), nsPerCall(before);
const decideNs: number[] = [];
const beforeNs: number[] = [];
for (let round = 0; round < ROUNDS; round++) {
  if (round % 2 === 0) decideNs.push(nsPerCall(viaDecide)), beforeNs.push(nsPerCall(before));
  else beforeNs.push(nsPerCall(before)), decideNs.push(nsPerCall(viaDecide));
}
const d = median(decideNs);
const b = median(beforeNs);
console.log(`decide():  ${(d / 1000).toFixed(2)} µs per command (rounds: ${decideNs.map((n) => (n / 1000).toFixed(2)).join(', ')})`);
console.log(`before:    ${(b / 1000).toFixed(2)} µs per command (rounds: ${beforeNs.map((n) => (n / 1000).toFixed(2)).join(', ')})`);
console.log(`decide vs before: ${Math.round((d / b) * 100)}%`);
