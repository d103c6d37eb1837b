// A simulated robot arm / PLC behind ztedge: it takes authorized commands from
// `<prefix>exec/<action>` (JSON ExecutionRequest), moves (a short delay), keeps a little state
// (position, gripper, an e-stop latch) and acknowledges on `<prefix>exec/<action>/ack` with
// `{"id": commandId, "status": "ok" | "failed", "detail": {...}}`, QoS 1. The command id is the
// SHA-256 of the command envelope in hex (unique per command) and is echoed exactly.
//
// Like a real controller bridge it runs each command id at most once: QoS 1 may deliver an
// exec message twice (a retransmission after a reconnect), so a repeat is answered with the
// first acknowledgement again and counted in `duplicates`, never moved twice.
//
//   npx tsx scripts/sim-arm.ts --mqtt mqtt://127.0.0.1:1883 --prefix ztedge/site-1/arm-01/
import { randomBytes } from 'node:crypto';
import { pathToFileURL } from 'node:url';
import mqtt, { type IClientOptions, type MqttClient } from 'mqtt';
import type { ExecutionRequest } from '../src/agent/executors/types.js';

export interface SimArmOptions {
  url: string;
  /** The device's topic prefix, ending in "/". */
  prefix: string;
  /** Default: a random id; give one to keep the broker session across arm restarts. */
  clientId?: string;
  /** Simulated motion time per command. Default 5 ms; 0 acts at once (load tests). */
  motionMs?: number;
  /**
   * The resources (Cedar uids) this controller drives. An exec message naming any other is
   * answered `failed` (WRONG_RESOURCE) and never acted on: the controller checks the binding too.
   * Default: any resource.
   */
  resources?: readonly string[];
  /** Called after each command the arm acted on (not for repeats). */
  onExecuted?: (request: ExecutionRequest, ack: ArmAck) => void;
}

export interface ArmState {
  position: { x: number; y: number; z: number };
  gripper: 'open' | 'closed';
  estop: boolean;
}

export interface ArmAck {
  id: string;
  status: 'ok' | 'failed';
  detail: Record<string, unknown>;
  message?: string;
}

export interface SimArm {
  /** Commands the arm acted on, in order; each command id at most once. */
  readonly executed: ExecutionRequest[];
  /** Exec messages for a command id already acted on (answered again, not executed). */
  readonly duplicates: number;
  /** Exec messages that were not a well-formed ExecutionRequest (dropped). */
  readonly malformed: number;
  /** Exec messages for a resource this controller does not drive (refused, not executed). */
  readonly foreign: number;
  readonly state: ArmState;
  stop(): Promise<void>;
}

/** Exec messages are small JSON objects; anything larger is not one. */
const MAX_REQUEST_BYTES = 64 * 1024;
/** Acknowledgements remembered for repeats; the oldest are forgotten first. */
const REMEMBERED_ACKS = 10_000;
const WORKSPACE_LIMIT = 2000;

export async function startSimArm(options: SimArmOptions): Promise<SimArm> {
  if (!options.prefix.endsWith('/') || /[+#]/.test(options.prefix)) throw new Error('prefix must end with "/" and contain no wildcards');
  const motionMs = options.motionMs ?? 5;
  const executed: ExecutionRequest[] = [];
  const acks = new Map<string, { topic: string; payload: string }>();
  const state: ArmState = { position: { x: 0, y: 0, z: 0 }, gripper: 'open', estop: false };
  const counters = { duplicates: 0, malformed: 0, foreign: 0 };
  const resources = options.resources === undefined ? null : new Set(options.resources);
  const client = await connect(options.url, options.clientId ?? `sim-arm-${randomBytes(4).toString('hex')}`);
  noDelay(client);
  client.on('connect', () => noDelay(client));
  const execPrefix = `${options.prefix}exec/`;
  // One motion at a time, in arrival order, like a single controller.
  let queue = Promise.resolve();

  client.on('message', (topic, payload) => {
    const action = topic.startsWith(execPrefix) ? topic.slice(execPrefix.length) : '';
    if (action === '' || action.includes('/')) return; // our own acks come back on exec/<action>/ack
    queue = queue.then(() => handle(topic, action, payload)).catch(() => undefined);
  });

  async function handle(topic: string, action: string, payload: Buffer): Promise<void> {
    const request = parseRequest(payload, action);
    if (request === null) {
      counters.malformed++;
      return;
    }
    const ackTopic = `${topic}/ack`;
    const earlier = acks.get(request.commandId);
    if (earlier !== undefined) {
      counters.duplicates++;
      publishAck(earlier.topic, earlier.payload);
      return;
    }
    if (resources !== null && !resources.has(request.resource)) {
      counters.foreign++;
      const refusal: ArmAck = { id: request.commandId, status: 'failed', message: `this controller does not drive ${request.resource}`, detail: { code: 'WRONG_RESOURCE' } };
      acks.set(request.commandId, { topic: ackTopic, payload: JSON.stringify(refusal) });
      publishAck(ackTopic, JSON.stringify(refusal));
      return;
    }
    if (motionMs > 0) await new Promise((resolve) => setTimeout(resolve, motionMs));
    const ack = perform(state, request);
    const text = JSON.stringify(ack);
    acks.set(request.commandId, { topic: ackTopic, payload: text });
    if (acks.size > REMEMBERED_ACKS) acks.delete(acks.keys().next().value!);
    executed.push(request);
    options.onExecuted?.(request, ack);
    publishAck(ackTopic, text);
  }

  // Not awaited: the next motion does not wait for the broker's PUBACK; mqtt.js resends it if needed.
  function publishAck(topic: string, payload: string): void {
    client.publish(topic, payload, { qos: 1 }, () => {});
  }

  await client.subscribeAsync(`${execPrefix}+`, { qos: 1 });
  return {
    executed,
    get duplicates() {
      return counters.duplicates;
    },
    get malformed() {
      return counters.malformed;
    },
    get foreign() {
      return counters.foreign;
    },
    state,
    async stop() {
      await client.endAsync(true);
    },
  };
}

/** MQTT 5 first; a broker that only speaks 3.1.1 (aedes) refuses it, then 3.1.1. */
async function connect(url: string, clientId: string): Promise<MqttClient> {
  const base: IClientOptions = { clientId, clean: false, reconnectPeriod: 200, connectTimeout: 5000 };
  try {
    return await mqtt.connectAsync(url, { ...base, protocolVersion: 5, properties: { sessionExpiryInterval: 3600 } });
  } catch (err) {
    if (!/unsupported protocol|unacceptable protocol/i.test(String((err as Error).message))) throw err;
    return await mqtt.connectAsync(url, { ...base, protocolVersion: 4 });
  }
}

/** Acks go out at once, not held back by Nagle's algorithm until the broker's TCP ack. */
function noDelay(client: MqttClient): void {
  (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
}

function parseRequest(payload: Buffer, action: string): ExecutionRequest | null {
  if (payload.length > MAX_REQUEST_BYTES) return null;
  let value: unknown;
  try {
    value = JSON.parse(payload.toString('utf8'));
  } catch {
    return null;
  }
  if (typeof value !== 'object' || value === null) return null;
  const r = value as Record<string, unknown>;
  if (typeof r.commandId !== 'string' || !/^[0-9a-f]{64}$/.test(r.commandId)) return null;
  if (r.action !== action || typeof r.principal !== 'string' || typeof r.resource !== 'string') return null;
  const args = typeof r.args === 'object' && r.args !== null && !Array.isArray(r.args) ? r.args : {};
  return { commandId: r.commandId, action, principal: r.principal, resource: r.resource, args };
}

/** Applies one command to the arm's state; pure apart from `state`. */
function perform(state: ArmState, request: ExecutionRequest): ArmAck {
  const args = request.args as Record<string, unknown>;
  const ok = (detail: Record<string, unknown> = {}): ArmAck => ({ id: request.commandId, status: 'ok', detail: { ...detail, ...snapshot(state) } });
  const failed = (code: string, message: string): ArmAck => ({ id: request.commandId, status: 'failed', message, detail: { code, ...snapshot(state) } });
  switch (request.action) {
    case 'estop':
      state.estop = true;
      return ok();
    case 'reset':
      state.estop = false;
      return ok();
  }
  if (state.estop) return failed('ESTOP_LATCHED', 'e-stop is latched; reset first');
  switch (request.action) {
    case 'move': {
      const target = { ...state.position };
      for (const axis of ['x', 'y', 'z'] as const) {
        const v = args[axis];
        if (v === undefined) continue;
        if (typeof v !== 'number' || !Number.isFinite(v) || Math.abs(v) > WORKSPACE_LIMIT) {
          return failed('OUT_OF_WORKSPACE', `${axis} must be a number within ±${WORKSPACE_LIMIT}`);
        }
        target[axis] = v;
      }
      state.position = target;
      return ok();
    }
    case 'grip':
      state.gripper = 'closed';
      return ok();
    case 'release':
      state.gripper = 'open';
      return ok();
    case 'weld':
      return ok({ seam: typeof args.seam === 'string' ? args.seam : 'default' });
    case 'override_limits':
      return ok({ limits: 'lifted' });
    default:
      return failed('UNKNOWN_ACTION', `the arm has no action ${request.action}`);
  }
}

function snapshot(state: ArmState): Record<string, unknown> {
  return { position: { ...state.position }, gripper: state.gripper, estop: state.estop };
}

function flagValue(args: string[], name: string): string | undefined {
  const i = args.indexOf(`--${name}`);
  return i === -1 ? undefined : args[i + 1];
}

async function runFromCommandLine(args: string[]): Promise<void> {
  const url = flagValue(args, 'mqtt');
  const prefix = flagValue(args, 'prefix');
  if (url === undefined || prefix === undefined) {
    process.stderr.write('usage: tsx scripts/sim-arm.ts --mqtt URL --prefix ztedge/<site>/<device>/ [--client-id ID] [--resource \'Type::"id"\']...\n');
    process.exitCode = 2;
    return;
  }
  const clientId = flagValue(args, 'client-id');
  const resources = args.flatMap((arg, i) => (arg === '--resource' && args[i + 1] !== undefined ? [args[i + 1]!] : []));
  const log = (fields: Record<string, unknown>) => process.stdout.write(`${JSON.stringify({ time: new Date().toISOString(), ...fields })}\n`);
  const arm = await startSimArm({
    url,
    prefix,
    ...(clientId === undefined ? {} : { clientId }),
    ...(resources.length === 0 ? {} : { resources }),
    onExecuted: (request, ack) => log({ message: 'executed', action: request.action, id: request.commandId, principal: request.principal, status: ack.status, ...ack.detail }),
  });
  log({ message: 'sim arm ready', url, subscribed: `${prefix}exec/+` });
  const stop = () => {
    void arm.stop().then(() => log({ message: 'sim arm stopped', executed: arm.executed.length, duplicates: arm.duplicates }));
  };
  process.once('SIGINT', stop);
  process.once('SIGTERM', stop);
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  await runFromCommandLine(process.argv.slice(2));
}
