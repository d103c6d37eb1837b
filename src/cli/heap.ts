// The built program bounds the V8 heap of its long-running commands (`run`, `collector`). Without
// bounds V8 sizes the heap for the machine and lets garbage pile up to several times the live set;
// these keep the agent near its live set. V8 fixes a heap's size when it is created
// (v8.setFlagsFromString afterwards changes nothing: measured), and Node 20's single executable
// cannot carry node options, so the command runs in a worker thread whose heap is created with
// the bounds as resource limits (the same V8 settings as the flags: old space, and a young
// generation of three semi-spaces). A worker starts in a fraction of what a second process costs
// (a whole Node start and a second compile of the program). The operator's NODE_OPTIONS wins
// for the bound it sets; when it sets both, the process's own heap is already bounded and the
// command runs on the main thread.
import { Worker, type WorkerOptions, isMainThread, parentPort } from 'node:worker_threads';
import { type ProcessStart, mainThreadStart } from './start-timing.js';

/** The bounds the command path was measured with (bench:pipeline, soak). */
export const HEAP_DEFAULTS: readonly string[] = ['--max-old-space-size=256', '--max-semi-space-size=2'];

const DEFAULT_OLD_MIB = 256;
const DEFAULT_SEMI_MIB = 2;
/** V8's young generation is two semi-spaces and a large-object space of the same size. */
const YOUNG_PER_SEMI = 3;

/** Signals passed on to the worker (SIGUSR1 stays Node's inspector signal; others end the process). */
export const FORWARDED_SIGNALS: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP'];

/** The resource limits of a bounded worker, in MiB (Node's `resourceLimits`). */
export interface HeapBounds {
  maxOldGenerationSizeMb: number;
  maxYoungGenerationSizeMb: number;
}

/** V8 spells flags with `-` or `_`; both name the same flag. */
function flagName(token: string): string {
  return token.replace(/^--?/, '').split('=', 1)[0]!.replaceAll('_', '-');
}

/** The value the last `--name=N` in `options` gives (later flags win in V8), if any. */
function flagValue(options: string, name: string): number | undefined {
  let value: number | undefined;
  for (const token of options.split(/\s+/)) {
    if (!token.startsWith('-') || flagName(token) !== name) continue;
    const n = Number(token.split('=')[1]);
    if (Number.isFinite(n) && n > 0) value = n;
  }
  return value;
}

/**
 * The heap bounds a long-running command needs beyond what the process has: the operator's
 * value for each bound NODE_OPTIONS sets, the default for the other. Null when NODE_OPTIONS
 * sets both (the process's heap is already bounded: nothing to add).
 */
export function workerHeapBounds(nodeOptions: string | undefined): HeapBounds | null {
  const options = nodeOptions ?? '';
  const given = new Set(options.split(/\s+/).filter((t) => t.startsWith('-')).map(flagName));
  if (given.has('max-old-space-size') && given.has('max-semi-space-size')) return null;
  const semi = flagValue(options, 'max-semi-space-size') ?? DEFAULT_SEMI_MIB;
  return { maxOldGenerationSizeMb: flagValue(options, 'max-old-space-size') ?? DEFAULT_OLD_MIB, maxYoungGenerationSizeMb: semi * YOUNG_PER_SEMI };
}

/** The bounds as the node options they stand for (what `--version --verbose` reports). */
export function describeBounds(bounds: HeapBounds): string {
  return `--max-old-space-size=${bounds.maxOldGenerationSizeMb} --max-semi-space-size=${bounds.maxYoungGenerationSizeMb / YOUNG_PER_SEMI}`;
}

/** The commands that run for long and so get the bounds; short ones end before garbage matters. */
export function needsHeapBounds(args: readonly string[]): boolean {
  const [name, ...rest] = args;
  // `--version --verbose` reports the heap limit the agent runs with.
  return name === 'run' || name === 'collector' || (name === '--version' && rest.includes('--verbose'));
}

/**
 * The bounds to start a worker with for the command `args`, or null to run it on this thread (a
 * short command, a worker already, or NODE_OPTIONS bounding the process's own heap).
 */
export function heapBoundsFor(args: readonly string[]): HeapBounds | null {
  return isMainThread && needsHeapBounds(args) ? workerHeapBounds(process.env.NODE_OPTIONS) : null;
}

/**
 * Runs the command `args` in a worker with heap `bounds`, supervised from this thread: `code` is
 * the program's file, or (with `eval`) its source.
 */
export function startBoundedWorker(code: string, args: string[], bounds: HeapBounds, opts: { eval?: boolean } = {}): void {
  superviseWorker(new Worker(code, { ...boundedWorkerOptions(args, bounds), ...opts }), (err) => process.stderr.write(`ztedge: ${err.stack ?? String(err)}
`));
}

/** What a bounded worker is told by the thread that starts it (its workerData). */
export interface BoundedWorkerData {
  ztedgeHeapBounds: HeapBounds;
  ztedgeProcessStart: ProcessStart;
}

/** Options for a worker that runs the command `args` with heap `bounds`. */
export function boundedWorkerOptions(args: string[], bounds: HeapBounds): WorkerOptions {
  return { argv: args, resourceLimits: bounds, workerData: { ztedgeHeapBounds: bounds, ztedgeProcessStart: mainThreadStart(true) } satisfies BoundedWorkerData };
}

/** A message from the main thread to the worker: a signal the process received. */
interface SignalMessage {
  signal: NodeJS.Signals;
}

/** A message from the worker: nobody there handles `signal`, so its default action applies. */
interface UnhandledSignal {
  unhandled: NodeJS.Signals;
}

/**
 * On the main thread, while `worker` runs the command: passes the signals on to it, and ends the
 * process as the worker ends (with its exit code). A signal the worker does not handle (yet, or
 * at all) ends the process by that signal, as it would have without a worker.
 */
export function superviseWorker(worker: Worker, onError: (err: Error) => void): void {
  const forward = (signal: NodeJS.Signals) => worker.postMessage({ signal } satisfies SignalMessage);
  for (const signal of FORWARDED_SIGNALS) process.on(signal, forward);
  worker.on('message', (message: UnhandledSignal) => {
    if (typeof message?.unhandled !== 'string') return;
    for (const s of FORWARDED_SIGNALS) process.off(s, forward);
    process.kill(process.pid, message.unhandled);
  });
  worker.once('error', onError);
  worker.once('exit', (code) => process.exit(code));
}

/**
 * In the worker: delivers the signals the main thread passes on to this thread's `process`
 * listeners (Node delivers signals to the main thread only), or hands one back when no listener
 * is there. Does not keep the worker alive.
 */
export function receiveSignals(): void {
  if (parentPort === null) return;
  parentPort.on('message', (message: SignalMessage) => {
    if (typeof message?.signal !== 'string') return;
    if (process.listenerCount(message.signal) > 0) process.emit(message.signal, message.signal);
    else parentPort!.postMessage({ unhandled: message.signal } satisfies UnhandledSignal);
  });
  parentPort.unref();
}
