// `ztedge cmd send`: sign a command, publish it to the device's `cmd` topic and wait for its
// signed result. On MQTT 5 the command names a private response topic and correlation data; on
// 3.1.1 the result comes on `cmd/result`. Either way a result is matched to the command by its
// `cmd` claim (the SHA-256 of the envelope sent), so results for other commands are ignored.
import { randomBytes } from 'node:crypto';
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { readPrivateKeyFile, readPublicKeyFile } from '../crypto/key-files.js';
import { COMMAND_TOPIC, signCommand } from '../envelope/command.js';
import { RESULT_TOPIC, type ResultClaims, readUnverifiedResult, verifyResult } from '../envelope/result.js';
import { BROKER_OPTIONS, BROKER_USAGE, brokerTarget, openLink, publishWithin } from './broker-client.js';
import { durationFlag, parseCommandArgs } from './command-args.js';
import { type Reply, type ReplyKind, ReplyWaiter } from './reply-waiter.js';
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
  const results = new ReplyWaiter(RESULT_REPLY, target.deviceId, deviceKey, (warning) => io.stderr(warning));
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
    let answer = await results.next(timeoutMs);
    // A held command settles when approved, rejected or expired: wait until its exp, plus the timeout.
    const settleBy = now + lifetimeMs + timeoutMs;
    while (answer !== null) {
      const result = printed(answer);
      io.stdout(JSON.stringify(result));
      if (result.decision !== 'pending' || hasFlag(parsed, 'no-wait')) return EXIT_BY_DECISION[result.decision];
      answer = await results.next(Math.max(0, settleBy - Date.now()));
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

/** A command's results, as the device signs them. */
const RESULT_REPLY: ReplyKind<ResultClaims> = {
  read: readUnverifiedResult,
  answers: (claims) => claims.cmd,
  verify: (payload, opts) => verifyResult(payload, { ...opts, topic: RESULT_TOPIC }),
  noun: 'a result for this command',
};

function printed({ claims, verified }: Reply<ResultClaims>): PrintedResult {
  return {
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
  };
}
