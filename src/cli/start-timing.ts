// `NODE_DEBUG=ztedge-start ztedge run …`: where the start-up went, printed on standard error once
// the agent has started (ready or not), as milliseconds since the process started. The program
// and the agent set performance marks named `ztedge:<milestone>` (they cost next to nothing); a
// command run in a bounded worker (heap.ts) counts from the process's start, not the worker's.
import { debuglog } from 'node:util';

/** The process's start as the main thread saw it; handed to a worker (entry.ts). */
export interface ProcessStart {
  /** performance.timeOrigin of the main thread (ms since the epoch). */
  originMs: number;
  /** When Node had finished its own start (performance.nodeTiming.bootstrapComplete). */
  nodeReadyMs: number;
  /** When the main thread started the worker, if it did. */
  workerStartedMs?: number;
}

let processStart: ProcessStart | undefined;

/** The main thread's view, now (before it starts a worker). */
export function mainThreadStart(workerStarted: boolean): ProcessStart {
  const now = performance.now();
  return { originMs: performance.timeOrigin, nodeReadyMs: performance.nodeTiming.bootstrapComplete, ...(workerStarted ? { workerStartedMs: now } : {}) };
}

/** In a worker: the main thread's view of the process start. */
export function setProcessStart(start: ProcessStart): void {
  processStart = start;
}

/** The milestones so far, in ms since the process started. */
export function startMilestones(): Array<{ name: string; ms: number }> {
  const start = processStart ?? mainThreadStart(false);
  const offset = performance.timeOrigin - start.originMs;
  const marks = performance
    .getEntriesByType('mark')
    .filter((m) => m.name.startsWith('ztedge:'))
    .map((m) => ({ name: m.name.slice('ztedge:'.length), ms: m.startTime + offset }));
  return [
    { name: 'node-started', ms: start.nodeReadyMs },
    ...(start.workerStartedMs === undefined ? [] : [{ name: 'worker-requested', ms: start.workerStartedMs }]),
    ...marks,
  ].sort((a, b) => a.ms - b.ms);
}

const debug = debuglog('ztedge-start');

/** Prints the milestones when NODE_DEBUG names ztedge-start. */
export function reportStartTiming(): void {
  if (!debug.enabled) return;
  let previous = 0;
  const parts = startMilestones().map(({ name, ms }) => {
    const part = `${name} ${ms.toFixed(1)} (+${(ms - previous).toFixed(1)})`;
    previous = ms;
    return part;
  });
  debug(`ms since the process started: ${parts.join(', ')}`);
}
