// End-to-end test support: a site on disk (key files, signed bundles, agent configuration), the
// agent in-process against a private broker, the simulated arm, an operator peer that publishes
// raw envelopes and collects results, and the `ztedge` CLI run in-process or as a process.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { validateConfig, type AgentConfig } from '../../src/agent/config.js';
import { Agent } from '../../src/agent/runtime.js';
import type { AuditRecord } from '../../src/audit/chain.js';
import { main } from '../../src/cli/main.js';
import { bytesEqual, toHex } from '../../src/crypto/bytes.js';
import { sha256 } from '../../src/crypto/hash.js';
import { writePrivateKeyFile, writePublicKeyFile } from '../../src/crypto/key-files.js';
import type { PrivateKey } from '../../src/crypto/keys.js';
import { decodeCbor } from '../../src/envelope/cbor.js';
import { signCommand } from '../../src/envelope/command.js';
import { type VerifiedResult, verifyResult } from '../../src/envelope/result.js';
import { startSimArm, type SimArm } from '../../scripts/sim-arm.js';
import { CELL_POLICIES, type Keys, cellBundle, makeKeys } from '../agent/fixture.js';
import type { TestBroker } from '../support/broker.js';
import { MqttPeer, type ReceivedMessage } from '../support/mqtt-peer.js';
import { waitUntil } from '../support/wait.js';

export const SITE = 'site-1';
export const DEVICE = 'arm-01';
export const PREFIX = `ztedge/${SITE}/${DEVICE}/`;
export const ARM = 'Arm::"arm-01"';
export const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));

/** The robot cell's policies plus grip/release for operators: actions without a rate limit. */
export const GRIP_POLICY = `
@id("operators-grip")
permit (principal in Role::"operator", action in [Action::"grip", Action::"release"], resource in Cell::"cell-1");
`;

const KEY_NAMES = ['root', 'device', 'planner', 'alice', 'bob', 'mallory', 'stranger'] as const;

export interface Site {
  dir: string;
  keys: Keys;
  /** PEM files: `<name>.key` (0600) and `<name>.pub`. */
  keyFile(name: (typeof KEY_NAMES)[number]): string;
  pubFile(name: (typeof KEY_NAMES)[number]): string;
  stateDir: string;
  /** A signed bundle for this device, valid from a minute ago for 30 days. */
  bundle(revision: number, policies?: string): Uint8Array;
  /** Writes a bundle file and returns its path. */
  bundleFile(revision: number, policies?: string): string;
  /** The agent's configuration; `raw` is merged over the defaults before validation. */
  config(brokerUrl: string | null, raw?: Record<string, unknown>): AgentConfig;
  remove(): void;
}

export function makeSite(): Site {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-e2e-'));
  const keys = makeKeys();
  for (const name of KEY_NAMES) {
    writePrivateKeyFile(path.join(dir, `${name}.key`), keys[name]);
    writePublicKeyFile(path.join(dir, `${name}.pub`), keys[name].publicKey);
  }
  const stateDir = path.join(dir, 'state');
  const bundle = (revision: number, policies = CELL_POLICIES) => cellBundle(keys, revision, policies, { nowMs: Date.now(), id: 'cell-e2e', sites: [SITE] });
  return {
    dir,
    keys,
    stateDir,
    keyFile: (name) => path.join(dir, `${name}.key`),
    pubFile: (name) => path.join(dir, `${name}.pub`),
    bundle,
    bundleFile(revision, policies) {
      const file = path.join(dir, `bundle-r${revision}-${randomBytes(3).toString('hex')}.cbor`);
      fs.writeFileSync(file, bundle(revision, policies));
      return file;
    },
    config(brokerUrl, raw = {}) {
      return validateConfig({
        device: { id: DEVICE, site: SITE },
        stateDir,
        deviceKey: path.join(dir, 'device.key'),
        roots: { keys: [path.join(dir, 'root.pub')], threshold: 1 },
        broker: { url: brokerUrl, clientId: `ztedge-${DEVICE}-${path.basename(dir)}` },
        http: { port: 0 },
        executors: Object.fromEntries(['move', 'grip', 'release', 'estop', 'weld'].map((a) => [a, { kind: 'mqtt', timeout: '10s' }])),
        ...raw,
      });
    },
    remove: () => fs.rmSync(dir, { recursive: true, force: true }),
  };
}

export interface RunningAgent {
  agent: Agent;
  logs: string[];
  stop(): Promise<void>;
}

/** Starts an agent in-process; its JSON log lines are kept (printed when a test fails). */
export async function startAgent(config: AgentConfig, now?: () => number): Promise<RunningAgent> {
  const logs: string[] = [];
  const log = (level: string) => (message: string, fields?: Record<string, unknown>) => logs.push(JSON.stringify({ level, message, ...fields }));
  const agent = new Agent({ config, logger: { info: log('info'), warn: log('warn') }, ...(now === undefined ? {} : { now }) });
  await agent.start();
  let stopped = false;
  return {
    agent,
    logs,
    async stop() {
      if (stopped) return;
      stopped = true;
      await agent.stop();
    },
  };
}

/** Waits until the agent is on the broker with bundle `revision` active. */
export function untilOnlineWithBundle(agent: Agent, revision = 1): Promise<void> {
  return waitUntil(() => agent.status().online && agent.status().bundle?.revision === revision, `agent online with bundle ${revision}`);
}

export async function startArm(broker: TestBroker, clientId?: string): Promise<SimArm> {
  return startSimArm({ url: broker.url, prefix: PREFIX, resources: [ARM, `Device::"${DEVICE}"`], ...(clientId === undefined ? {} : { clientId }) });
}

/** Signs a command for this device as the cell fixture's principals do. */
export function command(
  key: PrivateKey,
  action: string,
  args: Record<string, string | number | boolean> = {},
  over: { now?: number; lifetimeMs?: number; device?: string; cti?: Uint8Array; resource?: string; issuer?: string } = {},
): Uint8Array {
  return signCommand({
    key,
    ...(over.issuer === undefined ? {} : { issuer: over.issuer }),
    deviceId: over.device ?? DEVICE,
    topic: 'cmd',
    action,
    resource: over.resource ?? ARM,
    args,
    now: over.now ?? Date.now(),
    lifetimeMs: over.lifetimeMs ?? 60_000,
    ...(over.cti === undefined ? {} : { cti: over.cti }),
  });
}

/**
 * An operator on the broker: publishes envelopes to the device's `cmd` topic (with a response
 * topic and correlation data on MQTT 5) and collects the results, which it verifies with the
 * device key.
 */
export class Operator {
  private constructor(
    readonly peer: MqttPeer,
    private readonly broker: TestBroker,
    private readonly devicePublicKey: PrivateKey['publicKey'],
  ) {}

  static async connect(broker: TestBroker, site: Site, opts: { clientId?: string; clean?: boolean } = {}): Promise<Operator> {
    const peer = await MqttPeer.connect(broker, opts);
    await peer.subscribe(`${PREFIX}cmd/result/#`);
    return new Operator(peer, broker, site.keys.device.publicKey);
  }

  /** Publishes an envelope; returns its digest, which its results name. */
  async send(envelope: Uint8Array): Promise<Uint8Array> {
    const correlation = randomBytes(8);
    await this.peer.publish(
      `${PREFIX}cmd`,
      Buffer.from(envelope),
      this.broker.protocolVersion === 5
        ? { qos: 1, properties: { responseTopic: `${PREFIX}cmd/result/${correlation.toString('hex')}`, correlationData: correlation } }
        : { qos: 1 },
    );
    return sha256(envelope);
  }

  /** Distinct results (by payload) for the command with `digest`, each verified. */
  results(digest: Uint8Array, now = Date.now()): VerifiedResult[] {
    const seen = new Set<string>();
    const out: VerifiedResult[] = [];
    for (const message of this.resultMessages()) {
      const id = toHex(sha256(message.payload));
      if (seen.has(id)) continue;
      let result: VerifiedResult;
      try {
        result = this.verify(message.payload, now);
      } catch {
        continue;
      }
      if (!bytesEqual(result.claims.cmd, digest)) continue;
      seen.add(id);
      out.push(result);
    }
    return out;
  }

  /** Waits for the `count`-th distinct result of `digest` and returns them all. */
  async waitResults(digest: Uint8Array, count = 1, now?: () => number, timeoutMs = 15_000): Promise<VerifiedResult[]> {
    await waitUntil(() => this.results(digest, now?.()).length >= count, `${count} result(s) for ${toHex(digest).slice(0, 12)}`, timeoutMs);
    return this.results(digest, now?.());
  }

  async result(digest: Uint8Array, now?: () => number): Promise<VerifiedResult['claims']> {
    return (await this.waitResults(digest, 1, now))[0]!.claims;
  }

  /** Result messages for `digest` as received, duplicates included. */
  deliveries(digest: Uint8Array): ReceivedMessage[] {
    return this.resultMessages().filter((m) => {
      try {
        return bytesEqual(this.verify(m.payload, Date.now() + 3_600_000).claims.cmd, digest);
      } catch {
        return false;
      }
    });
  }

  verify(payload: Uint8Array, now = Date.now()): VerifiedResult {
    const key = this.devicePublicKey;
    return verifyResult(payload, { keyResolver: (kid) => (bytesEqual(kid, key.kid) ? key : undefined), deviceId: DEVICE, topic: 'cmd/result', now });
  }

  private resultMessages(): ReceivedMessage[] {
    return this.peer.received.filter((m) => m.topic.startsWith(`${PREFIX}cmd/result`));
  }

  close(): Promise<void> {
    return this.peer.close();
  }
}

export interface CliRun {
  code: number;
  stdout: string[];
  stderr: string[];
}

/** Runs `ztedge <args>` in-process. */
export async function cli(args: string[], onStdout?: (line: string) => void): Promise<CliRun> {
  const stdout: string[] = [];
  const stderr: string[] = [];
  const code = await main(args, {
    stdout: (text) => {
      stdout.push(text);
      onStdout?.(text);
    },
    stderr: (text) => stderr.push(text),
    readStdin: async () => Buffer.alloc(0),
  });
  return { code, stdout, stderr };
}

/** The broker flags of the CLI for this site. */
export function brokerArgs(broker: TestBroker): string[] {
  return ['--mqtt', broker.url, '--site', SITE, '--device', DEVICE];
}

export interface SpawnedCli {
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  stdout: () => string;
  stderr: () => string;
  kill(signal: NodeJS.Signals): void;
}

/** Runs `ztedge <args>` as its own process (the development entry, through tsx). */
export function spawnCli(args: string[], env: Record<string, string> = {}): SpawnedCli {
  const child = spawn(process.execPath, [path.join(REPO_ROOT, 'src/cli/bin.mjs'), ...args], {
    cwd: REPO_ROOT,
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', HOME: os.tmpdir(), ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  let err = '';
  child.stdout.on('data', (chunk: Buffer) => (out += chunk.toString()));
  child.stderr.on('data', (chunk: Buffer) => (err += chunk.toString()));
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (code, signal) => resolve({ code, signal })));
  return { exited, stdout: () => out, stderr: () => err, kill: (signal) => child.kill(signal) };
}

/** Every audit record with its CBOR body decoded. */
export function auditTrail(agent: Agent): Array<{ record: AuditRecord; body: Map<string, unknown> }> {
  const out = [];
  for (let from = 1; ; ) {
    const records = agent.audit.read(from, 500);
    for (const record of records) out.push({ record, body: decodeCbor(record.body, { maxBytes: 1 << 20, maxDepth: 32 }) as Map<string, unknown> });
    if (records.length < 500) return out;
    from = records.at(-1)!.seq + 1;
  }
}
