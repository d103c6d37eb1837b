// The audit sync over MQTT, for fleets whose broker cluster is the backbone: each batch is a
// QoS 1 publish to `<prefix>audit`, and the collector's signed acknowledgement comes back on
// `<prefix>audit/ack` (which the agent's link subscribes to), matched to its batch by the batch
// id it names. The agent's one MQTT link carries it; nothing is sent while the link is offline.
import type { SyncTransport } from '../audit/sync.js';
import { peekAckBatch } from '../audit/sync-protocol.js';
import { toHex } from '../crypto/bytes.js';
import { TransportError } from './errors.js';
import type { PublishOptions } from './mqtt-link.js';

/** What the transport needs of the MQTT link. */
export interface PublishingLink {
  readonly online: boolean;
  publish(topic: string, payload: Uint8Array, opts: PublishOptions): Promise<void>;
}

export const auditTopic = (prefix: string) => `${prefix}audit`;
export const auditAckTopic = (prefix: string) => `${prefix}audit/ack`;

interface Waiting {
  resolve: (reply: Uint8Array) => void;
  reject: (err: Error) => void;
  timer: NodeJS.Timeout;
}

export class MqttSyncTransport implements SyncTransport {
  readonly name = 'mqtt';
  private readonly waiting = new Map<string, Waiting>();

  constructor(
    private readonly link: PublishingLink,
    private readonly prefix: string,
  ) {}

  ready(): boolean {
    return this.link.online;
  }

  send(batch: Uint8Array, id: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    const key = toHex(id);
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.waiting.delete(key);
        reject(new TransportError('SYNC_TIMEOUT', `no acknowledgement on ${auditAckTopic(this.prefix)} within ${timeoutMs} ms`));
      }, timeoutMs);
      this.waiting.get(key)?.reject(new TransportError('SYNC_TIMEOUT', 'the same batch was sent again'));
      this.waiting.set(key, { resolve, reject, timer });
      this.link.publish(auditTopic(this.prefix), batch, { qos: 1, correlationData: id }).catch((err: unknown) => {
        clearTimeout(timer);
        if (this.waiting.get(key)?.timer === timer) this.waiting.delete(key);
        reject(err instanceof Error ? err : new Error(String(err)));
      });
    });
  }

  /** An acknowledgement arrived on the ack topic (checked by the sync loop, not here). */
  deliver(payload: Uint8Array): void {
    const id = peekAckBatch(payload);
    if (id === undefined) return;
    const key = toHex(id);
    const waiting = this.waiting.get(key);
    if (waiting === undefined) return; // an answer to an abandoned batch, or someone else's noise
    this.waiting.delete(key);
    clearTimeout(waiting.timer);
    waiting.resolve(payload);
  }

  /** Fails every batch still waiting (the link is closing). */
  close(): void {
    for (const [key, waiting] of this.waiting) {
      clearTimeout(waiting.timer);
      waiting.reject(new TransportError('LINK_CLOSED', 'the link is closed'));
      this.waiting.delete(key);
    }
  }
}
