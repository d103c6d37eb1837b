// The broker connection of the operator commands (`cmd send`, `approve`, `bundle push`): the
// agent's own MqttLink (MQTT 5 with a 3.1.1 fallback, payload cap, TLS), opened for one job,
// with a deadline for reaching the broker and flags shared by the commands.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import { TransportError } from '../transport/errors.js';
import { type InboundMessage, MqttLink, type PublishOptions } from '../transport/mqtt-link.js';
import { type DeviceTopics, deviceTopics } from '../transport/topics.js';
import { type OptionSpecs, type ParsedArgs, UsageError, flag, requireFlag } from './command.js';

export const BROKER_USAGE = `Broker options (all commands):
  --mqtt URL             mqtt://host[:port] or mqtts://host[:port]
  --site S --device D    the target device; topics are under ztedge/S/D/ unless --prefix P
  --username U --password-file FILE
  --tls-ca FILE --tls-cert FILE --tls-key FILE`;

/** The options behind BROKER_USAGE, shared by every command that talks to a broker. */
export const BROKER_OPTIONS = {
  mqtt: { type: 'string' },
  site: { type: 'string' },
  device: { type: 'string' },
  prefix: { type: 'string' },
  username: { type: 'string' },
  'password-file': { type: 'string' },
  'tls-ca': { type: 'string' },
  'tls-cert': { type: 'string' },
  'tls-key': { type: 'string' },
} as const satisfies OptionSpecs;

export interface BrokerTarget {
  url: string;
  deviceId: string;
  topics: DeviceTopics;
  username?: string;
  password?: string;
  tls?: { caFile?: string; certFile?: string; keyFile?: string };
}

/** Reads the broker flags; the password comes from a file, never from the command line. */
export function brokerTarget(parsed: ParsedArgs): BrokerTarget {
  const url = requireFlag(parsed, 'mqtt');
  const site = requireFlag(parsed, 'site');
  const deviceId = requireFlag(parsed, 'device');
  const prefix = flag(parsed, 'prefix');
  let topics: DeviceTopics;
  try {
    topics = deviceTopics({ site, device: deviceId, ...(prefix === undefined ? {} : { prefix }) });
  } catch (err) {
    if (err instanceof TransportError) throw new UsageError(err.message);
    throw err;
  }
  const passwordFile = flag(parsed, 'password-file');
  const username = flag(parsed, 'username');
  if (passwordFile !== undefined && username === undefined) throw new UsageError('--password-file needs --username');
  const tlsFiles = { caFile: flag(parsed, 'tls-ca'), certFile: flag(parsed, 'tls-cert'), keyFile: flag(parsed, 'tls-key') };
  const anyTls = Object.values(tlsFiles).some((f) => f !== undefined);
  return {
    url,
    deviceId,
    topics,
    ...(username === undefined ? {} : { username }),
    ...(passwordFile === undefined ? {} : { password: readPassword(passwordFile) }),
    ...(anyTls ? { tls: tlsFiles } : {}),
  };
}

function readPassword(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8').trim();
  } catch (err) {
    throw new UsageError(`cannot read --password-file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

export interface OpenLinkOptions {
  subscriptions?: readonly string[];
  onMessage?: (message: InboundMessage) => void;
  /** Give up reaching the broker after this long. */
  timeoutMs: number;
  /** Largest incoming payload kept (results are small). Default 64 KiB. */
  maxPayloadBytes?: number;
}

/**
 * Connects and subscribes; resolves once online. Rejects with the TransportError of a broker
 * that refuses the connection (bad credentials, not authorized), or LINK_OFFLINE with the last
 * problem seen when the broker cannot be reached in time. The caller closes the link.
 */
export async function openLink(target: BrokerTarget, opts: OpenLinkOptions): Promise<MqttLink> {
  const link = new MqttLink({
    url: target.url,
    clientId: `ztedge-cli-${randomBytes(6).toString('hex')}`,
    ...(target.username === undefined ? {} : { username: target.username }),
    ...(target.password === undefined ? {} : { password: target.password }),
    ...(target.tls === undefined ? {} : { tls: target.tls }),
    // A clean session that ends with the connection: a one-shot client leaves nothing queued.
    sessionExpirySeconds: 0,
    subscriptions: opts.subscriptions ?? [],
    maxPayloadBytes: opts.maxPayloadBytes ?? 64 * 1024,
    backoff: { initialMs: 100, maxMs: 1000 },
    onMessage: (message) => opts.onMessage?.(message),
  });
  let lastProblem: TransportError | null = null;
  try {
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => {
        const why = lastProblem === null ? '' : ` (last problem: ${lastProblem.code}: ${lastProblem.message})`;
        reject(new TransportError('LINK_OFFLINE', `could not reach the broker at ${target.url} within ${opts.timeoutMs} ms${why}`));
      }, opts.timeoutMs);
      link.once('online', () => {
        clearTimeout(timer);
        resolve();
      });
      link.on('problem', (problem) => {
        lastProblem = problem;
        if (problem.code === 'LINK_CONNECT_REFUSED' || problem.code === 'LINK_SUBSCRIBE_REFUSED' || problem.code === 'LINK_TLS_FILES_UNREADABLE' || problem.code === 'LINK_TLS_FILES_UNUSABLE') {
          clearTimeout(timer);
          reject(problem);
        }
      });
      link.start();
    });
  } catch (err) {
    await link.close();
    throw err;
  }
  return link;
}

/** Publishes and waits for the broker's acknowledgement, at most `timeoutMs`. */
export async function publishWithin(link: MqttLink, topic: string, payload: Uint8Array, opts: PublishOptions, timeoutMs: number): Promise<void> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => reject(new TransportError('PUBLISH_FAILED', `the broker did not acknowledge ${topic} within ${timeoutMs} ms`)), timeoutMs);
  });
  try {
    await Promise.race([link.publish(topic, payload, opts), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
