// `ztedge approve`: sign an approval (or rejection) of a command held by a device and publish it
// to the device's `approve` topic. The command is named by its digest, as the pending result and
// the audit log show it.
import { CryptoError } from '../crypto/errors.js';
import { fromHex, toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { readPrivateKeyFile } from '../crypto/key-files.js';
import { APPROVAL_TOPIC, signApproval } from '../envelope/approval.js';
import { DIGEST_LENGTH } from '../envelope/claims.js';
import { EnvelopeError } from '../envelope/errors.js';
import { TransportError } from '../transport/errors.js';
import { BROKER_USAGE, brokerTarget, openLink, publishWithin } from './broker-client.js';
import { type CommandGroup, UsageError, flag, parseArgs, requireFlag } from './command.js';
import { durationFlag } from './command-args.js';

const USAGE = `Usage: ztedge approve --mqtt URL --site S --device D --key KEY --command DIGEST_HEX
                      [--reject] [--iss NAME] [--lifetime 60s] [--timeout 10s] [--prefix P]

Signs an approval of the held command DIGEST_HEX (the "command" field of its pending result)
with KEY and publishes it to the device; --reject signs a rejection instead, which denies the
command at once. Whether it counts is the device's policy: the approver must be permitted to
approve that action on that resource. Exit 0 once the broker has the approval.

${BROKER_USAGE}`;

export const approveCommand: CommandGroup = {
  summary: 'approve or reject a command held for approval on a device',
  usage: USAGE,
  run: async (args, io) => {
    const parsed = parseArgs(args, ['reject']);
    if (parsed.positionals.length > 0) throw new UsageError(`unexpected argument '${parsed.positionals[0]}'`);
    const target = brokerTarget(parsed);
    const digestText = requireFlag(parsed, 'command');
    const commandDigest = fromHex(digestText);
    if (commandDigest === undefined || commandDigest.length !== DIGEST_LENGTH) {
      throw new UsageError(`--command must be the ${DIGEST_LENGTH}-byte command digest in hex, not '${digestText}'`);
    }
    const lifetimeMs = durationFlag(parsed, 'lifetime', '60s', 1000);
    const timeoutMs = durationFlag(parsed, 'timeout', '10s', 1);
    const decision = parsed.flags.has('reject') ? 'reject' : 'approve';
    try {
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
    } catch (err) {
      if (err instanceof CryptoError || err instanceof EnvelopeError || err instanceof TransportError) {
        io.stderr(`${err.code}: ${err.message}`);
        return 1;
      }
      throw err;
    }
  },
};
