// `ztedge approve`: sign an approval (or rejection) of a command held by a device, publish it to
// the device's `approve` topic and wait for the device's signed answer: counted, the quorum
// reached, the rejection applied — or refused, and why. The command is named by its digest, as
// the pending result, the audit log and GET /v1/approvals show it. On MQTT 5 the approval names a
// private response topic and correlation data; on 3.1.1 the answer comes on `cmd/result`. Either
// way an answer is matched to the approval by its `approval` claim (the SHA-256 of the envelope).
import { randomBytes } from 'node:crypto';
import { fromHex, toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { readPrivateKeyFile, readPublicKeyFile } from '../crypto/key-files.js';
import { APPROVAL_TOPIC, signApproval } from '../envelope/approval.js';
import { APPROVAL_ACCEPTED_CODES, type ApprovalAnswerClaims, readUnverifiedApprovalAnswer, verifyApprovalAnswer } from '../envelope/approval-answer.js';
import { DIGEST_LENGTH } from '../envelope/claims.js';
import { ZtedgeError } from '../errors.js';
import { BROKER_OPTIONS, BROKER_USAGE, brokerTarget, openLink, publishWithin } from './broker-client.js';
import { CliError, UsageError, defineCommand, flag, hasFlag, requireFlag } from './command.js';
import { durationFlag } from './command-args.js';
import { type ReplyKind, ReplyWaiter } from './reply-waiter.js';

const USAGE = `Usage: ztedge approve --mqtt URL --site S --device D --key KEY --command DIGEST_HEX
                      [--reject] [--iss NAME] [--lifetime 60s] [--timeout 10s]
                      [--device-key PUB] [--no-wait] [--prefix P]

Signs an approval of the held command DIGEST_HEX (the "command" field of its pending result)
with KEY, publishes it to the device and prints the device's answer as JSON; --reject signs a
rejection instead, which denies the command at once. Whether it counts is the device's policy:
the approver must be in the command's @approvers, may not be its sender, and must be permitted
to approve that action on that resource.
  --timeout     how long to wait for the broker and for the answer (default 10s)
  --device-key  the device's public key: answers are verified with it, and answers that do not
                verify are ignored; without it answers are printed with "verified": false
  --no-wait     stop once the broker has the approval (exit 0), without waiting for the answer
Exit status: 0 the approval counted, reached the quorum or rejected the command; 1 the device
refused it (CODE: message on standard error: APPROVAL_NOT_APPROVER, APPROVAL_SELF,
APPROVAL_DUPLICATE, APPROVAL_UNKNOWN_COMMAND, APPROVAL_EXPIRED, ...) or an error; 4 no answer
in time.

${BROKER_USAGE}`;

/** The device refused the approval: its code and reason, as the device said them. */
export class ApprovalRefusedError extends ZtedgeError<string> {}

export const approveCommand = defineCommand({
  name: 'approve',
  summary: 'approve or reject a command held for approval on a device',
  usage: USAGE,
  options: {
    ...BROKER_OPTIONS,
    key: { type: 'string' },
    command: { type: 'string' },
    reject: { type: 'boolean' },
    iss: { type: 'string' },
    lifetime: { type: 'string' },
    timeout: { type: 'string' },
    'device-key': { type: 'string' },
    'no-wait': { type: 'boolean' },
  },
  exitCodes: { APPROVAL_NO_ANSWER: 4 },
  run: async (parsed, io) => {
    const target = brokerTarget(parsed);
    const digestText = requireFlag(parsed, 'command');
    const commandDigest = fromHex(digestText);
    if (commandDigest === undefined || commandDigest.length !== DIGEST_LENGTH) {
      throw new UsageError(`--command must be the ${DIGEST_LENGTH}-byte command digest in hex, not '${digestText}'`);
    }
    const lifetimeMs = durationFlag(parsed, 'lifetime', '60s', 1000);
    const timeoutMs = durationFlag(parsed, 'timeout', '10s', 1);
    const decision = hasFlag(parsed, 'reject') ? 'reject' : 'approve';
    const wait = !hasFlag(parsed, 'no-wait');
    const key = readPrivateKeyFile(requireFlag(parsed, 'key'));
    const deviceKeyFile = flag(parsed, 'device-key');
    const deviceKey = deviceKeyFile === undefined ? undefined : readPublicKeyFile(deviceKeyFile);
    const answers = new ReplyWaiter(ANSWER_REPLY, target.deviceId, deviceKey, (warning) => io.stderr(warning));
    // MQTT 5: a private response topic below cmd/result; 3.1.1: the device's approve/result.
    const link = await openLink(target, { ...(wait ? { subscriptions: [`${target.topics.cmdResult}/#`, target.topics.approveResult] } : {}), onMessage: (m) => answers.offer(m), timeoutMs });
    try {
      const envelope = signApproval({
        key,
        ...(flag(parsed, 'iss') === undefined ? {} : { issuer: flag(parsed, 'iss')! }),
        deviceId: target.deviceId,
        topic: APPROVAL_TOPIC,
        commandDigest,
        decision,
        now: Date.now(),
        lifetimeMs,
      });
      const approval = sha256(envelope);
      const correlation = wait && link.protocolVersion === 5 ? new Uint8Array(randomBytes(16)) : undefined;
      answers.expect(approval, correlation);
      const reply = correlation === undefined ? {} : { responseTopic: `${target.topics.cmdResult}/${toHex(correlation.subarray(0, 8))}`, correlationData: correlation };
      await publishWithin(link, target.topics.approve, envelope, { qos: 1, ...reply }, timeoutMs);
      const sent = { command: toHex(commandDigest), decision, approval: toHex(approval) };
      if (!wait) {
        io.stdout(JSON.stringify({ ...sent, topic: target.topics.approve }));
        return 0;
      }
      const answer = await answers.next(timeoutMs);
      if (answer === null) throw new CliError('APPROVAL_NO_ANSWER', `device ${target.deviceId} did not answer approval ${toHex(approval)} within ${timeoutMs} ms; whether it counted is unknown (GET /v1/approvals on the device shows the approvals it holds)`);
      io.stdout(
        JSON.stringify({
          ...sent,
          code: answer.claims.code,
          message: answer.claims.message,
          ...(answer.claims.approvals === undefined ? {} : { approvals: answer.claims.approvals }),
          ...(answer.claims.required === undefined ? {} : { required: answer.claims.required }),
          ...(answer.claims.grantExpiresMs === undefined ? {} : { grantExpires: new Date(answer.claims.grantExpiresMs).toISOString() }),
          device: answer.claims.iss,
          verified: answer.verified,
        }),
      );
      if (!APPROVAL_ACCEPTED_CODES.has(answer.claims.code)) throw new ApprovalRefusedError(answer.claims.code, answer.claims.message);
      return 0;
    } finally {
      await link.close();
    }
  },
});

/** An approval's answer, as the device signs it. */
const ANSWER_REPLY: ReplyKind<ApprovalAnswerClaims> = {
  read: readUnverifiedApprovalAnswer,
  answers: (claims) => claims.approval,
  verify: verifyApprovalAnswer,
  // A redelivered approval is answered as a replay; the answer to its first delivery is the one.
  ignore: (claims) => claims.code === 'ENVELOPE_REPLAY',
  noun: 'an answer to this approval',
};
