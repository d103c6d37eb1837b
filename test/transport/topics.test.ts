import { describe, expect, it } from 'vitest';
import { isTransportError } from '../../src/transport/errors.js';
import { deviceTopics, isPublishableTopic, MAX_TOPIC_BYTES } from '../../src/transport/topics.js';

function codeOf(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isTransportError(err) ? err.code : `not a TransportError: ${String(err)}`;
  }
  return undefined;
}

describe('deviceTopics', () => {
  it('derives every topic from the default prefix ztedge/<site>/<device>/', () => {
    const t = deviceTopics({ site: 'plant-3', device: 'robot.7' });
    expect(t.prefix).toBe('ztedge/plant-3/robot.7/');
    expect([t.cmd, t.cmdResult, t.approve, t.bundle, t.attestChallenge, t.attestEvidence, t.status]).toEqual([
      'ztedge/plant-3/robot.7/cmd',
      'ztedge/plant-3/robot.7/cmd/result',
      'ztedge/plant-3/robot.7/approve',
      'ztedge/plant-3/robot.7/bundle',
      'ztedge/plant-3/robot.7/attest/challenge',
      'ztedge/plant-3/robot.7/attest/evidence',
      'ztedge/plant-3/robot.7/status',
    ]);
    expect(t.exec('arm.move')).toBe('ztedge/plant-3/robot.7/exec/arm.move');
    expect(t.exec('plc:write')).toBe('ztedge/plant-3/robot.7/exec/plc:write');
  });

  it('lists the inbound topics the agent subscribes to, and no outbound ones', () => {
    const t = deviceTopics({ site: 's', device: 'd' });
    expect([...t.inbound].sort()).toEqual([t.approve, t.attestChallenge, t.bundle, t.rollback, t.cmd].sort());
  });

  it('limits reply topics to a namespace, by default cmd/result and below', () => {
    const t = deviceTopics({ site: 's', device: 'd' });
    expect(t.replyPrefix).toBe('ztedge/s/d/cmd/result/');
    for (const ok of ['ztedge/s/d/cmd/result', 'ztedge/s/d/cmd/result/abc', 'ztedge/s/d/cmd/result/a/b']) expect(t.isReplyTopic(ok)).toBe(true);
    for (const bad of ['ztedge/s/d/exec/estop', 'ztedge/s/d/cmd', 'ztedge/s/d/cmd/resultx', 'ztedge/s/d/status', 'elsewhere/x', 'ztedge/s/d/cmd/result/+', '$SYS/x', '']) {
      expect(t.isReplyTopic(bad)).toBe(false);
    }
  });

  it('refuses a reply namespace that overlaps any control topic of the device', () => {
    const p = 'ztedge/s/d/';
    const reply = (replyPrefix: string) => codeOf(() => deviceTopics({ site: 's', device: 'd', replyPrefix }));
    for (const bad of [p, 'ztedge/', 'ztedge/s/', `${p}exec/`, `${p}exec/estop/`, `${p}exec/estop/ack/`, `${p}attest/`, `${p}cmd/`, `${p}status/`, `${p}approve/`, `${p}bundle/`]) {
      expect({ bad, code: reply(bad) }).toEqual({ bad, code: 'TOPIC_REPLY_PREFIX_INVALID' });
    }
    for (const bad of ['no-slash', '/', 'a//b/', 'a/+/', '$SYS/', '']) expect(reply(bad)).toBe('TOPIC_REPLY_PREFIX_INVALID');
    for (const ok of [`${p}cmd/result/`, `${p}replies/`, 'clients/replies/', `${p}cmd/result/x/`]) expect({ ok, code: reply(ok) }).toEqual({ ok, code: undefined });
    expect(deviceTopics({ site: 's', device: 'd', replyPrefix: 'clients/replies/' }).isReplyTopic('clients/replies/c-7')).toBe(true);
  });

  it('uses a configured prefix as given', () => {
    const t = deviceTopics({ site: 's1', device: 'd1', prefix: 'factory/line-2/' });
    expect(t.cmd).toBe('factory/line-2/cmd');
    expect(t.status).toBe('factory/line-2/status');
  });

  it.each([
    ['a/b', 'TOPIC_SITE_INVALID'],
    ['+', 'TOPIC_SITE_INVALID'],
    ['#', 'TOPIC_SITE_INVALID'],
    ['', 'TOPIC_SITE_INVALID'],
    ['$SYS', 'TOPIC_SITE_INVALID'],
    ['x'.repeat(65), 'TOPIC_SITE_INVALID'],
    ['.hidden', 'TOPIC_SITE_INVALID'],
    ['nul\u0000', 'TOPIC_SITE_INVALID'],
  ])('refuses site id %j', (site, code) => {
    expect(codeOf(() => deviceTopics({ site, device: 'd' }))).toBe(code);
  });

  it('accepts ids up to 64 characters and refuses device ids that would change the topic shape', () => {
    expect(deviceTopics({ site: 's', device: 'd'.repeat(64) }).prefix).toBe(`ztedge/s/${'d'.repeat(64)}/`);
    for (const device of ['robot/1', 'robot+', 'robot#', ' robot', 'r\u00e9bot']) {
      expect(codeOf(() => deviceTopics({ site: 's', device }))).toBe('TOPIC_DEVICE_INVALID');
    }
    expect(codeOf(() => deviceTopics({ site: 's', device: 42 as unknown as string }))).toBe('TOPIC_DEVICE_INVALID');
  });

  it.each([
    ['no-trailing-slash'],
    ['a/+/'],
    ['a/#/'],
    ['$SYS/x/'],
    ['/leading/'],
    ['a//b/'],
    [`${'p'.repeat(300)}/`],
  ])('refuses prefix %j', (prefix) => {
    expect(codeOf(() => deviceTopics({ site: 's', device: 'd', prefix }))).toBe('TOPIC_PREFIX_INVALID');
  });

  it('refuses action ids that are not one safe topic level', () => {
    const t = deviceTopics({ site: 's', device: 'd' });
    for (const action of ['', 'a/b', 'a+', '#', '-x', 'x'.repeat(129)]) {
      expect(codeOf(() => t.exec(action))).toBe('TOPIC_ACTION_INVALID');
    }
  });
});

describe('isPublishableTopic', () => {
  it('accepts ordinary topic names up to the bound', () => {
    expect(isPublishableTopic('ops/replies/4f1c')).toBe(true);
    expect(isPublishableTopic('a'.repeat(MAX_TOPIC_BYTES))).toBe(true);
  });

  it('refuses wildcards, NUL, $ topics, empty, oversize and non-strings', () => {
    for (const topic of ['a/+', 'a/#', 'a\u0000b', '$SYS/broker', '', 'a'.repeat(MAX_TOPIC_BYTES + 1), '\u00e9'.repeat(513)]) {
      expect(isPublishableTopic(topic)).toBe(false);
    }
    expect(isPublishableTopic(undefined)).toBe(false);
    expect(isPublishableTopic(7)).toBe(false);
  });
});
