// `ztedge bundle` end to end on the example sources, with real key files: build, sign with
// two roots one after the other, verify as a device would, inspect, and roll back a store.
import fs from 'node:fs';
import path from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { BundleManager } from '../../src/bundle/activation.js';
import { readUnverifiedBundle } from '../../src/bundle/sign.js';
import { BundleStore } from '../../src/bundle/store.js';
import { bundleStoreDir, stateDbPath } from '../../src/agent/state-dir.js';
import { main } from '../../src/cli/main.js';
import { decodeCbor } from '../../src/envelope/cbor.js';
import { openStateDb } from '../../src/store/state-db.js';
import { EXAMPLES, type Roots, makeRoots, tempDir, trustOf } from './support.js';

let roots: Roots;
let work: string;
let rootFlags: string[];

beforeAll(() => {
  roots = makeRoots();
  work = tempDir('cli');
  rootFlags = roots.keys.flatMap((k) => ['--root', k.publicPath]);
});

afterAll(() => {
  fs.rmSync(roots.dir, { recursive: true, force: true });
  fs.rmSync(work, { recursive: true, force: true });
});

async function ztedge(...argv: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(argv, {
    stdout: (text) => {
      stdout += `${text}\n`;
    },
    stderr: (text) => {
      stderr += `${text}\n`;
    },
    readStdin: async () => Buffer.alloc(0),
  });
  return { code, stdout, stderr };
}

/** The warning of a build from a source without a schema (the line is checked, then dropped). */
function withoutSchemaWarning(stderr: string): string {
  const [first, ...rest] = stderr.split('\n');
  expect(first).toMatch(/^warning: .* has no \*\.cedarschema: policies, entities and tests are not validated/);
  return rest.join('\n');
}

async function buildSigned(name: string, revision: number, ...extra: string[]): Promise<string> {
  const out = path.join(work, `${name}-${revision}.bundle`);
  expect((await ztedge('bundle', 'build', path.join(EXAMPLES, name), '--revision', String(revision), '--out', out, ...extra)).code).toBe(0);
  expect((await ztedge('bundle', 'sign', out, '--key', roots.keys[0].privatePath)).code).toBe(0);
  expect((await ztedge('bundle', 'sign', out, '--key', roots.keys[1].privatePath)).code).toBe(0);
  return out;
}

describe('ztedge bundle', () => {
  it('builds, signs one key at a time and verifies the robot-cell example', async () => {
    const out = path.join(work, 'robot-cell.bundle');
    const built = await ztedge('bundle', 'build', path.join(EXAMPLES, 'robot-cell'), '--revision', '3', '--expires', '7d', '--site', 'site-1', '--out', out);
    expect(built.code, built.stderr).toBe(0);
    expect(built.stdout).toMatch(/^built robot-cell revision 3: 18 policies, 43 tests passed, validated against schema\.cedarschema, \d+ bytes/);
    expect(built.stderr).toBe('');

    const unsigned = await ztedge('bundle', 'verify', out, ...rootFlags, '--threshold', '2');
    expect(unsigned.code).toBe(1);
    expect(unsigned.stderr).toMatch(/^BUNDLE_UNSIGNED: /);

    expect((await ztedge('bundle', 'sign', out, '--key', roots.keys[0].privatePath)).stdout).toMatch(/1 signature →/);
    const once = await ztedge('bundle', 'verify', out, ...rootFlags, '--threshold', '2', '--site', 'site-1');
    expect(once.code).toBe(1);
    expect(once.stderr).toMatch(/^BUNDLE_THRESHOLD: 1 distinct root key signed; 2 of 3 are required/);

    const again = await ztedge('bundle', 'sign', out, '--key', roots.keys[0].privatePath);
    expect(again.code).toBe(1);
    expect(again.stderr).toMatch(/^BUNDLE_ALREADY_SIGNED: /);

    expect((await ztedge('bundle', 'sign', out, '--key', roots.keys[1].privatePath, '--alg', 'ESP256')).stdout).toMatch(/2 signatures →/);
    const ok = await ztedge('bundle', 'verify', out, ...rootFlags, '--threshold', '2', '--site', 'site-1', '--profile', 'robot-arm');
    expect(ok.code, ok.stderr).toBe(0);
    const printed = JSON.parse(ok.stdout);
    expect(printed).toMatchObject({ id: 'robot-cell', revision: 3, scope: { sites: ['site-1'], devices: [], profiles: [] } });
    expect(printed.expires - printed.created).toBe(7 * 86_400);
  });

  it('verify exits 1 with the refusal code for scope, rollback and threshold', async () => {
    const file = await buildSigned('plc-gateway', 4, '--device', 'gw-1');
    const verify = (...flags: string[]) => ztedge('bundle', 'verify', file, ...rootFlags, '--profile', 'plc-gateway', ...flags);
    expect((await verify('--threshold', '2', '--device', 'gw-1')).code).toBe(0);
    // Its reference values are for plc-gateway devices only.
    const otherClass = await ztedge('bundle', 'verify', file, ...rootFlags, '--threshold', '2', '--device', 'gw-1', '--profile', 'robot-arm');
    expect(otherClass.stderr).toMatch(/^BUNDLE_ATTESTATION_PROFILE: .*plc-gateway.*robot-arm/);
    expect((await verify('--threshold', '2', '--device', 'gw-2')).stderr).toMatch(/^BUNDLE_SCOPE: /);
    expect((await verify('--threshold', '2')).stderr).toMatch(/^BUNDLE_SCOPE: .*not configured/);
    expect((await verify('--threshold', '2', '--device', 'gw-1', '--after-revision', '4')).stderr).toMatch(/^BUNDLE_ROLLBACK: /);
    expect((await verify('--threshold', '3', '--device', 'gw-1')).stderr).toMatch(/^BUNDLE_THRESHOLD: /);
    const onlyStranger = await ztedge('bundle', 'verify', file, '--root', roots.stranger.publicPath, '--threshold', '1');
    expect(onlyStranger.stderr).toMatch(/^BUNDLE_UNKNOWN_SIGNER: /);
  });

  it('inspects signers, policies and issuers without verifying', async () => {
    const file = await buildSigned('robot-cell', 5);
    const result = await ztedge('bundle', 'inspect', file);
    expect(result.code).toBe(0);
    const report = JSON.parse(result.stdout);
    expect(report.manifest.revision).toBe(5);
    expect(report.signers).toEqual([
      { kid: Buffer.from(roots.keys[0].key.publicKey.kid).toString('hex'), alg: 'EdDSA' },
      { kid: Buffer.from(roots.keys[1].key.publicKey.kid).toString('hex'), alg: 'ES256' },
    ]);
    expect(report.policies).toHaveLength(18);
    expect(report.policies[0]).toMatchObject({ id: 'estop-anyone', effect: 'permit', file: '00-safety.cedar', line: 7, annotations: { safety: 'true' } });
    expect(report.issuers.map((i: { principal: string }) => i.principal)).toEqual([
      'Operator::"olga"',
      'Operator::"omar"',
      'Agent::"planner-7"',
      'Agent::"vision-2"',
    ]);
    expect(report.tests).toBe(43);
    expect(result.stderr).toMatch(/not verified/);
  });

  it('fails a build on a Cedar error with file:line:col, and on usage errors with exit 2', async () => {
    const source = tempDir('cli-source');
    try {
      fs.writeFileSync(path.join(source, 'main.cedar'), 'permit (principal, action, resource)\nwhen { principal.level >= };\n');
      const failed = await ztedge('bundle', 'build', source, '--revision', '1', '--out', path.join(work, 'x.bundle'));
      expect(failed.code).toBe(1);
      expect(withoutSchemaWarning(failed.stderr)).toMatch(/^BUNDLE_POLICY_INVALID: /);
      expect(failed.stderr).toMatch(/\n {2}main\.cedar:2:\d+: error: /);
      expect(fs.existsSync(path.join(work, 'x.bundle'))).toBe(false);
    } finally {
      fs.rmSync(source, { recursive: true, force: true });
    }
    const noRevision = await ztedge('bundle', 'build', path.join(EXAMPLES, 'robot-cell'), '--out', path.join(work, 'y.bundle'));
    expect(noRevision.code).toBe(2);
    expect(noRevision.stderr).toMatch(/missing required option --revision/);
    expect((await ztedge('bundle', 'frobnicate')).code).toBe(2);
  });

  it('refuses a policy id used twice (a permit and a forbid sharing one), naming both places', async () => {
    const source = tempDir('cli-dup');
    try {
      fs.writeFileSync(path.join(source, '10-permit.cedar'), '@id("move")\npermit (principal, action == Action::"move", resource);\n');
      fs.writeFileSync(path.join(source, '20-forbid.cedar'), '// a guard\n\n@id("move")\nforbid (principal, action == Action::"move", resource) when { context.fast };\n');
      const out = path.join(work, 'dup.bundle');
      const refused = await ztedge('bundle', 'build', source, '--revision', '1', '--out', out);
      expect(refused.code).toBe(1);
      expect(withoutSchemaWarning(refused.stderr)).toBe(
        'BUNDLE_POLICY_INVALID: 20-forbid.cedar:3:1: error: policy id "move" is already used at 10-permit.cedar:1:1 [POLICY_DUPLICATE_ID]\n' +
          '  20-forbid.cedar:3:1: error: policy id "move" is already used at 10-permit.cedar:1:1 [POLICY_DUPLICATE_ID]\n',
      );
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      fs.rmSync(source, { recursive: true, force: true });
    }
  });

  it('refuses an extension call with the wrong number of arguments with file:line:col; --allow-arity-errors builds it', async () => {
    const source = tempDir('cli-arity');
    try {
      fs.writeFileSync(
        path.join(source, 'main.cedar'),
        'permit (principal, action, resource);\nforbid (principal, action, resource)\nwhen { duration("1h", 2) > duration("0ms") };\n',
      );
      fs.writeFileSync(
        path.join(source, 'tests.json'),
        JSON.stringify([{ name: 'the broken forbid errors, strict mode denies', principal: 'U::"a"', action: 'Action::"x"', resource: 'R::"r"', decision: 'deny', errors: ['policy1'] }]),
      );
      const out = path.join(work, 'arity.bundle');
      const refused = await ztedge('bundle', 'build', source, '--revision', '1', '--out', out);
      expect(refused.code).toBe(1);
      expect(withoutSchemaWarning(refused.stderr)).toBe(
        'BUNDLE_POLICY_INVALID: main.cedar:3:8: error: `duration` takes 1 argument, got 2: Cedar loads this policy, but the call fails whenever it is evaluated [POLICY_EXTENSION_ARITY]\n' +
          '  main.cedar:3:8: error: `duration` takes 1 argument, got 2: Cedar loads this policy, but the call fails whenever it is evaluated [POLICY_EXTENSION_ARITY]\n',
      );
      expect(fs.existsSync(out)).toBe(false);
      const built = await ztedge('bundle', 'build', source, '--revision', '1', '--out', out, '--allow-arity-errors');
      expect(built.code).toBe(0);
      expect(built.stderr).toContain('main.cedar:3:8: warning: `duration` takes 1 argument, got 2');
      expect(readUnverifiedBundle(fs.readFileSync(out)).payload.policies.map((p) => p.file)).toEqual(['main.cedar']);
      // A device loads it as Cedar would: the policy set is valid, the call errors when evaluated.
      for (const key of roots.keys) expect((await ztedge('bundle', 'sign', out, '--key', key.privatePath)).code).toBe(0);
      expect((await ztedge('bundle', 'verify', out, ...rootFlags, '--threshold', '2')).code).toBe(0);
    } finally {
      fs.rmSync(source, { recursive: true, force: true });
    }
  });

  it("rolls a stopped agent's state directory back to last-known-good, with flags or the agent config, and audits it", async () => {
    // An agent's state directory as the agent lays it out: state.db and bundles/.
    const stateDir = path.join(work, 'state');
    const db = openStateDb(stateDbPath(stateDir));
    db.close();
    const manager = new BundleManager({ store: new BundleStore(bundleStoreDir(stateDir)), trust: trustOf(roots, { profile: 'robot-arm' }), clock: { now: () => Date.now() } });
    manager.start();
    for (const revision of [10, 11, 12]) manager.activate(fs.readFileSync(await buildSigned('robot-cell', revision)));

    const byFlags = await ztedge('bundle', 'rollback', '--state-dir', stateDir, ...rootFlags, '--threshold', '2', '--profile', 'robot-arm');
    expect(byFlags.code, byFlags.stderr).toBe(0);
    expect(byFlags.stdout).toMatch(/^rolled back from revision 12 to revision 11 \([0-9a-f]{64}\); audit record 2\n$/);
    expect(new BundleStore(bundleStoreDir(stateDir)).open().status).toMatchObject({ active: { revision: 11 }, lkg: null, floor: 12 });

    const config = path.join(work, 'agent.yaml');
    fs.writeFileSync(
      config,
      [
        'device: { id: dev-1, site: site-1, profile: robot-arm }',
        'stateDir: state',
        `deviceKey: ${roots.keys[0].privatePath}`,
        `roots: { keys: [${roots.keys.map((k) => k.publicPath).join(', ')}], threshold: 2 }`,
      ].join('\n'),
    );
    const restarted = new BundleManager({ store: new BundleStore(bundleStoreDir(stateDir)), trust: trustOf(roots, { profile: 'robot-arm' }), clock: { now: () => Date.now() } });
    restarted.start();
    restarted.activate(fs.readFileSync(await buildSigned('robot-cell', 13)));
    const byConfig = await ztedge('bundle', 'rollback', '--state-dir', stateDir, '--config', config);
    expect(byConfig.code, byConfig.stderr).toBe(0);
    expect(byConfig.stdout).toMatch(/^rolled back from revision 13 to revision 11 /);

    // Each rollback is in the agent's audit log: the request, then what happened.
    const audit = openStateDb(stateDbPath(stateDir));
    const events = (audit.prepare("SELECT body FROM audit WHERE kind = 'bundle' ORDER BY seq").all() as Array<{ body: Uint8Array }>).map(
      ({ body }) => Object.fromEntries(decodeCbor(body, { maxBytes: 4096, maxDepth: 4 }) as Map<string, unknown>),
    );
    audit.close();
    expect(events.map((e) => [e.event, e.revision, e.fromRevision ?? null, e.reason ?? null])).toEqual([
      ['rollback-requested', 11, 12, null],
      ['rolled-back', 11, 12, 'operator'],
      ['rollback-requested', 11, 13, null],
      ['rolled-back', 11, 13, 'operator'],
    ]);

    // Nothing to roll back to: refused, audited, and nothing else changes.
    const entries = () => fs.readdirSync(stateDir, { recursive: true }).map(String).sort();
    const before = entries();
    const noLkg = await ztedge('bundle', 'rollback', '--config', config);
    expect(noLkg.code).toBe(1);
    expect(noLkg.stderr).toMatch(/^BUNDLE_NO_LKG: /);
    expect(new BundleStore(bundleStoreDir(stateDir)).open().status).toMatchObject({ active: { revision: 11 }, floor: 13 });
    expect(entries()).toEqual(before);
  });

  it('refuses a directory that is not the agent\'s state directory, and creates nothing in it', async () => {
    const stateDir = path.join(work, 'state-2');
    openStateDb(stateDbPath(stateDir)).close();
    new BundleManager({ store: new BundleStore(bundleStoreDir(stateDir)), trust: trustOf(roots, { profile: undefined }), clock: { now: () => Date.now() } }).start();
    const entries = (dir: string) => fs.readdirSync(dir, { recursive: true }).map(String).sort();
    const before = entries(stateDir);

    const inner = await ztedge('bundle', 'rollback', '--state-dir', bundleStoreDir(stateDir), ...rootFlags, '--threshold', '2');
    expect(inner.code).toBe(1);
    expect(inner.stderr).toBe(`STATE_DIR_INVALID: ${bundleStoreDir(stateDir)} is the bundle store inside the agent's state directory; give the state directory itself: ${stateDir}\n`);
    const missing = path.join(work, 'no-such-state');
    const absent = await ztedge('bundle', 'rollback', '--state-dir', missing, ...rootFlags, '--threshold', '2');
    expect(absent.stderr).toMatch(/^STATE_DIR_INVALID: .*no-such-state does not exist/);
    expect(fs.existsSync(missing)).toBe(false);
    expect(entries(stateDir)).toEqual(before);
  });

  it('writes bundles that the library reads back', async () => {
    const file = await buildSigned('plc-gateway', 2);
    expect(readUnverifiedBundle(fs.readFileSync(file)).signatures).toHaveLength(2);
  });
});
