// The TPM against a real software TPM (swtpm): the AK, extends and the log, quotes verified in
// our own code, and each way a quote is refused.
import { spawn } from 'node:child_process';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AttestError } from '../../src/attest/errors.js';
import { MAX_LOG_ENTRIES, parseQuoteInfo, replayLog, verifyQuote } from '../../src/attest/quote.js';
import { Tpm } from '../../src/attest/tpm.js';
import { sha256 } from '../../src/crypto/hash.js';
import { generatePrivateKey } from '../../src/crypto/keys.js';
import { type TestTpm, startSwtpm, tpmToolsAvailable } from '../support/swtpm.js';
import { tempDir } from './support.js';

const withTpm = tpmToolsAvailable();

function refusal(run: () => unknown): AttestError {
  try {
    run();
  } catch (err) {
    if (err instanceof AttestError) return err;
    throw err;
  }
  throw new Error('accepted');
}

function tool(tcti: string, ...args: string[]): Promise<void> {
  return new Promise((resolve, reject) => {
    const child = spawn(args[0]!, args.slice(1), { env: { ...process.env, TPM2TOOLS_TCTI: tcti }, stdio: 'ignore' });
    child.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`${args[0]} exited ${code}`))));
  });
}

describe.runIf(withTpm)('TPM 2.0 on swtpm', () => {
  let swtpm: TestTpm;
  let tpm: Tpm;
  const stateDir = tempDir();

  beforeAll(async () => {
    swtpm = await startSwtpm();
    tpm = await Tpm.open({ tcti: swtpm.tcti, stateDir });
  });
  afterAll(async () => {
    await swtpm?.stop();
  });

  it('a quote over the extended composites verifies: signature by the AK, nonce, PCR = replayed log', async () => {
    const composites = [sha256(Uint8Array.of(1)), sha256(Uint8Array.of(2))];
    for (const c of composites) await tpm.extend(c);
    expect(tpm.log).toEqual(composites);
    expect(await tpm.readPcr()).toEqual(replayLog(composites));
    const nonce = Uint8Array.from({ length: 64 }, (_, i) => i);
    const { quote, log } = await tpm.quote(nonce);
    const info = verifyQuote({ quote, ak: tpm.ak, nonce, log });
    expect(info.extraData).toEqual(nonce);
    expect(info.selections).toEqual([{ hash: 0x000b, pcrs: [23] }]);
  });

  it('an extend out of band makes the quote disagree with the replayed log: PCR mismatch', async () => {
    await tpm.extend(sha256(Uint8Array.of(3)));
    await tool(swtpm.tcti, 'tpm2_pcrextend', `23:sha256=${'ee'.repeat(32)}`);
    const nonce = new Uint8Array(16).fill(9);
    const { quote, log } = await tpm.quote(nonce);
    const err = refusal(() => verifyQuote({ quote, ak: tpm.ak, nonce, log }));
    expect(err.code).toBe('ATTEST_PCR_MISMATCH');
    expect(err.message).toMatch(/outside the log/);
    // The same quote with the out-of-band digest in the log replays fine: it was exactly that extend.
    expect(() => verifyQuote({ quote, ak: tpm.ak, nonce, log: [...log, new Uint8Array(32).fill(0xee)] })).not.toThrow();
  });

  it('a quote replayed for another nonce, a forged signature, another AK: each refused', async () => {
    const old = new Uint8Array(8).fill(1);
    const { quote, log } = await tpm.quote(old);
    expect(refusal(() => verifyQuote({ quote, ak: tpm.ak, nonce: new Uint8Array(8).fill(2), log })).code).toBe('ATTEST_QUOTE_NONCE');
    const forged = Uint8Array.from(quote.signature);
    forged[10]! ^= 1;
    expect(refusal(() => verifyQuote({ quote: { ...quote, signature: forged }, ak: tpm.ak, nonce: old, log })).code).toBe('ATTEST_QUOTE_BAD_SIGNATURE');
    const tampered = Uint8Array.from(quote.attest);
    tampered[tampered.length - 1]! ^= 1; // the PCR digest
    expect(refusal(() => verifyQuote({ quote: { ...quote, attest: tampered }, ak: tpm.ak, nonce: old, log })).code).toBe('ATTEST_QUOTE_BAD_SIGNATURE');
    const otherAk = generatePrivateKey('p256').publicKey;
    expect(refusal(() => verifyQuote({ quote, ak: otherAk, nonce: old, log })).code).toBe('ATTEST_QUOTE_BAD_SIGNATURE');
    expect(refusal(() => verifyQuote({ quote: { ...quote, attest: quote.attest.subarray(0, 40) }, ak: tpm.ak, nonce: old, log })).code).toBe('ATTEST_QUOTE_MALFORMED');
    expect(parseQuoteInfo(quote.attest).extraData).toEqual(old);
  });

  it('reopening keeps the AK (blobs in the state directory) and resets the PCR and the log', async () => {
    const again = await Tpm.open({ tcti: swtpm.tcti, stateDir });
    expect(again.ak.raw).toEqual(tpm.ak.raw);
    expect(again.log).toEqual([]);
    expect(await again.readPcr()).toEqual(new Uint8Array(32));
    const fresh = await Tpm.open({ tcti: swtpm.tcti, stateDir: tempDir() });
    expect(fresh.ak.raw).not.toEqual(tpm.ak.raw);
    tpm = again;
  });

  it('refuses a bad TCTI and a PCR an application cannot reset, before touching the TPM', async () => {
    await expect(Tpm.open({ tcti: 'swtpm:host=127.0.0.1;rm -rf /', stateDir })).rejects.toMatchObject({ code: 'TPM_CONFIG_INVALID' });
    await expect(Tpm.open({ tcti: swtpm.tcti, stateDir, pcr: 7 })).rejects.toMatchObject({ code: 'TPM_CONFIG_INVALID' });
  });

  it('compacts a full log: reset, then the current composite again', async () => {
    const calls: string[] = [];
    const counting = await Tpm.open({
      tcti: swtpm.tcti,
      stateDir,
      run: async (t, args) => {
        calls.push(t);
        const { toolRunner } = await import('../../src/attest/tpm.js');
        return toolRunner(swtpm.tcti)(t, args);
      },
    });
    for (let i = 0; i < MAX_LOG_ENTRIES; i++) (counting.log as Uint8Array[]).push(new Uint8Array(32));
    const last = sha256(Uint8Array.of(42));
    await counting.extend(last);
    expect(counting.log).toEqual([last]);
    expect(await counting.readPcr()).toEqual(replayLog([last]));
    expect(calls.filter((c) => c === 'tpm2_pcrreset').length).toBe(2);
  });
});
