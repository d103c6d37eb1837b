// Measuring real files in temp trees: what each kind of path records, that nothing is skipped,
// that a file changed while it is read is read again (never a torn digest), bounded globs, and
// that the composite does not depend on the order files are found in.
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { assess } from '../../src/attest/compare.js';
import { AttestError } from '../../src/attest/errors.js';
import { type DevicePath, parseDevicePath } from '../../src/attest/glob.js';
import { type MeasureFs, type MeasureOptions, measureFile, measurePaths, measureTargets, nodeMeasureFs } from '../../src/attest/measure.js';
import { type MeasurementRecord, compositeDigest } from '../../src/attest/record.js';
import { sha256Hex, tempDir, writeTree } from './support.js';

function devicePath(text: string): DevicePath {
  const parsed = parseDevicePath(text);
  if (typeof parsed === 'string') throw new Error(parsed);
  return parsed;
}

const target = (p: string, limit = 1) => ({ path: devicePath(p), limit });
const critical = (p: string) => ({ path: devicePath(p), critical: true });

describe('measuring a file', () => {
  it('records digest, size, mode and owner of a regular file, streamed in small chunks', async () => {
    const root = tempDir();
    const big = Buffer.alloc(3 * 1024 * 1024 + 17);
    for (let i = 0; i < big.length; i++) big[i] = (i * 31) & 0xff;
    writeTree(root, { '/etc/a.conf': 'alpha\n' });
    fs.writeFileSync(path.join(root, 'big.bin'), big);
    fs.chmodSync(path.join(root, 'etc/a.conf'), 0o640);
    const record = await measureFile('/etc/a.conf', { root });
    expect(record).toEqual({ path: '/etc/a.conf', state: 'file', sha256: sha256Hex('alpha\n'), size: 6, mode: 0o640, uid: process.getuid!(), gid: process.getgid!() });
    const streamed = await measureFile('/big.bin', { root, chunkBytes: 4096 });
    expect(streamed.sha256).toBe(sha256Hex(big));
    expect(streamed.size).toBe(big.length);
  });

  it('records missing, symlink (with its target, never followed), directory and FIFO paths: none skipped', async () => {
    const root = tempDir();
    writeTree(root, { '/etc/real.conf': 'x' });
    fs.symlinkSync('/etc/real.conf', path.join(root, 'etc/link.conf'));
    fs.mkdirSync(path.join(root, 'etc/dir'));
    const fifo = spawn('mkfifo', [path.join(root, 'etc/pipe')]);
    await new Promise((resolve) => fifo.on('exit', resolve));
    const records = await measurePaths(['/etc/dir', '/etc/gone.conf', '/etc/link.conf', '/etc/pipe', '/nothing/at/all'], { root });
    expect(records).toEqual([
      expect.objectContaining({ path: '/etc/dir', state: 'not-regular', kind: 'directory' }),
      { path: '/etc/gone.conf', state: 'missing' },
      { path: '/etc/link.conf', state: 'symlink', target: '/etc/real.conf', uid: process.getuid!(), gid: process.getgid!() },
      expect.objectContaining({ path: '/etc/pipe', state: 'not-regular', kind: 'fifo' }),
      { path: '/nothing/at/all', state: 'missing' },
    ]);
  });

  it('records an unreadable file with its errno (this test runs as root, so the refusal is injected)', async () => {
    const root = tempDir();
    writeTree(root, { '/etc/secret.conf': 's' });
    const denying: MeasureFs = {
      ...nodeMeasureFs,
      open: async () => {
        throw Object.assign(new Error('permission denied'), { code: 'EACCES' });
      },
    };
    const record = await measureFile('/etc/secret.conf', { root, fs: denying });
    expect(record).toMatchObject({ path: '/etc/secret.conf', state: 'unreadable', error: 'EACCES', mode: 0o644 });
    expect(record.sha256).toBeUndefined();
    const verdict = assess([record], [critical('/etc/secret.conf')], { profile: 'p', files: [{ path: '/etc/secret.conf', sha256: sha256Hex('s') }] });
    expect(verdict.posture).toBe('untrusted');
    expect(verdict.mismatches[0]).toMatchObject({ reason: 'unreadable', found: 'unreadable:EACCES' });
  });
});

describe('changes on disk', () => {
  async function baseline() {
    const root = tempDir();
    writeTree(root, { '/etc/robot/controller.conf': 'gain=3\n', '/etc/robot/safety-zones.conf': 'zone A\n' });
    fs.symlinkSync('/opt/fw/v1.bin', path.join(root, 'etc/robot/firmware'));
    const targets = [target('/etc/robot/controller.conf'), target('/etc/robot/safety-zones.conf'), target('/etc/robot/firmware')];
    const patterns = targets.map((t) => ({ path: t.path, critical: true }));
    const options: MeasureOptions = { root };
    const records = await measureTargets(targets, options);
    const references = {
      profile: 'p',
      files: records.map((r) => (r.state === 'symlink' ? { path: r.path, symlink: r.target! } : { path: r.path, sha256: r.sha256! })),
    };
    const measureAgain = async () => assess(await measureTargets(targets, options), patterns, references);
    expect((await measureAgain()).posture).toBe('trusted');
    return { root, records, measureAgain };
  }

  it('a deleted file is reported missing', async () => {
    const { root, measureAgain } = await baseline();
    fs.rmSync(path.join(root, 'etc/robot/safety-zones.conf'));
    const verdict = await measureAgain();
    expect(verdict.posture).toBe('untrusted');
    expect(verdict.mismatches).toEqual([
      { path: '/etc/robot/safety-zones.conf', reason: 'missing', critical: true, expected: [`sha256:${sha256Hex('zone A\n')}`], found: 'missing' },
    ]);
  });

  it('chmod o+w on a measured file is reported although its content is unchanged', async () => {
    const { root, records, measureAgain } = await baseline();
    fs.chmodSync(path.join(root, 'etc/robot/controller.conf'), 0o646);
    const verdict = await measureAgain();
    expect(verdict.mismatches).toEqual([
      expect.objectContaining({ path: '/etc/robot/controller.conf', reason: 'world-writable', found: `sha256:${sha256Hex('gain=3\n')}` }),
    ]);
    expect(verdict.posture).toBe('untrusted');
    expect(verdict.composite).not.toBe(assess(records, [], null).composite);
  });

  it('a symlink swapped to another target is detected', async () => {
    const { root, measureAgain } = await baseline();
    const link = path.join(root, 'etc/robot/firmware');
    fs.rmSync(link);
    fs.symlinkSync('/tmp/evil.bin', link);
    const verdict = await measureAgain();
    expect(verdict.mismatches).toEqual([
      { path: '/etc/robot/firmware', reason: 'symlink-target', critical: true, expected: ['symlink:/opt/fw/v1.bin'], found: 'symlink:/tmp/evil.bin' },
    ]);
    // A regular file in the link's place is not the link either.
    fs.rmSync(link);
    fs.writeFileSync(link, '/opt/fw/v1.bin');
    expect((await measureAgain()).mismatches[0]).toMatchObject({ reason: 'symlink-target', found: `sha256:${sha256Hex('/opt/fw/v1.bin')}` });
  });

  it('restoring the content restores trust', async () => {
    const { root, measureAgain } = await baseline();
    const file = path.join(root, 'etc/robot/controller.conf');
    fs.writeFileSync(file, 'gain=9\n');
    expect((await measureAgain()).mismatches[0]).toMatchObject({ reason: 'digest', found: `sha256:${sha256Hex('gain=9\n')}` });
    fs.writeFileSync(file, 'gain=3\n');
    expect((await measureAgain()).posture).toBe('trusted');
  });
});

describe('a file rewritten while it is hashed', () => {
  it('is read again, and the digest is of one whole version', async () => {
    const root = tempDir();
    const before = Buffer.alloc(512 * 1024, 'a');
    const after = Buffer.alloc(512 * 1024, 'b');
    const file = path.join(root, 'etc/big.conf');
    fs.mkdirSync(path.dirname(file));
    fs.writeFileSync(file, before);
    // Make the file's ctime older than the racy window, so only the rewrite below can force a re-read.
    await new Promise((resolve) => setTimeout(resolve, 60));
    let reads = 0;
    let rewritten = false;
    const rewriting: MeasureFs = {
      ...nodeMeasureFs,
      open: async (f, flags) => {
        const handle = await nodeMeasureFs.open(f, flags);
        return {
          ...handle,
          read: async (buffer, offset, length, position) => {
            reads++;
            const result = await handle.read(buffer, offset, length, position);
            // After the first chunk, the rest of the file changes underneath the reader.
            if (!rewritten && position === 0) {
              rewritten = true;
              fs.writeFileSync(file, after);
            }
            return result;
          },
        };
      },
    };
    const attempts: number[] = [];
    const record = await measureFile('/etc/big.conf', { root, fs: rewriting, chunkBytes: 64 * 1024, onRead: (_p, attempt) => void attempts.push(attempt) });
    expect(rewritten).toBe(true);
    expect(attempts.length).toBeGreaterThan(1);
    expect(reads).toBeGreaterThan(8);
    expect(record.state).toBe('file');
    expect(record.sha256).toBe(sha256Hex(after));
    const torn = sha256Hex(Buffer.concat([before.subarray(0, 64 * 1024), after.subarray(64 * 1024)]));
    expect(record.sha256).not.toBe(torn);
  });

  it('under a concurrent writer process every digest is of a whole version, or the file is reported unstable', async () => {
    const root = tempDir();
    const file = path.join(root, 'data.bin');
    const size = 2 * 1024 * 1024;
    fs.writeFileSync(file, Buffer.alloc(size, 'a'));
    // The writer rewrites the file in place, alternating two versions in 64 KiB pieces 1 ms
    // apart (so for ~32 ms a reader sees a mix on disk), pausing 50 ms between versions.
    const writer = spawn(process.execPath, [
      '-e',
      `const fs=require('fs');const fd=fs.openSync(${JSON.stringify(file)},'r+');const nap=new Int32Array(new SharedArrayBuffer(4));let v=0;
       const step=()=>{v^=1;const chunk=Buffer.alloc(65536,v?'b':'a');for(let p=0;p<${size};p+=65536){fs.writeSync(fd,chunk,0,65536,p);Atomics.wait(nap,0,0,1)}setTimeout(step,50)};step();`,
    ]);
    try {
      const versions = new Set([sha256Hex(Buffer.alloc(size, 'a')), sha256Hex(Buffer.alloc(size, 'b'))]);
      const states: string[] = [];
      for (let i = 0; i < 25; i++) {
        const record = await measureFile('/data.bin', { root, chunkBytes: 64 * 1024 });
        states.push(record.state);
        if (record.state === 'file') expect(versions.has(record.sha256!), `torn digest on round ${i}`).toBe(true);
        else expect(record.state).toBe('unstable');
      }
      expect(states).toContain('file');
    } finally {
      writer.kill('SIGKILL');
    }
  });

  it('a file that never holds still is recorded unstable, not hashed', async () => {
    const root = tempDir();
    writeTree(root, { '/log': 'x' });
    let n = 0;
    const record = await measureFile('/log', {
      root,
      maxAttempts: 3,
      sleep: async () => undefined,
      onRead: () => fs.writeFileSync(path.join(root, 'log'), `line ${n++}\n`),
    });
    expect(record).toMatchObject({ path: '/log', state: 'unstable' });
    expect(record.sha256).toBeUndefined();
    expect(assess([record], [critical('/log')], { profile: 'p', files: [{ path: '/log', sha256: sha256Hex('x') }] }).mismatches[0]!.reason).toBe('unstable');
  });
});

describe('globs', () => {
  it('expand under the root, sorted, bounded by their limit', async () => {
    const root = tempDir();
    writeTree(root, Object.fromEntries(Array.from({ length: 5 }, (_, i) => [`/etc/zones/z${i}.conf`, `zone ${i}`])));
    writeTree(root, { '/etc/zones/readme.txt': 'not matched' });
    const records = await measureTargets([target('/etc/zones/*.conf', 5)], { root });
    expect(records.map((r) => r.path)).toEqual(['/etc/zones/z0.conf', '/etc/zones/z1.conf', '/etc/zones/z2.conf', '/etc/zones/z3.conf', '/etc/zones/z4.conf']);
    // A glob over a missing directory matches nothing (a referenced file under it is then missing).
    expect(await measureTargets([target('/etc/none/*.conf', 5)], { root })).toEqual([]);
  });

  it('a glob over its limit is refused with a clear error', async () => {
    const root = tempDir();
    writeTree(root, Object.fromEntries(Array.from({ length: 6 }, (_, i) => [`/etc/zones/z${i}.conf`, `zone ${i}`])));
    const refusal = await measureTargets([target('/etc/zones/*.conf', 5)], { root }).catch((err: unknown) => err);
    expect(refusal).toBeInstanceOf(AttestError);
    expect(refusal).toMatchObject({ code: 'ATTEST_GLOB_LIMIT' });
    expect((refusal as Error).message).toBe('glob /etc/zones/*.conf matches more than 5 entries (its limit); raise "limit" in the profile or narrow the glob');
  });
});

describe('the composite', () => {
  it('does not depend on the order files are created, listed or measured in', async () => {
    const names = Array.from({ length: 40 }, (_, i) => `f${String(i).padStart(2, '0')}.conf`);
    const make = (order: string[]) => {
      const root = tempDir();
      for (const name of order) writeTree(root, { [`/etc/c/${name}`]: `content of ${name}` });
      return root;
    };
    const shuffled = [...names].sort(() => Math.random() - 0.5);
    const a = await measureTargets([target('/etc/c/*', 100)], { root: make(names), concurrency: 1 });
    const b = await measureTargets([target('/etc/c/*', 100)], { root: make(shuffled), concurrency: 7, chunkBytes: 1024 });
    expect(b).toEqual(a);
    const composite = compositeDigest(a);
    expect(compositeDigest([...a].reverse())).toEqual(composite);
    expect(compositeDigest([...a].sort(() => Math.random() - 0.5))).toEqual(composite);
    // ...but it does depend on every field of every record.
    const changed: MeasurementRecord[] = a.map((r, i) => (i === 7 ? { ...r, mode: 0o600 } : r));
    expect(compositeDigest(changed)).not.toEqual(composite);
    expect(() => compositeDigest([a[0]!, a[0]!])).toThrow(/measured twice/);
  });
});

describe('the digest cache', () => {
  it('reuses digests of unchanged files and re-reads a changed one', async () => {
    const root = tempDir();
    writeTree(root, { '/a': 'one', '/b': 'two' });
    await new Promise((resolve) => setTimeout(resolve, 60));
    let opens = 0;
    const counting: MeasureFs = { ...nodeMeasureFs, open: (f, flags) => (opens++, nodeMeasureFs.open(f, flags)) };
    const cache = new Map();
    const options = { root, fs: counting, cache, cacheMaxAgeMs: 60_000 };
    const first = await measurePaths(['/a', '/b'], options);
    expect(opens).toBe(2);
    expect(await measurePaths(['/a', '/b'], options)).toEqual(first);
    expect(opens).toBe(2);
    fs.writeFileSync(path.join(root, 'b'), 'TWO');
    const third = await measurePaths(['/a', '/b'], options);
    expect(third[1]!.sha256).toBe(sha256Hex('TWO'));
    expect(opens).toBeGreaterThanOrEqual(3);
    // An expired entry is read again.
    opens = 0;
    await measurePaths(['/a'], { ...options, cacheMaxAgeMs: -1 });
    expect(opens).toBe(1);
  });
});
