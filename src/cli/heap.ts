// The built program bounds its own V8 heap. Without bounds V8 sizes the heap for the machine and
// lets garbage pile up to several times the live set; these keep the agent near its live set.
// V8 fixes the heap's size when the process starts (v8.setFlagsFromString afterwards changes
// nothing: measured), and Node 20's single executable cannot carry node options, so the program
// starts itself once more with the bounds in NODE_OPTIONS, unless NODE_OPTIONS already sets them.
// The operator's NODE_OPTIONS comes after the defaults and so wins, and setting both bounds there
// saves the second process.
import { spawn } from 'node:child_process';
import os from 'node:os';

/** The bounds the command path was measured with (bench:pipeline, soak). */
export const HEAP_DEFAULTS: readonly string[] = ['--max-old-space-size=256', '--max-semi-space-size=2'];

/** Set in the relaunched process: the NODE_OPTIONS the operator gave (JSON, null when unset). */
const RELAUNCH_MARK = '__ZTEDGE_OPERATOR_NODE_OPTIONS';

/** Signals passed on to the relaunched process (SIGUSR1 stays Node's inspector signal). */
const FORWARDED: readonly NodeJS.Signals[] = ['SIGINT', 'SIGTERM', 'SIGHUP', 'SIGQUIT'];

/** V8 spells flags with `-` or `_`; both name the same flag. */
function flagName(token: string): string {
  return token.replace(/^--?/, '').split('=', 1)[0]!.replaceAll('_', '-');
}

/**
 * NODE_OPTIONS for a process with the heap bounds: the defaults that `current` does not set,
 * then `current`. Null when `current` already sets every bound (nothing to add).
 */
export function boundedNodeOptions(current: string | undefined): string | null {
  const given = new Set((current ?? '').split(/\s+/).filter((t) => t.startsWith('-')).map(flagName));
  const missing = HEAP_DEFAULTS.filter((flag) => !given.has(flagName(flag)));
  if (missing.length === 0) return null;
  return [...missing, ...(current?.trim() ? [current.trim()] : [])].join(' ');
}

/**
 * In a relaunched process: restores the operator's NODE_OPTIONS (children this program starts see
 * what the operator set) and ends the process cleanly if its launcher goes away. Returns the
 * NODE_OPTIONS this process was started with, or null when it was not relaunched.
 */
export function adoptRelaunch(env: NodeJS.ProcessEnv = process.env): string | null {
  const mark = env[RELAUNCH_MARK];
  if (mark === undefined) return null;
  const effective = env.NODE_OPTIONS ?? '';
  delete env[RELAUNCH_MARK];
  const operator = JSON.parse(mark) as string | null;
  if (operator === null) delete env.NODE_OPTIONS;
  else env.NODE_OPTIONS = operator;
  // The IPC channel only tells whether the launcher lives; it must not keep this process alive.
  if (process.channel !== undefined) {
    process.channel.unref();
    process.once('disconnect', () => process.kill(process.pid, 'SIGTERM'));
  }
  return effective;
}

/**
 * Starts this program again with `nodeOptions` and the same arguments, passes signals on, and
 * ends as the relaunched process ends (same exit code, or killed by the same signal). The
 * relaunched process runs in its own process group, so a terminal's Ctrl-C reaches it once,
 * through here; under systemd use KillMode=mixed so that SIGTERM is not delivered twice.
 */
export function relaunch(nodeOptions: string, program: { execPath: string; args: string[] }): void {
  const child = spawn(program.execPath, program.args, {
    stdio: ['inherit', 'inherit', 'inherit', 'ipc'],
    detached: true,
    env: { ...process.env, NODE_OPTIONS: nodeOptions, [RELAUNCH_MARK]: JSON.stringify(process.env.NODE_OPTIONS ?? null) },
  });
  const forward = (signal: NodeJS.Signals) => {
    if (child.exitCode === null && child.signalCode === null) child.kill(signal);
  };
  for (const signal of FORWARDED) process.on(signal, forward);
  child.once('error', (err) => {
    process.stderr.write(`ztedge: cannot start ${program.execPath}: ${err.message}\n`);
    process.exit(1);
  });
  child.once('exit', (code, signal) => {
    for (const s of FORWARDED) process.off(s, forward);
    if (signal === null) process.exit(code ?? 1);
    // End the same way; for a signal whose default is to be ignored, the shell's 128 + number.
    process.kill(process.pid, signal);
    process.exit(128 + (os.constants.signals[signal] ?? 0));
  });
}
