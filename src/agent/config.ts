// Agent configuration: read from a YAML or JSON file, overlaid with ZTEDGE_* environment
// variables, validated as a whole. Every problem is reported at once, with the option's name,
// before anything starts.
import { parse as parseYaml } from 'yaml';
import { parseDurationMs } from '../duration.js';

export type Posture = 'trusted' | 'degraded' | 'untrusted';

export type ExecutorConfig =
  | { kind: 'mqtt'; timeoutMs: number }
  | { kind: 'http'; url: string; timeoutMs: number }
  | { kind: 'exec'; command: string[]; timeoutMs: number }
  | { kind: 'none' };

export interface AgentConfig {
  device: { id: string; site: string; profile: string };
  stateDir: string;
  deviceKey: string;
  roots: { keys: string[]; threshold: number };
  broker: {
    url: string | null;
    username?: string;
    passwordFile?: string;
    ca?: string;
    cert?: string;
    key?: string;
    clientId?: string;
    topicPrefix: string;
  };
  http: { enabled: boolean; host: string; port: number; adminTokenFile?: string };
  posture: Posture;
  bundleFile?: string;
  executors: Record<string, ExecutorConfig>;
  limits: {
    envelopeMaxBytes: number;
    bundleMaxBytes: number;
    clockSkewMs: number;
    maxLifetimeMs: number;
    maxPendingApprovals: number;
    cacheEntries: number;
    outboxMaxMessages: number;
  };
  audit: {
    /** Unsynced audit bytes at which the agent fails closed (AUDIT_FULL). */
    capBytes: number;
    /** Part of the cap kept for AUDIT_FULL denials and lifecycle records; undefined: 1 % (≥ 256 KiB). */
    reserveBytes?: number;
    /** Synced records are pruned after this long. */
    retentionMs: number;
    /** A signed checkpoint after this many records… */
    checkpointEvery: number;
    /** …or this long after the first record it would cover. */
    checkpointIntervalMs: number;
    /** Upstream sync to a collector; absent: the log is kept (and capped) locally only. */
    sync?: AuditSyncConfig;
  };
}

export interface AuditSyncConfig {
  /** `https` (default): POST to `url`; `mqtt`: publish on the broker's `<prefix>audit`. */
  transport: 'https' | 'mqtt';
  url?: string;
  /** The collector's public key (PEM): only acknowledgements it signed move the watermark. */
  collectorKey: string;
  /** HTTPS: CA of the collector's certificate; client certificate and key for mutual TLS. */
  ca?: string;
  cert?: string;
  key?: string;
  batchRecords: number;
  batchBytes: number;
  inFlight: number;
  intervalMs: number;
  timeoutMs: number;
  backoffMaxMs: number;
}

export interface ConfigProblem {
  /** Dotted option name, e.g. `broker.url`. */
  option: string;
  message: string;
}

export class ConfigError extends Error {
  readonly code = 'CONFIG_INVALID';
  constructor(readonly problems: ConfigProblem[]) {
    super(
      `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  ${p.option}: ${p.message}`).join('\n'),
    );
    this.name = 'ConfigError';
  }
}

const MAX_CONFIG_BYTES = 256 * 1024;
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const POSTURES: readonly Posture[] = ['trusted', 'degraded', 'untrusted'];

/** Parses config text (YAML is a superset of JSON, so one parser reads both). */
export function parseConfigText(text: string, source = 'config'): unknown {
  if (Buffer.byteLength(text) > MAX_CONFIG_BYTES) {
    throw new ConfigError([{ option: source, message: `larger than ${MAX_CONFIG_BYTES} bytes` }]);
  }
  try {
    // uniqueKeys rejects duplicate keys, which would otherwise silently override each other.
    return parseYaml(text, { uniqueKeys: true, maxAliasCount: 100 }) ?? {};
  } catch (err) {
    throw new ConfigError([{ option: source, message: `not valid YAML/JSON: ${(err as Error).message}` }]);
  }
}

/**
 * Overlays `ZTEDGE_*` variables: `ZTEDGE_BROKER_URL` sets `broker.url`,
 * `ZTEDGE_ROOTS_KEYS` (comma separated) sets `roots.keys`, `ZTEDGE_DEVICE_ID` sets `device.id`.
 * Only known options are mapped; an unknown ZTEDGE_ variable is a problem, not ignored silently.
 */
export function overlayEnv(raw: unknown, env: Record<string, string | undefined>): { value: unknown; problems: ConfigProblem[] } {
  const value = isRecord(raw) ? structuredClone(raw) : {};
  const problems: ConfigProblem[] = [];
  const byEnv = new Map(ENV_OPTIONS.map((o) => [envName(o.path), o]));
  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith('ZTEDGE_') || text === undefined) continue;
    if (name === 'ZTEDGE_CONFIG') continue;
    const option = byEnv.get(name);
    if (option === undefined) {
      problems.push({ option: name, message: 'unknown environment option' });
      continue;
    }
    setPath(value, option.path, option.list ? text.split(',').map((s) => s.trim()).filter(Boolean) : text);
  }
  return { value, problems };
}

const ENV_OPTIONS: Array<{ path: string[]; list?: boolean }> = [
  { path: ['device', 'id'] },
  { path: ['device', 'site'] },
  { path: ['device', 'profile'] },
  { path: ['stateDir'] },
  { path: ['deviceKey'] },
  { path: ['roots', 'keys'], list: true },
  { path: ['roots', 'threshold'] },
  { path: ['broker', 'url'] },
  { path: ['broker', 'username'] },
  { path: ['broker', 'passwordFile'] },
  { path: ['broker', 'ca'] },
  { path: ['broker', 'cert'] },
  { path: ['broker', 'key'] },
  { path: ['broker', 'clientId'] },
  { path: ['broker', 'topicPrefix'] },
  { path: ['http', 'enabled'] },
  { path: ['http', 'host'] },
  { path: ['http', 'port'] },
  { path: ['http', 'adminTokenFile'] },
  { path: ['posture'] },
  { path: ['bundleFile'] },
  { path: ['audit', 'capBytes'] },
  { path: ['audit', 'reserveBytes'] },
  { path: ['audit', 'retention'] },
  { path: ['audit', 'checkpointEvery'] },
  { path: ['audit', 'checkpointInterval'] },
  { path: ['audit', 'sync', 'transport'] },
  { path: ['audit', 'sync', 'url'] },
  { path: ['audit', 'sync', 'collectorKey'] },
  { path: ['audit', 'sync', 'ca'] },
  { path: ['audit', 'sync', 'cert'] },
  { path: ['audit', 'sync', 'key'] },
  { path: ['audit', 'sync', 'batchRecords'] },
  { path: ['audit', 'sync', 'batchBytes'] },
  { path: ['audit', 'sync', 'inFlight'] },
  { path: ['audit', 'sync', 'interval'] },
  { path: ['audit', 'sync', 'timeout'] },
  { path: ['audit', 'sync', 'backoffMax'] },
];

function envName(path: string[]): string {
  return 'ZTEDGE_' + path.map((p) => p.replace(/([a-z])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

function setPath(target: Record<string, unknown>, path: string[], value: unknown): void {
  let node = target;
  for (const key of path.slice(0, -1)) {
    if (!isRecord(node[key])) node[key] = {};
    node = node[key] as Record<string, unknown>;
  }
  node[path[path.length - 1]!] = value;
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Collects problems while reading a raw config tree; unknown keys are problems too. */
class Reader {
  readonly problems: ConfigProblem[] = [];

  section(raw: unknown, name: string, known: readonly string[]): Record<string, unknown> {
    if (raw === undefined || raw === null) return {};
    if (!isRecord(raw)) {
      this.problems.push({ option: name, message: 'must be a mapping' });
      return {};
    }
    for (const key of Object.keys(raw)) {
      if (!known.includes(key)) this.problems.push({ option: join(name, key), message: 'unknown option' });
    }
    return raw;
  }

  string(raw: Record<string, unknown>, section: string, key: string, opts: { required?: boolean; pattern?: RegExp; fallback?: string } = {}): string | undefined {
    const value = raw[key];
    const option = join(section, key);
    if (value === undefined || value === null || value === '') {
      if (opts.required && opts.fallback === undefined) this.problems.push({ option, message: 'is required' });
      return opts.fallback;
    }
    if (typeof value !== 'string') {
      this.problems.push({ option, message: 'must be a string' });
      return opts.fallback;
    }
    if (opts.pattern && !opts.pattern.test(value)) {
      this.problems.push({ option, message: `must match ${opts.pattern}` });
    }
    return value;
  }

  integer(raw: Record<string, unknown>, section: string, key: string, fallback: number, min: number, max: number): number {
    const value = raw[key];
    const option = join(section, key);
    if (value === undefined || value === null) return fallback;
    const n = typeof value === 'string' && /^\d+$/.test(value) ? Number(value) : value;
    if (typeof n !== 'number' || !Number.isInteger(n) || n < min || n > max) {
      this.problems.push({ option, message: `must be an integer from ${min} to ${max}` });
      return fallback;
    }
    return n;
  }

  duration(raw: Record<string, unknown>, section: string, key: string, fallbackMs: number, maxMs: number): number {
    const value = raw[key];
    const option = join(section, key);
    if (value === undefined || value === null) return fallbackMs;
    const ms = typeof value === 'number' ? value : typeof value === 'string' ? parseDurationMs(value) : undefined;
    if (ms === undefined || !Number.isInteger(ms) || ms < 0 || ms > maxMs) {
      this.problems.push({ option, message: `must be a duration like "30s", "5m", "250ms" up to ${maxMs} ms` });
      return fallbackMs;
    }
    return ms;
  }

  boolean(raw: Record<string, unknown>, section: string, key: string, fallback: boolean): boolean {
    const value = raw[key];
    if (value === undefined || value === null) return fallback;
    if (value === true || value === 'true') return true;
    if (value === false || value === 'false') return false;
    this.problems.push({ option: join(section, key), message: 'must be true or false' });
    return fallback;
  }

  stringList(raw: Record<string, unknown>, section: string, key: string): string[] {
    const value = raw[key];
    const option = join(section, key);
    if (value === undefined || value === null) return [];
    if (!Array.isArray(value) || value.some((v) => typeof v !== 'string' || v === '')) {
      this.problems.push({ option, message: 'must be a list of non-empty strings' });
      return [];
    }
    return value as string[];
  }
}

function join(section: string, key: string): string {
  return section === '' ? key : `${section}.${key}`;
}

const TOP_KEYS = ['device', 'stateDir', 'deviceKey', 'roots', 'broker', 'http', 'posture', 'bundleFile', 'executors', 'limits', 'audit'] as const;

/** Validates a raw config tree (after the env overlay) into an AgentConfig, or throws ConfigError with every problem. */
export function validateConfig(raw: unknown, extraProblems: ConfigProblem[] = []): AgentConfig {
  const r = new Reader();
  r.problems.push(...extraProblems);
  const top = r.section(raw, '', TOP_KEYS);

  const device = r.section(top.device, 'device', ['id', 'site', 'profile']);
  const deviceId = r.string(device, 'device', 'id', { required: true, pattern: ID_PATTERN }) ?? '';
  const site = r.string(device, 'device', 'site', { required: true, pattern: ID_PATTERN }) ?? '';
  const profile = r.string(device, 'device', 'profile', { fallback: 'default', pattern: ID_PATTERN }) ?? 'default';

  const stateDir = r.string(top, '', 'stateDir', { required: true }) ?? '';
  const deviceKey = r.string(top, '', 'deviceKey', { required: true }) ?? '';

  const roots = r.section(top.roots, 'roots', ['keys', 'threshold']);
  const rootKeys = r.stringList(roots, 'roots', 'keys');
  if (rootKeys.length === 0) r.problems.push({ option: 'roots.keys', message: 'at least one root public key is required' });
  const threshold = r.integer(roots, 'roots', 'threshold', 1, 1, 16);
  if (rootKeys.length > 0 && threshold > rootKeys.length) {
    r.problems.push({ option: 'roots.threshold', message: `is ${threshold} but only ${rootKeys.length} root keys are configured` });
  }

  const broker = r.section(top.broker, 'broker', ['url', 'username', 'passwordFile', 'ca', 'cert', 'key', 'clientId', 'topicPrefix']);
  const brokerUrl = r.string(broker, 'broker', 'url') ?? null;
  if (brokerUrl !== null && !/^mqtts?:\/\/[^\s]+$/.test(brokerUrl)) {
    r.problems.push({ option: 'broker.url', message: 'must be an mqtt:// or mqtts:// URL' });
  }
  const topicPrefix = r.string(broker, 'broker', 'topicPrefix') ?? `ztedge/${site}/${deviceId}/`;
  if (/[+#]/.test(topicPrefix) || !topicPrefix.endsWith('/')) {
    r.problems.push({ option: 'broker.topicPrefix', message: 'must end with "/" and contain no MQTT wildcards' });
  }
  const cert = r.string(broker, 'broker', 'cert');
  const key = r.string(broker, 'broker', 'key');
  if ((cert === undefined) !== (key === undefined)) {
    r.problems.push({ option: cert === undefined ? 'broker.cert' : 'broker.key', message: 'broker.cert and broker.key go together' });
  }

  const http = r.section(top.http, 'http', ['enabled', 'host', 'port', 'adminTokenFile']);
  const httpHost = r.string(http, 'http', 'host', { fallback: '127.0.0.1' }) ?? '127.0.0.1';

  const postureText = r.string(top, '', 'posture', { fallback: 'degraded' }) ?? 'degraded';
  if (!POSTURES.includes(postureText as Posture)) {
    r.problems.push({ option: 'posture', message: `must be one of ${POSTURES.join(', ')}` });
  }

  const executors = readExecutors(r, top.executors);

  const limits = r.section(top.limits, 'limits', [
    'envelopeMaxBytes', 'bundleMaxBytes', 'clockSkew', 'maxLifetime', 'maxPendingApprovals', 'cacheEntries', 'outboxMaxMessages',
  ]);

  const audit = r.section(top.audit, 'audit', ['capBytes', 'reserveBytes', 'retention', 'checkpointEvery', 'checkpointInterval', 'sync']);
  const capBytes = r.integer(audit, 'audit', 'capBytes', 1024 * 1024 * 1024, 64 * 1024, Number.MAX_SAFE_INTEGER);
  const reserveBytes = audit.reserveBytes === undefined || audit.reserveBytes === null ? undefined : r.integer(audit, 'audit', 'reserveBytes', 0, 0, capBytes);
  const checkpointIntervalMs = r.duration(audit, 'audit', 'checkpointInterval', 60_000, 86_400_000);
  if (checkpointIntervalMs === 0) r.problems.push({ option: 'audit.checkpointInterval', message: 'must be longer than 0' });

  const sync = readAuditSync(r, audit.sync, brokerUrl);

  const config: AgentConfig = {
    device: { id: deviceId, site, profile },
    stateDir,
    deviceKey,
    roots: { keys: rootKeys, threshold },
    broker: {
      url: brokerUrl,
      username: r.string(broker, 'broker', 'username'),
      passwordFile: r.string(broker, 'broker', 'passwordFile'),
      ca: r.string(broker, 'broker', 'ca'),
      cert,
      key,
      clientId: r.string(broker, 'broker', 'clientId'),
      topicPrefix,
    },
    http: {
      enabled: r.boolean(http, 'http', 'enabled', true),
      host: httpHost,
      port: r.integer(http, 'http', 'port', 8181, 0, 65535),
      adminTokenFile: r.string(http, 'http', 'adminTokenFile'),
    },
    posture: postureText as Posture,
    bundleFile: r.string(top, '', 'bundleFile'),
    executors,
    limits: {
      envelopeMaxBytes: r.integer(limits, 'limits', 'envelopeMaxBytes', 64 * 1024, 256, 16 * 1024 * 1024),
      bundleMaxBytes: r.integer(limits, 'limits', 'bundleMaxBytes', 16 * 1024 * 1024, 1024, 256 * 1024 * 1024),
      clockSkewMs: r.duration(limits, 'limits', 'clockSkew', 30_000, 3_600_000),
      maxLifetimeMs: r.duration(limits, 'limits', 'maxLifetime', 3_600_000, 7 * 86_400_000),
      maxPendingApprovals: r.integer(limits, 'limits', 'maxPendingApprovals', 1000, 1, 1_000_000),
      cacheEntries: r.integer(limits, 'limits', 'cacheEntries', 10_000, 0, 10_000_000),
      outboxMaxMessages: r.integer(limits, 'limits', 'outboxMaxMessages', 100_000, 100, 10_000_000),
    },
    audit: {
      capBytes,
      ...(reserveBytes === undefined ? {} : { reserveBytes }),
      retentionMs: r.duration(audit, 'audit', 'retention', 7 * 86_400_000, 3650 * 86_400_000),
      checkpointEvery: r.integer(audit, 'audit', 'checkpointEvery', 1000, 1, 1_000_000),
      checkpointIntervalMs,
      ...(sync === undefined ? {} : { sync }),
    },
  };
  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return config;
}

function readAuditSync(r: Reader, raw: unknown, brokerUrl: string | null): AuditSyncConfig | undefined {
  const name = 'audit.sync';
  const s = r.section(raw, name, ['transport', 'url', 'collectorKey', 'ca', 'cert', 'key', 'batchRecords', 'batchBytes', 'inFlight', 'interval', 'timeout', 'backoffMax']);
  if (Object.keys(s).length === 0) return undefined;
  const transport = r.string(s, name, 'transport', { fallback: 'https' });
  const url = r.string(s, name, 'url');
  if (transport === 'https') {
    if (url === undefined) r.problems.push({ option: 'audit.sync.url', message: 'is required for the https transport (the collector, https://host:port)' });
    else if (!/^https:\/\/[^\s]+$/.test(url) && !/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(\/[^\s]*)?$/.test(url)) {
      r.problems.push({ option: 'audit.sync.url', message: 'must be an https:// URL (http:// only on a loopback host)' });
    }
  } else if (transport === 'mqtt') {
    if (url !== undefined) r.problems.push({ option: 'audit.sync.url', message: 'is for the https transport; mqtt sends over broker.url' });
    if (brokerUrl === null) r.problems.push({ option: 'audit.sync.transport', message: 'mqtt needs broker.url' });
  } else r.problems.push({ option: 'audit.sync.transport', message: 'must be https or mqtt' });
  const ca = r.string(s, name, 'ca');
  const cert = r.string(s, name, 'cert');
  const key = r.string(s, name, 'key');
  if ((cert === undefined) !== (key === undefined)) r.problems.push({ option: cert === undefined ? 'audit.sync.cert' : 'audit.sync.key', message: 'audit.sync.cert and audit.sync.key go together' });
  if (transport === 'mqtt' && (ca ?? cert ?? key) !== undefined) r.problems.push({ option: 'audit.sync.ca', message: 'TLS files of the mqtt transport are broker.ca, broker.cert and broker.key' });
  const timeoutMs = r.duration(s, name, 'timeout', 30_000, 600_000);
  const intervalMs = r.duration(s, name, 'interval', 5_000, 3_600_000);
  const backoffMaxMs = r.duration(s, name, 'backoffMax', 300_000, 86_400_000);
  for (const [option, ms, min] of [['timeout', timeoutMs, 100], ['interval', intervalMs, 10], ['backoffMax', backoffMaxMs, 1000]] as const) {
    if (ms < min) r.problems.push({ option: `audit.sync.${option}`, message: `must be at least ${min} ms` });
  }
  return {
    transport: transport === 'mqtt' ? 'mqtt' : 'https',
    ...(url === undefined ? {} : { url }),
    collectorKey: r.string(s, name, 'collectorKey', { required: true }) ?? '',
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    batchRecords: r.integer(s, name, 'batchRecords', 5000, 1, 100_000),
    batchBytes: r.integer(s, name, 'batchBytes', 4 * 1024 * 1024, 64 * 1024, 64 * 1024 * 1024),
    inFlight: r.integer(s, name, 'inFlight', 2, 1, 16),
    intervalMs,
    timeoutMs,
    backoffMaxMs,
  };
}

function readExecutors(r: Reader, raw: unknown): Record<string, ExecutorConfig> {
  const out: Record<string, ExecutorConfig> = {};
  if (raw === undefined || raw === null) return out;
  if (!isRecord(raw)) {
    r.problems.push({ option: 'executors', message: 'must be a mapping from action id to executor' });
    return out;
  }
  for (const [action, spec] of Object.entries(raw)) {
    const name = `executors.${action}`;
    if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(action)) {
      r.problems.push({ option: name, message: 'action id may hold letters, digits and _ . : - only' });
      continue;
    }
    const s = r.section(spec, name, ['kind', 'url', 'command', 'timeout']);
    const kind = r.string(s, name, 'kind', { required: true });
    const timeoutMs = r.duration(s, name, 'timeout', 5000, 600_000);
    if (kind === 'mqtt') out[action] = { kind, timeoutMs };
    else if (kind === 'http') {
      const url = r.string(s, name, 'url', { required: true }) ?? '';
      if (url !== '' && !/^https?:\/\//.test(url)) r.problems.push({ option: `${name}.url`, message: 'must be an http:// or https:// URL' });
      out[action] = { kind, url, timeoutMs };
    } else if (kind === 'exec') {
      const command = r.stringList(s, name, 'command');
      if (command.length === 0) r.problems.push({ option: `${name}.command`, message: 'must be a non-empty argv list (no shell)' });
      out[action] = { kind, command, timeoutMs };
    } else if (kind === 'none') out[action] = { kind };
    else if (kind !== undefined) r.problems.push({ option: `${name}.kind`, message: 'must be mqtt, http, exec or none' });
  }
  return out;
}

/** Reads, overlays and validates: the one entry point the agent uses. */
export function loadConfig(text: string | undefined, env: Record<string, string | undefined>, source = 'config'): AgentConfig {
  const raw = text === undefined ? {} : parseConfigText(text, source);
  const { value, problems } = overlayEnv(raw, env);
  return validateConfig(value, problems);
}
