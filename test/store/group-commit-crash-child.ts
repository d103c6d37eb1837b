// Child process of group-commit-crash.test.ts: an agent core in the given state directory that
// handles one command and is killed (SIGKILL, no cleanup of any kind) the moment its executor
// is called. Prints the command id first, so the parent knows what to look for.
import type { ExecutionOutcome, ExecutionRequest } from '../../src/agent/executors/types.js';
import { command, makeCore, makeKeys, RecordingExecutor, T0 } from '../agent/fixture.js';

class DyingExecutor extends RecordingExecutor {
  override execute(request: ExecutionRequest): Promise<ExecutionOutcome> {
    // Pipe writes are synchronous on Linux: the line is out before the kill.
    process.stdout.write(`${JSON.stringify({ executing: request.commandId })}\n`);
    process.kill(process.pid, 'SIGKILL');
    return new Promise(() => {});
  }
}

const dir = process.argv[2]!;
const core = makeCore(makeKeys(), dir, { ms: T0 }, new DyingExecutor());
await core.pipeline.handleCommand({ bytes: command(core.keys.planner, core.clock.ms, 'estop'), source: 'mqtt' });
