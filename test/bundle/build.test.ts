// Building from a source directory: the example sources build, every problem is reported with
// its file (and line:column for Cedar), and the build fails on a failing embedded test.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { buildBundle, readBundleSource } from '../../src/bundle/build.js';
import { BundleError } from '../../src/bundle/errors.js';
import { decodeBundlePayload } from '../../src/bundle/format.js';
import { COSE_ALG } from '../../src/crypto/algorithms.js';
import { EXAMPLES, keygen, manifest, tempDir } from './support.js';

let dir: string;

beforeEach(() => {
  dir = tempDir('source');
});

afterEach(() => {
  fs.rmSync(dir, { recursive: true, force: true });
});

function write(files: Record<string, string | object>): void {
  for (const [name, content] of Object.entries(files)) {
    fs.writeFileSync(path.join(dir, name), typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  }
}

function refusal(run: () => unknown): BundleError {
  try {
    run();
  } catch (err) {
    if (err instanceof BundleError) return err;
    throw err;
  }
  throw new Error('expected a BundleError');
}

const uid = (type: string, id: string) => ({ type, id });

describe('example sources', () => {
  it.each(['robot-cell', 'plc-gateway'])('%s builds, with every embedded test passing', (name) => {
    const source = readBundleSource(path.join(EXAMPLES, name));
    const tests = JSON.parse(fs.readFileSync(path.join(EXAMPLES, name, 'tests.json'), 'utf8')) as unknown[];
    const built = buildBundle(source, manifest({ id: name }));
    expect(built.testOutcomes).toHaveLength(tests.length);
    expect(built.testOutcomes.every((o) => o.passed)).toBe(true);
    expect(source.issuers.length).toBeGreaterThan(0);
    expect(source.attestation.length).toBe(1);
    const payload = decodeBundlePayload(built.bytes);
    expect(payload.policies.map((p) => p.file)).toEqual(fs.readdirSync(path.join(EXAMPLES, name)).filter((f) => f.endsWith('.cedar')).sort());
  });
});

describe('readBundleSource + buildBundle', () => {
  const policy = '@id("read")\npermit (principal, action == Action::"read", resource);\n';

  it('numbers policies across files in file-name order', () => {
    write({
      'b.cedar': '@id("second")\npermit (principal, action, resource);\n',
      'a.cedar': `${policy}@id("also-a")\nforbid (principal, action == Action::"delete", resource);\n`,
    });
    const built = buildBundle(readBundleSource(dir), manifest());
    expect(built.payload.policies.map((p) => p.file)).toEqual(['a.cedar', 'b.cedar']);
    expect(built.policyCount).toBe(3);
  });

  it('reports Cedar errors as file:line:col across all files', () => {
    write({
      'a.cedar': `${policy}permit (principal, action, resource)\nwhen { context.x == };\n`,
      'b.cedar': 'permit (principal, action resource);\n',
    });
    const err = refusal(() => buildBundle(readBundleSource(dir), manifest()));
    expect(err.code).toBe('BUNDLE_POLICY_INVALID');
    expect(err.problems.map((p) => p.message.split(': error')[0])).toEqual(['a.cedar:4:21', 'b.cedar:1:27']);
  });

  it('fails on a failing embedded test and names it', () => {
    write({
      'a.cedar': policy,
      'tests.json': [
        { name: 'reads', principal: uid('User', 'u'), action: uid('Action', 'read'), resource: uid('Doc', 'd'), decision: 'allow', reasons: ['read'] },
        { name: 'writes', principal: uid('User', 'u'), action: uid('Action', 'write'), resource: uid('Doc', 'd'), decision: 'allow' },
        { name: 'wrong reason', principal: 'User::"u"', action: 'Action::"read"', resource: 'Doc::"d"', decision: 'allow', reasons: ['other'] },
      ],
    });
    const err = refusal(() => buildBundle(readBundleSource(dir), manifest()));
    expect(err.code).toBe('BUNDLE_TEST_FAILED');
    expect(err.failedTests).toEqual(['writes', 'wrong reason']);
    expect(err.problems[0]!.message).toBe('writes: expected allow, got deny');
  });

  it('keeps Long values in test contexts exact', () => {
    write({
      'a.cedar': 'permit (principal, action, resource) when { context.n == 9223372036854775807 };\n',
      'tests.json': `[{"name": "max long", "principal": "User::\\"u\\"", "action": "Action::\\"a\\"", "resource": "Doc::\\"d\\"",
                       "context": {"n": 9223372036854775807}, "decision": "allow"},
                      {"name": "one less", "principal": "User::\\"u\\"", "action": "Action::\\"a\\"", "resource": "Doc::\\"d\\"",
                       "context": {"n": 9223372036854775806}, "decision": "deny"}]`,
    });
    const built = buildBundle(readBundleSource(dir), manifest());
    expect(built.payload.tests[0]!.context).toBe('{"n":9223372036854775807}');
    expect(built.testOutcomes.map((o) => o.passed)).toEqual([true, true]);
  });

  it('reads issuers with PEM text or a .pub path, and settings with durations', () => {
    const ed = keygen(dir, 'issuer-ed', 'ed25519');
    const ec = keygen(dir, 'issuer-ec', 'p256');
    write({
      'a.cedar': policy,
      'issuers.json': [
        { principal: uid('Operator', 'olga'), publicKey: 'issuer-ed.pub', roles: ['command'], notAfter: '2030-01-01T00:00:00Z' },
        { principal: 'Agent::"planner"', publicKey: fs.readFileSync(ec.publicPath, 'utf8'), alg: 'ESP256', kid: 'a1b2' },
      ],
      'settings.json': { cacheTtl: '5s', replayWindow: '2m', audit: { checkpointEvery: 50 } },
    });
    const source = readBundleSource(dir);
    expect(source.issuers).toEqual([
      { kid: ed.key.publicKey.kid, alg: COSE_ALG.EdDSA, publicKey: ed.key.publicKey.raw, principal: 'Operator::"olga"', notAfter: 1_893_456_000, roles: ['command'] },
      { kid: Uint8Array.of(0xa1, 0xb2), alg: COSE_ALG.ESP256, publicKey: ec.key.publicKey.raw, principal: 'Agent::"planner"' },
    ]);
    expect(source.settings).toMatchObject({ cacheTtlMs: 5000, replayWindowMs: 120_000, clockSkewMs: 30_000, audit: { checkpointEvery: 50 } });
  });

  it('lists every source problem at once, with the file and JSON path', () => {
    write({
      'a.cedar': policy,
      'setings.json': {},
      'issuers.json': [{ principal: 'Agent::"x"', publicKey: 'missing.pub' }, { principal: 'Agent::"y"', publicKey: 'x', alg: 'RS256', extra: 1 }],
      'settings.json': { replayWindow: '10d', clockSkew: 30 },
      'tests.json': [{ name: 't', principal: 'User::"u"', action: 'Action::"a"', resource: 'Doc::"d"', decision: 'maybe' }],
    });
    const err = refusal(() => readBundleSource(dir));
    expect(err.code).toBe('BUNDLE_SOURCE_INVALID');
    const messages = err.problems.map((p) => p.message);
    expect(messages).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^setings\.json: not a bundle source file/),
        expect.stringMatching(/^issuers\.json: \$\[0\]\.publicKey: cannot open .*missing\.pub/),
        expect.stringMatching(/^issuers\.json: \$\[1\]: unknown key "extra"/),
        expect.stringMatching(/^settings\.json: \$\.replayWindow: must be between/),
        expect.stringMatching(/^settings\.json: \$\.clockSkew: must be a duration/),
        expect.stringMatching(/^tests\.json: \$\[0\]\.decision: must be "allow" or "deny"/),
      ]),
    );
  });

  it('refuses a directory without policies and duplicate JSON keys', () => {
    write({ 'entities.json': '[]', 'settings.json': '{"cacheTtl": "1s", "cacheTtl": "2s"}' });
    const err = refusal(() => readBundleSource(dir));
    expect(err.problems.map((p) => p.code)).toEqual(['SOURCE_NO_POLICIES', 'JSON_DUPLICATE_KEY']);
  });
});

describe('annotations the agent does not enforce', () => {
  it('refuses @cache_ttl at build (the check devices run on activation too), located', async () => {
    const { main } = await import('../../src/cli/main.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-cache-ttl-'));
    try {
      fs.writeFileSync(path.join(dir, 'main.cedar'), 'permit (principal, action, resource);\n\n@id("reads")\n@cache_ttl("30s")\npermit (principal, action == Action::"read", resource);\n');
      let stderr = '';
      const out = path.join(dir, 'b.cbor');
      const code = await main(['bundle', 'build', dir, '--revision', '1', '--out', out], { stdout: () => {}, stderr: (t) => void (stderr += `${t}\n`), readStdin: async () => Buffer.alloc(0) });
      expect(code).toBe(1);
      expect(stderr.replace(/^warning: .* not validated.*\n/, "")).toMatch(/^BUNDLE_POLICY_INVALID: main\.cedar:4:1: error: @cache_ttl is not supported: the agent decides every command anew/);
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it('refuses a malformed or meaningless @grant_ttl (and every other malformed obligation) at build, each located', async () => {
    const { main } = await import('../../src/cli/main.js');
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-grant-ttl-'));
    try {
      fs.writeFileSync(
        path.join(dir, 'main.cedar'),
        [
          '@id("weld")',
          '@approval("1")',
          '@grant_ttl("soon")',
          'permit (principal, action == Action::"weld", resource);',
          '',
          '@id("grip")',
          '@grant_ttl("10m")',
          'permit (principal, action == Action::"grip", resource);',
          '',
          '@id("move")',
          '@rate("fast")',
          'permit (principal, action == Action::"move", resource);',
          '',
        ].join('\n'),
      );
      let stderr = '';
      const out = path.join(dir, 'b.cbor');
      const code = await main(['bundle', 'build', dir, '--revision', '1', '--out', out], { stdout: () => {}, stderr: (t) => void (stderr += `${t}\n`), readStdin: async () => Buffer.alloc(0) });
      expect(code).toBe(1);
      expect(stderr).toMatch(/^BUNDLE_POLICY_INVALID: main\.cedar:3:1: error: @grant_ttl must be a duration from 1s to 24h, like "10m" \[OBLIGATION_INVALID\] \(and 2 more\)/m);
      expect(stderr).toMatch(/main\.cedar:7:1: error: @grant_ttl needs @approval on the same policy/);
      expect(stderr).toMatch(/main\.cedar:11:1: error: @rate must look like "20\/60s"/);
      expect(fs.existsSync(out)).toBe(false);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
