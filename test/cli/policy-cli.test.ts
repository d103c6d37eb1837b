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

  it('refuses a policy id used twice, naming both places', async () => {
    const dir = path.dirname(write('dup-ids/a.cedar', '@id("stop")\npermit (principal, action == Action::"stop", resource);\n'));
    write('dup-ids/b.cedar', '// the same id again\n@id("stop")\nforbid (principal, action == Action::"stop", resource);\n');
    write('dup-ids/tests.json', []);
    const a = path.join(dir, 'a.cedar');
    const b = path.join(dir, 'b.cedar');
    const run = await ztedge(['policy', 'test', dir]);
    expect(run.code).toBe(1);
    expect(lines(run.stderr)).toEqual(['POLICY_INVALID: 1 error in the policies', `  ${b}:2:1: error: policy id "stop" is already used at ${a}:1:1 [POLICY_DUPLICATE_ID]`]);
    // A positional id taken by an @id is a duplicate too.
    const taken = path.dirname(write('taken-id/a.cedar', '@id("policy1")\npermit (principal, action, resource);\npermit (principal, action, resource);\n'));
    write('taken-id/tests.json', []);
    expect(lines((await ztedge(['policy', 'test', taken])).stderr)[1]).toBe(
      `  ${path.join(taken, 'a.cedar')}:3:1: error: policy id "policy1" is already used at ${path.join(taken, 'a.cedar')}:1:1 [POLICY_DUPLICATE_ID]`,
    );
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
  const grip = readTests(robotCell).find((t) => t.name === 'supervisor grips within the rated force')!;

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
    const dir = path.dirname(write('strict/permit.cedar', '@id("grip") permit (principal, action, resource);'));
    write('strict/forbid.cedar', '@id("overforce") forbid (principal, action, resource) when { decimal(context.force).greaterThan(decimal("120.0")) };');
    const request = ['--principal', 'U::"u"', '--action', 'Action::"grip"', '--resource', 'R::"r"', '--context', '{"force": "lots"}'];
    const strict = JSON.parse((await ztedge(['policy', 'eval', dir, ...request])).stdout) as { decision: string; errors: Array<{ policyId: string; code: string }> };
    const plain = JSON.parse((await ztedge(['policy', 'eval', dir, ...request, '--no-strict'])).stdout) as { decision: string; errors: unknown[] };
    expect(strict.decision).toBe('deny');
    expect(strict.errors.map((e) => [e.policyId, e.code])).toEqual([['overforce', 'EVAL_EXTENSION']]);
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
    const request = write('ok-request.json', requestOf(grip));
    write('empty-dir/readme.txt', 'no policies here');
    const cases: Array<[string[], RegExp]> = [
      [['--policies', path.join(tmp, 'nope.cedar'), '--entities', entities, '--request', request], /^FILE_NOT_FOUND: policy path .*nope\.cedar does not exist$/],
      [['--policies', robotCell, '--entities', path.join(tmp, 'missing.json'), '--request', request], /^FILE_NOT_FOUND: entities file .*missing\.json does not exist$/],
      [['--policies', robotCell, '--entities', write('bad-entities.json', '[{"uid": '), '--request', request], /^JSON_SYNTAX: .*bad-entities\.json: .*line 1, column 10/],
      [['--policies', robotCell, '--entities', write('dup-entities.json', [{ uid: { type: 'A', id: 'a' }, attrs: {}, parents: [] }, { uid: { type: 'A', id: 'a' }, attrs: {}, parents: [] }]), '--request', request], /^ENTITIES_DUPLICATE: /],
      [['--policies', robotCell, '--entities', entities, '--request', write('bad-request.json', { principal: { type: 'User', id: 'a' } })], /^REQUEST_SHAPE: .*bad-request\.json: /],
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

  const jogContext = JSON.stringify(readTests(robotCell).find((t) => t.reasons?.[0] === 'operator-jog-slow')!.context);
  const jogFlags = ['--principal', 'Operator::"olga"', '--action', 'Action::"move"', '--resource', 'Arm::"arm-1"', '--context', jogContext];

  it('takes a bundle source directory and the request as flags, and names policies by @id', async () => {
    const run = await ztedge(['policy', 'eval', robotCell, ...jogFlags]);
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    const out = JSON.parse(run.stdout) as { decision: string; reasons: string[]; determining: Array<{ id: string }> };
    expect(out.decision).toBe('allow');
    expect(out.reasons).toEqual(['operator-jog-slow']);
    expect(out.determining.map((d) => d.id)).toEqual(['operator-jog-slow']);
  });

  it('names a policy without @id by its position, counted across files', async () => {
    const dir = path.dirname(write('unnamed/a.cedar', '@id("named") forbid (principal, action, resource) when { context.deny };'));
    write('unnamed/b.cedar', 'permit (principal, action, resource);');
    const request = ['--principal', 'U::"u"', '--action', 'Action::"a"', '--resource', 'R::"r"'];
    const allowed = JSON.parse((await ztedge(['policy', 'eval', dir, ...request, '--context', '{"deny": false}'])).stdout) as { reasons: string[] };
    expect(allowed.reasons).toEqual(['policy1']);
    const denied = JSON.parse((await ztedge(['policy', 'eval', dir, ...request, '--context', '{"deny": true}'])).stdout) as { reasons: string[] };
    expect(denied.reasons).toEqual(['named']);
    const errored = JSON.parse((await ztedge(['policy', 'eval', dir, ...request])).stdout) as { decision: string; errors: Array<{ policyId: string }> };
    expect(errored.errors.map((e) => e.policyId)).toEqual(['named']);
  });

  it('takes a built bundle file', async () => {
    const bundle = path.join(tmp, 'robot-cell.bundle');
    expect((await ztedge(['bundle', 'build', robotCell, '--revision', '1', '--out', bundle])).code).toBe(0);
    const run = await ztedge(['policy', 'eval', bundle, ...jogFlags]);
    expect(run.code).toBe(0);
    expect((JSON.parse(run.stdout) as { reasons: string[] }).reasons).toEqual(['operator-jog-slow']);
    expect(run.stderr).toMatch(/signatures are not checked/);
    const notABundle = await ztedge(['policy', 'eval', path.join(robotCell, 'tests.json'), ...jogFlags]);
    expect(notABundle.code).toBe(1);
    expect(notABundle.stderr).toMatch(/^BUNDLE_(MALFORMED|TRUNCATED): /m);
  });

  it('--fail-on-deny exits 3 on a deny and 0 on an allow', async () => {
    const deny = ['--principal', 'Operator::"olga"', '--action', 'Action::"move"', '--resource', 'Arm::"arm-1"', '--context', jogContext.replace('"speed":200', '"speed":900')];
    expect(jogContext).toContain('"speed":200');
    const denied = await ztedge(['policy', 'eval', robotCell, ...deny, '--fail-on-deny']);
    expect((JSON.parse(denied.stdout) as { decision: string }).decision).toBe('deny');
    expect(denied.code).toBe(3);
    expect((await ztedge(['policy', 'eval', robotCell, ...deny])).code).toBe(0);
    expect((await ztedge(['policy', 'eval', robotCell, ...jogFlags, '--fail-on-deny'])).code).toBe(0);
  });

  it('keeps --context integers exact and refuses a request given twice or half', async () => {
    const policy = write('big-flags/exact.cedar', 'permit (principal, action, resource) when { context.n == 9223372036854775807 };');
    const flags = ['--principal', 'U::"u"', '--action', 'Action::"a"', '--resource', 'R::"r"'];
    const exact = await ztedge(['policy', 'eval', '--policies', policy, '--entities', write('big-flags/e.json', []), ...flags, '--context', '{"n": 9223372036854775807}']);
    expect((JSON.parse(exact.stdout) as { decision: string }).decision).toBe('allow');
    const usage: Array<[string[], RegExp]> = [
      [[robotCell, ...flags, '--request', write('r.json', {})], /give either --request or --principal/],
      [[robotCell, '--principal', 'U::"u"', '--action', 'Action::"a"'], /missing required option --resource/],
      [[robotCell, ...flags.slice(0, 4), '--resource', 'R::r'], /--resource must be an entity uid/],
      [[robotCell, ...flags, '--context', '{"a": '], /--context is not valid JSON/],
      [[robotCell], /missing the request/],
      [[robotCell, '--policies', robotCell, ...flags], /give either SOURCE or --policies/],
    ];
    for (const [args, pattern] of usage) {
      const run = await ztedge(['policy', 'eval', ...args]);
      expect(run.code, args.join(' ')).toBe(2);
      expect(run.stderr).toMatch(pattern);
    }
    const notObject = await ztedge(['policy', 'eval', robotCell, ...flags, '--context', '[1]']);
    expect(notObject.code).toBe(1);
    expect(notObject.stderr).toMatch(/^REQUEST_SHAPE: the request: /);
  });

  it('reports one summary line, then every broken policy as file:line:col', async () => {
    const request = write('ok-request-2.json', requestOf(grip));
    const broken = write('broken/a.cedar', 'permit (principal, action, resource) when { 1 + };\npermit (principal, action, resource) when { context.x.nope() };');
    write('broken/b.cedar', 'forbid (principal, actoin, resource);');
    const run = await ztedge(['policy', 'eval', '--policies', path.dirname(broken), '--entities', entities, '--request', request]);
    expect(run.code).toBe(1);
    expect(lines(run.stderr)).toEqual([
      'POLICY_INVALID: 3 errors in the policies',
      expect.stringMatching(/^  .*broken\/a\.cedar:1:\d+: error: .* \[PARSE_UNEXPECTED_TOKEN\]$/),
      expect.stringMatching(/^  .*broken\/a\.cedar:2:\d+: error: .* \[PARSE_INVALID_METHOD\]$/),
      expect.stringMatching(/^  .*broken\/b\.cedar:1:\d+: error: .* \[PARSE_[A-Z_]+\]$/),
    ]);
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
    expect(errs[errs.length - 1]).toMatch(/^POLICY_CHECK: \d+ errors in 2 files$/);
  });

  it('--check refuses an extension call with the wrong number of arguments, or warns with --allow-arity-errors', async () => {
    const file = write('fmt/arity.cedar', 'permit (\n  principal,\n  action,\n  resource\n)\nwhen { decimal("1.0").lessThan(decimal("2.0"), decimal("3.0")) };\n');
    const refused = await ztedge(['policy', 'fmt', '--check', file]);
    expect(refused.code).toBe(1);
    expect(lines(refused.stderr)).toEqual([
      `${file}:6:8: error: \`lessThan\` takes 1 argument, got 2: Cedar loads this policy, but the call fails whenever it is evaluated [POLICY_EXTENSION_ARITY]`,
      'POLICY_CHECK: 1 error in 1 file',
    ]);
    const allowed = await ztedge(['policy', 'fmt', '--check', '--allow-arity-errors', file]);
    expect(allowed.code).toBe(0);
    expect(lines(allowed.stderr)).toEqual([`${file}:6:8: warning: \`lessThan\` takes 1 argument, got 2: Cedar loads this policy, but the call fails whenever it is evaluated [POLICY_EXTENSION_ARITY]`]);
  });

  it('--check names the files whose formatting would change, and every problem of every file', async () => {
    const formatted = write('check/ok.cedar', '// fine\npermit (\n  principal,\n  action,\n  resource\n);\n');
    const sloppy = write('check/sloppy.cedar', '// keep me\npermit(principal,action,resource); // and me\n');
    const dupA = write('check/dup-a.cedar', '@id("x")\npermit (\n  principal,\n  action,\n  resource\n);\n');
    const dupB = write('check/dup-b.cedar', '@id("x")\nforbid (\n  principal,\n  action,\n  resource\n);\n');
    const run = await ztedge(['policy', 'fmt', '--check', formatted, sloppy, dupA, dupB]);
    expect(run.code).toBe(1);
    expect(lines(run.stderr)).toEqual([
      `${dupB}:1:1: error: policy id "x" is already used at ${dupA}:1:1 [POLICY_DUPLICATE_ID]`,
      `${sloppy}: not formatted (\`ztedge policy fmt --write\` formats it)`,
      'POLICY_CHECK: 1 error, 1 file not formatted in 4 files',
    ]);
    expect(run.stdout).toBe('');
    expect((await ztedge(['policy', 'fmt', '--check', formatted])).code).toBe(0);
  });

  it('--diff shows what would change and changes nothing; --write rewrites in place, keeping comments and the file mode', async () => {
    const file = write('write/cell.cedar', '// header\n\n@id("a") permit(principal, action, resource) // why\nwhen { context.ok };\n');
    fs.chmodSync(file, 0o640);
    const before = fs.readFileSync(file, 'utf8');
    const diff = await ztedge(['policy', 'fmt', '--diff', file]);
    expect(diff.code).toBe(0);
    expect(diff.stdout).toBe(
      [
        `--- ${file}`,
        `+++ ${file} (formatted)`,
        '@@ -1,4 +1,9 @@',
        ' // header',
        ' ',
        '-@id("a") permit(principal, action, resource) // why',
        '+@id("a")',
        '+permit (',
        '+  principal,',
        '+  action,',
        '+  resource',
        '+) // why',
        ' when { context.ok };',
        '',
      ].join('\n'),
    );
    expect(fs.readFileSync(file, 'utf8')).toBe(before);
    const check = await ztedge(['policy', 'fmt', '--check', '--diff', file]);
    expect(check.code).toBe(1);
    expect(check.stdout).toBe(diff.stdout);
    const wrote = await ztedge(['policy', 'fmt', '--write', file]);
    expect(wrote.code).toBe(0);
    expect(lines(wrote.stdout)).toEqual(['1 file: 1 formatted', `  ${file}`]);
    expect(fs.readFileSync(file, 'utf8')).toBe('// header\n\n@id("a")\npermit (\n  principal,\n  action,\n  resource\n) // why\nwhen { context.ok };\n');
    expect(fs.statSync(file).mode & 0o777).toBe(0o640);
    expect(fs.readdirSync(path.dirname(file))).toEqual(['cell.cedar']);
    expect((await ztedge(['policy', 'fmt', '--check', file])).code).toBe(0);
    expect(lines((await ztedge(['policy', 'fmt', '--write', file])).stdout)).toEqual(['1 file: 0 formatted']);
  });

  it('--write leaves a file that does not parse untouched and formats the others', async () => {
    const broken = write('write2/broken.cedar', 'permit(principal, action, resource) when { 1 + };\n');
    const fine = write('write2/fine.cedar', 'permit(principal, action, resource);');
    const run = await ztedge(['policy', 'fmt', '--write', broken, fine]);
    expect(run.code).toBe(1);
    expect(fs.readFileSync(broken, 'utf8')).toBe('permit(principal, action, resource) when { 1 + };\n');
    expect(fs.readFileSync(fine, 'utf8')).toBe('permit (\n  principal,\n  action,\n  resource\n);\n');
    expect(lines(run.stderr)[0]).toMatch(/broken\.cedar:1:\d+: error: /);
    expect((await ztedge(['policy', 'fmt', '--write', '--check', fine])).code).toBe(2);
  });

  it('prints canonical policies that parse back to the same policies', async () => {
    const source = path.join(robotCell, '40-forbids.cedar');
    const run = await ztedge(['policy', 'fmt', source]);
    expect(run.code).toBe(0);
    const original = parsePolicies(fs.readFileSync(source, 'utf8'));
    const reparsed = parsePolicies(run.stdout);
    expect(reparsed.map(formatPolicy)).toEqual(original.map(formatPolicy));
    expect(reparsed.map((p) => p.annotations.map((a) => [a.key, a.value]))).toEqual(original.map((p) => p.annotations.map((a) => [a.key, a.value])));
    // Comments are kept.
    const comments = fs.readFileSync(source, 'utf8').split('\n').filter((l) => l.startsWith('//'));
    expect(comments.length).toBeGreaterThan(3);
    expect(run.stdout.split('\n').filter((l) => l.startsWith('//'))).toEqual(comments);
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
