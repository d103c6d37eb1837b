// The agent's configuration, described once: every option's path, type, default, bounds,
// environment variable and meaning. Loading (config.ts), the ZTEDGE_* overlay, `ztedge config
// example` and the README's reference table are all derived from this list, so an option cannot
// be documented but not read, or read but not documented.
export type OptionType =
  | { kind: 'string'; pattern?: RegExp; patternText?: string }
  | { kind: 'path' }
  | { kind: 'paths' }
  | { kind: 'url'; schemes: readonly string[] }
  | { kind: 'integer'; min: number; max: number }
  | { kind: 'duration'; maxMs: number }
  | { kind: 'boolean' }
  | { kind: 'enum'; values: readonly string[] }
  | { kind: 'executors' };

export interface OptionDescription {
  /** Dotted path in the file, e.g. `limits.envelopeMaxBytes`. */
  readonly path: string;
  readonly type: OptionType;
  /** Must be given (in the file or the environment). */
  readonly required?: boolean;
  /** The value used when the option is left out (as written in the file). */
  readonly default?: string | number | boolean;
  /** A default that depends on other options, in words. */
  readonly defaultText?: string;
  /** The value `ztedge config example` shows (YAML text). */
  readonly example?: string;
  readonly doc: string;
}

export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const ID = { kind: 'string', pattern: ID_PATTERN, patternText: 'letters, digits, . _ -; at most 64' } as const;

const TCTI_PATTERN = /^(device:\/dev\/tpm(rm)?\d{1,3}|(swtpm|mssim):host=[A-Za-z0-9.:-]{1,253},port=\d{1,5})$/;

export const LOG_LEVELS = ['info', 'warn'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export const CONFIG_OPTIONS: readonly OptionDescription[] = [
  { path: 'device.id', type: ID, required: true, example: 'arm-1', doc: 'This device: the audience of commands and the <device> of its MQTT topics' },
  { path: 'device.site', type: ID, required: true, example: 'plant-north', doc: 'The site the device belongs to (bundle scope, MQTT topics)' },
  { path: 'device.profile', type: ID, default: 'default', doc: 'Device class (bundle scope, firmware profile)' },
  { path: 'stateDir', type: { kind: 'path' }, required: true, example: './state', doc: 'Directory of the agent\'s state: audit log, replay guard, bundles (0700, one agent at a time)' },
  { path: 'deviceKey', type: { kind: 'path' }, required: true, example: 'device.key', doc: 'Private key that signs results (PKCS#8 PEM, mode 0600)' },
  { path: 'roots.keys', type: { kind: 'paths' }, required: true, example: '[root-a.pub, root-b.pub]', doc: 'Root public keys that sign policy bundles and rollback instructions' },
  { path: 'roots.threshold', type: { kind: 'integer', min: 1, max: 16 }, default: 1, example: '2', doc: 'Distinct root signatures a bundle needs (k of n; at most the number of keys)' },
  { path: 'broker.url', type: { kind: 'url', schemes: ['mqtt', 'mqtts'] }, defaultText: 'none: no broker', example: 'mqtt://127.0.0.1:1883', doc: 'MQTT broker; without it the agent serves the local API only' },
  { path: 'broker.username', type: { kind: 'string' }, doc: 'MQTT user name' },
  { path: 'broker.passwordFile', type: { kind: 'path' }, doc: 'File holding the MQTT password (needs broker.username)' },
  { path: 'broker.ca', type: { kind: 'path' }, doc: 'CA certificate (PEM) for mqtts://' },
  { path: 'broker.cert', type: { kind: 'path' }, doc: 'Client certificate (PEM) for mqtts://; with broker.key' },
  { path: 'broker.key', type: { kind: 'path' }, doc: 'Client private key (PEM) for mqtts://; with broker.cert' },
  { path: 'broker.clientId', type: { kind: 'string' }, defaultText: 'ztedge-<site>-<device>', doc: 'MQTT client id. With an executor of kind mqtt the agent opens a second connection, <clientId>-exec, for exec/<action> and its acks' },
  { path: 'broker.topicPrefix', type: { kind: 'string' }, defaultText: 'ztedge/<site>/<device>/', doc: 'Prefix of the device topics; ends with /, no wildcards' },
  {
    path: 'broker.replyTopicPrefix',
    type: { kind: 'string' },
    defaultText: '<topicPrefix>cmd/result/',
    doc: 'MQTT 5 response topics a sender may name must start with this; it may not overlap the device\'s control topics (cmd, approve, bundle, status, attest, exec). Others are refused and audited',
  },
  { path: 'http.enabled', type: { kind: 'boolean' }, default: true, doc: 'Serve the local HTTP API' },
  { path: 'http.host', type: { kind: 'string' }, default: '127.0.0.1', doc: 'Address of the local API (loopback unless you mean otherwise)' },
  { path: 'http.port', type: { kind: 'integer', min: 0, max: 65535 }, default: 8181, doc: 'Port of the local API (0: any free port)' },
  { path: 'http.adminTokenFile', type: { kind: 'path' }, defaultText: 'none: admin endpoints disabled', doc: 'File (mode 0600) holding the token that admin endpoints (GET /v1/audit, GET /v1/approvals) require as Authorization: Bearer' },
  { path: 'posture', type: { kind: 'enum', values: ['trusted', 'degraded', 'untrusted'] }, default: 'degraded', doc: 'Device posture given to policies as context.posture until attestation reports one' },
  { path: 'attestation.profiles', type: { kind: 'path' }, defaultText: 'the profiles shipped with ztedge', doc: 'Directory of firmware profiles (device.profile names one); setting any attestation option measures posture instead of configuring it' },
  { path: 'attestation.measureRoot', type: { kind: 'path' }, default: '/', doc: 'Prefix under which the profile\'s device paths are measured (tests, containers)' },
  { path: 'attestation.tpm', type: { kind: 'string', pattern: TCTI_PATTERN, patternText: 'device:/dev/tpmrm0 or swtpm:host=H,port=P' }, defaultText: 'none: software-only evidence', doc: 'TCTI of a TPM 2.0 that composites are extended into and that quotes evidence' },
  { path: 'attestation.pcr', type: { kind: 'integer', min: 16, max: 23 }, default: 23, doc: 'PCR the composite is extended into (16 or 23: the resettable ones)' },
  { path: 'attestation.interval', type: { kind: 'duration', maxMs: 86_400_000 }, defaultText: "the profile's interval", doc: 'Re-measure at least this often (file changes are noticed sooner); at least 1s' },
  { path: 'attestation.challengesPerMinute', type: { kind: 'integer', min: 1, max: 600 }, default: 10, doc: 'Attestation challenges answered per minute (MQTT and POST /v1/attest together)' },
  { path: 'bundleFile', type: { kind: 'path' }, doc: 'A signed bundle file to watch and activate (besides the MQTT bundle topic)' },
  { path: 'logLevel', type: { kind: 'enum', values: LOG_LEVELS }, default: 'info', doc: 'Log lines written to standard output: info (everything) or warn (problems and refusals only)' },
  {
    path: 'executors',
    type: { kind: 'executors' },
    defaultText: 'none',
    doc: 'What runs an allowed action, by action id: {kind: mqtt|http|exec, url (http), command (exec, argv list), timeout (default 5s)}; in the environment, a JSON object that replaces the file\'s',
  },
  { path: 'limits.envelopeMaxBytes', type: { kind: 'integer', min: 256, max: 16 * 1024 * 1024 }, default: 64 * 1024, doc: 'Largest command or approval envelope accepted (bytes)' },
  { path: 'limits.bundleMaxBytes', type: { kind: 'integer', min: 1024, max: 256 * 1024 * 1024 }, default: 16 * 1024 * 1024, doc: 'Largest policy bundle accepted (bytes)' },
  { path: 'limits.clockSkew', type: { kind: 'duration', maxMs: 3_600_000 }, default: '30s', doc: 'Clock difference tolerated on command times (iat, nbf, exp)' },
  { path: 'limits.maxLifetime', type: { kind: 'duration', maxMs: 7 * 86_400_000 }, default: '1h', doc: 'Longest command lifetime (exp - iat) accepted' },
  { path: 'limits.maxPendingApprovals', type: { kind: 'integer', min: 1, max: 1_000_000 }, default: 1000, doc: 'Commands held for approval at once; more are denied (APPROVAL_QUEUE_FULL). Each requester may hold this divided by the active bundle\'s issuer keys (APPROVAL_QUEUE_SHARE_FULL)' },
  { path: 'limits.outboxMaxMessages', type: { kind: 'integer', min: 100, max: 10_000_000 }, default: 100_000, doc: 'Messages queued for the broker while offline' },
  { path: 'audit.capBytes', type: { kind: 'integer', min: 64 * 1024, max: Number.MAX_SAFE_INTEGER }, default: 1024 * 1024 * 1024, doc: 'Unsynced audit bytes the log may hold: from capBytes − reserveBytes on, every command not marked @safety is denied AUDIT_FULL until the upstream has them' },
  { path: 'audit.reserveBytes', type: { kind: 'integer', min: 0, max: Number.MAX_SAFE_INTEGER }, defaultText: '1% of capBytes, at least 256 KiB', doc: 'Part of the cap kept for AUDIT_FULL denials and the agent\'s own lifecycle records; less than capBytes' },
  { path: 'audit.retention', type: { kind: 'duration', maxMs: 3650 * 86_400_000 }, default: '7d', doc: 'How long records stay after the upstream acknowledged them (unsynced records are never pruned)' },
  { path: 'audit.checkpointEvery', type: { kind: 'integer', min: 1, max: 1_000_000 }, default: 1000, doc: 'A signed Merkle checkpoint after this many records…' },
  { path: 'audit.checkpointInterval', type: { kind: 'duration', maxMs: 86_400_000 }, default: '60s', doc: '…or this long after the first record it would cover, whichever first' },
  { path: 'audit.sync.transport', type: { kind: 'enum', values: ['https', 'mqtt'] }, default: 'https', doc: 'How the log reaches the collector: https (POST to audit.sync.url) or mqtt (QoS 1 on <prefix>audit over broker.url); sync is on when any audit.sync option is set' },
  { path: 'audit.sync.url', type: { kind: 'url', schemes: ['https', 'http'] }, defaultText: 'required for https', doc: 'The collector (https://host:port; http:// only on a loopback host)' },
  { path: 'audit.sync.collectorKey', type: { kind: 'path' }, defaultText: 'required with sync', doc: "The collector's public key (PEM): only acknowledgements it signed move the synced watermark" },
  { path: 'audit.sync.ca', type: { kind: 'path' }, doc: "CA certificate (PEM) of the collector's HTTPS certificate" },
  { path: 'audit.sync.cert', type: { kind: 'path' }, doc: 'Client certificate (PEM) for mutual TLS to the collector; with audit.sync.key' },
  { path: 'audit.sync.key', type: { kind: 'path' }, doc: 'Client private key (PEM) for mutual TLS to the collector; with audit.sync.cert' },
  { path: 'audit.sync.batchRecords', type: { kind: 'integer', min: 1, max: 100_000 }, default: 5000, doc: 'Records in one batch at most' },
  { path: 'audit.sync.batchBytes', type: { kind: 'integer', min: 64 * 1024, max: 64 * 1024 * 1024 }, default: 4 * 1024 * 1024, doc: 'Bytes of records in one batch at most (before compression)' },
  { path: 'audit.sync.inFlight', type: { kind: 'integer', min: 1, max: 16 }, default: 2, doc: 'Batches sent and not yet acknowledged at once' },
  { path: 'audit.sync.interval', type: { kind: 'duration', maxMs: 3_600_000 }, default: '5s', doc: 'How often an idle sync looks for new records' },
  { path: 'audit.sync.timeout', type: { kind: 'duration', maxMs: 600_000 }, default: '30s', doc: "How long a batch waits for the collector's acknowledgement" },
  { path: 'audit.sync.backoffMax', type: { kind: 'duration', maxMs: 86_400_000 }, default: '5m', doc: 'Longest wait between attempts while the collector is unreachable (exponential, with jitter)' },
];

/** Options that were accepted once but did nothing: refused with the reason, not ignored. */
export const REFUSED_OPTIONS: Readonly<Record<string, string>> = {
  'limits.cacheEntries': 'not supported: the agent decides every command anew and keeps no decision cache in the command path',
};

/** `limits.envelopeMaxBytes` → `ZTEDGE_LIMITS_ENVELOPE_MAX_BYTES`. */
export function envName(path: string): string {
  return 'ZTEDGE_' + path.split('.').map((p) => p.replace(/([a-z0-9])([A-Z])/g, '$1_$2').toUpperCase()).join('_');
}

/** The type in words, for the reference and for problems. */
export function typeText(type: OptionType): string {
  switch (type.kind) {
    case 'string':
      return type.pattern === undefined ? 'string' : `string (${type.patternText})`;
    case 'path':
      return 'path';
    case 'paths':
      return 'list of paths';
    case 'url':
      return `${type.schemes.map((s) => `${s}://`).join(' or ')} URL`;
    case 'integer':
      return `integer ${type.min}–${type.max}`;
    case 'duration':
      return `duration (250ms, 30s, 5m, 2h, 1d) up to ${durationText(type.maxMs)}`;
    case 'boolean':
      return 'true or false';
    case 'enum':
      return type.values.join(' \\| ');
    case 'executors':
      return 'map: action id → executor';
  }
}

/** How the environment variable is written, where it is not the plain value. */
export function envEncoding(type: OptionType): string | undefined {
  if (type.kind === 'paths') return 'comma-separated';
  if (type.kind === 'executors') return 'JSON object';
  return undefined;
}

function durationText(ms: number): string {
  if (ms % 86_400_000 === 0) return `${ms / 86_400_000}d`;
  if (ms % 3_600_000 === 0) return `${ms / 3_600_000}h`;
  return `${ms / 1000}s`;
}

export function defaultText(option: OptionDescription): string {
  if (option.required) return 'required';
  if (option.default !== undefined) return String(option.default);
  return option.defaultText ?? 'none';
}

/** The README's option reference: one Markdown table row per option. */
export function referenceTable(): string {
  const rows = CONFIG_OPTIONS.map((o) => {
    const encoding = envEncoding(o.type);
    const env = `\`${envName(o.path)}\`${encoding === undefined ? '' : ` (${encoding})`}`;
    return `| \`${o.path}\` | ${typeText(o.type)} | ${defaultText(o)} | ${env} | ${o.doc.replace(/\|/g, '\\|')} |`;
  });
  return ['| option | type | default | environment | meaning |', '|---|---|---|---|---|', ...rows].join('\n');
}

/**
 * A configuration file with every option: required ones with example values, the others
 * commented out at their defaults. It loads as it is (given its key files beside it).
 */
export function exampleConfig(): string {
  const lines = [
    '# ztedge agent configuration: `ztedge run --config agent.yaml`, checked by `ztedge config check agent.yaml`.',
    '# Relative paths are relative to this file. Every option can also be set with its ZTEDGE_*',
    '# environment variable (`ztedge config reference`), which overrides the file.',
  ];
  let section = '';
  for (const option of CONFIG_OPTIONS) {
    const parts = option.path.split('.');
    const key = parts.at(-1)!;
    const indent = parts.length > 1 ? '  ' : '';
    if (parts.length > 1 && parts[0] !== section) {
      lines.push('', `${parts[0]}:`);
      section = parts[0]!;
    } else if (parts.length === 1) {
      section = '';
      lines.push('');
    }
    lines.push(`${indent}# ${option.doc} (${typeText(option.type).replace(/\\\|/g, '|')}; ${envName(option.path)})`);
    if (option.type.kind === 'executors') {
      lines.push('executors:', '  move: { kind: mqtt, timeout: 5s }', '  # reboot: { kind: exec, command: [/usr/local/bin/reboot-controller], timeout: 30s }', '  # report: { kind: http, url: "http://127.0.0.1:9000/report" }');
      continue;
    }
    if (option.example !== undefined) lines.push(`${indent}${key}: ${option.example}`);
    else lines.push(`${indent}# ${key}: ${option.default ?? `(${option.defaultText ?? 'none'})`}`);
  }
  return lines.join('\n') + '\n';
}

/** Parses an option's environment text into what the file would hold. */
export function fromEnvText(option: OptionDescription, text: string): { value: unknown } | { problem: string } {
  switch (option.type.kind) {
    case 'paths':
      return { value: text.split(',').map((s) => s.trim()).filter(Boolean) };
    case 'executors':
      try {
        return { value: JSON.parse(text) as unknown };
      } catch (err) {
        return { problem: `must be a JSON object of executors by action id: ${(err as Error).message}` };
      }
    default:
      return { value: text };
  }
}
