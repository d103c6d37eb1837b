// The device's MQTT topic names, derived from one prefix (default `ztedge/<site>/<device>/`).
// Ids become topic levels, so anything that could change the topic's shape (`/`), turn it into
// a filter (`+`, `#`) or address broker internals (a leading `$`) is refused up front.
import { TransportError, type TransportErrorCode } from './errors.js';

/** Same shape as the configuration's device and site ids: one safe topic level. */
const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
/** Action ids may also carry `:` (e.g. `plc:write`); still a single level. */
const ACTION_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$/;
const MAX_PREFIX_BYTES = 256;
/** Far below MQTT's 65535: topics here are short, and a response topic comes from outside. */
export const MAX_TOPIC_BYTES = 1024;

export interface DeviceTopics {
  prefix: string;
  /** Command envelopes in (MQTT 5 response topic + correlation data honoured). */
  cmd: string;
  /** Signed results out, when the command named no response topic. */
  cmdResult: string;
  approve: string;
  /** Signed answers to approvals out, when the approval named no response topic. */
  approveResult: string;
  /** Signed policy bundles in (retained). */
  bundle: string;
  /** Signed rollback instructions in (not retained: each is for one state of the device). */
  rollback: string;
  attestChallenge: string;
  attestEvidence: string;
  /** Retained device status; the last will sets it to offline. */
  status: string;
  /** Topics the agent subscribes to. */
  inbound: readonly string[];
  /**
   * The namespace MQTT 5 response topics must lie in (ends in "/"; default `<prefix>cmd/result/`):
   * its root (e.g. `cmd/result`) or any topic below it.
   */
  replyPrefix: string;
  /** Whether a response topic named by a sender is one the agent will publish a result to. */
  isReplyTopic(topic: string): boolean;
  /** Where an authorized command goes to the local controller. */
  exec(action: string): string;
}

/** Topics (or, ending in "/", families of topics) the device reads or its controllers act on. */
const CONTROL_TOPICS = ['cmd', 'approve', 'bundle', 'status', 'attest/', 'exec/'] as const;

export function deviceTopics(opts: { site: string; device: string; prefix?: string; replyPrefix?: string }): DeviceTopics {
  checkId(opts.site, 'site', 'TOPIC_SITE_INVALID');
  checkId(opts.device, 'device', 'TOPIC_DEVICE_INVALID');
  const prefix = opts.prefix ?? `ztedge/${opts.site}/${opts.device}/`;
  checkPrefix(prefix);
  const replyPrefix = opts.replyPrefix ?? `${prefix}cmd/result/`;
  checkReplyPrefix(replyPrefix, prefix);
  const replyRoot = replyPrefix.slice(0, -1);
  const cmd = `${prefix}cmd`;
  const approve = `${prefix}approve`;
  const bundle = `${prefix}bundle`;
  const rollback = `${prefix}bundle/rollback`;
  const attestChallenge = `${prefix}attest/challenge`;
  return {
    prefix,
    cmd,
    cmdResult: `${prefix}cmd/result`,
    approve,
    approveResult: `${approve}/result`,
    bundle,
    rollback,
    attestChallenge,
    attestEvidence: `${prefix}attest/evidence`,
    status: `${prefix}status`,
    inbound: [cmd, approve, bundle, rollback, attestChallenge],
    replyPrefix,
    isReplyTopic: (topic) => isPublishableTopic(topic) && (topic === replyRoot || topic.startsWith(replyPrefix)),
    exec(action: string): string {
      if (typeof action !== 'string' || !ACTION_PATTERN.test(action)) {
        throw new TransportError('TOPIC_ACTION_INVALID', `action id ${describe(action)} is not a single safe topic level`);
      }
      return `${prefix}exec/${action}`;
    },
  };
}

/**
 * A topic this device may publish to: non-empty, bounded, no wildcards, no NUL, not a `$`
 * broker topic. Response topics named by incoming commands are checked with this.
 */
export function isPublishableTopic(topic: unknown): topic is string {
  return (
    typeof topic === 'string' &&
    topic.length > 0 &&
    Buffer.byteLength(topic, 'utf8') <= MAX_TOPIC_BYTES &&
    !/[+#\u0000]/.test(topic) &&
    !topic.startsWith('$')
  );
}

function checkId(id: unknown, what: string, code: TransportErrorCode): void {
  if (typeof id !== 'string' || !ID_PATTERN.test(id)) {
    throw new TransportError(code, `${what} id ${describe(id)} must be 1-64 characters of [A-Za-z0-9._-], starting with a letter or digit`);
  }
}

function checkPrefix(prefix: unknown): void {
  const fail = (why: string) => new TransportError('TOPIC_PREFIX_INVALID', `topic prefix ${describe(prefix)} ${why}`);
  if (typeof prefix !== 'string' || !prefix.endsWith('/')) throw fail('must end with "/"');
  if (Buffer.byteLength(prefix, 'utf8') > MAX_PREFIX_BYTES) throw fail(`is longer than ${MAX_PREFIX_BYTES} bytes`);
  if (/[+#\u0000]/.test(prefix)) throw fail('must not contain "+", "#" or NUL');
  if (prefix.startsWith('$')) throw fail('must not start with "$" (broker topics)');
  if (prefix.slice(0, -1).split('/').some((level) => level === '')) throw fail('must not contain empty levels');
}

/**
 * A reply namespace may hold no topic the device reads or its controllers act on: neither its
 * root nor anything below it may be a control topic, and it may neither contain nor lie inside a
 * control family (`exec/…`, `attest/…`). So no sender can have a result published onto one.
 */
function checkReplyPrefix(replyPrefix: unknown, prefix: string): void {
  const fail = (why: string) => new TransportError('TOPIC_REPLY_PREFIX_INVALID', `reply topic prefix ${describe(replyPrefix)} ${why}`);
  if (typeof replyPrefix !== 'string' || !replyPrefix.endsWith('/') || replyPrefix === '/') throw fail('must be a topic prefix ending with "/"');
  if (!isPublishableTopic(replyPrefix) || Buffer.byteLength(replyPrefix, 'utf8') > MAX_PREFIX_BYTES) {
    throw fail(`must be at most ${MAX_PREFIX_BYTES} bytes, without "+", "#", NUL or a leading "$"`);
  }
  if (replyPrefix.slice(0, -1).split('/').some((level) => level === '')) throw fail('must not contain empty levels');
  const root = replyPrefix.slice(0, -1);
  for (const control of CONTROL_TOPICS) {
    const topic = `${prefix}${control}`;
    const overlaps = control.endsWith('/')
      ? replyPrefix.startsWith(topic) || topic.startsWith(replyPrefix)
      : topic === root || topic.startsWith(replyPrefix);
    if (overlaps) throw fail(`overlaps the device's control topic ${topic}${control.endsWith('/') ? '#' : ''}`);
  }
}

function describe(value: unknown): string {
  if (typeof value !== 'string') return `(${typeof value})`;
  return JSON.stringify(value.length > 80 ? `${value.slice(0, 80)}…` : value);
}
