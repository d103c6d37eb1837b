// Bundle activation benchmark: a generated bundle of 1,000 policies, 1,000 entities and 20
// embedded tests, signed 2-of-3, activated into a real on-disk store.
//
//   npm run bench:bundle [-- --runs N]
//
// Each phase is timed on its own with the same functions verifyBundle runs, then the whole
// pipeline (BundleManager.activate: verify, store with fsync, swap) end to end. Figures are the
// median of N runs (default 7) after one warm-up run.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { BundleManager } from '../src/bundle/activation.js';
import { type BundleSource, buildBundle } from '../src/bundle/build.js';
import { compileEntities, compileIssuers, compilePolicies, runBundleTests } from '../src/bundle/content.js';
import { type BundleManifest, type BundleTest, DEFAULT_SETTINGS, decodeBundlePayload } from '../src/bundle/format.js';
import { signBundle } from '../src/bundle/sign.js';
import { BundleStore } from '../src/bundle/store.js';
import { toHex } from '../src/crypto/bytes.js';
import { type PrivateKey, generatePrivateKey } from '../src/crypto/keys.js';
import { verifySign } from '../src/envelope/cose.js';

const POLICIES = 1000;
const USERS = 800;
const MACHINES = 150;
const CELLS = 40;
const ROLES = 10;
const TESTS = 20;
const ACTIONS = ['read', 'move', 'stop', 'start', 'calibrate'];

function option(name: string, fallback: number): number {
  const i = process.argv.indexOf(`--${name}`);
  if (i === -1) return fallback;
  const value = Number(process.argv[i + 1]);
  if (!Number.isInteger(value) || value <= 0) throw new Error(`--${name} needs a positive integer`);
  return value;
}

/** 1,000 entities: users in roles and cells, machines in cells, plus the groups themselves. */
function entitiesJson(): string {
  const entities: unknown[] = [];
  for (let r = 0; r < ROLES; r++) entities.push({ uid: { type: 'Role', id: `role-${r}` }, attrs: {}, parents: [] });
  for (let c = 0; c < CELLS; c++) entities.push({ uid: { type: 'Cell', id: `cell-${c}` }, attrs: { line: `L${c % 4}` }, parents: [] });
  for (let u = 0; u < USERS; u++) {
    entities.push({
      uid: { type: 'User', id: `user-${u}` },
      attrs: { level: u % 5, cell: { __entity: { type: 'Cell', id: `cell-${u % CELLS}` } }, badge: `B${u}` },
      parents: [{ type: 'Role', id: `role-${u % ROLES}` }],
    });
  }
  for (let m = 0; m < MACHINES; m++) {
    entities.push({
      uid: { type: 'Machine', id: `m-${m}` },
      attrs: { maxSpeed: 500 + (m % 10) * 100, zones: [`Z${m % 3}`, `Z${(m + 1) % 3}`] },
      parents: [{ type: 'Cell', id: `cell-${m % CELLS}` }],
    });
  }
  return JSON.stringify(entities);
}

/** 1,000 policies in 10 files: per-user grants, role grants with conditions, and forbids. */
function policyFiles(): { file: string; text: string }[] {
  const files: { file: string; text: string }[] = [];
  let n = 0;
  for (let f = 0; f < 10; f++) {
    const parts: string[] = [];
    for (let i = 0; i < POLICIES / 10; i++, n++) {
      const action = ACTIONS[n % ACTIONS.length]!;
      if (n % 10 === 9) {
        parts.push(`@id("forbid-${n}")\nforbid (principal, action == Action::"${action}", resource in Cell::"cell-${n % CELLS}")\nwhen { context.posture == "untrusted" && principal.level < ${n % 5} };`);
      } else if (n % 2 === 0) {
        parts.push(`@id("user-${n}")\n@rate("10/60s")\npermit (principal == User::"user-${n % USERS}", action == Action::"${action}", resource in Cell::"cell-${n % CELLS}");`);
      } else {
        parts.push(
          `@id("role-${n}")\npermit (principal in Role::"role-${n % ROLES}", action in [Action::"${action}", Action::"read"], resource is Machine)\n` +
            `when { resource in principal.cell && context has speed && context.speed <= resource.maxSpeed && resource.zones.contains(context.zone) };`,
        );
      }
    }
    files.push({ file: `${String(f).padStart(2, '0')}-generated.cedar`, text: `${parts.join('\n\n')}\n` });
  }
  return files;
}

function tests(): BundleTest[] {
  const cases: BundleTest[] = [];
  for (let t = 0; t < TESTS; t++) {
    const n = t * 50; // even: a per-user permit
    const action = ACTIONS[n % ACTIONS.length]!;
    const machine = (n % CELLS) + CELLS; // a machine in cell n % CELLS
    cases.push({
      name: `grant ${n}`,
      principal: `User::"user-${n % USERS}"`,
      action: `Action::"${action}"`,
      resource: `Machine::"m-${machine}"`,
      context: '{"posture":"trusted","speed":100,"zone":"Z0"}',
      decision: 'allow',
    });
  }
  cases.push({
    name: 'stranger denied',
    principal: 'User::"nobody"',
    action: 'Action::"calibrate"',
    resource: 'Machine::"m-1"',
    context: '{"posture":"trusted"}',
    decision: 'deny',
  });
  return cases;
}

function median(values: number[]): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

function time<T>(run: () => T): [T, number] {
  const start = performance.now();
  const result = run();
  return [result, performance.now() - start];
}

const runs = option('runs', 7);
const roots: PrivateKey[] = [generatePrivateKey('ed25519'), generatePrivateKey('p256'), generatePrivateKey('ed25519')];
const trust = {
  roots: roots.map((k) => ({ publicKey: k.publicKey })),
  threshold: 2,
  device: 'dev-1',
  site: 'site-1',
  profile: 'robot',
  agentVersion: '0.1.0',
};
const source: BundleSource = {
  policies: policyFiles(),
  entities: entitiesJson(),
  issuers: [],
  attestation: [],
  settings: DEFAULT_SETTINGS,
  tests: tests(),
};
const nowMs = Date.now();
const manifest = (revision: number): BundleManifest => ({
  id: 'bench',
  revision,
  created: Math.floor(nowMs / 1000) - 60,
  expires: Math.floor(nowMs / 1000) + 86_400,
  scope: { sites: [], devices: [], profiles: [] },
  minAgentVersion: '0.1.0',
});
const signedBundle = (revision: number) => signBundle(signBundle(buildBundle(source, manifest(revision)).bytes, roots[0]!), roots[1]!);

const stateDir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-bench-bundle-'));
try {
  const bundles = Array.from({ length: runs + 1 }, (_, i) => signedBundle(i + 1));
  const rootByKid = new Map(roots.map((k) => [toHex(k.publicKey.kid), k.publicKey]));
  const phases: Record<string, number[]> = { 'verify signatures': [], decode: [], compile: [], tests: [], store: [], activation: [] };

  const manager = new BundleManager({ store: new BundleStore(stateDir), trust, clock: { now: () => Date.now() } });
  manager.start();
  for (const [i, bytes] of bundles.entries()) {
    const [signed, verifyMs] = time(() => verifySign(bytes, { maxBytes: 16 << 20, keys: (kid) => rootByKid.get(toHex(kid)) }));
    const [payload, decodeMs] = time(() => decodeBundlePayload(signed.payload));
    const [compiled, compileMs] = time(() => {
      compileIssuers(payload.issuers);
      return { entities: compileEntities(payload.entities), policies: compilePolicies(payload.policies) };
    });
    const [outcomes, testsMs] = time(() => runBundleTests(compiled.policies, compiled.entities, payload.tests));
    if (!outcomes.every((o) => o.passed)) throw new Error(`embedded tests failed: ${outcomes.filter((o) => !o.passed).map((o) => o.problem).join('; ')}`);

    const [result, activationMs] = time(() => manager.activate(bytes));
    if (result.status !== 'activated') throw new Error('bundle was not activated');
    // The store's share of activation (the swap itself is one assignment): the same write
    // sequence again, on a store of its own.
    const storeDir = path.join(stateDir, `store-${i}`);
    const store = new BundleStore(storeDir);
    store.open();
    const [, storeMs] = time(() => store.activate(bytes, result.bundle.manifest.revision, result.bundle.digest));
    fs.rmSync(storeDir, { recursive: true, force: true });

    if (i === 0) {
      console.log(`warm-up run: activation ${activationMs.toFixed(1)} ms`);
      continue;
    }
    phases['verify signatures']!.push(verifyMs);
    phases.decode!.push(decodeMs);
    phases.compile!.push(compileMs);
    phases.tests!.push(testsMs);
    phases.store!.push(storeMs);
    phases.activation!.push(activationMs);
  }

  const size = bundles[0]!.length;
  console.log(`bundle: ${POLICIES} policies, ${USERS + MACHINES + CELLS + ROLES} entities, ${source.tests.length} tests, 2-of-3 signed, ${(size / 1024).toFixed(0)} KiB`);
  console.log(`median of ${runs} runs:`);
  for (const [phase, values] of Object.entries(phases)) {
    if (phase !== 'activation') console.log(`  ${phase.padEnd(18)} ${median(values).toFixed(1).padStart(8)} ms`);
  }
  console.log(`activation ${POLICIES} policies: ${median(phases.activation!).toFixed(0)} ms`);
} finally {
  fs.rmSync(stateDir, { recursive: true, force: true });
}
