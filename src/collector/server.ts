// The collector process: the HTTP API (Hono on @hono/node-server; TLS, and mutual TLS when a
// client CA is given), optionally an MQTT subscription for fleets that send batches over their
// broker, the store, and the collector's signing key for acknowledgements. Loopback by default.
import fs from 'node:fs';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { type ServerType, serve } from '@hono/node-server';
import { signAck } from '../audit/sync-protocol.js';
import type { PrivateKey } from '../crypto/keys.js';
import { MqttLink } from '../transport/mqtt-link.js';
import { type BatchAnswer, createCollectorApi } from './app.js';
import { type DeviceKeys, DEFAULT_MAX_BATCH_BYTES, Ingestor, shortId } from './ingest.js';
import type { CollectorStore } from './store.js';

export interface CollectorLogger {
  info(message: string, fields?: Record<string, unknown>): void;
  warn(message: string, fields?: Record<string, unknown>): void;
}

export interface CollectorTls {
  certFile: string;
  keyFile: string;
  /** With it, devices must present a client certificate signed by this CA (mutual TLS). */
  clientCaFile?: string;
}

export interface CollectorMqtt {
  url: string;
  /** Topic filter of device batch topics (default `ztedge/+/+/audit`); acks go to `<topic>/ack`. */
  topic?: string;
  clientId?: string;
  username?: string;
  password?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

export interface CollectorOptions {
  store: CollectorStore;
  keys: DeviceKeys;
  /** Signs acknowledgements; agents pin its public key. */
  signingKey: PrivateKey;
  host?: string;
  port?: number;
  tls?: CollectorTls;
  mqtt?: CollectorMqtt;
  readToken?: string;
  maxBatchBytes?: number;
  /** How long a batch that overtook its predecessor waits for it (default 2 s). */
  reorderWaitMs?: number;
  logger?: CollectorLogger;
  now?: () => number;
}

export const DEFAULT_MQTT_TOPIC = 'ztedge/+/+/audit';

export class Collector {
  private readonly ingestor: Ingestor;
  private readonly now: () => number;
  private readonly logger: CollectorLogger;
  private readonly maxBatchBytes: number;
  private server: ServerType | null = null;
  private link: MqttLink | null = null;
  private readonly counters = { batches: new Map<string, number>(), records: 0, reports: new Map<string, number>() };

  constructor(private readonly opts: CollectorOptions) {
    this.now = opts.now ?? Date.now;
    this.logger = opts.logger ?? { info: () => undefined, warn: () => undefined };
    this.maxBatchBytes = opts.maxBatchBytes ?? DEFAULT_MAX_BATCH_BYTES;
    this.ingestor = new Ingestor({
      store: opts.store,
      keys: opts.keys,
      now: this.now,
      maxBatchBytes: this.maxBatchBytes,
      ...(opts.reorderWaitMs === undefined ? {} : { reorderWaitMs: opts.reorderWaitMs }),
    });
  }

  async start(): Promise<void> {
    const { opts } = this;
    const app = createCollectorApi({
      receive: (bytes) => this.receive(bytes),
      device: (id) => opts.store.device(id),
      devices: () => opts.store.devices(),
      records: (id, from, to, limit) => opts.store.records(id, from, to, limit),
      reports: (device, limit) => opts.store.reports(device, limit),
      metrics: () => this.metrics(),
      now: this.now,
      maxBatchBytes: this.maxBatchBytes,
      ...(opts.readToken === undefined ? {} : { readToken: opts.readToken }),
    });
    const tls = opts.tls;
    await new Promise<void>((resolve, reject) => {
      const server = serve(
        {
          fetch: app.fetch,
          hostname: opts.host ?? '127.0.0.1',
          port: opts.port ?? 8443,
          ...(tls === undefined
            ? {}
            : {
                createServer: createHttpsServer,
                serverOptions: {
                  cert: fs.readFileSync(tls.certFile),
                  key: fs.readFileSync(tls.keyFile),
                  ...(tls.clientCaFile === undefined ? {} : { ca: fs.readFileSync(tls.clientCaFile), requestCert: true, rejectUnauthorized: true }),
                },
              }),
        },
        () => resolve(),
      );
      server.once('error', reject);
      this.server = server;
    });
    if (opts.mqtt !== undefined) this.startMqtt(opts.mqtt);
  }

  port(): number {
    return (this.server?.address() as AddressInfo | null)?.port ?? 0;
  }

  async stop(): Promise<void> {
    await this.link?.close();
    this.link = null;
    const server = this.server;
    this.server = null;
    if (server !== null) {
      (server as { closeAllConnections?: () => void }).closeAllConnections?.();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
    await this.opts.store.close();
  }

  /** Checks and stores one batch, however it arrived; resolves with what to answer. */
  async receive(bytes: Uint8Array): Promise<BatchAnswer> {
    const outcome = await this.ingestor.ingest(bytes);
    if (outcome.kind === 'rejected') {
      this.count(this.counters.batches, 'rejected');
      this.logger.warn('batch rejected', { code: outcome.code, error: outcome.message });
      return { kind: 'error', status: outcome.status, code: outcome.code, message: outcome.message };
    }
    const { ack, report } = outcome;
    if (report !== undefined) {
      await this.opts.store.report(report);
      this.count(this.counters.reports, report.code);
      this.logger.warn('batch refused', { device: report.device, seq: report.seq, code: report.code, error: report.message, batch: shortId(report.batch) });
    }
    this.count(this.counters.batches, ack.status);
    this.counters.records += outcome.records;
    const signed = await signAck({ ...ack, timeMs: this.now() }, this.opts.signingKey);
    return { kind: 'ack', status: ack.status === 'stored' ? 200 : ack.status === 'ahead' ? 409 : 422, ack: signed };
  }

  private startMqtt(mqtt: CollectorMqtt): void {
    const link = new MqttLink({
      url: mqtt.url,
      clientId: mqtt.clientId ?? 'ztedge-collector',
      ...(mqtt.username === undefined ? {} : { username: mqtt.username }),
      ...(mqtt.password === undefined ? {} : { password: mqtt.password }),
      ...(mqtt.tls === undefined ? {} : { tls: mqtt.tls }),
      subscriptions: [mqtt.topic ?? DEFAULT_MQTT_TOPIC],
      maxPayloadBytes: this.maxBatchBytes,
      // Batches are large: a few at a time in memory (one device's are checked in order anyway).
      receiveMaximum: 8,
      onMessage: async (message) => {
        if (!message.topic.endsWith('/audit')) return;
        const answer = await this.receive(message.payload);
        if (answer.kind !== 'ack') return;
        // Not awaited: the batch is stored, and a lost answer only makes the agent resend.
        link
          .publish(`${message.topic}/ack`, answer.ack, { qos: 1, ...(message.correlationData === undefined ? {} : { correlationData: message.correlationData }) })
          .catch((err: unknown) => this.logger.warn('acknowledgement not published', { topic: message.topic, error: (err as Error).message }));
      },
    });
    link.on('online', () => this.logger.info('broker connected', { url: mqtt.url }));
    link.on('problem', (err) => this.logger.warn('broker problem', { code: err.code, error: err.message }));
    link.start();
    this.link = link;
  }

  private async metrics(): Promise<string> {
    const lines: string[] = [];
    const family = (name: string, type: string, help: string, samples: Array<[string, number]>) => {
      lines.push(`# HELP ${name} ${help}`, `# TYPE ${name} ${type}`, ...samples.map(([labels, value]) => `${name}${labels} ${value}`));
    };
    family('ztedge_collector_batches_total', 'counter', 'Batches received, by answer', [...this.counters.batches].map(([k, v]) => [`{result="${k}"}`, v]));
    family('ztedge_collector_records_total', 'counter', 'Records stored', [['', this.counters.records]]);
    family('ztedge_collector_reports_total', 'counter', 'Refused batches reported, by code', [...this.counters.reports].map(([k, v]) => [`{code="${k}"}`, v]));
    const devices = await this.opts.store.devices();
    const now = this.now();
    family('ztedge_collector_device_last_seq', 'gauge', 'Newest stored seq per device', devices.map((d) => [`{device="${d.device}"}`, d.lastSeq]));
    family('ztedge_collector_device_lag_records', 'gauge', 'Records a device holds beyond those stored here (as of its last batch)', devices.map((d) => [`{device="${d.device}"}`, Math.max(0, d.headSeq - d.lastSeq)]));
    family('ztedge_collector_device_last_seen_seconds', 'gauge', 'Seconds since a device last sent a batch', devices.map((d) => [`{device="${d.device}"}`, Math.max(0, (now - d.lastSeenMs) / 1000)]));
    return lines.join('\n') + '\n';
  }

  private count(map: Map<string, number>, key: string): void {
    map.set(key, (map.get(key) ?? 0) + 1);
  }
}
