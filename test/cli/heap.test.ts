// The heap bounds a long-running command gets: a worker thread's resource limits standing for the
// defaults the operator's NODE_OPTIONS does not set, the operator's value for those it sets
// (later flags win in V8); nothing to add, no worker, when NODE_OPTIONS sets both.
import { describe, expect, it } from 'vitest';
import { HEAP_DEFAULTS, describeBounds, needsHeapBounds, workerHeapBounds } from '../../src/cli/heap.js';

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
