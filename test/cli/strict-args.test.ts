// Strict command lines: every `ztedge` command refuses an unknown or misspelled option (exit 2,
// naming it and the closest known one) instead of ignoring it, answers `--help` at every level,
// and prints the usage of the command concerned after a usage error.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { commandGroups, main } from '../../src/cli/main.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const robotCell = path.join(repo, 'policies', 'robot-cell');
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-strict-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function ztedge(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, {
    stdout: (t) => void (stdout += `${t}\n`),
    stderr: (t) => void (stderr += `${t}\n`),
    readStdin: async () => Buffer.alloc(0),
  });
  return { code, stdout, stderr };
}

describe('unknown and misspelled options', () => {
  it('bundle build with --devise is refused, names --device, and writes no bundle', async () => {
    const out = path.join(tmp, 'unscoped.cbor');
    const run = await ztedge('bundle', 'build', robotCell, '--revision', '1', '--out', out, '--site', 'plant-north', '--devise', 'arm-1');
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^ztedge bundle build: unknown option --devise \(did you mean --device\?\)/);
    expect(fs.existsSync(out)).toBe(false);
    const plural = await ztedge('bundle', 'build', robotCell, '--revision', '1', '--out', out, '--sites', 'plant-north');
    expect(plural.stderr).toMatch(/unknown option --sites \(did you mean --site\?\)/);
    expect(fs.existsSync(out)).toBe(false);
  });

  it('cmd send with --arg is refused before any broker is contacted', async () => {
    // The broker URL points nowhere: a refusal by the argument parser comes first.
    const run = await ztedge('cmd', 'send', '--mqtt', 'mqtt://127.0.0.1:1', '--site', 's', '--device', 'd', '--key', 'k.key', '--act', 'move', '--res', 'Arm::"a"', '--arg', '{"speed":1}');
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^ztedge cmd send: unknown option --arg \(did you mean --args\?\)/);
  });

  it('every command refuses an option it does not know', async () => {
    for (const group of await commandGroups()) {
      for (const command of group.commands) {
        const argv = group.commands.length === 1 && command.name === group.name ? [group.name] : [group.name, command.name];
        const run = await ztedge(...argv, '--no-such-option');
        expect(run.code, argv.join(' ')).toBe(2);
        expect(run.stderr, argv.join(' ')).toMatch(new RegExp(`^ztedge ${argv.join(' ')}: unknown option --no-such-option`));
      }
    }
  });

  it('refuses a missing value, a value that looks like an option, a value on a switch, a repeated option', async () => {
    const build = ['bundle', 'build', robotCell, '--out', path.join(tmp, 'x.cbor')];
    expect((await ztedge(...build, '--revision')).stderr).toMatch(/option --revision needs a value/);
    expect((await ztedge(...build, '--revision', '--id', 'x')).stderr).toMatch(/option --revision needs a value, not '--id'/);
    expect((await ztedge(...build, '--revision', '1', '--revision', '2')).stderr).toMatch(/option --revision is given more than once/);
    expect((await ztedge('approve', '--reject=yes')).stderr).toMatch(/option --reject takes no value/);
    expect((await ztedge('bundle', 'inspect', 'a.cbor', 'b.cbor')).stderr).toMatch(/unexpected argument 'b\.cbor'/);
    expect(fs.existsSync(path.join(tmp, 'x.cbor'))).toBe(false);
  });

  it('suggests the closest command for a misspelled one', async () => {
    const sub = await ztedge('bundle', 'biuld');
    expect(sub.code).toBe(2);
    expect(sub.stderr).toMatch(/^ztedge bundle: unknown command 'biuld' \(did you mean 'build'\?\)/);
    const top = await ztedge('bundel');
    expect(top.code).toBe(2);
    expect(top.stderr).toMatch(/^ztedge: unknown command 'bundel' \(did you mean 'bundle'\?\)/);
  });
});

describe('--help at every level', () => {
  it('answers `<group> <sub> --help` with that command\'s usage, exit 0', async () => {
    for (const group of await commandGroups()) {
      const top = await ztedge(group.name, '--help');
      expect(top.code, group.name).toBe(0);
      expect(top.stdout).toBe(`${group.usage}\n`);
      for (const command of group.commands) {
        if (command.name === group.name) continue;
        for (const argv of [[group.name, command.name, '--help'], [group.name, command.name, '--revision', '1', '-h'], ['help', group.name, command.name]]) {
          const run = await ztedge(...argv);
          expect(run.code, argv.join(' ')).toBe(0);
          expect(run.stdout, argv.join(' ')).toBe(`${command.usage}\n`);
        }
      }
    }
  });

  it("each command's usage names every option it accepts", async () => {
    for (const group of await commandGroups()) {
      for (const command of group.commands) {
        for (const option of Object.keys(command.options)) expect(command.usage, `${group.name} ${command.name}`).toContain(`--${option}`);
      }
    }
  });
});

describe('usage errors', () => {
  it("print the usage of the sub-command concerned, not the whole group's", async () => {
    const groups = await commandGroups();
    const bundle = groups.find((g) => g.name === 'bundle')!;
    const build = bundle.commands.find((c) => c.name === 'build')!;
    const run = await ztedge('bundle', 'build', robotCell, '--out', path.join(tmp, 'y.cbor'));
    expect(run.code).toBe(2);
    expect(run.stderr).toBe(`ztedge bundle build: missing required option --revision\n\n${build.usage}\n`);
    expect(run.stderr).not.toContain('Commands:');
  });
});

describe('an option nothing resembles', () => {
  it('is named with the options the command takes', async () => {
    const run = await ztedge('keygen', '--frobnicate', 'x');
    expect(run.code).toBe(2);
    expect(run.stderr).toMatch(/^ztedge keygen: unknown option --frobnicate \(this command takes --alg, --out\)/);
    expect((await ztedge('config', 'example', '--verbose')).stderr).toMatch(/^ztedge config example: unknown option --verbose \(this command takes no options\)/);
  });
});
