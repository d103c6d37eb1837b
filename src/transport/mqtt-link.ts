// The agent's one MQTT connection, and the only module that imports mqtt.js. It adds what
// mqtt.js leaves out or gets wrong for an agent that must not lose commands:
// - reconnects with jittered exponential backoff (mqtt.js only knows a fixed period, so its own
//   reconnect is off: reconnectPeriod 0) and keeps in-flight QoS 1 publishes across them;
// - a persistent session (clean: false + session expiry), subscriptions at QoS 1 renewed
//   whenever the broker lost the session;
// - MQTT 5 first, falling back to 3.1.1 when the broker refuses 5 (e.g. aedes);
// - acknowledgement only after the handler is done (see onPublish), so a command is acked
//   once its audit record is durable and redelivered if the agent dies first; handlers run
//   concurrently (up to receiveMaximum), and PUBACKs still go out in arrival order;
// - a payload cap enforced on the byte stream (FrameGuard), never buffering an oversize
//   message, which is acknowledged, dropped and reported.
// Delivery is at least once: a handler may see a message again after a reconnect (the
// DUP flag is then usually set) and must be idempotent; the replay guard makes commands so.
//
// What mqtt.js 5 allows for acknowledging late (read from its source, v5.16):
// - `customHandleAcks(topic, message, packet, cb)` is MQTT 5 only and runs before the message
//   is emitted; it chooses the PUBACK reason code. A non-zero code still acknowledges, and the
//   broker then never redelivers, so it cannot express "not processed, send it again".
// - `handleMessage(packet, callback)` runs for every PUBLISH on both versions; the PUBACK is
//   written only when `callback` is called. This link uses it. Not calling it and dropping the
//   connection leaves the message unacknowledged, and the persistent session redelivers it.
// - Incoming packets are processed strictly one at a time: until `callback` runs nothing else
//   is read, not even the PUBACKs of our own publishes or PINGRESP. Calling it with an error
//   makes mqtt.js read on without writing a PUBACK; this link does that as soon as a handler
//   has started (while fewer than receiveMaximum run), and writes each PUBACK itself once the
//   handler and every earlier one are done. So handlers overlap (commands share group commits)
//   and the link keeps reading, but a handler must still not wait for another incoming message
//   while receiveMaximum handlers run: reading is paused then.
// - mqtt.js keeps no record of unacknowledged incoming messages across a restart; redelivery
//   after a crash comes from the broker's session (clean: false).
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { MqttClient, type IClientOptions, type IConnackPacket, type IPublishPacket, type Packet } from 'mqtt';
import { backoffDelayMs, DEFAULT_BACKOFF, type BackoffPolicy } from './backoff.js';
import { AckOrder } from './ack-order.js';
import { TransportError } from './errors.js';
import { FrameGuard, type CutPublish } from './frame-guard.js';
import { GuardedStream } from './guarded-stream.js';
import {
  checkLinkOptions,
  LINK_DEFAULTS,
  parseBrokerUrl,
  readTlsFiles,
  type Endpoint,
  type MqttLinkOptions,
  type TlsMaterial,
} from './link-config.js';
import { isPublishableTopic } from './topics.js';
import type { InboundMessage } from './message.js';

export type { InboundMessage };

export type { LinkTlsFiles, LinkWill, MqttLinkOptions } from './link-config.js';

export interface PublishOptions {
  qos: 0 | 1;
  retain?: boolean;
  /** MQTT 5 properties; dropped on a 3.1.1 connection, which cannot carry them. */
  responseTopic?: string;
  correlationData?: Uint8Array;
  contentType?: string;
}

export interface OversizeReport {
  topic: string;
  qos: number;
  payloadBytes: number;
  limit: number;
  /** MQTT 5 properties the cut message carried (kept: only the payload was dropped). */
  responseTopic?: string;
  correlationData?: Buffer;
}

export interface LinkMetrics {
  connects: number;
  connectFailures: number;
  messagesIn: number;
  oversizeDropped: number;
  handlerFailures: number;
  publishesAcked: number;
  publishesRejected: number;
}

export interface LinkEvents {
  online: [{ protocolVersion: 5 | 4; sessionPresent: boolean }];
  offline: [];
  /** The next connection attempt is due in `delayMs`; `attempt` counts failures since the last success. */
  reconnecting: [{ attempt: number; delayMs: number }];
  /** Anything that went wrong without stopping the link (it keeps reconnecting). */
  problem: [TransportError];
  oversize: [OversizeReport];
}

/** Topic, packet id and properties of one PUBLISH, or any other whole packet. */
const MAX_HEADER_BYTES = 64 * 1024;
const CLOSE_GRACE_MS = 2_000;
/** CONNACK codes meaning "I do not speak this protocol version" (3.1.1 and MQTT 5). */
const UNSUPPORTED_PROTOCOL = new Set([1, 0x84]);
const noLog = (): void => {};

/** Passed to mqtt.js's handleMessage callback: read on, and leave the PUBACK to the link. */
const ACK_DEFERRED = new Error('acknowledged by the link once handled');

/** One incoming PUBLISH on its way through a handler. */
interface Delivery {
  packet: IPublishPacket;
  /** The connection it came in on; only it can carry the ack. */
  stream: MqttClient['stream'] | undefined;
  failed: boolean;
  failure?: unknown;
}

/** mqtt.js's packet writer: the one way to send a PUBACK it did not send itself. */
interface PacketSender {
  _sendPacket(packet: { cmd: 'puback'; messageId: number; reasonCode: number }, cb?: () => void, cbStorePut?: () => void, noStore?: boolean): void;
}

export class MqttLink extends EventEmitter<LinkEvents> {
  private readonly endpoint: Endpoint;
  private readonly backoff: BackoffPolicy;
  private readonly random: () => number;
  private readonly subscriptions: readonly string[];
  private readonly maxPayloadBytes: number;

  private client: MqttClient | null = null;
  private version: 5 | 4;
  private started = false;
  private closing = false;
  private isOnline = false;
  private attempt = 0;
  private reconnectTimer: NodeJS.Timeout | null = null;
  private tlsMaterial: TlsMaterial = {};
  private refusal: number | null = null;
  private attemptConnected = false;
  /** Counts successful CONNACKs; tells a stale subscribe completion from a current one. */
  private generation = 0;
  /** Handler failures in a row; each drops the connection, so they also space out reconnects. */
  private failureStreak = 0;
  private readonly granted = new Set<string>();
  private readonly pendingPublishes = new Set<(error: TransportError) => void>();
  private readonly maxHandlers: number;
  /** Handlers running now, on any connection. */
  private readonly running = new Set<Promise<void>>();
  /** The current connection's deliveries, released for acknowledgement in arrival order. */
  private acks = new AckOrder<Delivery>();
  /** mqtt.js's packet reading, held while maxHandlers handlers run. */
  private readOn: (() => void) | null = null;
  // Oversize cuts of the current connection, matched to parsed packets by their order.
  private cuts: CutPublish[] = [];
  private publishesSeen = 0;
  private readonly cutPackets = new WeakMap<object, CutPublish>();
  private readonly counters: LinkMetrics = {
    connects: 0,
    connectFailures: 0,
    messagesIn: 0,
    oversizeDropped: 0,
    handlerFailures: 0,
    publishesAcked: 0,
    publishesRejected: 0,
  };

  constructor(private readonly options: MqttLinkOptions) {
    super();
    this.endpoint = parseBrokerUrl(options.url);
    this.backoff = options.backoff ?? DEFAULT_BACKOFF;
    this.random = options.random ?? Math.random;
    this.subscriptions = [...(options.subscriptions ?? [])];
    this.maxPayloadBytes = options.maxPayloadBytes ?? LINK_DEFAULTS.maxPayloadBytes;
    this.version = options.protocolVersion ?? 5;
    this.maxHandlers = options.receiveMaximum ?? LINK_DEFAULTS.receiveMaximum;
    checkLinkOptions(options, this.backoff, this.maxPayloadBytes);
  }

  get online(): boolean {
    return this.isOnline;
  }

  /** The protocol version in use (4 after a fallback). */
  get protocolVersion(): 5 | 4 {
    return this.version;
  }

  metrics(): LinkMetrics {
    return { ...this.counters };
  }

  /** Starts connecting; progress is reported through the `online` and `problem` events. */
  start(): void {
    if (this.started || this.closing) return;
    this.started = true;
    this.client = this.createClient();
    this.connectAttempt();
  }

  /**
   * Publishes one message. Resolves when the broker has it (PUBACK for QoS 1, written for
   * QoS 0). Fails fast with LINK_OFFLINE when offline: queueing belongs to the durable outbox,
   * not to mqtt.js's memory. A QoS 1 publish already sent survives a reconnect and resolves then.
   */
  publish(topic: string, payload: Uint8Array, opts: PublishOptions): Promise<void> {
    if (this.closing) return Promise.reject(new TransportError('LINK_CLOSED', 'link is closed'));
    const client = this.client;
    if (!this.isOnline || !client) return Promise.reject(new TransportError('LINK_OFFLINE', 'not connected to the broker'));
    if (!isPublishableTopic(topic)) {
      return Promise.reject(new TransportError('TOPIC_NAME_INVALID', `cannot publish to ${JSON.stringify(String(topic).slice(0, 80))}`));
    }
    if (opts.responseTopic !== undefined && !isPublishableTopic(opts.responseTopic)) {
      return Promise.reject(new TransportError('TOPIC_NAME_INVALID', 'response topic is not a valid topic name'));
    }
    const properties = this.version === 5 ? publishProperties(opts) : undefined;
    return new Promise<void>((resolve, reject) => {
      const abandon = (error: TransportError) => reject(error);
      this.pendingPublishes.add(abandon);
      client.publish(
        topic,
        Buffer.from(payload.buffer, payload.byteOffset, payload.byteLength),
        { qos: opts.qos, retain: opts.retain ?? false, ...(properties ? { properties } : {}) },
        (err) => {
          if (!this.pendingPublishes.delete(abandon)) return;
          if (!err) {
            this.counters.publishesAcked++;
            resolve();
          } else if (typeof (err as { code?: unknown }).code === 'number') {
            this.counters.publishesRejected++;
            const code = (err as { code: number }).code;
            reject(new TransportError('PUBLISH_REJECTED', `broker refused publish to ${topic}: ${err.message}`, code));
          } else {
            reject(new TransportError(this.closing ? 'LINK_CLOSED' : 'PUBLISH_FAILED', `publish to ${topic} failed: ${err.message}`));
          }
        },
      );
    });
  }

  /**
   * Stops for good: publishes the will (status offline) when connected, disconnects cleanly,
   * fails publishes still waiting, and waits for a running handler to finish.
   */
  async close(): Promise<void> {
    if (this.closing) return;
    const wasOnline = this.isOnline;
    if (wasOnline && this.options.will) {
      const { topic, payload, retain } = this.options.will;
      await withTimeout(this.publish(topic, payload, { qos: 1, retain: retain ?? true }).catch(() => undefined), CLOSE_GRACE_MS);
    }
    this.closing = true;
    this.clearReconnectTimer();
    for (const abandon of this.pendingPublishes) abandon(new TransportError('LINK_CLOSED', 'link closed before the broker acknowledged'));
    this.pendingPublishes.clear();
    const client = this.client;
    // A client that never got as far as opening a connection has nothing to end.
    if (client?.stream) {
      const ended = new Promise<void>((resolve) => client.end(false, {}, () => resolve()));
      if (!(await withTimeout(ended, CLOSE_GRACE_MS))) {
        await new Promise<void>((resolve) => client.end(true, {}, () => resolve()));
      }
    }
    this.setOffline();
    await withTimeout(Promise.allSettled([...this.running]), CLOSE_GRACE_MS);
  }

  private createClient(): MqttClient {
    const version = this.version;
    const will = this.options.will;
    const options: IClientOptions = {
      clientId: this.options.clientId,
      protocolVersion: version,
      // No session to keep (sessionExpirySeconds 0): a clean one, which 3.1.1 also drops at disconnect.
      clean: this.options.sessionExpirySeconds === 0,
      keepalive: this.options.keepaliveSeconds ?? LINK_DEFAULTS.keepaliveSeconds,
      connectTimeout: this.options.connectTimeoutMs ?? LINK_DEFAULTS.connectTimeoutMs,
      reconnectPeriod: 0,
      resubscribe: false,
      manualConnect: true,
      queueQoSZero: false,
      // mqtt.js logs through `debug` a dozen times per packet, each call checking whether it is
      // on; unless DEBUG asks for its lines, it gets a logger that does nothing.
      ...(/mqttjs/.test(process.env.DEBUG ?? '') ? {} : { log: noLog }),
      // Otherwise mqtt-packet builds a table of 65,536 two-byte Buffers for packet ids on its first
      // write: ~50 ms at the agent's start, and ~6 MB of objects that every full garbage collection
      // then marks again (both measured).
      writeCache: false,
      ...(this.options.username !== undefined ? { username: this.options.username } : {}),
      ...(this.options.password !== undefined ? { password: this.options.password } : {}),
      ...(will ? { will: { topic: will.topic, payload: Buffer.from(will.payload), qos: 1, retain: will.retain ?? true } } : {}),
      ...(version === 5
        ? {
            properties: {
              sessionExpiryInterval: this.options.sessionExpirySeconds ?? LINK_DEFAULTS.sessionExpirySeconds,
              receiveMaximum: this.options.receiveMaximum ?? LINK_DEFAULTS.receiveMaximum,
            },
          }
        : {}),
    };
    const client = new MqttClient(() => this.openStream(version), options);
    // The PUBACK waits for this hook's callback (see the top of this file).
    client.handleMessage = (packet, done) => this.onPublish(packet, done);
    client.on('packetreceive', (packet) => this.onPacket(client, packet));
    client.on('connect', (connack) => void this.onConnect(client, connack));
    client.on('close', () => this.onClose(client));
    client.on('error', (err) => this.onClientError(client, err));
    return client;
  }

  private openStream(version: 5 | 4): GuardedStream {
    const { secure, host, port } = this.endpoint;
    const socket = secure
      ? tls.connect({
          host,
          port,
          ...(net.isIP(host) === 0 ? { servername: host } : {}),
          ...this.tlsMaterial,
          minVersion: 'TLSv1.2',
        })
      : net.connect({ host, port });
    socket.setNoDelay(true);
    this.cuts = [];
    this.publishesSeen = 0;
    this.acks = new AckOrder();
    const guard = new FrameGuard({ maxPayloadBytes: this.options.payloadLimit ?? this.maxPayloadBytes, maxHeaderBytes: MAX_HEADER_BYTES }, version);
    return new GuardedStream(socket, guard, (cut) => this.cuts.push(cut));
  }

  private connectAttempt(): void {
    this.reconnectTimer = null;
    const client = this.client;
    if (this.closing || !client) return;
    // Read on every attempt, so renewed certificates are picked up on reconnect.
    try {
      this.tlsMaterial = readTlsFiles(this.endpoint.secure ? this.options.tls : undefined);
    } catch (err) {
      this.report(err as TransportError);
      this.counters.connectFailures++;
      this.scheduleReconnect();
      return;
    }
    this.refusal = null;
    this.attemptConnected = false;
    // connect() on a client whose stream has closed opens a new one and keeps the stores, so
    // QoS 1 publishes still awaiting PUBACK are resent (reconnect() without arguments would
    // replace the stores and strand them).
    client.connect();
  }

  private scheduleReconnect(): void {
    if (this.closing || this.reconnectTimer) return;
    const attempt = this.attempt++;
    const delayMs = backoffDelayMs(attempt, this.backoff, this.random);
    this.reconnectTimer = setTimeout(() => this.connectAttempt(), delayMs);
    this.reconnectTimer.unref?.();
    this.emit('reconnecting', { attempt, delayMs });
  }

  private clearReconnectTimer(): void {
    if (this.reconnectTimer) clearTimeout(this.reconnectTimer);
    this.reconnectTimer = null;
  }

  private onPacket(client: MqttClient, packet: Packet): void {
    if (client !== this.client) return;
    if (packet.cmd === 'connack') {
      const code = (this.version === 5 ? packet.reasonCode : packet.returnCode) ?? 0;
      if (code !== 0) this.onRefused(code);
    } else if (packet.cmd === 'publish') {
      this.publishesSeen++;
      if (this.cuts[0]?.ordinal === this.publishesSeen) this.cutPackets.set(packet, this.cuts.shift()!);
    }
  }

  private onRefused(code: number): void {
    this.refusal = code;
    if (this.version === 5 && UNSUPPORTED_PROTOCOL.has(code) && this.options.protocolVersion !== 4 && this.generation === 0) {
      // No session exists yet, so switching clients loses nothing. Retried at once, on 3.1.1.
      this.version = 4;
      this.attempt = 0;
      return;
    }
    this.counters.connectFailures++;
    this.report(new TransportError('LINK_CONNECT_REFUSED', `broker refused the connection (code ${code})`, code));
  }

  private async onConnect(client: MqttClient, connack: IConnackPacket): Promise<void> {
    if (client !== this.client || this.closing) return;
    const generation = ++this.generation;
    // A message that keeps failing its handler is redelivered on every reconnect; backing off
    // on the streak keeps that from becoming a tight loop.
    this.attempt = this.failureStreak;
    this.attemptConnected = true;
    this.counters.connects++;
    if (!connack.sessionPresent) this.granted.clear();
    const missing = this.subscriptions.filter((filter) => !this.granted.has(filter));
    if (missing.length > 0) await this.subscribe(client, missing);
    if (generation !== this.generation || !client.connected || this.closing) return;
    this.isOnline = true;
    this.emit('online', { protocolVersion: this.version, sessionPresent: connack.sessionPresent });
  }

  private subscribe(client: MqttClient, filters: string[]): Promise<void> {
    const request = Object.fromEntries(filters.map((filter) => [filter, { qos: 1 as const }]));
    return new Promise((resolve) => {
      client.subscribe(request, (err, grants) => {
        if (err && !grants) {
          this.report(new TransportError('LINK_SUBSCRIBE_REFUSED', `subscribe failed: ${err.message}`));
        }
        for (const grant of grants ?? []) {
          if (grant.qos & 0x80) {
            this.report(new TransportError('LINK_SUBSCRIBE_REFUSED', `broker refused subscription to ${grant.topic}`, grant.qos));
          } else {
            this.granted.add(grant.topic);
          }
        }
        resolve();
      });
    });
  }

  private onClose(client: MqttClient): void {
    if (client !== this.client) return;
    this.setOffline();
    if (this.closing) return;
    if (this.version !== client.options.protocolVersion) {
      this.client = this.createClient();
      this.connectAttempt();
      return;
    }
    if (!this.attemptConnected && this.refusal === null) this.counters.connectFailures++;
    this.scheduleReconnect();
  }

  private setOffline(): void {
    if (!this.isOnline) return;
    this.isOnline = false;
    this.emit('offline');
  }

  private onClientError(client: MqttClient, err: Error): void {
    if (client !== this.client || this.closing) return;
    const code = (err as { code?: unknown }).code;
    if (err instanceof TransportError) {
      this.report(err);
    } else if (typeof code === 'number' && code === this.refusal) {
      // Already reported from the CONNACK itself.
    } else {
      this.report(new TransportError('LINK_CONNECTION_ERROR', `connection to ${this.options.url}: ${err.message}`));
    }
  }

  private onPublish(packet: IPublishPacket, done: (error?: Error) => void): void {
    const delivery: Delivery = { packet, stream: this.client?.stream, failed: false };
    const order = this.acks;
    const ticket = order.arrive(delivery);
    const handled = this.handle(delivery, this.cutPackets.get(packet))
      .then(() => {
        this.running.delete(handled);
        for (const ready of order.finish(ticket)) {
          if (!this.acknowledge(ready)) {
            // Nothing after it may be acked on this connection either; the broker redelivers.
            order.clear();
            break;
          }
        }
        this.resumeReading();
      })
      .catch(() => {
        // Only a throwing event listener gets here; what is unacknowledged stays so.
        delivery.stream?.destroy();
      });
    this.running.add(handled);
    const readOn = () => done(ACK_DEFERRED);
    if (this.running.size < this.maxHandlers) readOn();
    else this.readOn = readOn;
  }

  private resumeReading(): void {
    if (this.readOn === null || this.running.size >= this.maxHandlers) return;
    const readOn = this.readOn;
    this.readOn = null;
    readOn();
  }

  /** Runs the handler; never rejects (a failure is kept on the delivery). */
  private async handle(delivery: Delivery, cut: CutPublish | undefined): Promise<void> {
    try {
      if (cut) {
        this.counters.oversizeDropped++;
        const props = delivery.packet.properties;
        this.emit('oversize', {
          topic: cut.topic,
          qos: cut.qos,
          payloadBytes: cut.payloadBytes,
          limit: cut.limit,
          ...(props?.responseTopic === undefined ? {} : { responseTopic: props.responseTopic }),
          ...(props?.correlationData === undefined ? {} : { correlationData: props.correlationData }),
        });
      } else {
        this.counters.messagesIn++;
        await this.options.onMessage(this.toInbound(delivery.packet));
      }
    } catch (err) {
      delivery.failed = true;
      delivery.failure = err;
    }
  }

  /** Acks a handled message; false when its connection can carry no further acks. */
  private acknowledge(delivery: Delivery): boolean {
    const { packet, stream } = delivery;
    const client = this.client;
    // The connection is gone: the ack cannot be sent and the broker redelivers the message.
    if (!client || !stream || stream.destroyed || this.closing || client.stream !== stream || !client.connected) return false;
    this.failureStreak = delivery.failed ? this.failureStreak + 1 : 0;
    if (delivery.failed) {
      this.counters.handlerFailures++;
      const why = String((delivery.failure as Error)?.message ?? delivery.failure);
      if (packet.qos > 0) {
        this.report(new TransportError('LINK_HANDLER_FAILED', `handler failed on ${packet.topic}, left unacknowledged: ${why}`));
        stream.destroy();
        return false;
      }
      this.report(new TransportError('LINK_HANDLER_FAILED', `handler failed on ${packet.topic} (QoS 0, not redelivered): ${why}`));
    }
    if (packet.qos === 1 && packet.messageId !== undefined) {
      // noStore: written now on this connection, never queued for a later one.
      (client as unknown as PacketSender)._sendPacket({ cmd: 'puback', messageId: packet.messageId, reasonCode: 0 }, undefined, undefined, true);
    }
    return true;
  }

  private toInbound(packet: IPublishPacket): InboundMessage {
    const props = packet.properties;
    const message: InboundMessage = {
      topic: packet.topic,
      payload: typeof packet.payload === 'string' ? Buffer.from(packet.payload) : packet.payload,
      qos: packet.qos,
      retain: packet.retain,
      duplicate: packet.dup,
    };
    if (props?.responseTopic !== undefined) {
      if (isPublishableTopic(props.responseTopic)) {
        message.responseTopic = props.responseTopic;
      } else {
        message.refusedResponseTopic = String(props.responseTopic).slice(0, 256);
        this.report(new TransportError('LINK_RESPONSE_TOPIC_INVALID', `message on ${packet.topic} named an invalid response topic`));
      }
    }
    if (props?.correlationData !== undefined) message.correlationData = props.correlationData;
    if (props?.contentType !== undefined) message.contentType = props.contentType;
    return message;
  }

  private report(error: TransportError): void {
    this.emit('problem', error);
  }
}

function publishProperties(opts: PublishOptions): IPublishPacket['properties'] | undefined {
  const properties: NonNullable<IPublishPacket['properties']> = {};
  if (opts.responseTopic !== undefined) properties.responseTopic = opts.responseTopic;
  if (opts.correlationData !== undefined) properties.correlationData = Buffer.from(opts.correlationData);
  if (opts.contentType !== undefined) properties.contentType = opts.contentType;
  return Object.keys(properties).length > 0 ? properties : undefined;
}

async function withTimeout(promise: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), ms);
  });
  try {
    return await Promise.race([promise.then(() => true as const), timeout]);
  } finally {
    clearTimeout(timer);
  }
}
