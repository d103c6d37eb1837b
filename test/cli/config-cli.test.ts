// `ztedge config`: an example file that loads as it is, a check that finds what `ztedge run` would
// refuse (every problem at once), and the README's option table derived from the one description.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { referenceTable } from '../../src/agent/config-options.js';
import { main } from '../../src/cli/main.js';

const repo = fileURLToPath(new URL('../../', import.meta.url));
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-config-cli-'));
afterAll(() => fs.rmSync(tmp, { recursive: true, force: true }));

async function ztedge(...args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(args, { stdout: (t) => void (stdout += `${t}\n`), stderr: (t) => void (stderr += `${t}\n`), readStdin: async () => Buffer.alloc(0) });
  return { code, stdout, stderr };
}

/** A directory with the example configuration and the key files it names. */
async function exampleSite(name: string): Promise<string> {
  const dir = path.join(tmp, name);
  fs.mkdirSync(dir);
  const example = await ztedge('config', 'example');
  expect(example.code).toBe(0);
  fs.writeFileSync(path.join(dir, 'agent.yaml'), example.stdout);
  for (const key of ['device', 'root-a', 'root-b']) expect((await ztedge('keygen', '--alg', 'ed25519', '--out', path.join(dir, key))).code).toBe(0);
  return dir;
}

describe('ztedge config', () => {
  it('prints an example that checks clean once its key files exist', async () => {
    const dir = await exampleSite('example');
    const file = path.join(dir, 'agent.yaml');
    const check = await ztedge('config', 'check', file);
    expect(check.stderr).toBe('');
    expect(check.code).toBe(0);
    expect(check.stdout).toContain(`${file}: ok`);
    expect(check.stdout).toContain('device arm-1 at site plant-north (profile default)');
    expect(check.stdout).toContain(`state directory ${path.join(dir, 'state')}`);
    expect(check.stdout).toContain('bundles signed by 2 of 2 root keys');
    // Checking touches nothing: no state directory appears.
    expect(fs.existsSync(path.join(dir, 'state'))).toBe(false);
  });

  it('lists every problem run would refuse: option values and the files they name', async () => {
    const dir = await exampleSite('broken');
    const file = path.join(dir, 'agent.yaml');
    fs.chmodSync(path.join(dir, 'device.key'), 0o644);
    fs.rmSync(path.join(dir, 'root-b.pub'));
    fs.writeFileSync(path.join(dir, 'admin.token'), 'x'.repeat(32), { mode: 0o644 });
    fs.appendFileSync(file, '\ncolour: blue\n');
    let check = await ztedge('config', 'check', file);
    expect(check.code).toBe(2);
    expect(check.stderr).toMatch(/^CONFIG_INVALID: invalid configuration \(1 problem\):\n {2}colour: unknown option/);

    fs.writeFileSync(file, fs.readFileSync(file, 'utf8').replace(/\ncolour:.*\n$/, '\n').replace('# adminTokenFile: (none: admin endpoints disabled)', 'adminTokenFile: admin.token'));
    check = await ztedge('config', 'check', file);
    expect(check.code).toBe(2);
    const lines = check.stderr.trim().split('\n');
    expect(lines[0]).toBe('CONFIG_INVALID: invalid configuration (3 problems):');
    expect(lines[1]).toMatch(/^ {2}deviceKey: KEY_FILE_PERMISSIONS: private key file .*device\.key has mode 0644/);
    expect(lines[2]).toMatch(/^ {2}roots\.keys\[1\]: KEY_FILE_UNREADABLE: .*root-b\.pub/);
    expect(lines[3]).toMatch(/^ {2}http\.adminTokenFile: .*admin\.token has mode 0644; it must not be accessible by group or others/);
  });

  it("the README's option table is `ztedge config reference`, derived from the one description", async () => {
    const readme = fs.readFileSync(path.join(repo, 'README.md'), 'utf8');
    const table = /<!-- config-reference:start -->\n([\s\S]*?)\n<!-- config-reference:end -->/.exec(readme)?.[1];
    expect(table).toBe(referenceTable());
    expect((await ztedge('config', 'reference')).stdout).toBe(`${referenceTable()}\n`);
  });
});
