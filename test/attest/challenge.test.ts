// Admission of challenges with an injected clock: nonce length, each nonce once (until it is
// forgotten), a token bucket that refills; and the wire form of replies.
import { describe, expect, it } from 'vitest';
import { ChallengeGuard, encodeRefusal, readChallengeReply } from '../../src/attest/challenge.js';
import { signEvidence } from '../../src/attest/evidence.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';

const nonce = (n: number, length = 16) => new Uint8Array(length).fill(n);

function codeOf(run: () => void): string {
  try {
    run();
  } catch (err) {
    return (err as { code: string }).code;
  }
  return 'ADMITTED';
}

describe('ChallengeGuard', () => {
  it('admits nonces of 8-64 bytes, each once, at most `limit` per window, refilling evenly', () => {
    const clock = { ms: 0 };
    const guard = new ChallengeGuard({ limit: 2, windowMs: 10_000, rememberMs: 60_000, now: () => clock.ms });
    expect(codeOf(() => guard.admit(nonce(1, 7)))).toBe('ATTEST_NONCE_INVALID');
    expect(codeOf(() => guard.admit(nonce(1, 65)))).toBe('ATTEST_NONCE_INVALID');
    expect(codeOf(() => guard.admit(nonce(1, 8)))).toBe('ADMITTED');
    expect(codeOf(() => guard.admit(nonce(2, 64)))).toBe('ADMITTED');
    expect(codeOf(() => guard.admit(nonce(3)))).toBe('ATTEST_RATE_LIMITED');
    // A refused challenge used nothing up; half a window later one token is back.
    clock.ms = 5_000;
    expect(codeOf(() => guard.admit(nonce(3)))).toBe('ADMITTED');
    expect(codeOf(() => guard.admit(nonce(4)))).toBe('ATTEST_RATE_LIMITED');
    clock.ms = 30_000;
    expect(codeOf(() => guard.admit(nonce(1, 8)))).toBe('ATTEST_NONCE_REUSED');
    // Remembered for rememberMs only (evidence also carries iat: verifiers refuse old answers).
    clock.ms = 70_000;
    expect(codeOf(() => guard.admit(nonce(1, 8)))).toBe('ADMITTED');
  });

  it('forgets the oldest nonce beyond maxRemembered', () => {
    const clock = { ms: 0 };
    const guard = new ChallengeGuard({ limit: 100, maxRemembered: 3, now: () => clock.ms });
    for (let i = 1; i <= 4; i++) guard.admit(nonce(i));
    expect(codeOf(() => guard.admit(nonce(1)))).toBe('ADMITTED');
    expect(codeOf(() => guard.admit(nonce(4)))).toBe('ATTEST_NONCE_REUSED');
  });
});

describe('challenge replies', () => {
  it('recognizes evidence and refusals by the nonce they answer, and nothing else', async () => {
    const key = generatePrivateKey('ed25519');
    const evidence = await signEvidence({
      key,
      deviceId: 'd',
      nonce: nonce(9),
      now: Date.now(),
      profile: 'p',
      records: [],
      composite: new Uint8Array(32),
      measuredAtMs: Date.now(),
      posture: 'degraded',
      mismatches: [],
      bundle: null,
      agentVersion: '0.1.0',
    });
    expect(readChallengeReply(evidence)).toEqual({ kind: 'evidence', nonce: nonce(9) });
    expect(readChallengeReply(encodeRefusal('ATTEST_RATE_LIMITED', 'slow down', nonce(8)))).toEqual({
      kind: 'refusal',
      code: 'ATTEST_RATE_LIMITED',
      message: 'slow down',
      nonce: nonce(8),
    });
    expect(readChallengeReply(Buffer.from('{"state":"online"}'))).toBeNull();
    expect(readChallengeReply(new Uint8Array([0xa1, 0x61, 0x78, 0x01]))).toBeNull();
  });
});
