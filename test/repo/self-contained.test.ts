// A fresh clone with nothing beside it must pass `npm test`: no file of the repository may read
// or point at anything outside it, such as a sibling `shared` directory of conformance data
// (the vectors live in test/vectors/).
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../../', import.meta.url));

// Built from parts so that this file does not match itself.
const SIBLING = ['\\.\\.', 'shared'];
const OUTSIDE_REFERENCES = [new RegExp(SIBLING.join('[/\\\\]')), new RegExp(SIBLING.map((p) => `'${p}'`).join(',\\s*'))];

/** Tracked files, and new files not yet added (unless ignored), relative to `root`. */
function repositoryFiles(root: string): string[] {
  const out = execFileSync('git', ['ls-files', '-z', '--cached', '--others', '--exclude-standard'], { cwd: root, encoding: 'utf8' });
  return out.split('\0').filter((f) => f !== '' && fs.existsSync(path.join(root, f)));
}

/** `file:line: text` for every line of a repository file that refers outside the repository. */
function outsideReferences(root: string): string[] {
  const hits: string[] = [];
  for (const file of repositoryFiles(root)) {
    const bytes = fs.readFileSync(path.join(root, file));
    if (bytes.includes(0)) continue; // binary
    bytes
      .toString('utf8')
      .split('\n')
      .forEach((line, i) => {
        if (OUTSIDE_REFERENCES.some((re) => re.test(line))) hits.push(`${file}:${i + 1}: ${line.trim()}`);
      });
  }
  return hits;
}

describe('the repository is self-contained', () => {
  it('no file refers to a sibling shared directory', () => {
    const files = repositoryFiles(repo);
    expect(files).toContain('package.json');
    expect(files).toContain('test/vectors/cedar/LICENSE');
    expect(outsideReferences(repo)).toEqual([]);
  });

  it('the check finds such a reference in a new or tracked file', () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-self-contained-'));
    try {
      const git = (...args: string[]) => execFileSync('git', args, { cwd: dir, stdio: 'pipe' });
      git('init', '-q');
      fs.writeFileSync(path.join(dir, 'ok.ts'), "const v = new URL('../vectors/cedar/', import.meta.url);\n");
      fs.writeFileSync(path.join(dir, 'new.ts'), `const v = new URL('../../${'..'}/shared/conformance/cedar/', import.meta.url);\n`);
      fs.mkdirSync(path.join(dir, 'scripts'));
      fs.writeFileSync(path.join(dir, 'scripts', 'tracked.ts'), `x\nconst p = path.join(repo, '..', 'sha${'red'}');\n`);
      git('add', 'scripts/tracked.ts');
      fs.writeFileSync(path.join(dir, '.gitignore'), 'ignored.ts\n');
      fs.writeFileSync(path.join(dir, 'ignored.ts'), `'../sha${'red'}'\n`);
      expect(outsideReferences(dir).sort()).toEqual([
        `new.ts:1: const v = new URL('../../${'..'}/shared/conformance/cedar/', import.meta.url);`,
        `scripts/tracked.ts:2: const p = path.join(repo, '..', 'sha${'red'}');`,
      ]);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});
