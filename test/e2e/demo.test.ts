// `npm run demo` leaves no private keys behind: its temporary directory is gone when it ends. With
// --keep it keeps running with every key on disk and prints commands that work when pasted; Ctrl-C
// then stops it and deletes the directory. A misspelled option is refused.
import { type ChildProcess, spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { runCleanups, waitUntil } from '../support/wait.js';
import { REPO_ROOT, cli } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

function demo(...args: string[]) {
  const child: ChildProcess = spawn(process.execPath, ['--import', 'tsx', path.join(REPO_ROOT, 'scripts/demo.ts'), ...args], { cwd: REPO_ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stdout!.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr!.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  const dir = () => /state in (\S+),/.exec(out)?.[1];
  // A failed test still removes what a killed demo could not.
  cleanups.push(() => {
    child.kill('SIGKILL');
    const left = dir();
    if (left !== undefined) fs.rmSync(left, { recursive: true, force: true });
  });
  return { child, exited, stdout: () => out, stderr: () => err, dir };
}

/** Splits a pasted shell command line: words, and '…' quoted words. */
function words(line: string): string[] {
  return [...line.matchAll(/'([^']*)'|(\S+)/g)].map((m) => m[1] ?? m[2]!);
}

describe('npm run demo', () => {
  it('deletes its keys and state when it ends', async () => {
    const run = demo();
    expect(await run.exited, run.stderr()).toBe(0);
    expect(run.stdout()).toContain('chain verifies ✓');
    expect(run.dir()).toMatch(/ztedge-demo-/);
    expect(fs.existsSync(run.dir()!)).toBe(false);
  });

  it('refuses a misspelled option', async () => {
    const run = demo('--kep');
    expect(await run.exited).toBe(2);
    expect(run.stderr()).toMatch(/^demo: unknown option --kep \(did you mean --keep\?\)/);
  });

  it('with --keep, writes the keys and prints commands that work as pasted; Ctrl-C deletes them', async () => {
    const run = demo('--keep');
    await waitUntil(() => run.stdout().includes('\ncurl '), 'the printed commands', 60_000);
    const dir = run.dir()!;
    expect(fs.statSync(path.join(dir, 'planner-7.key')).mode & 0o777).toBe(0o600);
    const line = run.stdout().split('\n').find((l) => l.startsWith('npx ztedge cmd send ') && l.includes('planner-7.key'))!;
    const [, , ...args] = words(line);
    const sent = await cli(args);
    expect(sent.code, sent.stderr.join('\n')).toBe(0);
    expect(JSON.parse(sent.stdout[0]!)).toMatchObject({ decision: 'allow', outcome: 'executed', verified: true });

    run.child.kill('SIGINT');
    expect(await run.exited).toBe(0);
    expect(fs.existsSync(dir)).toBe(false);
  });
});
