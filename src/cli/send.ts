// `ztedge cmd send`: sign a command, publish it to the device's `cmd` topic and wait for its
// signed result. On MQTT 5 the command names a private response topic and correlation data; on
// 3.1.1 the result comes on `cmd/result`. Either way a result is matched to the command by its
// `cmd` claim (the SHA-256 of the envelope sent), so results for other commands are ignored.
import { randomBytes } from 'node:crypto';
import { bytesEqual, toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { readPrivateKeyFile, readPublicKeyFile } from '../crypto/key-files.js';
import type { PublicKey } from '../crypto/keys.js';
import { COMMAND_TOPIC, signCommand } from '../envelope/command.js';
import { EnvelopeError } from '../envelope/errors.js';
import { RESULT_TOPIC, type ResultClaims, readUnverifiedResult, verifyResult } from '../envelope/result.js';
import type { InboundMessage } from '../transport/mqtt-link.js';
import { BROKER_OPTIONS, BROKER_USAGE, brokerTarget, openLink, publishWithin } from './broker-client.js';
import { durationFlag, parseCommandArgs } from './command-args.js';
import { CliError, type CliIo, type CommandSpec, type ParsedArgs, flag, hasFlag, requireFlag } from './command.js';

export const SEND_USAGE = `Usage: ztedge cmd send --mqtt URL --site S --device D --key KEY --act ACTION --res 'Type::"id"'
                       [--args JSON] [--iss NAME] [--lifetime 60s] [--timeout 10s]
                       [--device-key PUB] [--no-wait] [--prefix P]

Signs a command with KEY, publishes it to the device and prints its signed result as JSON.
  --iss         the iss claim: the principal the bundle gives the key (default: none, which the
                agent reads as that principal)
  --lifetime    time until the command expires (default 60s)
  --timeout     how long to wait for a result (default 10s)
  --device-key  the device's public key: results are verified with it, and results that do not
                verify are ignored; without it results are printed with "verified": false
  --no-wait     when the command is held for approval, stop at the pending result
Exit status: 0 allowed, 3 denied, 4 pending (with --no-wait), 1 no result in time or an error.

${BROKER_USAGE}`;

export const EXIT_BY_DECISION = { allow: 0, deny: 3, pending: 4 } as const;

export const sendCommandSpec: CommandSpec = {
  name: 'send',
  summary: 'sign a command, send it to a device and wait for its signed result',
  usage: SEND_USAGE,
  options: {
    ...BROKER_OPTIONS,
    key: { type: 'string' },
    act: { type: 'string' },
    res: { type: 'string' },
    args: { type: 'string' },
    iss: { type: 'string' },
    lifetime: { type: 'string' },
    timeout: { type: 'string' },
    'device-key': { type: 'string' },
    'no-wait': { type: 'boolean' },
  },
  run: sendCommand,
};

async function sendCommand(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const target = brokerTarget(parsed);
  const action = requireFlag(parsed, 'act');
  const resource = requireFlag(parsed, 'res');
  const commandArgs = parseCommandArgs(flag(parsed, 'args'));
  const lifetimeMs = durationFlag(parsed, 'lifetime', '60s', 1000);
  const timeoutMs = durationFlag(parsed, 'timeout', '10s', 1);
  const keyFile = requireFlag(parsed, 'key');
  const deviceKeyFile = flag(parsed, 'device-key');
  const key = readPrivateKeyFile(keyFile);
  const deviceKey = deviceKeyFile === undefined ? undefined : readPublicKeyFile(deviceKeyFile);
  const issuer = flag(parsed, 'iss');
  const results = new ResultWaiter(target.deviceId, deviceKey, (warning) => io.stderr(warning));
  // `cmd/result/#` also matches `cmd/result` itself: one filter for both protocol versions.
  const link = await openLink(target, { subscriptions: [`${target.topics.cmdResult}/#`], onMessage: (m) => results.offer(m), timeoutMs });
  try {
    const now = Date.now();
    const envelope = signCommand({
      key,
      ...(issuer === undefined ? {} : { issuer }),
      deviceId: target.deviceId,
      topic: COMMAND_TOPIC,
      action,
      resource,
      args: commandArgs,
      now,
      lifetimeMs,
    });
    const correlation = link.protocolVersion === 5 ? new Uint8Array(randomBytes(16)) : undefined;
    results.expect(sha256(envelope), correlation);
    const reply = correlation === undefined ? {} : { responseTopic: `${target.topics.cmdResult}/${toHex(correlation.subarray(0, 8))}`, correlationData: correlation };
    await publishWithin(link, target.topics.cmd, envelope, { qos: 1, ...reply }, timeoutMs);
    let result = await results.next(timeoutMs);
    // A held command settles when approved, rejected or expired: wait until its exp, plus the timeout.
    const settleBy = now + lifetimeMs + timeoutMs;
    while (result !== null) {
      io.stdout(JSON.stringify(result));
      if (result.decision !== 'pending' || hasFlag(parsed, 'no-wait')) return EXIT_BY_DECISION[result.decision];
      result = await results.next(Math.max(0, settleBy - Date.now()));
    }
    throw new CliError('RESULT_TIMEOUT', `no ${results.seen > 0 ? 'settled ' : ''}result for command ${toHex(results.digest!)} in time`);
  } finally {
    await link.close();
  }
}

/** A result as printed: JSON-friendly, with whether its signature was checked. */
export interface PrintedResult {
  command: string;
  decision: ResultClaims['decision'];
  outcome: string;
  reasons: string[];
  policies: string[];
  device: string;
  issuedAt: string;
  cti: string;
  /** Expiry of the just-in-time grant the command created or was allowed by. */
  grantExpires?: string;
  verified: boolean;
}

/** Picks this command's results out of everything arriving on the result topics, in order. */
export class ResultWaiter {
  digest: Uint8Array | undefined;
  /** Results accepted so far. */
  seen = 0;
  private correlation: Uint8Array | undefined;
  private readonly queue: PrintedResult[] = [];
  private readonly delivered = new Set<string>();
  private wake: (() => void) | null = null;

  constructor(
    private readonly deviceId: string,
    private readonly deviceKey: PublicKey | undefined,
    private readonly warn: (text: string) => void,
  ) {}

  expect(digest: Uint8Array, correlation?: Uint8Array): void {
    this.digest = digest;
    this.correlation = correlation;
  }

  offer(message: InboundMessage): void {
    if (this.digest === undefined) return;
    // With correlation data, MQTT 5 says whose answer this is; a different one is someone else's.
    if (this.correlation !== undefined && message.correlationData !== undefined && !bytesEqual(message.correlationData, this.correlation)) return;
    let claims: ResultClaims;
    try {
      claims = readUnverifiedResult(message.payload);
    } catch {
      return; // not a result
    }
    if (!bytesEqual(claims.cmd, this.digest)) return;
    // Results are delivered at least once: the same signed result again is not news.
    const id = toHex(sha256(message.payload));
    if (this.delivered.has(id)) return;
    let verified = false;
    if (this.deviceKey !== undefined) {
      const deviceKey = this.deviceKey;
      try {
        verifyResult(message.payload, {
          keyResolver: (kid) => (bytesEqual(kid, deviceKey.kid) ? deviceKey : undefined),
          deviceId: this.deviceId,
          topic: RESULT_TOPIC,
          now: Date.now(),
        });
        verified = true;
      } catch (err) {
        if (!(err instanceof EnvelopeError)) throw err;
        this.warn(`ignored a result for this command that does not verify with the device key: ${err.code}`);
        return;
      }
    }
    this.delivered.add(id);
    this.seen++;
    this.queue.push({
      command: toHex(claims.cmd),
      decision: claims.decision,
      outcome: claims.outcome,
      reasons: claims.reasons,
      policies: claims.policies,
      device: claims.iss,
      issuedAt: new Date(claims.iatMs).toISOString(),
      cti: toHex(claims.cti),
      ...(claims.grantExpiresMs === undefined ? {} : { grantExpires: new Date(claims.grantExpiresMs).toISOString() }),
      verified,
    });
    this.wake?.();
  }

  /** The next result, or null after `timeoutMs` without one. */
  async next(timeoutMs: number): Promise<PrintedResult | null> {
    if (this.queue.length === 0) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, timeoutMs);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
    return this.queue.shift() ?? null;
  }
}
