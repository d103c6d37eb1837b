// `ztedge bundle push`: publish a bundle (retained) or a rollback instruction to a device, after
// checking it as the device will, and wait for the device's retained status to report what it did.
//
// A bundle that does not verify against the roots and threshold (given, or the agent's
// configuration) is never published: a retained bundle is what every device connecting later
// receives, so a bad one would replace the good one for all of them. Neither is a bundle older
// than the one the device reports active, nor a rollback instruction that does not start from it.
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { BundleError } from '../bundle/errors.js';
import type { RollbackInstruction } from '../bundle/rollback.js';
import type { InboundMessage } from '../transport/mqtt-link.js';
import { type BrokerTarget, openLink, publishWithin } from './broker-client.js';
import { CliError, type CliIo } from './command.js';

/** The fields of the device's retained status that tell a push's outcome. */
export interface DeviceStatus {
  state: string;
  bundle: { id: string; revision: number; digest: string } | null;
  lastRejection: { code: string; revision: number | null; digest: string | null } | null;
}

export type Pushed =
  | { kind: 'bundle'; id: string; revision: number }
  | { kind: 'rollback'; instruction: RollbackInstruction };

export interface PushOptions {
  target: BrokerTarget;
  bytes: Uint8Array;
  what: Pushed;
  timeoutMs: number;
  wait: boolean;
}

/** How long to listen for the retained status before publishing (it arrives with the subscription). */
const RETAINED_GRACE_MS = 1500;

export async function pushToDevice(opts: PushOptions, io: CliIo): Promise<number> {
  const { target, bytes, what, timeoutMs } = opts;
  const digest = toHex(sha256(bytes));
  const statuses = new StatusWatch();
  const link = await openLink(target, { subscriptions: [target.topics.status], onMessage: (m) => statuses.offer(m), timeoutMs, maxPayloadBytes: 64 * 1024 });
  try {
    const before = await statuses.next(Math.min(RETAINED_GRACE_MS, timeoutMs), () => true);
    if (before !== null) refuseBeforePublishing(what, digest, before, target.deviceId);
    const label = describe(what);
    if (what.kind === 'bundle') {
      await publishWithin(link, target.topics.bundle, bytes, { qos: 1, retain: true }, timeoutMs);
      io.stdout(`pushed ${label} (${digest}, ${bytes.length} bytes) → ${target.topics.bundle} (retained)`);
    } else {
      await publishWithin(link, target.topics.rollback, bytes, { qos: 1 }, timeoutMs);
      io.stdout(`pushed the rollback instruction ${label} (${digest}) → ${target.topics.rollback}`);
    }
    if (!opts.wait) return 0;
    return await awaitOutcome(before, statuses, what, digest, target.deviceId, timeoutMs, io);
  } finally {
    await link.close();
  }
}

function refuseBeforePublishing(what: Pushed, digest: string, status: DeviceStatus, device: string): void {
  // An offline device's status (its last will) says nothing of its bundles.
  if (status.state !== 'online') return;
  const active = status.bundle;
  if (what.kind === 'bundle') {
    if (active !== null && active.digest !== digest && active.revision >= what.revision) {
      throw new BundleError(
        'BUNDLE_ROLLBACK',
        `device ${device} reports revision ${active.revision} active; revision ${what.revision} is not newer, so it was not pushed (to go back to the last-known-good bundle, push a signed rollback instruction)`,
        { revision: what.revision },
      );
    }
  } else if (active === null || active.digest !== what.instruction.from.digest) {
    throw new BundleError(
      'ROLLBACK_NOT_ACTIVE',
      `device ${device} reports ${active === null ? 'no bundle' : `revision ${active.revision} (${active.digest.slice(0, 12)}…)`} active, not the instruction's revision ${what.instruction.from.revision}; it was not pushed`,
    );
  }
}

/**
 * The first status that settles the push: the target bundle active, or this message refused. The
 * status seen before publishing counts too: the same bytes already active (or refused) are
 * not announced again.
 */
async function awaitOutcome(before: DeviceStatus | null, statuses: StatusWatch, what: Pushed, digest: string, device: string, timeoutMs: number, io: CliIo): Promise<number> {
  const target = what.kind === 'bundle' ? digest : what.instruction.to.digest;
  const settled = (s: DeviceStatus) => s.bundle?.digest === target || s.lastRejection?.digest === digest;
  const status = before !== null && settled(before) ? before : await statuses.next(timeoutMs, settled);
  if (status === null) {
    const last = statuses.latest;
    throw new CliError(
      'PUSH_NO_OUTCOME',
      `device ${device} reported no outcome within ${timeoutMs} ms (its status: ${last === null ? 'none seen' : last.state})${what.kind === 'bundle' ? '; the bundle stays retained and the device verifies it when it receives it' : ''}`,
    );
  }
  if (status.bundle?.digest === target) {
    io.stdout(`device ${device} activated ${what.kind === 'bundle' ? `revision ${what.revision}` : `revision ${what.instruction.to.revision} (rolled back from ${what.instruction.from.revision})`}`);
    return 0;
  }
  throw new CliError('PUSH_REFUSED', `device ${device} refused ${describe(what)}: ${status.lastRejection!.code}`);
}

function describe(what: Pushed): string {
  return what.kind === 'bundle' ? `${what.id} revision ${what.revision}` : `from revision ${what.instruction.from.revision} to ${what.instruction.to.revision}`;
}

/** The device's statuses as they arrive (the retained one first). */
class StatusWatch {
  latest: DeviceStatus | null = null;
  private readonly queue: DeviceStatus[] = [];
  private wake: (() => void) | null = null;

  offer(message: InboundMessage): void {
    let status: DeviceStatus;
    try {
      status = JSON.parse(Buffer.from(message.payload).toString('utf8')) as DeviceStatus;
    } catch {
      return;
    }
    if (typeof status !== 'object' || status === null || typeof status.state !== 'string') return;
    status.bundle ??= null;
    status.lastRejection ??= null;
    this.latest = status;
    this.queue.push(status);
    this.wake?.();
  }

  /** The next status that `accept`s within `timeoutMs`, or null. */
  async next(timeoutMs: number, accept: (s: DeviceStatus) => boolean): Promise<DeviceStatus | null> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      while (this.queue.length > 0) {
        const status = this.queue.shift()!;
        if (accept(status)) return status;
      }
      const left = deadline - Date.now();
      if (left <= 0) return null;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.wake = null;
    }
  }
}
