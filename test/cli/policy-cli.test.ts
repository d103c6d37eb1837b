// `ztedge policy`: eval, test and fmt on the example bundle sources and on broken inputs.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import type { CliIo } from '../../src/cli/command.js';
import { main } from '../../src/cli/main.js';
import { parsePolicies } from '../../src/policy/index.js';
import { formatPolicy } from '../../src/policy/format.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const examples = ['robot-cell', 'plc-gateway'].map((name) => path.join(repo, 'policies', name));
const robotCell = examples[0]!;
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-policy-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

async function ztedge(args: string[], stdin = ''): Promise<Run> {
  let stdout = '';
  let stderr = '';
  const io: CliIo = {
    stdout: (t) => void (stdout += t.endsWith('\n') ? t : t + '\n'),
    stderr: (t) => void (stderr += t.endsWith('\n') ? t : t + '\n'),
    readStdin: async () => Buffer.from(stdin),
  };
  const code = await main(args, io);
  return { code, stdout, stderr };
}

function write(name: string, content: unknown): string {
  const file = path.join(tmp, name);
  fs.mkdirSync(path.dirname(file), { recursive: true });
  fs.writeFileSync(file, typeof content === 'string' ? content : JSON.stringify(content, null, 2));
  return file;
}

interface TestCase {
  name: string;
  principal: unknown;
  action: unknown;
  resource: unknown;
  context: Record<string, unknown>;
  decision: string;
  reasons?: string[];
  errors?: string[];
}

const readTests = (dir: string) => JSON.parse(fs.readFileSync(path.join(dir, 'tests.json'), 'utf8')) as TestCase[];
const requestOf = ({ principal, action, resource, context }: TestCase) => ({ principal, action, resource, context });
const lines = (text: string) => text.trimEnd().split('\n');

describe('ztedge policy test', () => {
  for (const dir of examples) {
    it(`passes every case of the ${path.basename(dir)} example`, async () => {
      const tests = readTests(dir);
      expect(tests.length).toBeGreaterThanOrEqual(15);
      expect(new Set(tests.map((t) => t.decision))).toEqual(new Set(['allow', 'deny']));
      const run = await ztedge(['policy', 'test', dir]);
      expect(run.stderr).toBe('');
      expect(lines(run.stdout)).toEqual([`${tests.length} passed, 0 failed`]);
      expect(run.code).toBe(0);
    });
  }

  it('reports each failing case and exits 1 (explicit files)', async () => {
    const tests = readTests(robotCell);
    const flipped = tests.findIndex((t) => t.decision === 'allow');
    const wrongReasons = tests.findIndex((t) => t.decision === 'deny' && t.reasons?.length === 1);
    tests[flipped]!.decision = 'deny';
    tests[wrongReasons]!.reasons = ['estop-anyone'];
    const file = write('tampered-tests.json', tests);
    const run = await ztedge(['policy', 'test', '--policies', robotCell, '--entities', path.join(robotCell, 'entities.json'), '--tests', file]);
    expect(run.code).toBe(1);
    const out = lines(run.stdout);
    expect(out).toHaveLength(3);
    expect(out[0]).toMatch(new RegExp(`^FAIL ${tests[flipped]!.name}: expected deny reasons .*, got allow reasons \\[`));
    expect(out[1]).toContain(`FAIL ${tests[wrongReasons]!.name}: expected deny reasons [estop-anyone]`);
    expect(out[2]).toBe(`${tests.length - 2} passed, 2 failed`);
  });

  it('accepts uids written as Cedar text', async () => {
    const { context } = readTests(robotCell)[0]!;
    const file = write('text-uids.json', [
      { name: 'e-stop', principal: 'Operator::"olga"', action: 'Action::"estop"', resource: 'Arm::"arm-2"', context, decision: 'allow', reasons: ['estop-anyone'] },
      { name: 'bad uid', principal: 'Operator::olga', action: 'Action::"estop"', resource: 'Arm::"arm-2"', context, decision: 'allow' },
    ]);
    const run = await ztedge(['policy', 'test', '--policies', robotCell, '--entities', path.join(robotCell, 'entities.json'), '--tests', file]);
    // The whole file is read before any case runs: one malformed uid refuses it.
    expect(run.code).toBe(1);
    expect(lines(run.stderr)).toEqual([expect.stringMatching(/^TESTS_SHAPE: .*text-uids\.json: invalid entity uid: .* at \$\[1\]\.principal$/)]);
    fs.writeFileSync(file, JSON.stringify((JSON.parse(fs.readFileSync(file, 'utf8')) as unknown[]).slice(0, 1)));
    const good = await ztedge(['policy', 'test', '--policies', robotCell, '--entities', path.join(robotCell, 'entities.json'), '--tests', file]);
    expect(lines(good.stdout)).toEqual(['1 passed, 0 failed']);
  });

  it('refuses a malformed tests file with the JSON path of the problem', async () => {
    const file = write('bad-tests.json', [{ name: 'x', principal: { type: 'User', id: 'a' }, action: { type: 'Action', id: 'a' }, resource: { type: 'R', id: 'r' }, decision: 'maybe' }]);
    const run = await ztedge(['policy', 'test', '--policies', robotCell, '--entities', path.join(robotCell, 'entities.json'), '--tests', file]);
    expect(run.code).toBe(1);
    expect(lines(run.stderr)).toEqual([expect.stringMatching(/^TESTS_SHAPE: .*bad-tests\.json: "decision" must be "allow" or "deny" at \$\[0\]\.decision$/)]);
  });
});

describe('ztedge policy eval', () => {
  const entities = path.join(robotCell, 'entities.json');
  const malformedForce = readTests(robotCell).find((t) => t.errors !== undefined && t.errors.length > 0)!;

  it('prints the decision with its determining policies and annotations', async () => {
    const jog = readTests(robotCell).find((t) => t.reasons?.[0] === 'operator-jog-slow')!;
    const request = write('jog.json', requestOf(jog));
    const run = await ztedge(['policy', 'eval', '--policies', robotCell, '--entities', entities, '--request', request]);
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as { decision: string; reasons: string[]; determining: Array<{ name: string; annotations: Record<string, string> }>; errors: unknown[] };
    expect(Object.keys(out)).toEqual(['decision', 'reasons', 'determining', 'errors']);
    expect(out.decision).toBe('allow');
    expect(out.determining.map((d) => d.name)).toEqual(['operator-jog-slow']);
    expect(out.determining[0]!.annotations.rate).toBe('20/60s');
    expect(out.errors).toEqual([]);
  });

  it('denies on an errored forbid in strict mode and gives Cedar’s decision with --no-strict', async () => {
    const request = write('force.json', requestOf(malformedForce));
    const strict = JSON.parse((await ztedge(['policy', 'eval', '--policies', robotCell, '--entities', entities, '--request', request])).stdout) as { decision: string; errors: Array<{ policyName: string; code: string }> };
    const plain = JSON.parse((await ztedge(['policy', 'eval', '--policies', robotCell, '--entities', entities, '--request', request, '--no-strict'])).stdout) as { decision: string; errors: unknown[] };
    expect(strict.decision).toBe('deny');
    expect(strict.errors.map((e) => [e.policyName, e.code])).toEqual([['forbid-overforce', 'EVAL_EXTENSION']]);
    expect(plain.decision).toBe('allow');
    expect(plain.errors).toHaveLength(1);
  });

  it('reads the request from standard input and keeps big integers exact', async () => {
    const policy = write('big/exact.cedar', 'permit (principal, action, resource) when { context.n == 9223372036854775807 && context.n - 1 == 9223372036854775806 };');
    const empty = write('big/entities.json', []);
    const stdin = '{"principal": {"type": "User", "id": "u"}, "action": {"type": "Action", "id": "a"}, "resource": {"type": "R", "id": "r"}, "context": {"n": 9223372036854775807}}';
    const run = await ztedge(['policy', 'eval', '--policies', policy, '--entities', empty, '--request', '-'], stdin);
    expect(run.code).toBe(0);
    expect((JSON.parse(run.stdout) as { decision: string }).decision).toBe('allow');
  });

  it('reports broken inputs as one line with a stable code', async () => {
    const request = write('ok-request.json', requestOf(malformedForce));
    write('empty-dir/readme.txt', 'no policies here');
    const cases: Array<[string[], RegExp]> = [
      [['--policies', path.join(tmp, 'nope.cedar'), '--entities', entities, '--request', request], /^FILE_NOT_FOUND: policy path .*nope\.cedar does not exist$/],
      [['--policies', robotCell, '--entities', path.join(tmp, 'missing.json'), '--request', request], /^FILE_NOT_FOUND: entities file .*missing\.json does not exist$/],
      [['--policies', robotCell, '--entities', write('bad-entities.json', '[{"uid": '), '--request', request], /^JSON_SYNTAX: .*bad-entities\.json: .*line 1, column 10/],
      [['--policies', robotCell, '--entities', write('dup-entities.json', [{ uid: { type: 'A', id: 'a' }, attrs: {}, parents: [] }, { uid: { type: 'A', id: 'a' }, attrs: {}, parents: [] }]), '--request', request], /^ENTITIES_DUPLICATE: /],
      [['--policies', robotCell, '--entities', entities, '--request', write('bad-request.json', { principal: { type: 'User', id: 'a' } })], /^REQUEST_SHAPE: .*bad-request\.json: /],
      [['--policies', write('broken.cedar', 'permit (principal, action, resource) when { 1 + };'), '--entities', entities, '--request', request], /^POLICY_PARSE: .*broken\.cedar:1:\d+: /],
      [['--policies', path.join(tmp, 'empty-dir'), '--entities', entities, '--request', request], /^POLICY_NONE: no \*\.cedar files in /],
      [['--policies', robotCell, '--entities', robotCell, '--request', request], /^FILE_IS_DIRECTORY: entities file /],
    ];
    for (const [args, pattern] of cases) {
      const run = await ztedge(['policy', 'eval', ...args]);
      expect(run.code, args.join(' ')).toBe(1);
      expect(run.stdout).toBe('');
      expect(lines(run.stderr)).toEqual([expect.stringMatching(pattern)]);
    }
  });

  it('explains wrong usage with exit code 2', async () => {
    const missing = await ztedge(['policy', 'eval', '--policies', robotCell]);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain('missing required option --entities');
    const unknown = await ztedge(['policy', 'frobnicate']);
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("unknown command 'frobnicate'");
  });
});

describe('ztedge policy fmt', () => {
  it('--check passes the examples', async () => {
    const run = await ztedge(['policy', 'fmt', '--check', ...examples]);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe('');
    expect(run.stdout).toMatch(/^\d+ files, \d+ policies: ok\n$/);
  });

  it('--check reports every parse error with file, line and column', async () => {
    const bad = write(
      'fmt/bad.cedar',
      ['permit (principal, action, resource)', 'when { context.a + };', '', 'forbid (principal, action, resource) when { true }', 'permit (principal, action, resource);', ''].join('\n'),
    );
    const alsoBad = write('fmt/also-bad.cedar', 'permit (principal, action, resource) when { ip("1.2.3.4").nope() };');
    const run = await ztedge(['policy', 'fmt', '--check', bad, alsoBad]);
    expect(run.code).toBe(1);
    const errs = lines(run.stderr);
    expect(errs.length).toBeGreaterThanOrEqual(4);
    expect(errs[0]).toMatch(/bad\.cedar:2:\d+: .* \[PARSE_[A-Z_]+\]$/);
    expect(errs.some((l) => /bad\.cedar:[45]:\d+: .* \[PARSE_[A-Z_]+\]$/.test(l))).toBe(true);
    expect(errs.some((l) => /also-bad\.cedar:1:\d+: .* \[PARSE_INVALID_METHOD\]$/.test(l))).toBe(true);
    expect(errs[errs.length - 1]).toMatch(/^POLICY_PARSE: \d+ errors in 2 files$/);
  });

  it('--check refuses an extension call with the wrong number of arguments, or warns with --allow-arity-errors', async () => {
    const file = write('fmt/arity.cedar', 'permit (principal, action, resource)\nwhen { decimal("1.0").lessThan(decimal("2.0"), decimal("3.0")) };\n');
    const refused = await ztedge(['policy', 'fmt', '--check', file]);
    expect(refused.code).toBe(1);
    expect(lines(refused.stderr)).toEqual([
      `${file}:2:8: error: \`lessThan\` takes 1 argument, got 2: Cedar loads this policy, but the call fails whenever it is evaluated [POLICY_EXTENSION_ARITY]`,
      'POLICY_EXTENSION_ARITY: 1 call with the wrong number of arguments (--allow-arity-errors accepts them)',
    ]);
    const allowed = await ztedge(['policy', 'fmt', '--check', '--allow-arity-errors', file]);
    expect(allowed.code).toBe(0);
    expect(lines(allowed.stderr)).toEqual([`${file}:2:8: warning: \`lessThan\` takes 1 argument, got 2: Cedar loads this policy, but the call fails whenever it is evaluated [POLICY_EXTENSION_ARITY]`]);
  });

  it('prints canonical policies that parse back to the same policies', async () => {
    const source = path.join(robotCell, '40-forbids.cedar');
    const run = await ztedge(['policy', 'fmt', source]);
    expect(run.code).toBe(0);
    const original = parsePolicies(fs.readFileSync(source, 'utf8'));
    const reparsed = parsePolicies(run.stdout);
    expect(reparsed.map(formatPolicy)).toEqual(original.map(formatPolicy));
    expect(reparsed.map((p) => p.annotations.map((a) => [a.key, a.value]))).toEqual(original.map((p) => p.annotations.map((a) => [a.key, a.value])));
    expect(run.stdout).not.toContain('//');
  });
});

describe('the ztedge executable', () => {
  it('runs `policy test` on an example and fails cleanly on a missing file, without a stack trace', async () => {
    const bin = path.join(repo, 'src/cli/bin.mjs');
    const exec = promisify(execFile);
    const ok = await exec(process.execPath, [bin, 'policy', 'test', robotCell], { cwd: repo });
    expect(ok.stdout).toMatch(/^\d+ passed, 0 failed\n$/);
    const failed = await exec(process.execPath, [bin, 'policy', 'test', path.join(tmp, 'no-such-dir')], { cwd: repo }).then(
      () => undefined,
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
    expect(failed?.code).toBe(1);
    expect(failed?.stderr).toMatch(/^FILE_NOT_FOUND: policy path .*no-such-dir does not exist\n$/);
  });
});
