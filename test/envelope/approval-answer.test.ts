// The approval's answer: signed by the device key, bound to "approve/result", so it verifies only
// as an answer (never as a command result, nor a result as an answer); optional claims round-trip.
import { describe, expect, it } from 'vitest';
import { bytesEqual } from '../../src/crypto/bytes.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { readUnverifiedApprovalAnswer, signApprovalAnswerAsync, verifyApprovalAnswer } from '../../src/envelope/approval-answer.js';
import { EnvelopeError } from '../../src/envelope/errors.js';
import { signResult, verifyResult } from '../../src/envelope/result.js';

const device = generatePrivateKey('ed25519');
const NOW = Date.UTC(2026, 5, 1, 8, 0, 0);
const options = { keyResolver: (kid: Uint8Array) => (bytesEqual(kid, device.publicKey.kid) ? device.publicKey : undefined), deviceId: 'arm-01', now: NOW };
const approval = new Uint8Array(32).fill(7);
const command = new Uint8Array(32).fill(9);

describe('approval answers', () => {
  it('round-trip with the quorum and the grant, and verify only as answers', async () => {
    const bytes = await signApprovalAnswerAsync({ key: device, deviceId: 'arm-01', approval, command, code: 'APPROVAL_QUORUM', message: 'approval 2 of 2: quorum reached', approvals: 2, required: 2, grantExpiresMs: NOW + 600_000, now: NOW });
    expect(verifyApprovalAnswer(bytes, options)).toMatchObject({ iss: 'arm-01', approval, cmd: command, code: 'APPROVAL_QUORUM', approvals: 2, required: 2, grantExpiresMs: NOW + 600_000 });
    expect(readUnverifiedApprovalAnswer(bytes).code).toBe('APPROVAL_QUORUM');
    const asResult = () => verifyResult(bytes, { ...options, topic: 'cmd/result' });
    expect(asResult).toThrow(EnvelopeError);
    const result = signResult({ key: device, deviceId: 'arm-01', topic: 'cmd/result', commandDigest: command, decision: 'allow', policies: [], reasons: ['APPROVED'], outcome: 'executed', now: NOW });
    expect(() => verifyApprovalAnswer(result, options)).toThrow(expect.objectContaining({ code: 'ENVELOPE_BAD_SIGNATURE' }));
    // Another device key does not verify it.
    const other = generatePrivateKey('ed25519');
    expect(() => verifyApprovalAnswer(bytes, { ...options, keyResolver: () => other.publicKey })).toThrow(EnvelopeError);
  });

  it('names no command when the approval could not be read, and leaves out what is unknown', async () => {
    const bytes = await signApprovalAnswerAsync({ key: device, deviceId: 'arm-01', approval, code: 'ENVELOPE_BAD_SIGNATURE', message: 'signature does not verify', now: NOW });
    const claims = verifyApprovalAnswer(bytes, options);
    expect(claims.cmd).toEqual(new Uint8Array(32));
    expect([claims.approvals, claims.required, claims.grantExpiresMs]).toEqual([undefined, undefined, undefined]);
    await expect(signApprovalAnswerAsync({ key: device, deviceId: 'arm-01', approval: new Uint8Array(16), code: 'X', message: 'x', now: NOW })).rejects.toThrow(EnvelopeError);
  });
});
