// `ztedge collector`: receives devices' audit logs (HTTPS, and MQTT where configured), checks
// every batch and stores it, until SIGINT or SIGTERM.
import fs from 'node:fs';
import { Collector, DEFAULT_MQTT_TOPIC } from '../collector/server.js';
import { openCollectorStore } from '../collector/open-store.js';
import { DeviceKeyDirectory } from '../collector/registry.js';
import { DEFAULT_MAX_BATCH_BYTES } from '../collector/ingest.js';
import { readPrivateKeyFile } from '../crypto/key-files.js';
import { type OptionSpecs, UsageError, defineCommand, flag, requireFlag } from './command.js';

const USAGE = `Usage: ztedge collector --key FILE --devices DIR [--listen ADDR] [--db URL] [options]

Receives the audit logs of devices, checks each batch (device signature, hash chain, signed
checkpoints and their consistency with what is stored) and stores it once; refused batches are
reported with the device and seq. Runs until SIGINT or SIGTERM; logs JSON lines to stdout.

  --key FILE              the collector's private key (0600): signs every acknowledgement;
                          agents pin its public key (audit.sync.collectorKey)
  --devices DIR           one public key per accepted device, named <device id>.pub (the
                          device key's .pub from ztedge keygen); a device without a file is
                          refused; files are looked at again every 30 s
  --listen ADDR           HOST:PORT or PORT to serve on (default 127.0.0.1:8443, loopback)
  --db URL                ./collector.db (SQLite file, the default) or postgres://user@host/db
  --tls-cert FILE         serve HTTPS with this certificate (PEM) and --tls-key FILE
  --tls-key FILE
  --client-ca FILE        mutual TLS: devices must present a certificate signed by this CA
  --read-token-file FILE  the GET endpoints (devices, records, reports, metrics) require
                          Authorization: Bearer <the file's content>
  --max-batch-bytes N     largest batch accepted (default ${DEFAULT_MAX_BATCH_BYTES})
  --mqtt URL              also take batches from an MQTT broker (mqtt:// or mqtts://)
  --mqtt-topic FILTER     device batch topics (default ${DEFAULT_MQTT_TOPIC}); acks go to <topic>/ack
  --mqtt-client-id ID     (default ztedge-collector)
  --mqtt-username NAME, --mqtt-password-file FILE, --mqtt-ca FILE, --mqtt-cert FILE, --mqtt-key FILE

Exit status: 0 after a clean stop, 2 on a usage or key problem, 1 when it fails to start.`;

const FLAGS = [
  'key', 'devices', 'listen', 'db', 'tls-cert', 'tls-key', 'client-ca', 'read-token-file', 'max-batch-bytes',
  'mqtt', 'mqtt-topic', 'mqtt-client-id', 'mqtt-username', 'mqtt-password-file', 'mqtt-ca', 'mqtt-cert', 'mqtt-key',
] as const;

const OPTIONS: OptionSpecs = Object.fromEntries(FLAGS.map((name) => [name, { type: 'string' }]));

export const collectorCommand = defineCommand({
  name: 'collector',
  summary: 'receive and check devices’ audit logs (HTTPS, MQTT; SQLite or PostgreSQL)',
  usage: USAGE,
  options: OPTIONS,
  run: async (parsed, io) => {
    const { host, port } = parseListen(flag(parsed, 'listen') ?? '127.0.0.1:8443');
    const tlsCert = flag(parsed, 'tls-cert');
    const tlsKey = flag(parsed, 'tls-key');
    const clientCa = flag(parsed, 'client-ca');
    if ((tlsCert === undefined) !== (tlsKey === undefined)) throw new UsageError('--tls-cert and --tls-key go together');
    if (clientCa !== undefined && tlsCert === undefined) throw new UsageError('--client-ca needs --tls-cert and --tls-key (mutual TLS is TLS)');
    const maxText = flag(parsed, 'max-batch-bytes');
    const maxBatchBytes = maxText === undefined ? DEFAULT_MAX_BATCH_BYTES : Number(maxText);
    if (!Number.isSafeInteger(maxBatchBytes) || maxBatchBytes < 1024 || !/^\d+$/.test(maxText ?? '0')) throw new UsageError('--max-batch-bytes must be an integer of at least 1024');
    const mqttUrl = flag(parsed, 'mqtt');
    for (const name of FLAGS.filter((f) => f.startsWith('mqtt-'))) {
      if (mqttUrl === undefined && flag(parsed, name) !== undefined) throw new UsageError(`--${name} needs --mqtt`);
    }

    let signingKey;
    let keys;
    try {
      signingKey = readPrivateKeyFile(requireFlag(parsed, 'key'));
      keys = new DeviceKeyDirectory(requireFlag(parsed, 'devices'), { onProblem: (device, message) => log('warn', 'device key unreadable', { device, message }) });
    } catch (err) {
      if (err instanceof UsageError) throw err;
      io.stderr(`${codeOf(err, 'COLLECTOR_KEYS')}: ${(err as Error).message}`);
      return 2;
    }
    const readToken = readSecret(flag(parsed, 'read-token-file'), '--read-token-file');
    const mqttPassword = readSecret(flag(parsed, 'mqtt-password-file'), '--mqtt-password-file');
    function log(level: 'info' | 'warn', message: string, fields?: Record<string, unknown>) {
      io.stdout(JSON.stringify({ level, time: new Date().toISOString(), message, ...fields }));
    }

    let collector: Collector;
    try {
      const store = await openCollectorStore(flag(parsed, 'db') ?? './collector.db');
      collector = new Collector({
        store,
        keys,
        signingKey,
        host,
        port,
        maxBatchBytes,
        ...(tlsCert === undefined ? {} : { tls: { certFile: tlsCert, keyFile: tlsKey!, ...(clientCa === undefined ? {} : { clientCaFile: clientCa }) } }),
        ...(readToken === undefined ? {} : { readToken }),
        ...(mqttUrl === undefined
          ? {}
          : {
              mqtt: {
                url: mqttUrl,
                ...optional('topic', flag(parsed, 'mqtt-topic')),
                ...optional('clientId', flag(parsed, 'mqtt-client-id')),
                ...optional('username', flag(parsed, 'mqtt-username')),
                ...optional('password', mqttPassword),
                ...(flag(parsed, 'mqtt-ca') ?? flag(parsed, 'mqtt-cert') ?? flag(parsed, 'mqtt-key')) === undefined
                  ? {}
                  : { tls: { ...optional('caFile', flag(parsed, 'mqtt-ca')), ...optional('certFile', flag(parsed, 'mqtt-cert')), ...optional('keyFile', flag(parsed, 'mqtt-key')) } },
              },
            }),
        logger: { info: (m, f) => log('info', m, f), warn: (m, f) => log('warn', m, f) },
      });
      await collector.start();
    } catch (err) {
      io.stderr(`${codeOf(err, 'COLLECTOR_ERROR')}: collector failed to start: ${(err as Error).message}`);
      return 1;
    }
    log('info', 'collector listening', { host, port: collector.port(), tls: tlsCert !== undefined, mutualTls: clientCa !== undefined, store: flag(parsed, 'db')?.startsWith('postgres') ? 'postgres' : 'sqlite', mqtt: mqttUrl ?? 'off' });
    const signal = await untilSignal();
    await collector.stop();
    log('info', 'collector stopped', { signal });
    return 0;
  },
});

function parseListen(text: string): { host: string; port: number } {
  const m = /^(?:(\[[0-9a-fA-F:]+\]|[A-Za-z0-9.-]+):)?(\d{1,5})$/.exec(text);
  const port = Number(m?.[2]);
  if (m === null || port > 65535) throw new UsageError(`--listen must be HOST:PORT or PORT, not '${text}'`);
  return { host: (m[1] ?? '127.0.0.1').replace(/^\[(.*)\]$/, '$1'), port };
}

function readSecret(file: string | undefined, option: string): string | undefined {
  if (file === undefined) return undefined;
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new UsageError(`${option}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (text.length === 0) throw new UsageError(`${option}: ${file} is empty`);
  return text;
}

function optional<K extends string>(key: K, value: string | undefined): { [P in K]?: string } {
  return (value === undefined ? {} : { [key]: value }) as { [P in K]?: string };
}

function untilSignal(): Promise<NodeJS.Signals> {
  // Signal listeners do not keep the event loop alive; the server does, but say so explicitly.
  const keepAlive = setInterval(() => {}, 1 << 30);
  return new Promise((resolve) => {
    const onSignal = (signal: NodeJS.Signals) => {
      clearInterval(keepAlive);
      process.off('SIGINT', onSignal);
      process.off('SIGTERM', onSignal);
      resolve(signal);
    };
    process.on('SIGINT', onSignal);
    process.on('SIGTERM', onSignal);
  });
}

function codeOf(err: unknown, fallback: string): string {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' && /^[A-Z][A-Z0-9_]*$/.test(code) ? code : fallback;
}
