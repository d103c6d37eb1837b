// The README's operator workflow, followed literally: every command in it is tried once with a
// misspelled option (or sub-command) and must stop there, exit 2, naming what is wrong and what
// was meant, without creating anything; the steps that need no broker then run as written, in
// order, and must succeed (keys, policy checks, bundle build/sign/verify, configuration).
//
// The workflow's other deliberate mistake — a mistyped action in a policy — is caught by
// `bundle build` validating policies against the bundle source's Cedar schema. That test runs
// when the example source carries a schema (policies/robot-cell/*.cedarschema), the check it
// relies on; until then it is reported as skipped, by name.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const work = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-readme-'));
const startDir = process.cwd();

beforeAll(() => {
  fs.symlinkSync(path.join(repo, 'policies'), path.join(work, 'policies'));
  process.chdir(work);
});
afterAll(() => {
  process.chdir(startDir);
  fs.rmSync(work, { recursive: true, force: true });
});

interface Step {
  line: string;
  args: string[];
  /** `> FILE`: standard output goes there. */
  redirect?: string;
}

/** The `sh` block of the README's "Operator commands" section, one step per command. */
function workflow(): Step[] {
  const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
  const section = readme.slice(readme.indexOf('## Operator commands'));
  const block = /```sh\n([\s\S]*?)```/.exec(section)![1]!;
  const lines = block.replace(/\\\n\s*/g, ' ').split('\n');
  return lines
    .map((l) => l.replace(/\s+#.*$/, '').trim())
    .filter((l) => l.startsWith('ztedge '))
    .map((line) => {
      const words = [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!).slice(1);
      const at = words.indexOf('>');
      const args = (at === -1 ? words : words.slice(0, at)).flatMap(glob);
      return { line, args, ...(at === -1 ? {} : { redirect: words[at + 1]! }) };
    });
}

/** `dir/*.cedar` as the shell expands it. */
function glob(word: string): string[] {
  if (!word.includes('*')) return [word];
  const dir = path.dirname(word);
  const re = new RegExp(`^${path.basename(word).replace(/\./g, '\\.').replace(/\*/g, '.*')}$`);
  return fs.readdirSync(dir).filter((f) => re.test(f)).sort().map((f) => path.join(dir, f));
}

async function ztedge(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { stdout: (t) => void (stdout += `${t}\n`), stderr: (t) => void (stderr += `${t}\n`), readStdin: async () => Buffer.alloc(0) });
  return { code, stdout, stderr };
}

/** A typo the way fingers make them: the last two letters swapped. */
function typo(word: string): string {
  return word.slice(0, -2) + word.at(-1) + word.at(-2);
}

/** The command's name as its messages show it: `bundle build`, `keygen`. */
function commandName(args: string[]): string {
  return ['approve', 'keygen', 'run'].includes(args[0]!) ? args[0]! : `${args[0]} ${args[1]}`;
}

/** Steps that need no broker and no running agent: run as written. */
const OFFLINE = /^(keygen|policy (test|fmt)|bundle (build|verify)|bundle sign b\.cbor|config (example|check))\b/;

const listing = () => fs.readdirSync(work).sort();

describe("the README's operator workflow", () => {
  const steps = workflow();

  it('is found, from keygen to rollback', () => {
    expect(steps.length).toBeGreaterThan(15);
    expect(steps[0]!.args[0]).toBe('keygen');
    expect(steps.map((s) => commandName(s.args))).toEqual(expect.arrayContaining(['bundle build', 'bundle push', 'run', 'cmd send', 'approve', 'bundle rollback', 'bundle rollback-build']));
  });

  it('stops at a misspelled option or sub-command in every step, saying which and what was meant, and goes on when written as in the README', async () => {
    for (const step of steps) {
      const before = listing();
      const flagAt = step.args.map((a, i) => (a.startsWith('--') ? i : -1)).filter((i) => i >= 0).at(-1);
      const wrong = [...step.args];
      let expected: RegExp;
      if (flagAt !== undefined) {
        const name = step.args[flagAt]!.slice(2);
        wrong[flagAt] = `--${typo(name)}`;
        expected = new RegExp(`^ztedge ${commandName(step.args)}: unknown option --${typo(name)} \\(did you mean --${name}\\?\\)`);
      } else {
        wrong[1] = typo(step.args[1]!);
        expected = new RegExp(`^ztedge ${step.args[0]}: unknown command '${typo(step.args[1]!)}' \\(did you mean '${step.args[1]}'\\?\\)`);
      }
      const refused = await ztedge(wrong);
      expect(refused.code, `${step.line} with ${wrong.join(' ')}`).toBe(2);
      expect(refused.stderr, step.line).toMatch(expected);
      expect(listing(), `${step.line} created something`).toEqual(before);

      if (!OFFLINE.test(step.args.join(' '))) continue;
      const done = await ztedge(step.args);
      expect(done.code, `${step.line}\n${done.stderr}`).toBe(0);
      if (step.redirect !== undefined) fs.writeFileSync(step.redirect, done.stdout);
    }
    // What the offline steps produced: keys, a 2-of-2 signed bundle, a configuration that checks.
    expect(listing()).toEqual(expect.arrayContaining(['agent.yaml', 'b.cbor', 'device.key', 'root-a.key', 'root-b.pub']));
  });

  const schemas = fs.readdirSync(path.join(repo, 'policies', 'robot-cell')).filter((f) => f.endsWith('.cedarschema'));
  it.skipIf(schemas.length === 0)('stops at a mistyped action: bundle build names it (relies on the schema check of bundle build)', async () => {
    const source = path.join(work, 'typo-cell');
    fs.cpSync(path.join(repo, 'policies', 'robot-cell'), source, { recursive: true });
    const file = fs.readdirSync(source).find((f) => f.endsWith('.cedar') && fs.readFileSync(path.join(source, f), 'utf8').includes('Action::"move"'))!;
    fs.writeFileSync(path.join(source, file), fs.readFileSync(path.join(source, file), 'utf8').replace('Action::"move"', 'Action::"mvoe"'));
    const built = await ztedge(['bundle', 'build', source, '--revision', '8', '--out', 'typo.cbor']);
    expect(built.code).not.toBe(0);
    expect(built.stderr).toContain('mvoe');
    expect(fs.existsSync('typo.cbor')).toBe(false);
  });
});
