// The heap bounds a long-running command gets: a worker thread's resource limits standing for the
// defaults the operator's NODE_OPTIONS does not set, the operator's value for those it sets
// (later flags win in V8); nothing to add, no worker, when NODE_OPTIONS sets both.
import { type ChildProcess, spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';
import { HEAP_DEFAULTS, describeBounds, needsHeapBounds, workerHeapBounds } from '../../src/cli/heap.js';
import { waitUntil } from '../support/wait.js';

describe('heap bounds', () => {
  it('bounds a worker with both defaults when NODE_OPTIONS is unset or blank', () => {
    expect(HEAP_DEFAULTS).toEqual(['--max-old-space-size=256', '--max-semi-space-size=2']);
    // The young generation is three semi-spaces.
    expect(workerHeapBounds(undefined)).toEqual({ maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 6 });
    expect(workerHeapBounds('  ')).toEqual({ maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 6 });
    expect(describeBounds(workerHeapBounds(undefined)!)).toBe(HEAP_DEFAULTS.join(' '));
  });

  it("takes the operator's value for a bound NODE_OPTIONS sets, the last one when repeated", () => {
    expect(workerHeapBounds('--enable-source-maps')).toEqual({ maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 6 });
    expect(workerHeapBounds('--max-old-space-size=512')).toEqual({ maxOldGenerationSizeMb: 512, maxYoungGenerationSizeMb: 6 });
    // V8 reads `_` and `-` alike.
    expect(workerHeapBounds('--max_semi_space_size=8 --trace-gc')).toEqual({ maxOldGenerationSizeMb: 256, maxYoungGenerationSizeMb: 24 });
    expect(workerHeapBounds('--max-old-space-size=300 --max-old-space-size=400')).toEqual({ maxOldGenerationSizeMb: 400, maxYoungGenerationSizeMb: 6 });
  });

  it('asks for no worker when the operator sets both bounds', () => {
    expect(workerHeapBounds('--max-old-space-size=1024 --max-semi-space-size=16')).toBeNull();
    expect(workerHeapBounds('--max_old_space_size=1024 --trace-gc --max-semi-space-size=16')).toBeNull();
  });

  it('bounds the long-running commands, and the version report that shows the bounds', () => {
    expect(needsHeapBounds(['run', '--config', 'agent.yaml'])).toBe(true);
    expect(needsHeapBounds(['collector', '--key', 'k'])).toBe(true);
    expect(needsHeapBounds(['--version', '--verbose'])).toBe(true);
    expect(needsHeapBounds(['--version'])).toBe(false);
    expect(needsHeapBounds(['bundle', 'build', 'cell'])).toBe(false);
    expect(needsHeapBounds([])).toBe(false);
  });
});

describe('a command in a bounded worker', () => {
  const FIXTURE = fileURLToPath(new URL('./fixtures/bounded-worker.ts', import.meta.url));

  function start(args: string[]): { child: ChildProcess; stdout: () => string; exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }> } {
    const child = spawn(process.execPath, ['--import', 'tsx', FIXTURE, ...args], { stdio: ['ignore', 'pipe', 'inherit'] });
    let stdout = '';
    child.stdout!.on('data', (chunk: Buffer) => (stdout += chunk.toString()));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
    return { child, stdout: () => stdout, exited };
  }

  it('gets the bounded heap, the signal its listener waits for, and ends the process with its exit code', async () => {
    const command = start(['listen']);
    await waitUntil(() => command.stdout().includes('ready'), 'the worker to be ready', 20_000);
    // 256 MiB of old space and three 2 MiB semi-spaces.
    expect(command.stdout()).toContain('ready heap 262');
    command.child.kill('SIGTERM');
    expect(await command.exited).toEqual({ code: 7, signal: null });
    expect(command.stdout()).toContain('stopping');
  }, 30_000);

  it('ends the process by a signal nobody in the worker listens for', async () => {
    const command = start([]);
    await waitUntil(() => command.stdout().includes('ready'), 'the worker to be ready', 20_000);
    command.child.kill('SIGTERM');
    expect(await command.exited).toEqual({ code: null, signal: 'SIGTERM' });
  }, 30_000);
});
