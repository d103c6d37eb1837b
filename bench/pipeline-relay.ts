// The baseline bench:pipeline measures ztedge against: a relay doing the unavoidable work of a
// zero-trust command path and nothing else. Same broker, topics, QoS, MQTT 5 properties and
// message sizes as the agent, driven by the same senders and executor:
//
//   <prefix>cmd  ──►  relay  ──►  <prefix>exec/<action>  ──►  arm  ──►  <prefix>exec/<action>/ack
//                        └──────────────────►  response topic + correlation data (signed result)
//
// With `crypto: "ed25519"` it checks each command's Ed25519 signature over its COSE
// Sig_structure (node:crypto verify, key found by the kid in the protected header) and signs each
// result (node:crypto sign): the two public-key operations ztedge does per command. With
// `crypto: "none"` (the bare relay) it does neither: the same choreography alone. Both name each
// command to the executor by its envelope's SHA-256, as the agent does (the arm takes no other id). It keeps no
// state beyond the commands in flight: no replay guard, policy, audit log, outbox or fsync.
//
// Results are the agent's own result envelopes, built once by the bench (bench/pipeline-load.ts,
// one per action, with ztedge's encoder and the policies it reports), into which the relay writes
// each command's digest and cti before signing: same bytes on the wire, no encoder per command.
//
// This file runs as its own process (an esbuild bundle, like the agent): it imports nothing from
// src/, so none of ztedge's code is part of the baseline.
import { type KeyObject, createHash, createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import fs from 'node:fs';
import { Decoder } from 'cbor-x';
import mqtt from 'mqtt';

export interface RelayConfig {
  url: string;
  clientId: string;
  /** The device's topic prefix, ending in "/". */
  prefix: string;
  crypto: 'ed25519' | 'none';
  /** 'sync': on the event loop (cheapest on a busy machine); 'pool': libuv's thread pool, as ztedge does. */
  cryptoOn: 'sync' | 'pool';
  /** external_aad of commands: CBOR [device, "cmd"], hex. */
  commandAadHex: string;
  devicePrivateKeyPem: string;
  issuers: Array<{ kidHex: string; publicKeyPem: string; principal: string }>;
  /** A result envelope per action, with PLACEHOLDER_DIGEST and PLACEHOLDER_CTI in it, hex. */
  resultTemplates: Record<string, { messageHex: string; toBeSignedHex: string }>;
}

/** Written into the templates where each result's command digest and cti go. */
export const PLACEHOLDER_DIGEST = new Uint8Array(32).fill(0xa5);
export const PLACEHOLDER_CTI = new Uint8Array(16).fill(0x5a);

interface Template {
  message: Buffer;
  toBeSigned: Buffer;
  digestAt: [number, number];
  ctiAt: [number, number];
  signatureAt: number;
}

interface InFlight {
  replyTopic: string;
  correlation: Buffer | undefined;
  digest: Buffer;
  cti: Buffer;
  action: string;
}

const decoder = new Decoder({ mapsAsObjects: true, useRecords: false });

function offsetOf(haystack: Buffer, needle: Uint8Array, what: string): number {
  const at = haystack.indexOf(needle);
  if (at < 0 || haystack.indexOf(needle, at + 1) >= 0) throw new Error(`result template: ${what} must appear exactly once`);
  return at;
}

function template(hex: { messageHex: string; toBeSignedHex: string }): Template {
  const message = Buffer.from(hex.messageHex, 'hex');
  const toBeSigned = Buffer.from(hex.toBeSignedHex, 'hex');
  // The signature is the last field: a 64-byte string closing the message.
  if (message[message.length - 66] !== 0x58 || message[message.length - 65] !== 64) throw new Error('result template: no Ed25519 signature at the end');
  return {
    message,
    toBeSigned,
    digestAt: [offsetOf(message, PLACEHOLDER_DIGEST, 'digest'), offsetOf(toBeSigned, PLACEHOLDER_DIGEST, 'digest')],
    ctiAt: [offsetOf(message, PLACEHOLDER_CTI, 'cti'), offsetOf(toBeSigned, PLACEHOLDER_CTI, 'cti')],
    signatureAt: message.length - 64,
  };
}

/** A CBOR byte-string head for `length` bytes. */
function bstrHead(length: number): Buffer {
  if (length < 24) return Buffer.of(0x40 | length);
  if (length < 0x100) return Buffer.of(0x58, length);
  if (length < 0x10000) return Buffer.of(0x59, length >> 8, length & 0xff);
  const head = Buffer.alloc(5);
  head[0] = 0x5a;
  head.writeUInt32BE(length, 1);
  return head;
}

const SIGNATURE1 = Buffer.from([0x84, 0x6a, ...Buffer.from('Signature1')]);

export async function startRelay(config: RelayConfig): Promise<{ stop(): Promise<Record<string, number>> }> {
  const withCrypto = config.crypto === 'ed25519';
  const onPool = config.cryptoOn === 'pool';
  const deviceKey = createPrivateKey(config.devicePrivateKeyPem);
  const issuers = new Map(config.issuers.map((i) => [i.kidHex, { key: createPublicKey(i.publicKeyPem), principal: i.principal }]));
  const templates = new Map(Object.entries(config.resultTemplates).map(([action, t]) => [action, template(t)]));
  const aad = Buffer.from(config.commandAadHex, 'hex');
  const aadPart = Buffer.concat([bstrHead(aad.length), aad]);
  const inFlight = new Map<string, InFlight>();
  const counts = { commands: 0, refused: 0, results: 0 };
  const cmdTopic = `${config.prefix}cmd`;
  const execPrefix = `${config.prefix}exec/`;

  const client = await mqtt.connectAsync(config.url, {
    protocolVersion: 5,
    clientId: config.clientId,
    // As the agent's link: a persistent session, QoS 1 both ways, 64 messages in flight to it.
    clean: false,
    keepalive: 30,
    reconnectPeriod: 1000,
    properties: { sessionExpiryInterval: 7 * 24 * 3600, receiveMaximum: 64 },
  });
  const noDelay = () => (client.stream as { setNoDelay?: (on: boolean) => void }).setNoDelay?.(true);
  noDelay();
  client.on('connect', noDelay);

  const verified = (toBeSigned: Buffer, key: KeyObject, signature: Buffer, then: (ok: boolean) => void) => {
    if (!withCrypto) then(true);
    else if (onPool) verify(null, toBeSigned, key, signature, (err, ok) => then(err === null && ok));
    else then(verify(null, toBeSigned, key, signature));
  };
  const signed = (toBeSigned: Buffer, then: (signature: Buffer | null) => void) => {
    if (!withCrypto) then(null);
    else if (onPool) sign(null, toBeSigned, deviceKey, (err, signature) => then(err === null ? signature : null));
    else then(sign(null, toBeSigned, deviceKey));
  };

  function onCommand(bytes: Buffer, replyTopic: string | undefined, correlation: Buffer | undefined): void {
    counts.commands++;
    // COSE_Sign1: tag 18 over [protected, unprotected, payload, signature].
    const sign1 = (decoder.decode(bytes) as { tag?: number; value?: unknown }).value as [Buffer, unknown, Buffer, Buffer] | undefined;
    if (!Array.isArray(sign1) || replyTopic === undefined) return void counts.refused++;
    const [protectedBytes, , payload, signature] = sign1;
    const header = decoder.decode(protectedBytes) as Record<string, unknown>;
    const issuer = issuers.get(Buffer.from(header['4'] as Uint8Array).toString('hex'));
    if (issuer === undefined) return void counts.refused++;
    const toBeSigned = withCrypto ? Buffer.concat([SIGNATURE1, bstrHead(protectedBytes.length), protectedBytes, aadPart, bstrHead(payload.length), payload]) : bytes;
    verified(toBeSigned, issuer.key, signature, (ok) => {
      if (!ok) return void counts.refused++;
      const claims = decoder.decode(payload) as Record<string, unknown>;
      const action = claims.act as string;
      const cti = Buffer.from(claims['7'] as Uint8Array);
      // The executor's command id is the envelope's SHA-256 (unique per command), as the agent's.
      const digest = createHash('sha256').update(bytes).digest();
      const commandId = digest.toString('hex');
      inFlight.set(commandId, { replyTopic, correlation, digest, cti, action });
      // The agent's ExecutionRequest, same fields in the same order.
      const request = JSON.stringify({ commandId, action, principal: issuer.principal, resource: claims.res, args: claims.args });
      client.publish(`${execPrefix}${action}`, request, { qos: 1 }, () => {});
    });
  }

  function onAck(payload: Buffer): void {
    let ack: { id?: unknown };
    try {
      ack = JSON.parse(payload.toString('utf8')) as { id?: unknown };
    } catch {
      return;
    }
    const command = typeof ack.id === 'string' ? inFlight.get(ack.id) : undefined;
    const t = command === undefined ? undefined : templates.get(command.action);
    if (command === undefined || t === undefined) return;
    inFlight.delete(ack.id as string);
    const message = Buffer.from(t.message);
    const toBeSigned = Buffer.from(t.toBeSigned);
    command.digest.copy(message, t.digestAt[0]);
    command.digest.copy(toBeSigned, t.digestAt[1]);
    command.cti.copy(message, t.ctiAt[0]);
    command.cti.copy(toBeSigned, t.ctiAt[1]);
    signed(toBeSigned, (signature) => {
      signature?.copy(message, t.signatureAt);
      counts.results++;
      client.publish(command.replyTopic, message, { qos: 1, properties: command.correlation === undefined ? {} : { correlationData: command.correlation } }, () => {});
    });
  }

  client.on('message', (topic, payload, packet) => {
    if (topic === cmdTopic) {
      try {
        onCommand(payload, packet.properties?.responseTopic, packet.properties?.correlationData);
      } catch {
        counts.refused++; // not CBOR of the expected shape
      }
    } else if (topic.startsWith(execPrefix) && topic.endsWith('/ack')) onAck(payload);
  });
  await client.subscribeAsync([cmdTopic, `${execPrefix}+/ack`], { qos: 1 });
  return {
    async stop() {
      await client.endAsync(true);
      return { ...counts, inFlight: inFlight.size };
    },
  };
}

/** `node relay.cjs CONFIG.json`: prints `ready` once subscribed, its counts as JSON on SIGTERM. */
export async function relayMain(args: string[]): Promise<void> {
  const config = JSON.parse(fs.readFileSync(args[0]!, 'utf8')) as RelayConfig;
  const relay = await startRelay(config);
  process.stdout.write('ready\n');
  process.once('SIGTERM', () => {
    void relay.stop().then((counts) => {
      process.stdout.write(`${JSON.stringify(counts)}\n`);
      process.exit(0);
    });
  });
}
