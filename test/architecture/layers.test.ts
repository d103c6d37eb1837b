// The layering of src/ as a checked rule: each folder imports only from folders below it, and
// no module imports itself back through others. A change that breaks either fails here, with
// the offending import named.
//
//   cli                                   operator commands
//   agent                                 decide() + the runtime shell
//   bundle audit transport api attest collector   the agent's parts
//   envelope store                        pure codec; the one SQLite layer
//   policy cbor crypto                    pure foundations
//   src/*.ts                              base: errors, durations, version
import { cruise, type ICruiseResult } from 'dependency-cruiser';
import { beforeAll, describe, expect, it } from 'vitest';

const LAYERS: string[][] = [
  ['base'],
  ['cbor', 'policy'],
  ['crypto'],
  ['envelope', 'store'],
  ['bundle', 'audit', 'transport', 'api', 'attest', 'collector'],
  ['agent'],
  ['cli'],
];

/** The folder a module belongs to: `src/<folder>/…`, or `base` for a file directly in src/. */
function folderOf(path: string): string | undefined {
  const m = /^src\/(?:([^/]+)\/)?[^/]+$/.exec(path) ?? /^src\/([^/]+)\//.exec(path);
  if (m === null) return undefined;
  return path.split('/').length === 2 ? 'base' : m[1];
}

function layerOf(folder: string): number {
  const i = LAYERS.findIndex((l) => l.includes(folder));
  if (i === -1) throw new Error(`src/${folder}/ is in no layer: add it to LAYERS in this test`);
  return i;
}

let result: ICruiseResult;

beforeAll(async () => {
  const out = await cruise(['src'], {
    tsPreCompilationDeps: true,
    validate: true,
    doNotFollow: { path: 'node_modules' },
    ruleSet: { forbidden: [{ name: 'no-circular', severity: 'error', from: { path: '^src/' }, to: { circular: true } }] },
  });
  result = out.output as ICruiseResult;
}, 120_000);

describe('src/ layering', () => {
  it('reads every module', () => {
    expect(result.modules.filter((m) => m.source.startsWith('src/')).length).toBeGreaterThan(80);
  });

  it('every import points to the same layer or below', () => {
    const upward: string[] = [];
    for (const m of result.modules) {
      const from = folderOf(m.source);
      if (from === undefined) continue;
      for (const d of m.dependencies) {
        const to = folderOf(d.resolved);
        if (to === undefined || to === from) continue;
        if (layerOf(to) > layerOf(from)) upward.push(`${m.source} → ${d.resolved}`);
      }
    }
    expect(upward).toEqual([]);
  });

  it('has no import cycles', () => {
    const cycles = result.summary.violations.filter((v) => v.rule.name === 'no-circular').map((v) => [v.from, ...(v.cycle ?? []).map((c) => c.name)].join(' → '));
    expect(cycles).toEqual([]);
  });

  it('places files in their folders and folders in their layers', () => {
    expect(layerOf('agent')).toBeGreaterThan(layerOf('store'));
    expect(folderOf('src/errors.ts')).toBe('base');
    expect(folderOf('src/store/grants.ts')).toBe('store');
    expect(folderOf('src/policy/ext/ipaddr.ts')).toBe('policy');
  });
});
