// An independent MQTT client (plain mqtt.js) playing the other side in tests: an operator
// sending commands, a collector reading results and status.
import fs from 'node:fs';
import mqtt, { type IClientOptions, type IClientPublishOptions, type MqttClient } from 'mqtt';
import type { TestBroker } from './broker.js';
import { waitUntil } from './wait.js';

export interface ReceivedMessage {
  topic: string;
  payload: Buffer;
  retain: boolean;
  duplicate: boolean;
  responseTopic?: string;
  correlationData?: Buffer;
}

export interface PeerOptions {
  clientId?: string;
  /** false keeps a persistent session (needs a clientId). Default true. */
  clean?: boolean;
  username?: string;
  password?: string;
}

export class MqttPeer {
  readonly received: ReceivedMessage[] = [];

  private constructor(readonly client: MqttClient) {
    client.on('message', (topic, payload, packet) => {
      this.received.push({
        topic,
        payload,
        retain: packet.retain,
        duplicate: packet.dup,
        ...(packet.properties?.responseTopic ? { responseTopic: packet.properties.responseTopic } : {}),
        ...(packet.properties?.correlationData ? { correlationData: packet.properties.correlationData } : {}),
      });
    });
  }

  static async connect(broker: TestBroker, opts: PeerOptions = {}): Promise<MqttPeer> {
    const options: IClientOptions = {
      protocolVersion: broker.protocolVersion,
      clean: opts.clean ?? true,
      reconnectPeriod: 100,
      connectTimeout: 5_000,
      ...(opts.clientId ? { clientId: opts.clientId } : {}),
      ...(opts.username ? { username: opts.username, password: opts.password } : {}),
      ...(broker.protocolVersion === 5 && opts.clean === false ? { properties: { sessionExpiryInterval: 3600 } } : {}),
      ...(broker.tlsFiles
        ? {
            ca: fs.readFileSync(broker.tlsFiles.ca),
            cert: fs.readFileSync(broker.tlsFiles.clientCert),
            key: fs.readFileSync(broker.tlsFiles.clientKey),
          }
        : {}),
    };
    return new MqttPeer(await mqtt.connectAsync(broker.url, options));
  }

  async subscribe(filter: string): Promise<void> {
    await this.client.subscribeAsync(filter, { qos: 1 });
  }

  async publish(topic: string, payload: string | Buffer, opts: IClientPublishOptions = { qos: 1 }): Promise<void> {
    await this.client.publishAsync(topic, payload, opts);
  }

  on(topic: string): ReceivedMessage[] {
    return this.received.filter((m) => m.topic === topic);
  }

  async waitFor(topic: string, count = 1, timeoutMs = 10_000): Promise<ReceivedMessage[]> {
    await waitUntil(() => this.on(topic).length >= count, `${count} message(s) on ${topic}`, timeoutMs);
    return this.on(topic);
  }

  async close(): Promise<void> {
    await this.client.endAsync(true);
  }
}
