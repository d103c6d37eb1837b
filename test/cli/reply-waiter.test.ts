import { describe, expect, it } from 'vitest';
import { ReplyWaiter, type ReplyKind } from '../../src/cli/reply-waiter.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { RESULT_TOPIC, type ResultClaims, readUnverifiedResult, signResult, verifyResult } from '../../src/envelope/result.js';
import type { InboundMessage } from '../../src/transport/message.js';

const DEVICE = 'arm-1';
const device = generatePrivateKey('ed25519');
const impostor = generatePrivateKey('ed25519');
const KIND: ReplyKind<ResultClaims> = {
  read: readUnverifiedResult,
  answers: (claims) => claims.cmd,
  verify: (payload, opts) => verifyResult(payload, { ...opts, topic: RESULT_TOPIC }),
  noun: 'a result for this command',
};
const ours = new Uint8Array(32).fill(7);

function result(key = device, commandDigest = ours, outcome = 'executed'): Buffer {
  return Buffer.from(signResult({ key, deviceId: DEVICE, topic: RESULT_TOPIC, commandDigest, decision: 'allow', policies: [], reasons: [], outcome, now: Date.now() }));
}

function message(payload: Uint8Array, correlationData?: Uint8Array): InboundMessage {
  return { topic: 'ztedge/s/arm-1/cmd/result', payload: Buffer.from(payload), qos: 1, retain: false, duplicate: false, ...(correlationData === undefined ? {} : { correlationData: Buffer.from(correlationData) }) } as InboundMessage;
}

describe('ReplyWaiter', () => {
  it("keeps only the device's signed replies to our message, each once, in order", async () => {
    const warnings: string[] = [];
    const waiter = new ReplyWaiter(KIND, DEVICE, device.publicKey, (w) => warnings.push(w));
    const correlation = new Uint8Array([1, 2, 3]);
    waiter.offer(message(result())); // before expect(): nothing is ours yet
    waiter.expect(ours, correlation);
    waiter.offer(message(Buffer.from('garbage')));
    waiter.offer(message(result(device, new Uint8Array(32).fill(8)))); // another command's
    waiter.offer(message(result(), new Uint8Array([9]))); // someone else's correlation
    waiter.offer(message(result(impostor))); // does not verify
    const first = result(device, ours, 'pending');
    waiter.offer(message(first, correlation));
    waiter.offer(message(first, correlation)); // redelivered
    waiter.offer(message(result(device, ours, 'executed')));
    expect(warnings).toEqual([expect.stringMatching(/^ignored a result for this command that does not verify with the device key: ENVELOPE_/)]);
    expect(waiter.seen).toBe(2);
    expect(await waiter.next(10)).toMatchObject({ claims: { outcome: 'pending' }, verified: true });
    expect(await waiter.next(10)).toMatchObject({ claims: { outcome: 'executed' }, verified: true });
    expect(await waiter.next(10)).toBeNull();
  });

  it('without the device key, takes replies unverified and says so; wakes a waiting next()', async () => {
    const waiter = new ReplyWaiter(KIND, DEVICE, undefined, () => {});
    waiter.expect(ours);
    const pending = waiter.next(5_000);
    waiter.offer(message(result(impostor)));
    expect(await pending).toMatchObject({ claims: { outcome: 'executed' }, verified: false });
  });

  it('skips the replies its kind says are no news', async () => {
    const waiter = new ReplyWaiter({ ...KIND, ignore: (claims) => claims.outcome === 'replayed' }, DEVICE, device.publicKey, () => {});
    waiter.expect(ours);
    waiter.offer(message(result(device, ours, 'replayed')));
    waiter.offer(message(result(device, ours, 'executed')));
    expect((await waiter.next(10))?.claims.outcome).toBe('executed');
  });
});
