import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/agent/config.js';
import { parseDurationMs } from '../../src/duration.js';

const minimal = `
device: { id: arm-01, site: plant-a, profile: robot-arm }
stateDir: /var/lib/ztedge
deviceKey: /etc/ztedge/device.key
roots: { keys: [/etc/ztedge/root1.pub, /etc/ztedge/root2.pub], threshold: 2 }
broker: { url: "mqtt://127.0.0.1:1883" }
executors:
  move: { kind: mqtt, timeout: 2s }
  reboot: { kind: exec, command: [/usr/bin/true] }
`;

function problemsOf(text: string, env: Record<string, string> = {}): string[] {
  try {
    loadConfig(text, env);
  } catch (err) {
    expect(err).toBeInstanceOf(ConfigError);
    return (err as ConfigError).problems.map((p) => `${p.option}: ${p.message}`);
  }
  return [];
}

describe('agent config', () => {
  it('applies safe defaults', () => {
    const c = loadConfig(minimal, {});
    expect(c.http).toEqual({ enabled: true, host: '127.0.0.1', port: 8181, adminTokenFile: undefined });
    expect(c.posture).toBe('degraded');
    expect(c.broker.topicPrefix).toBe('ztedge/plant-a/arm-01/');
    expect(c.limits.envelopeMaxBytes).toBe(65536);
    expect(c.executors.move).toEqual({ kind: 'mqtt', timeoutMs: 2000 });
    expect(c.executors.reboot).toEqual({ kind: 'exec', command: ['/usr/bin/true'], timeoutMs: 5000 });
  });

  it('reads JSON as well as YAML', () => {
    const c = loadConfig(
      JSON.stringify({ device: { id: 'd1', site: 's1' }, stateDir: '/s', deviceKey: '/k', roots: { keys: ['/r'] } }),
      {},
    );
    expect(c.device).toEqual({ id: 'd1', site: 's1', profile: 'default' });
    expect(c.broker.url).toBeNull();
  });

  it('overlays ZTEDGE_* environment variables', () => {
    const c = loadConfig(minimal, {
      ZTEDGE_BROKER_URL: 'mqtts://broker.example:8883',
      ZTEDGE_ROOTS_KEYS: '/a.pub, /b.pub,/c.pub',
      ZTEDGE_ROOTS_THRESHOLD: '3',
      ZTEDGE_HTTP_PORT: '9000',
      PATH: '/usr/bin',
    });
    expect(c.broker.url).toBe('mqtts://broker.example:8883');
    expect(c.roots).toEqual({ keys: ['/a.pub', '/b.pub', '/c.pub'], threshold: 3 });
    expect(c.http.port).toBe(9000);
  });

  it('reports every problem at once, each with its option name', () => {
    const problems = problemsOf(
      `
device: { id: "bad id!", site: "" }
roots: { keys: [/r1.pub], threshold: 2 }
broker: { url: "http://nope", cert: /c.pem }
http: { port: 70000 }
posture: fine
colour: blue
executors:
  move: { kind: teleport }
  run: { kind: exec, command: [] }
limits: { clockSkew: "forever" }
`,
      { ZTEDGE_NOT_AN_OPTION: 'x' },
    );
    const options = problems.map((p) => p.split(':')[0]);
    expect(options).toEqual(
      expect.arrayContaining([
        'ZTEDGE_NOT_AN_OPTION', 'colour', 'device.id', 'device.site', 'stateDir', 'deviceKey',
        'roots.threshold', 'broker.url', 'broker.key', 'http.port', 'posture',
        'executors.move.kind', 'executors.run.command', 'limits.clockSkew',
      ]),
    );
    expect(problems).toHaveLength(14);
  });

  it('rejects duplicate keys and malformed text with a clear error', () => {
    expect(problemsOf('device: {id: a}\ndevice: {id: b}\n')[0]).toMatch(/^config: not valid YAML\/JSON/);
    expect(problemsOf('{"device": ')[0]).toMatch(/^config: not valid/);
  });

  it('parses durations strictly', () => {
    expect(parseDurationMs('250ms')).toBe(250);
    expect(parseDurationMs('30s')).toBe(30_000);
    expect(parseDurationMs('2h')).toBe(7_200_000);
    expect(parseDurationMs('1.5s')).toBeUndefined();
    expect(parseDurationMs('10')).toBeUndefined();
  });
});
