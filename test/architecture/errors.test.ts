// One error base: every error class in src/ extends ZtedgeError (directly or through another
// error class), so the CLI and the HTTP API map any of them by `instanceof` and a typed `code`.
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { ZtedgeError } from '../../src/errors.js';

const SRC = fileURLToPath(new URL('../../src', import.meta.url));

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const file = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(file);
    return entry.name.endsWith('.ts') ? [file] : [];
  });
}

/** Every `class X extends Y` in src/, as X → Y, with the file that declares it. */
function classDeclarations(): Map<string, { base: string; file: string }> {
  const out = new Map<string, { base: string; file: string }>();
  for (const file of sourceFiles(SRC)) {
    const text = fs.readFileSync(file, 'utf8');
    for (const m of text.matchAll(/\bclass\s+(\w+)(?:<[^>{]*>)?\s+extends\s+(\w+)/g)) {
      out.set(m[1]!, { base: m[2]!, file: path.relative(SRC, file) });
    }
  }
  return out;
}

describe('error classes', () => {
  const classes = classDeclarations();
  const errorClasses = [...classes.entries()].filter(([name, { base }]) => name.endsWith('Error') || base === 'Error');

  it('are found', () => {
    expect(errorClasses.length).toBeGreaterThan(20);
  });

  it('all extend ZtedgeError, never Error directly', () => {
    const wrong: string[] = [];
    for (const [name, { file }] of errorClasses) {
      if (name === 'ZtedgeError') continue;
      let base = classes.get(name)?.base;
      const seen = new Set<string>();
      while (base !== undefined && base !== 'ZtedgeError' && !seen.has(base)) {
        seen.add(base);
        base = classes.get(base)?.base;
      }
      if (base !== 'ZtedgeError') wrong.push(`${file}: ${name} extends ${classes.get(name)!.base}`);
    }
    expect(wrong).toEqual([]);
  });

  it('carry their code and their class name', () => {
    class SampleError extends ZtedgeError<'SAMPLE_FAILED'> {}
    const err = new SampleError('SAMPLE_FAILED', 'it failed', { cause: 1 });
    expect(err).toBeInstanceOf(Error);
    expect([err.code, err.message, err.name, err.cause]).toEqual(['SAMPLE_FAILED', 'it failed', 'SampleError', 1]);
  });
});
