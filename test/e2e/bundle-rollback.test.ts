// Rolling back, end to end: a stopped agent's state directory with `ztedge bundle rollback` (the
// running agent owns it: refused while it runs), and a running or remote device with a signed
// rollback instruction over MQTT — built, signed k-of-n and pushed like a bundle — which the
// device re-verifies and carries out only from its active bundle to its last-known-good one.
import fs from 'node:fs';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { startBroker } from '../support/broker.js';
import { MqttPeer } from '../support/mqtt-peer.js';
import { runCleanups, waitUntil } from '../support/wait.js';
import { CELL_POLICIES } from '../agent/fixture.js';
import { DEVICE, GRIP_POLICY, Operator, PREFIX, SITE, auditTrail, brokerArgs, cli, command, makeSite, startAgent } from './support.js';

const cleanups: Array<() => unknown> = [];
afterEach(() => runCleanups(cleanups));

describe('rollback', () => {
  it('by a signed instruction over MQTT, refused unless it goes from the active bundle to the last-known-good', async () => {
    const broker = await startBroker();
    cleanups.push(() => broker.stop());
    const site = makeSite();
    cleanups.push(() => site.remove());
    const running = await startAgent(site.config(broker.url));
    cleanups.push(() => running.stop());
    const operator = await Operator.connect(broker, site);
    cleanups.push(() => operator.close());
    const trust = ['--root', site.pubFile('root'), '--threshold', '1'];
    const push = (file: string) => cli(['bundle', 'push', file, ...brokerArgs(broker), ...trust]);
    const grip = async () => (await operator.result(await operator.send(command(site.keys.planner, 'grip')))).decision;

    const r1 = site.bundleFile(1, CELL_POLICIES);
    const r2 = site.bundleFile(2, CELL_POLICIES + GRIP_POLICY);
    expect((await push(r1)).code).toBe(0);
    expect((await push(r2)).code).toBe(0);
    expect(await grip()).toBe('allow');

    // The running agent owns its state directory: the offline rollback is refused, and says what to do.
    const offline = await cli(['bundle', 'rollback', '--state-dir', site.stateDir, ...trust, '--device', DEVICE, '--site', SITE]);
    expect(offline.code).toBe(1);
    expect(offline.stderr[0]).toMatch(/^STATE_DIR_LOCKED: state directory .* is in use by another process \(pid \d+, ztedge run, since .*\)\. A running agent owns its state directory: stop it first, or send it a signed rollback instruction/);

    // Build, sign and push an instruction: from revision 2 (active) to revision 1 (last-known-good).
    const instruction = path.join(site.dir, 'rollback.cbor');
    const built = await cli(['bundle', 'rollback-build', '--device', DEVICE, '--site', SITE, '--from', r2, '--to', r1, '--reason', 'grip misbehaves', '--out', instruction]);
    expect(built.code, built.stderr.join('\n')).toBe(0);
    expect(built.stdout[0]).toMatch(/^rollback instruction for arm-01 at site-1: revision 2 → 1, expires .* \(unsigned: sign it with each root key, then push it\)$/);
    const unsigned = await push(instruction);
    expect([unsigned.code, unsigned.stderr[0]]).toEqual([1, expect.stringMatching(/^BUNDLE_UNSIGNED: the rollback instruction is an unsigned payload/)]);
    expect((await cli(['bundle', 'sign', instruction, '--key', site.keyFile('root')])).stdout[0]).toMatch(/1 signature → .* \(rollback instruction\)$/);
    const verified = await cli(['bundle', 'verify', instruction, ...trust, '--device', DEVICE, '--site', SITE]);
    expect(JSON.parse(verified.stdout[0]!)).toMatchObject({ device: DEVICE, site: SITE, from: { revision: 2 }, to: { revision: 1 }, reason: 'grip misbehaves' });

    const pushed = await push(instruction);
    expect(pushed.code, pushed.stderr.join('\n')).toBe(0);
    expect(pushed.stdout[1]).toBe('device arm-01 activated revision 1 (rolled back from 2)');
    expect(running.agent.status()).toMatchObject({ bundle: { revision: 1 }, lastKnownGood: null });
    expect(await grip()).toBe('deny');
    const bundleRecords = () => auditTrail(running.agent).filter(({ record }) => record.kind === 'bundle').map(({ body }) => Object.fromEntries(body));
    await waitUntil(() => bundleRecords().some((b) => b.event === 'rolled-back'), 'the rollback in the audit log');
    expect(bundleRecords().filter((b) => b.event === 'rolled-back')).toEqual([
      expect.objectContaining({ event: 'rolled-back', reason: 'instruction', revision: 1, fromRevision: 2 }),
    ]);

    // The same instruction again: push refuses it (the device no longer runs revision 2); sent by
    // hand, the device refuses it too, and says so in its status and audit log.
    const again = await push(instruction);
    expect([again.code, again.stderr[0]]).toEqual([1, expect.stringMatching(/^ROLLBACK_NOT_ACTIVE: device arm-01 reports revision 1 .* active, not the instruction's revision 2; it was not pushed/)]);
    const raw = await MqttPeer.connect(broker);
    cleanups.push(() => raw.close());
    await raw.publish(`${PREFIX}bundle/rollback`, fs.readFileSync(instruction), { qos: 1 });
    await waitUntil(() => running.agent.status().lastRejection?.code === 'ROLLBACK_NOT_ACTIVE', 'the replay refused');
    expect(running.agent.status().bundle?.revision).toBe(1);

    // A target that is not the last-known-good is refused by the device (push only knows the active one).
    const r3 = site.bundleFile(3, CELL_POLICIES + GRIP_POLICY);
    expect((await push(r3)).code).toBe(0);
    const wrongTarget = path.join(site.dir, 'rollback-to-2.cbor');
    expect((await cli(['bundle', 'rollback-build', '--device', DEVICE, '--site', SITE, '--from', r3, '--to', r2, '--out', wrongTarget])).code).toBe(0);
    expect((await cli(['bundle', 'sign', wrongTarget, '--key', site.keyFile('root')])).code).toBe(0);
    const refused = await push(wrongTarget);
    expect([refused.code, refused.stderr[0]]).toEqual([1, 'PUSH_REFUSED: device arm-01 refused from revision 3 to 2: ROLLBACK_NOT_LKG']);
    expect(running.agent.status().bundle?.revision).toBe(3);

    // Signed by a key that is not a root: refused here, and by the device when sent by hand.
    const forged = path.join(site.dir, 'rollback-forged.cbor');
    expect((await cli(['bundle', 'rollback-build', '--device', DEVICE, '--site', SITE, '--from', r3, '--to', r1, '--out', forged])).code).toBe(0);
    expect((await cli(['bundle', 'sign', forged, '--key', site.keyFile('stranger')])).code).toBe(0);
    expect((await push(forged)).stderr[0]).toMatch(/^BUNDLE_UNKNOWN_SIGNER: /);
    await raw.publish(`${PREFIX}bundle/rollback`, fs.readFileSync(forged), { qos: 1 });
    await waitUntil(() => running.agent.status().lastRejection?.code === 'BUNDLE_UNKNOWN_SIGNER', 'the forged instruction refused');
    expect(running.agent.status().bundle?.revision).toBe(3);
    const rejected = () => bundleRecords().filter((b) => b.event === 'rejected').map((b) => b.code);
    await waitUntil(() => rejected().length === 3, 'three refusals in the audit log');
    expect(rejected()).toEqual(['ROLLBACK_NOT_ACTIVE', 'ROLLBACK_NOT_LKG', 'BUNDLE_UNKNOWN_SIGNER']);
  });

  it("of a stopped agent with `bundle rollback --state-dir <its stateDir> --config <its config>`, audited", async () => {
    const site = makeSite();
    cleanups.push(() => site.remove());
    const file = path.join(site.dir, 'agent.yaml');
    fs.writeFileSync(file, ['device: { id: arm-01, site: site-1 }', 'stateDir: state', 'deviceKey: device.key', 'roots: { keys: [root.pub] }', 'http: { enabled: false }'].join('\n'));
    const config = site.config(null, { http: { enabled: false } });
    let running = await startAgent(config);
    running.agent.bundles.activate(site.bundle(1));
    running.agent.bundles.activate(site.bundle(2));
    await running.stop();

    const rolled = await cli(['bundle', 'rollback', '--state-dir', site.stateDir, '--config', file]);
    expect(rolled.code, rolled.stderr.join('\n')).toBe(0);
    expect(rolled.stdout[0]).toMatch(/^rolled back from revision 2 to revision 1 \([0-9a-f]{64}\); audit record \d+$/);

    running = await startAgent(config);
    cleanups.push(() => running.stop());
    expect(running.agent.status().bundle?.revision).toBe(1);
    const records = auditTrail(running.agent).filter(({ record }) => record.kind === 'bundle').map(({ body }) => Object.fromEntries(body));
    expect(records.filter((b) => String(b.event).startsWith('roll'))).toEqual([
      expect.objectContaining({ event: 'rollback-requested', by: 'ztedge bundle rollback', fromRevision: 2, revision: 1 }),
      expect.objectContaining({ event: 'rolled-back', reason: 'operator', fromRevision: 2, revision: 1 }),
    ]);
    expect(running.agent.audit.verify()).toBeUndefined();
  });
});

describe('a failed rollback of a stopped agent', () => {
  it('leaves its state directory as it was, and audits the attempt', async () => {
    const site = makeSite();
    cleanups.push(() => site.remove());
    const config = site.config(null, { http: { enabled: false } });
    const running = await startAgent(config);
    running.agent.bundles.activate(site.bundle(1));
    await running.stop();
    const listing = () => fs.readdirSync(site.stateDir, { recursive: true }).map(String).sort();
    const before = listing();
    const failed = await cli(['bundle', 'rollback', '--state-dir', site.stateDir, '--root', site.pubFile('root'), '--threshold', '1', '--device', DEVICE, '--site', SITE]);
    expect([failed.code, failed.stderr[0]]).toEqual([1, expect.stringMatching(/^BUNDLE_NO_LKG: there is no last-known-good bundle/)]);
    expect(listing()).toEqual(before);
    const again = await startAgent(config);
    cleanups.push(() => again.stop());
    const attempts = auditTrail(again.agent).filter(({ body }) => body.get('event') === 'rollback-requested');
    expect(attempts).toHaveLength(1);
  });
});
