// `ztedge approve`: sign an approval (or rejection) of a command held by a device and publish it
// to the device's `approve` topic. The command is named by its digest, as the pending result and
// the audit log show it.
import { fromHex, toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { readPrivateKeyFile } from '../crypto/key-files.js';
import { APPROVAL_TOPIC, signApproval } from '../envelope/approval.js';
import { DIGEST_LENGTH } from '../envelope/claims.js';
import { BROKER_OPTIONS, BROKER_USAGE, brokerTarget, openLink, publishWithin } from './broker-client.js';
import { UsageError, defineCommand, flag, hasFlag, requireFlag } from './command.js';
import { durationFlag } from './command-args.js';

const USAGE = `Usage: ztedge approve --mqtt URL --site S --device D --key KEY --command DIGEST_HEX
                      [--reject] [--iss NAME] [--lifetime 60s] [--timeout 10s] [--prefix P]

Signs an approval of the held command DIGEST_HEX (the "command" field of its pending result)
with KEY and publishes it to the device; --reject signs a rejection instead, which denies the
command at once. Whether it counts is the device's policy: the approver must be permitted to
approve that action on that resource. Exit 0 once the broker has the approval.

${BROKER_USAGE}`;

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
  },
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
    const key = readPrivateKeyFile(requireFlag(parsed, 'key'));
    const link = await openLink(target, { timeoutMs });
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
      await publishWithin(link, target.topics.approve, envelope, { qos: 1 }, timeoutMs);
      io.stdout(JSON.stringify({ command: toHex(commandDigest), decision, approval: toHex(sha256(envelope)), topic: target.topics.approve }));
      return 0;
    } finally {
      await link.close();
    }
  },
});
