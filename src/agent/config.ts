// Agent configuration: read from a YAML or JSON file, overlaid with ZTEDGE_* environment
// variables, validated as a whole. Every problem is reported at once, with the option's name,
// before anything starts. The options themselves are described once, in config-options.ts.
import { parse as parseYaml } from 'yaml';
import { MIN_DEFAULT_RESERVE_BYTES, defaultReserveBytes } from '../audit/cap.js';
import { parseDurationMs } from '../duration.js';
import { ZtedgeError } from '../errors.js';
import {
  CONFIG_OPTIONS,
  type LogLevel,
  type OptionDescription,
  ID_PATTERN,
  REFUSED_OPTIONS,
  envName,
  fromEnvText,
  typeText,
} from './config-options.js';
import { TransportError } from '../transport/errors.js';
import { deviceTopics } from '../transport/topics.js';

export type Posture = 'trusted' | 'degraded' | 'untrusted';

export type ExecutorConfig =
  | { kind: 'mqtt'; timeoutMs: number }
  | { kind: 'http'; url: string; timeoutMs: number }
  | { kind: 'exec'; command: string[]; timeoutMs: number };

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
    /** The namespace MQTT 5 response topics must lie in (default `<topicPrefix>cmd/result/`). */
    replyTopicPrefix: string;
  };
  http: { enabled: boolean; host: string; port: number; adminTokenFile?: string };
  posture: Posture;
  /** Measured posture (src/attest/); when set, `posture` is not configured. */
  attestation?: AttestationConfig;
  bundleFile?: string;
  logLevel: LogLevel;
  executors: Record<string, ExecutorConfig>;
  limits: {
    envelopeMaxBytes: number;
    bundleMaxBytes: number;
    clockSkewMs: number;
    maxLifetimeMs: number;
    maxPendingApprovals: number;
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

export interface AttestationConfig {
  /** Directory of firmware profiles; default the profiles shipped with ztedge. */
  profiles?: string;
  /** Prefix under which the profile's device paths are found (default "/"). */
  measureRoot: string;
  /** TCTI of a TPM 2.0 (`device:/dev/tpmrm0`, `swtpm:host=H,port=P`); none: software-only. */
  tpm?: string;
  /** The PCR composites are extended into (16 or 23). */
  pcr: number;
  /** Re-measure at least this often; default the profile's interval. */
  intervalMs?: number;
  /** Challenges answered per minute. */
  challengesPerMinute: number;
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

export class ConfigError extends ZtedgeError<'CONFIG_INVALID'> {
  constructor(readonly problems: ConfigProblem[]) {
    super(
      'CONFIG_INVALID',
      `invalid configuration (${problems.length} problem${problems.length === 1 ? '' : 's'}):\n` +
        problems.map((p) => `  ${p.option}: ${p.message}`).join('\n'),
    );
  }
}

const MAX_CONFIG_BYTES = 256 * 1024;
const EXECUTOR_TIMEOUT_MS = 5000;
const BY_PATH = new Map(CONFIG_OPTIONS.map((o) => [o.path, o]));
const BY_ENV = new Map(CONFIG_OPTIONS.map((o) => [envName(o.path), o]));
/** Mappings that group options (`device`, `limits`, `audit`, `audit.sync`, …). */
const SECTIONS = new Set(CONFIG_OPTIONS.flatMap((o) => o.path.split('.').slice(0, -1).map((_, i, parts) => parts.slice(0, i + 1).join('.'))));

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
 * Overlays `ZTEDGE_*` variables, one per option (config-options.ts names them): the value as
 * the file would hold it, lists comma-separated, `ZTEDGE_EXECUTORS` a JSON object that replaces
 * the file's executors. An unknown ZTEDGE_ variable is a problem, not ignored silently.
 */
export function overlayEnv(raw: unknown, env: Record<string, string | undefined>): { value: unknown; problems: ConfigProblem[] } {
  const value = isRecord(raw) ? structuredClone(raw) : {};
  const problems: ConfigProblem[] = [];
  for (const [name, text] of Object.entries(env)) {
    if (!name.startsWith('ZTEDGE_') || text === undefined) continue;
    if (name === 'ZTEDGE_CONFIG') continue;
    const option = BY_ENV.get(name);
    if (option === undefined) {
      const refused = Object.keys(REFUSED_OPTIONS).find((path) => envName(path) === name);
      problems.push({ option: name, message: refused === undefined ? 'unknown environment option' : REFUSED_OPTIONS[refused]! });
      continue;
    }
    const parsed = fromEnvText(option, text);
    if ('problem' in parsed) problems.push({ option: name, message: parsed.problem });
    else setPath(value, option.path.split('.'), parsed.value);
  }
  return { value, problems };
}

/** The names of the ZTEDGE_* variables in `env` that set options. */
export function envOverrides(env: Record<string, string | undefined>): string[] {
  return Object.keys(env).filter((name) => BY_ENV.has(name) && env[name] !== undefined).sort();
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

/** Reads one described option's raw value; a problem is recorded and `undefined` returned. */
class Reader {
  readonly problems: ConfigProblem[] = [];

  problem(option: string, message: string): undefined {
    this.problems.push({ option, message });
    return undefined;
  }

  read(option: OptionDescription, raw: unknown): unknown {
    const { path, type } = option;
    if (raw === undefined || raw === null || raw === '') {
      if (option.required) return this.problem(path, 'is required');
      return option.default === undefined ? undefined : this.read({ ...option, required: false }, option.default);
    }
    switch (type.kind) {
      case 'string':
      case 'path':
        if (typeof raw !== 'string') return this.problem(path, 'must be a string');
        if (type.kind === 'string' && type.pattern !== undefined && !type.pattern.test(raw)) return this.problem(path, `must match ${type.pattern}`);
        return raw;
      case 'url':
        if (typeof raw !== 'string' || !new RegExp(`^(${type.schemes.join('|')})://[^\\s]+$`).test(raw)) return this.problem(path, `must be an ${typeText(type)}`);
        return raw;
      case 'paths':
        if (!Array.isArray(raw) || raw.some((v) => typeof v !== 'string' || v === '')) return this.problem(path, 'must be a list of non-empty strings');
        if (raw.length === 0 && option.required) return this.problem(path, 'at least one is required');
        return raw as string[];
      case 'integer': {
        const n = typeof raw === 'string' && /^\d+$/.test(raw) ? Number(raw) : raw;
        if (typeof n !== 'number' || !Number.isInteger(n) || n < type.min || n > type.max) return this.problem(path, `must be an integer from ${type.min} to ${type.max}`);
        return n;
      }
      case 'duration': {
        const ms = typeof raw === 'number' ? raw : typeof raw === 'string' ? parseDurationMs(raw) : undefined;
        if (ms === undefined || !Number.isInteger(ms) || ms < 0 || ms > type.maxMs) return this.problem(path, `must be a duration like "30s", "5m", "250ms" up to ${type.maxMs} ms`);
        return ms;
      }
      case 'boolean':
        if (raw === true || raw === 'true') return true;
        if (raw === false || raw === 'false') return false;
        return this.problem(path, 'must be true or false');
      case 'enum':
        if (typeof raw !== 'string' || !type.values.includes(raw)) return this.problem(path, `must be one of ${type.values.join(', ')}`);
        return raw;
      case 'executors':
        return this.executors(raw);
    }
  }

  /** Keys of a mapping that no option describes (or that are refused). */
  unknownKeys(raw: Record<string, unknown>, prefix: string): void {
    for (const [key, value] of Object.entries(raw)) {
      const path = prefix === '' ? key : `${prefix}.${key}`;
      if (REFUSED_OPTIONS[path] !== undefined) this.problem(path, REFUSED_OPTIONS[path]!);
      else if (SECTIONS.has(path)) {
        if (value === undefined || value === null) continue;
        if (!isRecord(value)) this.problem(path, 'must be a mapping');
        else this.unknownKeys(value, path);
      } else if (!BY_PATH.has(path)) this.problem(path, 'unknown option');
    }
  }

  private executors(raw: unknown): Record<string, ExecutorConfig> | undefined {
    if (!isRecord(raw)) return this.problem('executors', 'must be a mapping from action id to executor');
    const out: Record<string, ExecutorConfig> = {};
    for (const [action, spec] of Object.entries(raw)) {
      const name = `executors.${action}`;
      if (!/^[A-Za-z0-9_.:-]{1,128}$/.test(action)) {
        this.problem(name, 'action id may hold letters, digits and _ . : - only');
        continue;
      }
      if (!isRecord(spec)) {
        this.problem(name, 'must be a mapping {kind, url, command, timeout}');
        continue;
      }
      for (const key of Object.keys(spec)) if (!['kind', 'url', 'command', 'timeout'].includes(key)) this.problem(`${name}.${key}`, 'unknown option');
      const timeout = spec.timeout ?? `${EXECUTOR_TIMEOUT_MS}ms`;
      const timeoutMs = typeof timeout === 'string' ? parseDurationMs(timeout) : undefined;
      if (timeoutMs === undefined || timeoutMs < 1 || timeoutMs > 600_000) this.problem(`${name}.timeout`, 'must be a duration like "5s", up to 10m');
      const kind = spec.kind;
      if (kind === 'mqtt') out[action] = { kind, timeoutMs: timeoutMs ?? EXECUTOR_TIMEOUT_MS };
      else if (kind === 'http') {
        if (typeof spec.url !== 'string' || !/^https?:\/\/\S+$/.test(spec.url)) this.problem(`${name}.url`, 'must be an http:// or https:// URL');
        else out[action] = { kind, url: spec.url, timeoutMs: timeoutMs ?? EXECUTOR_TIMEOUT_MS };
      } else if (kind === 'exec') {
        const command = spec.command;
        if (!Array.isArray(command) || command.length === 0 || command.some((c) => typeof c !== 'string' || c === '')) {
          this.problem(`${name}.command`, 'must be a non-empty argv list (no shell)');
        } else out[action] = { kind, command: command as string[], timeoutMs: timeoutMs ?? EXECUTOR_TIMEOUT_MS };
      } else if (kind === undefined) this.problem(`${name}.kind`, 'is required');
      else this.problem(`${name}.kind`, 'must be mqtt, http or exec (leave an action out to have no executor)');
    }
    return out;
  }
}

function rawAt(raw: Record<string, unknown>, path: string): unknown {
  let node: unknown = raw;
  for (const key of path.split('.')) {
    if (!isRecord(node)) return undefined;
    node = node[key];
  }
  return node;
}

/** Validates a raw config tree (after the env overlay) into an AgentConfig, or throws ConfigError with every problem. */
export function validateConfig(raw: unknown, extraProblems: ConfigProblem[] = []): AgentConfig {
  const r = new Reader();
  r.problems.push(...extraProblems);
  const top = raw === undefined || raw === null ? {} : raw;
  if (!isRecord(top)) throw new ConfigError([...r.problems, { option: 'config', message: 'must be a mapping of options' }]);
  r.unknownKeys(top, '');
  const value = new Map<string, unknown>();
  for (const option of CONFIG_OPTIONS) {
    // A section given as something other than a mapping has been reported already.
    const section = option.path.includes('.') ? top[option.path.split('.')[0]!] : undefined;
    if (section !== undefined && section !== null && !isRecord(section)) continue;
    value.set(option.path, r.read(option, rawAt(top, option.path)));
  }
  const get = <T>(path: string) => value.get(path) as T;

  const rootKeys = get<string[] | undefined>('roots.keys') ?? [];
  const threshold = get<number | undefined>('roots.threshold') ?? 1;
  if (rootKeys.length > 0 && threshold > rootKeys.length) {
    r.problem('roots.threshold', `is ${threshold} but only ${rootKeys.length} root keys are configured`);
  }
  const cert = get<string | undefined>('broker.cert');
  const key = get<string | undefined>('broker.key');
  if ((cert === undefined) !== (key === undefined)) r.problem(cert === undefined ? 'broker.cert' : 'broker.key', 'broker.cert and broker.key go together');
  const deviceId = get<string | undefined>('device.id') ?? '';
  const site = get<string | undefined>('device.site') ?? '';
  const topicPrefix = get<string | undefined>('broker.topicPrefix') ?? `ztedge/${site}/${deviceId}/`;
  if (/[+#]/.test(topicPrefix) || !topicPrefix.endsWith('/')) r.problem('broker.topicPrefix', 'must end with "/" and contain no MQTT wildcards');
  const replyTopicPrefix = get<string | undefined>('broker.replyTopicPrefix') ?? `${topicPrefix}cmd/result/`;
  if (ID_PATTERN.test(deviceId) && ID_PATTERN.test(site)) {
    try {
      deviceTopics({ site, device: deviceId, prefix: topicPrefix, replyPrefix: replyTopicPrefix });
    } catch (err) {
      if (!(err instanceof TransportError)) throw err;
      if (err.code === 'TOPIC_REPLY_PREFIX_INVALID') r.problem('broker.replyTopicPrefix', err.message);
    }
  }
  const attesting = isRecord(top.attestation);
  if (attesting && top.posture !== undefined) r.problem('posture', 'is measured when attestation is configured; remove posture');
  const pcr = get<number>('attestation.pcr');
  if (pcr !== undefined && pcr !== 16 && pcr !== 23) r.problem('attestation.pcr', 'must be 16 or 23 (the PCRs an application may reset)');
  const attestIntervalMs = get<number | undefined>('attestation.interval');
  if (attestIntervalMs !== undefined && attestIntervalMs < 1000) r.problem('attestation.interval', 'must be at least 1s');
  const capBytes = get<number>('audit.capBytes');
  const reserveBytes = get<number | undefined>('audit.reserveBytes');
  // A reserve as large as the cap leaves nothing for commands: every one would be denied AUDIT_FULL
  // from the start, which is not what a cap says.
  if (reserveBytes !== undefined && capBytes !== undefined && reserveBytes >= capBytes) r.problem('audit.reserveBytes', `must be less than audit.capBytes (${capBytes}): the rest of the cap is what commands are recorded in`);
  else if (reserveBytes === undefined && capBytes !== undefined && defaultReserveBytes(capBytes) >= capBytes) {
    r.problem('audit.capBytes', `must exceed the default reserve of ${MIN_DEFAULT_RESERVE_BYTES} bytes (else every command is denied AUDIT_FULL), or set audit.reserveBytes below it`);
  }
  const checkpointIntervalMs = get<number>('audit.checkpointInterval');
  if (checkpointIntervalMs === 0) r.problem('audit.checkpointInterval', 'must be longer than 0');
  const sync = isRecord(rawAt(top, 'audit.sync')) ? auditSyncOf(r, get, get<string | undefined>('broker.url') ?? null) : undefined;

  if (r.problems.length > 0) throw new ConfigError(r.problems);
  return {
    device: { id: deviceId, site, profile: get('device.profile') },
    stateDir: get('stateDir'),
    deviceKey: get('deviceKey'),
    roots: { keys: rootKeys, threshold },
    broker: {
      url: get<string | undefined>('broker.url') ?? null,
      username: get('broker.username'),
      passwordFile: get('broker.passwordFile'),
      ca: get('broker.ca'),
      cert,
      key,
      clientId: get('broker.clientId'),
      topicPrefix,
      replyTopicPrefix,
    },
    http: { enabled: get('http.enabled'), host: get('http.host'), port: get('http.port'), adminTokenFile: get('http.adminTokenFile') },
    posture: get('posture'),
    ...(attesting
      ? {
          attestation: {
            ...(get('attestation.profiles') === undefined ? {} : { profiles: get<string>('attestation.profiles') }),
            measureRoot: get('attestation.measureRoot'),
            ...(get('attestation.tpm') === undefined ? {} : { tpm: get<string>('attestation.tpm') }),
            pcr,
            ...(attestIntervalMs === undefined ? {} : { intervalMs: attestIntervalMs }),
            challengesPerMinute: get('attestation.challengesPerMinute'),
          },
        }
      : {}),
    bundleFile: get('bundleFile'),
    logLevel: get('logLevel'),
    executors: get<Record<string, ExecutorConfig> | undefined>('executors') ?? {},
    limits: {
      envelopeMaxBytes: get('limits.envelopeMaxBytes'),
      bundleMaxBytes: get('limits.bundleMaxBytes'),
      clockSkewMs: get('limits.clockSkew'),
      maxLifetimeMs: get('limits.maxLifetime'),
      maxPendingApprovals: get('limits.maxPendingApprovals'),
      outboxMaxMessages: get('limits.outboxMaxMessages'),
    },
    audit: {
      capBytes,
      ...(reserveBytes === undefined ? {} : { reserveBytes }),
      retentionMs: get('audit.retention'),
      checkpointEvery: get('audit.checkpointEvery'),
      checkpointIntervalMs,
      ...(sync === undefined ? {} : { sync }),
    },
  };
}

/** The upstream sync's options, checked together (which transport needs which). */
function auditSyncOf(r: Reader, get: <T>(path: string) => T, brokerUrl: string | null): AuditSyncConfig {
  const transport = get<'https' | 'mqtt'>('audit.sync.transport');
  const url = get<string | undefined>('audit.sync.url');
  const ca = get<string | undefined>('audit.sync.ca');
  const cert = get<string | undefined>('audit.sync.cert');
  const key = get<string | undefined>('audit.sync.key');
  const collectorKey = get<string | undefined>('audit.sync.collectorKey');
  if (transport === 'https') {
    if (url === undefined) r.problem('audit.sync.url', 'is required for the https transport (the collector, https://host:port)');
    else if (url.startsWith('http://') && !/^http:\/\/(127\.\d+\.\d+\.\d+|localhost|\[::1\])(:\d+)?(\/\S*)?$/.test(url)) {
      r.problem('audit.sync.url', 'must be an https:// URL (http:// only on a loopback host)');
    }
  } else if (transport === 'mqtt') {
    if (url !== undefined) r.problem('audit.sync.url', 'is for the https transport; mqtt sends over broker.url');
    if (brokerUrl === null) r.problem('audit.sync.transport', 'mqtt needs broker.url');
    if ((ca ?? cert ?? key) !== undefined) r.problem('audit.sync.ca', 'TLS files of the mqtt transport are broker.ca, broker.cert and broker.key');
  }
  if (collectorKey === undefined) r.problem('audit.sync.collectorKey', 'is required: only acknowledgements the collector signed may move the synced watermark');
  if ((cert === undefined) !== (key === undefined)) r.problem(cert === undefined ? 'audit.sync.cert' : 'audit.sync.key', 'audit.sync.cert and audit.sync.key go together');
  const timeoutMs = get<number>('audit.sync.timeout');
  const intervalMs = get<number>('audit.sync.interval');
  const backoffMaxMs = get<number>('audit.sync.backoffMax');
  for (const [option, ms, min] of [['timeout', timeoutMs, 100], ['interval', intervalMs, 10], ['backoffMax', backoffMaxMs, 1000]] as const) {
    if (ms !== undefined && ms < min) r.problem(`audit.sync.${option}`, `must be at least ${min} ms`);
  }
  return {
    transport: transport === 'mqtt' ? 'mqtt' : 'https',
    ...(url === undefined ? {} : { url }),
    collectorKey: collectorKey ?? '',
    ...(ca === undefined ? {} : { ca }),
    ...(cert === undefined ? {} : { cert }),
    ...(key === undefined ? {} : { key }),
    batchRecords: get('audit.sync.batchRecords'),
    batchBytes: get('audit.sync.batchBytes'),
    inFlight: get('audit.sync.inFlight'),
    intervalMs,
    timeoutMs,
    backoffMaxMs,
  };
}

/** Reads, overlays and validates: the one entry point the agent uses. */
export function loadConfig(text: string | undefined, env: Record<string, string | undefined>, source = 'config'): AgentConfig {
  const raw = text === undefined ? {} : parseConfigText(text, source);
  const { value, problems } = overlayEnv(raw, env);
  return validateConfig(value, problems);
}
