// A bundle that permits actions the agent cannot execute is accepted, and the agent says so at
// activation, naming each such action (an mqtt executor needs a broker; `approve` is never run).
import { afterEach, describe, expect, it } from 'vitest';
import { CELL_POLICIES } from '../agent/fixture.js';
import { runCleanups } from '../support/wait.js';
import { GRIP_POLICY, makeSite, startAgent } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

const WARNING = 'permitted actions have no executor: such commands are allowed and audited, then fail with NO_EXECUTOR';

describe('activation', () => {
  it('warns about every permitted action without an executor', async () => {
    const site = makeSite();
    cleanups.push(() => site.remove());
    // No broker: the mqtt executors of the site's configuration cannot run; grip has its own.
    const running = await startAgent(site.config(null, { executors: { grip: { kind: 'http', url: 'http://127.0.0.1:9/grip' }, estop: { kind: 'mqtt' } } }));
    cleanups.push(() => running.stop());
    running.agent.bundles.activate(site.bundle(1, CELL_POLICIES + GRIP_POLICY));
    const warnings = running.logs.map((l) => JSON.parse(l) as Record<string, unknown>).filter((l) => l.message === WARNING);
    expect(warnings).toEqual([{ level: 'warn', message: WARNING, revision: 1, actions: ['estop', 'move', 'release', 'weld'] }]);
  });

  it('is silent when every permitted action has an executor', async () => {
    const site = makeSite();
    cleanups.push(() => site.remove());
    const http = (action: string) => [action, { kind: 'http', url: `http://127.0.0.1:9/${action}` }];
    const executors = Object.fromEntries(['move', 'estop', 'weld', 'grip', 'release'].map(http));
    const running = await startAgent(site.config(null, { executors }));
    cleanups.push(() => running.stop());
    running.agent.bundles.activate(site.bundle(1, CELL_POLICIES + GRIP_POLICY));
    expect(running.logs.filter((l) => l.includes(WARNING))).toEqual([]);
  });
});
