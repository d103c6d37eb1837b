import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig } from '../../src/agent/config.js';
import { CONFIG_OPTIONS, envName } from '../../src/agent/config-options.js';
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

  it('limits reply topics to a namespace that overlaps no control topic', () => {
    expect(loadConfig(minimal, {}).broker.replyTopicPrefix).toBe('ztedge/plant-a/arm-01/cmd/result/');
    expect(loadConfig(minimal, { ZTEDGE_BROKER_REPLY_TOPIC_PREFIX: 'clients/replies/' }).broker.replyTopicPrefix).toBe('clients/replies/');
    expect(problemsOf(minimal, { ZTEDGE_BROKER_REPLY_TOPIC_PREFIX: 'ztedge/plant-a/arm-01/exec/' })).toEqual([
      expect.stringMatching(/^broker\.replyTopicPrefix: reply topic prefix .* overlaps the device's control topic ztedge\/plant-a\/arm-01\/exec\/#$/),
    ]);
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

describe('agent config: attestation', () => {
  it('reads the section with defaults; environment options set it too', () => {
    expect(loadConfig(minimal, {}).attestation).toBeUndefined();
    const c = loadConfig(`${minimal}attestation: { measureRoot: /srv/root, tpm: "swtpm:host=127.0.0.1,port=2321", interval: 30s }\n`, {});
    expect(c.attestation).toEqual({ measureRoot: '/srv/root', tpm: 'swtpm:host=127.0.0.1,port=2321', pcr: 23, intervalMs: 30_000, challengesPerMinute: 10 });
    expect(loadConfig(minimal, { ZTEDGE_ATTESTATION_TPM: 'device:/dev/tpmrm0', ZTEDGE_ATTESTATION_PCR: '16' }).attestation).toMatchObject({ tpm: 'device:/dev/tpmrm0', pcr: 16, measureRoot: '/' });
  });

  it('refuses unknown keys, a bad TCTI or PCR, and a configured posture beside measured attestation', () => {
    expect(problemsOf(`${minimal}attestation: { measureroot: /x }\n`)).toEqual(['attestation.measureroot: unknown option']);
    expect(problemsOf(`${minimal}attestation: { tpm: "tabrmd; rm -rf /" }\n`)[0]).toMatch(/^attestation\.tpm: must match/);
    expect(problemsOf(`${minimal}attestation: { pcr: 7 }\n`)[0]).toMatch(/^attestation\.pcr: must be an integer from 16 to 23/);
    expect(problemsOf(`${minimal}attestation: { pcr: 20 }\n`)).toEqual(['attestation.pcr: must be 16 or 23 (the PCRs an application may reset)']);
    expect(problemsOf(`${minimal}posture: trusted\nattestation: {}\n`)).toEqual(['posture: is measured when attestation is configured; remove posture']);
  });
});

/** The least an upstream sync needs: a collector URL and its key. */
const SYNC: Array<[string, unknown]> = [
  ['audit.sync.url', 'https://c:8443'],
  ['audit.sync.collectorKey', '/c.pub'],
];

describe('options from the environment', () => {
  /** For each option: a value as the file holds it and the same value as its ZTEDGE_* text. */
  const SAMPLES: Record<string, { file: unknown; env: string; with?: [string, unknown] | Array<[string, unknown]> }> = {
    'device.id': { file: 'arm-02', env: 'arm-02' },
    'device.site': { file: 'plant-b', env: 'plant-b' },
    'device.profile': { file: 'robot-arm', env: 'robot-arm' },
    stateDir: { file: '/srv/ztedge', env: '/srv/ztedge' },
    deviceKey: { file: '/k/dev.key', env: '/k/dev.key' },
    'roots.keys': { file: ['/r/a.pub', '/r/b.pub', '/r/c.pub'], env: '/r/a.pub,/r/b.pub, /r/c.pub' },
    'roots.threshold': { file: 2, env: '2', with: ['roots.keys', ['/r/a.pub', '/r/b.pub']] },
    'broker.url': { file: 'mqtts://b.example:8883', env: 'mqtts://b.example:8883' },
    'broker.username': { file: 'agent', env: 'agent' },
    'broker.passwordFile': { file: '/p/pw', env: '/p/pw' },
    'broker.ca': { file: '/t/ca.pem', env: '/t/ca.pem' },
    // A client certificate goes with its key.
    'broker.cert': { file: '/t/c.pem', env: '/t/c.pem', with: ['broker.key', '/t/k.pem'] },
    'broker.key': { file: '/t/k.pem', env: '/t/k.pem', with: ['broker.cert', '/t/c.pem'] },
    'broker.clientId': { file: 'gw-7', env: 'gw-7' },
    'broker.topicPrefix': { file: 'plant/arm/', env: 'plant/arm/' },
    'broker.replyTopicPrefix': { file: 'replies/d1/', env: 'replies/d1/' },
    'http.enabled': { file: false, env: 'false' },
    'http.host': { file: '127.0.0.2', env: '127.0.0.2' },
    'http.port': { file: 9000, env: '9000' },
    'http.adminTokenFile': { file: '/t/admin', env: '/t/admin' },
    posture: { file: 'trusted', env: 'trusted' },
    bundleFile: { file: '/b/bundle.cbor', env: '/b/bundle.cbor' },
    logLevel: { file: 'warn', env: 'warn' },
    executors: { file: { grip: { kind: 'http', url: 'http://127.0.0.1:9/g', timeout: '2s' } }, env: '{"grip":{"kind":"http","url":"http://127.0.0.1:9/g","timeout":"2s"}}' },
    'limits.envelopeMaxBytes': { file: 1024, env: '1024' },
    'limits.bundleMaxBytes': { file: 4096, env: '4096' },
    'limits.clockSkew': { file: '5s', env: '5s' },
    'limits.maxLifetime': { file: '2m', env: '2m' },
    'limits.maxPendingApprovals': { file: 3, env: '3' },
    'limits.outboxMaxMessages': { file: 500, env: '500' },
    'attestation.profiles': { file: '/srv/profiles', env: '/srv/profiles' },
    'attestation.measureRoot': { file: '/srv/root', env: '/srv/root' },
    'attestation.tpm': { file: 'device:/dev/tpmrm0', env: 'device:/dev/tpmrm0' },
    'attestation.pcr': { file: 16, env: '16' },
    'attestation.interval': { file: '30s', env: '30s' },
    'attestation.challengesPerMinute': { file: 5, env: '5' },
    'audit.capBytes': { file: 1048576, env: '1048576' },
    'audit.reserveBytes': { file: 300000, env: '300000' },
    'audit.retention': { file: '1d', env: '1d' },
    'audit.checkpointEvery': { file: 10, env: '10' },
    'audit.checkpointInterval': { file: '10s', env: '10s' },
    // Sync is on with a collector key and (for https) a URL; each sample changes one option of it.
    'audit.sync.transport': { file: 'mqtt', env: 'mqtt', with: [['broker.url', 'mqtt://b:1883'], ['audit.sync.collectorKey', '/c.pub']] },
    'audit.sync.url': { file: 'https://c2:8443', env: 'https://c2:8443', with: ['audit.sync.collectorKey', '/c.pub'] },
    'audit.sync.collectorKey': { file: '/other.pub', env: '/other.pub', with: ['audit.sync.url', 'https://c:8443'] },
    'audit.sync.ca': { file: '/t/ca.pem', env: '/t/ca.pem', with: SYNC },
    'audit.sync.cert': { file: '/t/c.pem', env: '/t/c.pem', with: [...SYNC, ['audit.sync.key', '/t/k.pem']] },
    'audit.sync.key': { file: '/t/k.pem', env: '/t/k.pem', with: [...SYNC, ['audit.sync.cert', '/t/c.pem']] },
    'audit.sync.batchRecords': { file: 100, env: '100', with: SYNC },
    'audit.sync.batchBytes': { file: 131072, env: '131072', with: SYNC },
    'audit.sync.inFlight': { file: 4, env: '4', with: SYNC },
    'audit.sync.interval': { file: '1s', env: '1s', with: SYNC },
    'audit.sync.timeout': { file: '5s', env: '5s', with: SYNC },
    'audit.sync.backoffMax': { file: '1m', env: '1m', with: SYNC },
  };
  const base = { device: { id: 'd1', site: 's1' }, stateDir: '/s', deviceKey: '/k', roots: { keys: ['/r'] } };

  function withOption(path: string, value: unknown, raw: Record<string, unknown> = structuredClone(base)): Record<string, unknown> {
    const keys = path.split('.');
    let node = raw;
    for (const key of keys.slice(0, -1)) node = (node[key] ??= {}) as Record<string, unknown>;
    node[keys.at(-1)!] = value;
    return raw;
  }

  it('has a sample for every described option', () => {
    expect(Object.keys(SAMPLES).sort()).toEqual(CONFIG_OPTIONS.map((o) => o.path).sort());
  });

  it.each(CONFIG_OPTIONS.map((o) => o.path))('%s: its ZTEDGE_* variable sets it exactly as the file does', (path) => {
    const { file, env, with: other } = SAMPLES[path]!;
    const pairs = other === undefined ? [] : Array.isArray(other[0]) ? (other as Array<[string, unknown]>) : [other as [string, unknown]];
    const start = pairs.reduce((raw, [p, v]) => withOption(p, v, raw), structuredClone(base) as Record<string, unknown>);
    const fromFile = loadConfig(JSON.stringify(withOption(path, file, structuredClone(start))), {});
    const fromEnv = loadConfig(JSON.stringify(start), { [envName(path)]: env });
    expect(fromEnv).toEqual(fromFile);
    // And it is not the default: the sample changes the configuration.
    if (other === undefined) expect(fromFile).not.toEqual(loadConfig(JSON.stringify(start), {}));
  });

  it('names the variables as documented: ZTEDGE_LOG_LEVEL, ZTEDGE_LIMITS_ENVELOPE_MAX_BYTES, ZTEDGE_EXECUTORS', () => {
    const c = loadConfig(minimal, { ZTEDGE_LOG_LEVEL: 'warn', ZTEDGE_LIMITS_ENVELOPE_MAX_BYTES: '2048', ZTEDGE_EXECUTORS: '{"estop":{"kind":"exec","command":["/bin/true"]}}' });
    expect([c.logLevel, c.limits.envelopeMaxBytes, c.executors]).toEqual(['warn', 2048, { estop: { kind: 'exec', command: ['/bin/true'], timeoutMs: 5000 } }]);
    expect(problemsOf(minimal, { ZTEDGE_EXECUTORS: '{move: mqtt}' })[0]).toMatch(/^ZTEDGE_EXECUTORS: must be a JSON object of executors by action id/);
    expect(problemsOf(minimal, { ZTEDGE_LOG_LEVEL: 'debug' })).toEqual(['logLevel: must be one of info, warn']);
  });
});

describe('dead options', () => {
  it('refuses limits.cacheEntries, in the file and in the environment, saying why', () => {
    const why = 'not supported: the agent decides every command anew and keeps no decision cache in the command path';
    expect(problemsOf(`${minimal}\nlimits: { cacheEntries: 100 }\n`)).toEqual([`limits.cacheEntries: ${why}`]);
    expect(problemsOf(minimal, { ZTEDGE_LIMITS_CACHE_ENTRIES: '100' })).toEqual([`ZTEDGE_LIMITS_CACHE_ENTRIES: ${why}`]);
  });

  it('refuses an executor kind that would run nothing', () => {
    expect(problemsOf(`${minimal}\n  stop: { kind: none }\n`)).toEqual(['executors.stop.kind: must be mqtt, http or exec (leave an action out to have no executor)']);
  });
});
