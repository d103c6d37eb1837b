// The heap bounds the built program starts with: the defaults the operator's NODE_OPTIONS does
// not set, then the operator's NODE_OPTIONS (later flags win in V8); nothing to add, no relaunch.
import { describe, expect, it } from 'vitest';
import { HEAP_DEFAULTS, boundedNodeOptions } from '../../src/cli/heap.js';

describe('heap bounds', () => {
  it('adds both defaults when NODE_OPTIONS is unset or blank', () => {
    expect(HEAP_DEFAULTS).toEqual(['--max-old-space-size=256', '--max-semi-space-size=2']);
    expect(boundedNodeOptions(undefined)).toBe('--max-old-space-size=256 --max-semi-space-size=2');
    expect(boundedNodeOptions('  ')).toBe('--max-old-space-size=256 --max-semi-space-size=2');
  });

  it("keeps the operator's options after the defaults and adds only the bounds it does not set", () => {
    expect(boundedNodeOptions('--enable-source-maps')).toBe('--max-old-space-size=256 --max-semi-space-size=2 --enable-source-maps');
    expect(boundedNodeOptions('--max-old-space-size=512')).toBe('--max-semi-space-size=2 --max-old-space-size=512');
    // V8 reads `_` and `-` alike.
    expect(boundedNodeOptions('--max_semi_space_size=8 --trace-gc')).toBe('--max-old-space-size=256 --max_semi_space_size=8 --trace-gc');
  });

  it('asks for no relaunch when the operator sets both bounds', () => {
    expect(boundedNodeOptions('--max-old-space-size=1024 --max-semi-space-size=16')).toBeNull();
    expect(boundedNodeOptions('--max_old_space_size=1024 --trace-gc --max-semi-space-size=16')).toBeNull();
  });
});
