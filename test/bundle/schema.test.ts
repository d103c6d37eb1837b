// `ztedge bundle build` validates a source against its Cedar schema with Cedar's own validator:
// a mistyped action, entity type or attribute is refused before anyone signs the bundle. The
// agent never loads the validator.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';
import { afterAll, describe, expect, it } from 'vitest';
import { main } from '../../src/cli/main.js';
import { EXAMPLES, tempDir } from './support.js';

const work = tempDir('schema');
afterAll(() => fs.rmSync(work, { recursive: true, force: true }));

async function build(dir: string, ...extra: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  let stdout = '';
  let stderr = '';
  const code = await main(['bundle', 'build', dir, '--revision', '1', '--out', path.join(work, `${path.basename(dir)}.bundle`), ...extra], {
    stdout: (text) => void (stdout += `${text}\n`),
    stderr: (text) => void (stderr += `${text}\n`),
    readStdin: async () => Buffer.alloc(0),
  });
  return { code, stdout, stderr };
}

/** A copy of an example source, with `edit` applied to its files. */
function copyOf(example: string, name: string, edit: (files: Map<string, string>) => void = () => undefined): string {
  const dir = path.join(work, name);
  fs.mkdirSync(dir);
  const files = new Map(fs.readdirSync(path.join(EXAMPLES, example)).map((f) => [f, fs.readFileSync(path.join(EXAMPLES, example, f), 'utf8')]));
  edit(files);
  for (const [f, text] of files) fs.writeFileSync(path.join(dir, f), text);
  return dir;
}

function replaceIn(files: Map<string, string>, file: string, from: string, to: string): void {
  const text = files.get(file)!;
  expect(text).toContain(from);
  files.set(file, text.replace(from, to));
}

describe('bundle build with a schema', () => {
  it.each(['robot-cell', 'plc-gateway'])('validates the %s example', async (example) => {
    const run = await build(copyOf(example, `${example}-as-is`));
    expect(run.stderr).toBe('');
    expect(run.code).toBe(0);
    expect(run.stdout).toMatch(/tests passed, validated against schema\.cedarschema, /);
  });

  it('refuses a mistyped action in a policy, at its file:line:col', async () => {
    const dir = copyOf('robot-cell', 'strat', (files) => replaceIn(files, '10-operators.cedar', 'Action::"start"', 'Action::"strat"'));
    const run = await build(dir);
    expect(run.code).toBe(1);
    const lines = run.stderr.trimEnd().split('\n');
    expect(lines[0]).toMatch(/^BUNDLE_VALIDATION_FAILED: does not validate against schema\.cedarschema: /);
    expect(lines[1]).toMatch(/^ {2}10-operators\.cedar:8:14: error: for policy `operator-run-own-cell`, unrecognized action `Action::"strat"` \(did you mean /);
    expect(fs.existsSync(path.join(work, 'strat.bundle'))).toBe(false);
  });

  it('refuses an entity that does not match its type, and a test request the schema does not allow', async () => {
    const dir = copyOf('robot-cell', 'bad-data', (files) => {
      replaceIn(files, 'entities.json', '"maxSpeed": 1500', '"maxSpeed": "fast"');
      const tests = JSON.parse(files.get('tests.json')!) as Array<{ name: string; action: { id: string } }>;
      tests.find((t) => t.action.id === 'start')!.action.id = 'strat';
      files.set('tests.json', JSON.stringify(tests));
    });
    const run = await build(dir);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^ {2}entities\.json: error: .*maxSpeed.*Arm::"arm-1"/m);
    expect(run.stderr).toMatch(/^ {2}tests\.json: test "operator starts the conveyor of her cell": error: .*Action::"strat"/m);
  });

  it('refuses a schema that does not parse, at its line and column', async () => {
    const dir = copyOf('plc-gateway', 'bad-schema', (files) => replaceIn(files, 'schema.cedarschema', 'entity Service in [Role]', 'entity Service in [Rol]'));
    const run = await build(dir);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^BUNDLE_SCHEMA_INVALID: schema\.cedarschema is not a valid Cedar schema: /);
    expect(run.stderr).toMatch(/\n {2}schema\.cedarschema:17:20: error: failed to resolve type: Rol/);
  });

  it('refuses two schemas', async () => {
    const dir = copyOf('plc-gateway', 'two-schemas', (files) => files.set('other.cedarschema', files.get('schema.cedarschema')!));
    const run = await build(dir);
    expect(run.code).toBe(1);
    expect(run.stderr).toMatch(/^BUNDLE_SOURCE_INVALID: .*more than one schema \(other\.cedarschema, schema\.cedarschema\)/);
  });

  it('warns, and builds, without a schema', async () => {
    const dir = copyOf('plc-gateway', 'no-schema', (files) => files.delete('schema.cedarschema'));
    const run = await build(dir);
    expect(run.code).toBe(0);
    expect(run.stderr).toBe(`warning: ${dir} has no *.cedarschema: policies, entities and tests are not validated (a mistyped action or entity type goes unnoticed)\n`);
    expect(run.stdout).toMatch(/tests passed, not validated, /);
  });

  it('checks wrong-arity calls as without a schema, and leaves such a policy out of validation with --allow-arity-errors', async () => {
    const dir = copyOf('plc-gateway', 'arity', (files) =>
      files.set('50-broken.cedar', '@id("broken")\npermit (principal, action == Action::"reset_fault", resource is Plc)\nwhen { ip("10.0.0.1").isLoopback(1) };\n'),
    );
    const refused = await build(dir);
    expect(refused.code).toBe(1);
    expect(refused.stderr).toMatch(/^BUNDLE_POLICY_INVALID: 50-broken\.cedar:3:8: error: `isLoopback` takes 0 arguments, got 1: .*\[POLICY_EXTENSION_ARITY\]/);
    expect(refused.stderr).not.toMatch(/VALIDATION/);
    const built = await build(dir, '--allow-arity-errors');
    expect(built.code).toBe(0);
    expect(built.stderr.trimEnd().split('\n')).toEqual([
      '50-broken.cedar:1:1: warning: policy `broken` is not validated: it calls an extension function with the wrong number of arguments',
      expect.stringMatching(/^50-broken\.cedar:3:8: warning: `isLoopback` takes 0 arguments, got 1: .*\[POLICY_EXTENSION_ARITY\]$/),
    ]);
  });
});

describe('the validator stays off the device', () => {
  const repo = fileURLToPath(new URL('../../', import.meta.url));

  /** Every import (static or dynamic) reachable from `entry`, by the module that makes it. */
  async function importsFrom(entry: string): Promise<Array<{ from: string; path: string; kind: string }>> {
    const result = await esbuild.build({
      entryPoints: [path.join(repo, entry)],
      bundle: true,
      write: false,
      metafile: true,
      platform: 'node',
      format: 'esm',
      packages: 'external',
      logLevel: 'silent',
    });
    return Object.entries(result.metafile.inputs).flatMap(([from, input]) => input.imports.map((i) => ({ from, path: i.path, kind: i.kind })));
  }

  const isCedarWasm = (p: string) => p.startsWith('@cedar-policy/cedar-wasm');

  it('the agent (`ztedge run`) never imports cedar-wasm', async () => {
    const imports = await importsFrom('src/cli/run.ts');
    expect(imports.some((i) => i.path.startsWith('hono'))).toBe(true); // the graph was followed
    expect(imports.filter((i) => isCedarWasm(i.path))).toEqual([]);
  });

  it('bundle build loads it only on demand, from the schema check', async () => {
    const imports = (await importsFrom('src/cli/bundle.ts')).filter((i) => isCedarWasm(i.path));
    expect(imports).toEqual([{ from: 'src/bundle/schema.ts', path: '@cedar-policy/cedar-wasm/nodejs', kind: 'dynamic-import' }]);
  });

  it('is a runtime dependency, since bundle build ships with the package', () => {
    const pkg = JSON.parse(fs.readFileSync(path.join(repo, 'package.json'), 'utf8')) as { dependencies: Record<string, string>; devDependencies: Record<string, string> };
    expect(Object.keys(pkg.dependencies)).toContain('@cedar-policy/cedar-wasm');
    expect(Object.keys(pkg.devDependencies)).not.toContain('@cedar-policy/cedar-wasm');
  });
});
