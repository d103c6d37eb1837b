// Connection settings of the MQTT link: the options, their defaults, and their validation,
// all checked before anything connects; plus reading the TLS files at each attempt.
import fs from 'node:fs';
import tls from 'node:tls';
import { checkBackoffPolicy, type BackoffPolicy } from './backoff.js';
import { TransportError } from './errors.js';
import type { InboundMessage } from './message.js';
import { isPublishableTopic } from './topics.js';

export interface LinkTlsFiles {
  /** CA bundle that signs the broker's certificate (default: the system store). */
  caFile?: string;
  /** Client certificate and key, for brokers that authenticate devices by certificate. */
  certFile?: string;
  keyFile?: string;
}

export interface LinkWill {
  topic: string;
  payload: Uint8Array;
  /** Default true: the will replaces the retained status. */
  retain?: boolean;
}

export interface MqttLinkOptions {
  /** `mqtt://host[:port]` or `mqtts://host[:port]`. */
  url: string;
  clientId: string;
  username?: string;
  password?: string;
  tls?: LinkTlsFiles;
  /** 5 (default) falls back to 3.1.1 once if the broker refuses 5; 4 never tries 5. */
  protocolVersion?: 5 | 4;
  /**
   * How long the broker keeps the session (and queues QoS 1 messages) while away. Default 7 days.
   * 0: a clean session that ends with the connection, on 3.1.1 too (short-lived clients).
   */
  sessionExpirySeconds?: number;
  keepaliveSeconds?: number;
  connectTimeoutMs?: number;
  /** Published by the broker when the connection dies, and by close() on a clean stop. */
  will?: LinkWill;
  /** Topic filters, subscribed at QoS 1. */
  subscriptions?: readonly string[];
  /** Incoming payloads above this are dropped and reported. Default 1 MiB. */
  maxPayloadBytes?: number;
  /**
   * A cap per topic (e.g. commands at the envelope limit, bundles at the bundle limit), asked as
   * each PUBLISH header is read, before its payload is buffered; replaces maxPayloadBytes.
   */
  payloadLimit?: (topic: string) => number;
  /**
   * How many handlers run at once (reading pauses beyond it); on MQTT 5 also how many
   * unacknowledged QoS 1 messages the broker may send at once. Default 64.
   */
  receiveMaximum?: number;
  backoff?: BackoffPolicy;
  /**
   * Called for each incoming message, in arrival order, without waiting for earlier handlers
   * to finish (up to receiveMaximum at once). The message is acknowledged once the returned
   * promise resolves and every earlier message is acknowledged. A rejection means "not
   * recorded": the connection is dropped without the ack (this message's and later ones') so
   * the broker redelivers them (after a backoff). Handlers must resolve for messages they
   * reject on their merits (and record that), must finish well within the keepalive interval,
   * and must not wait for another incoming message: with receiveMaximum handlers running,
   * mqtt.js reads no further packets, PUBACK and PINGRESP included.
   */
  onMessage: (message: InboundMessage) => void | Promise<void>;
  /** Source of jitter, in [0, 1). */
  random?: () => number;
}

export const LINK_DEFAULTS = {
  sessionExpirySeconds: 7 * 24 * 3600,
  keepaliveSeconds: 30,
  connectTimeoutMs: 10_000,
  maxPayloadBytes: 1024 * 1024,
  receiveMaximum: 64,
};

export interface Endpoint {
  secure: boolean;
  host: string;
  port: number;
}

export interface TlsMaterial {
  ca?: Buffer;
  cert?: Buffer;
  key?: Buffer;
}

/** `mqtt://host[:port]` or `mqtts://host[:port]`; credentials, paths and other schemes are refused. */
export function parseBrokerUrl(url: string): Endpoint {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TransportError('LINK_OPTIONS_INVALID', 'broker url is not a URL');
  }
  const secure = parsed.protocol === 'mqtts:';
  if (!secure && parsed.protocol !== 'mqtt:') {
    throw new TransportError('LINK_OPTIONS_INVALID', `broker url must be mqtt:// or mqtts://, got ${parsed.protocol}//`);
  }
  if (parsed.username || parsed.password) {
    throw new TransportError('LINK_OPTIONS_INVALID', 'credentials go in the username/password options, not the broker url');
  }
  if ((parsed.pathname !== '' && parsed.pathname !== '/') || parsed.search || parsed.hash) {
    throw new TransportError('LINK_OPTIONS_INVALID', 'broker url must not have a path, query or fragment');
  }
  const host = parsed.hostname.replace(/^\[(.*)\]$/, '$1');
  if (!host) throw new TransportError('LINK_OPTIONS_INVALID', 'broker url has no host');
  return { secure, host, port: parsed.port ? Number(parsed.port) : secure ? 8883 : 1883 };
}

/** All problems at once, as one LINK_OPTIONS_INVALID. */
export function checkLinkOptions(options: MqttLinkOptions, backoff: BackoffPolicy, maxPayloadBytes: number): void {
  const problems: string[] = [];
  // mqtt.js limits client ids only by the packet; MQTT 3.1.1 brokers must accept 23 characters.
  if (typeof options.clientId !== 'string' || options.clientId.length === 0 || Buffer.byteLength(options.clientId) > 128) {
    problems.push('clientId must be 1-128 bytes (a persistent session needs a stable id)');
  }
  if (options.protocolVersion !== undefined && options.protocolVersion !== 5 && options.protocolVersion !== 4) {
    problems.push('protocolVersion must be 5 or 4');
  }
  if (!Number.isSafeInteger(maxPayloadBytes) || maxPayloadBytes < 1) problems.push('maxPayloadBytes must be a positive integer');
  const receiveMaximum = options.receiveMaximum ?? LINK_DEFAULTS.receiveMaximum;
  if (!Number.isInteger(receiveMaximum) || receiveMaximum < 1 || receiveMaximum > 65535) {
    problems.push('receiveMaximum must be an integer in 1..65535');
  }
  const sessionExpiry = options.sessionExpirySeconds ?? LINK_DEFAULTS.sessionExpirySeconds;
  if (!Number.isInteger(sessionExpiry) || sessionExpiry < 0 || sessionExpiry > 0xffffffff) {
    problems.push('sessionExpirySeconds must be an integer in 0..2^32-1');
  }
  for (const filter of options.subscriptions ?? []) {
    if (typeof filter !== 'string' || filter.length === 0 || filter.includes('\u0000')) problems.push(`bad subscription ${JSON.stringify(filter)}`);
  }
  if (options.will && !isPublishableTopic(options.will.topic)) problems.push('will.topic is not a valid topic name');
  if (options.tls && !options.url.startsWith('mqtts:')) problems.push('tls files given for a non-TLS (mqtt://) url');
  if ((options.tls?.certFile === undefined) !== (options.tls?.keyFile === undefined)) problems.push('tls certFile and keyFile go together');
  const backoffProblem = checkBackoffPolicy(backoff);
  if (backoffProblem) problems.push(backoffProblem);
  if (problems.length > 0) throw new TransportError('LINK_OPTIONS_INVALID', `invalid MQTT link options: ${problems.join('; ')}`);
}

/**
 * Reads the TLS files now (called per connection attempt): LINK_TLS_FILES_UNREADABLE when one
 * cannot be read, LINK_TLS_FILES_UNUSABLE when they do not go together (a key not the certificate's).
 */
export function readTlsFiles(files: LinkTlsFiles | undefined): TlsMaterial {
  if (!files) return {};
  const read = (file: string | undefined) => {
    if (file === undefined) return undefined;
    try {
      return fs.readFileSync(file);
    } catch (err) {
      throw new TransportError('LINK_TLS_FILES_UNREADABLE', `cannot read ${file}: ${(err as Error).message}`);
    }
  };
  const material: TlsMaterial = {};
  const ca = read(files.caFile);
  const cert = read(files.certFile);
  const key = read(files.keyFile);
  if (ca) material.ca = ca;
  if (cert) material.cert = cert;
  if (key) material.key = key;
  // Checked here, where a failure is reported and retried: inside the connect it would throw out
  // of the reconnect timer (a certificate renewed before its key is the usual way to get here).
  try {
    tls.createSecureContext(material);
  } catch (err) {
    const names = [files.caFile, files.certFile, files.keyFile].filter((f) => f !== undefined).join(', ');
    throw new TransportError('LINK_TLS_FILES_UNUSABLE', `the broker TLS files (${names}) cannot be used together: ${(err as Error).message}`);
  }
  return material;
}
