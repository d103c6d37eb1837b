// TPM 2.0 quotes, verified in our own code (node:crypto), so a verifier needs no TPM tools.
// Pure.
//
// A quote is a TPMS_ATTEST structure (TPM 2.0 Part 2 §10.12.12, big-endian) and a TPMT_SIGNATURE
// over it by a restricted attestation key (AK). We accept what ztedge asks its TPM for: an
// ECDSA P-256 / SHA-256 AK quoting one SHA-256 PCR.
//
//   TPMS_ATTEST   magic u32 = TPM_GENERATED (0xff544347), type u16 = TPM_ST_ATTEST_QUOTE
//                 (0x8018), qualifiedSigner TPM2B_NAME, extraData TPM2B_DATA (the nonce),
//                 clockInfo { clock u64, resetCount u32, restartCount u32, safe u8 },
//                 firmwareVersion u64, quoted TPMS_QUOTE_INFO { pcrSelect TPML_PCR_SELECTION,
//                 pcrDigest TPM2B_DIGEST }
//   TPMT_SIGNATURE sigAlg u16 = TPM_ALG_ECDSA (0x0018), hash u16 = TPM_ALG_SHA256 (0x000b),
//                 signatureR TPM2B, signatureS TPM2B
//
// The PCR is checked by replaying the measurement log: PCR = extend(…extend(0, e₁)…, eₙ), and
// the quoted digest must be SHA-256 of that value (one PCR selected).
import { bytesEqual, toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import type { PublicKey } from '../crypto/keys.js';
import { getVerifier } from '../crypto/verifier.js';
import { AttestError } from './errors.js';
import { ZERO_DIGEST, extend } from './record.js';

export const TPM_GENERATED = 0xff544347;
export const TPM_ST_ATTEST_QUOTE = 0x8018;
export const TPM_ALG_ECDSA = 0x0018;
export const TPM_ALG_SHA256 = 0x000b;
export const MAX_LOG_ENTRIES = 1024;

export interface TpmQuote {
  /** The marshalled TPMS_ATTEST, as signed. */
  readonly attest: Uint8Array;
  /** The marshalled TPMT_SIGNATURE. */
  readonly signature: Uint8Array;
  /** The PCR index quoted. */
  readonly pcr: number;
}

export interface QuoteInfo {
  readonly qualifiedSigner: Uint8Array;
  readonly extraData: Uint8Array;
  readonly clock: bigint;
  readonly resetCount: number;
  readonly restartCount: number;
  readonly safe: boolean;
  readonly firmwareVersion: bigint;
  readonly selections: ReadonlyArray<{ readonly hash: number; readonly pcrs: readonly number[] }>;
  readonly pcrDigest: Uint8Array;
}

/** Parses a TPMS_ATTEST of type quote; ATTEST_QUOTE_MALFORMED otherwise. */
export function parseQuoteInfo(bytes: Uint8Array): QuoteInfo {
  const r = new Reader(bytes);
  if (r.u32() !== TPM_GENERATED) throw malformed('not TPM-generated (magic is not TPM_GENERATED)');
  if (r.u16() !== TPM_ST_ATTEST_QUOTE) throw malformed('not a quote (type is not TPM_ST_ATTEST_QUOTE)');
  const qualifiedSigner = r.sized();
  const extraData = r.sized();
  const clock = r.u64();
  const resetCount = r.u32();
  const restartCount = r.u32();
  const safe = r.u8() === 1;
  const firmwareVersion = r.u64();
  const count = r.u32();
  if (count > 16) throw malformed(`${count} PCR selections`);
  const selections: Array<{ hash: number; pcrs: number[] }> = [];
  for (let i = 0; i < count; i++) {
    const hash = r.u16();
    const size = r.u8();
    const bitmap = r.bytes(size);
    const pcrs: number[] = [];
    bitmap.forEach((byte, octet) => {
      for (let bit = 0; bit < 8; bit++) if (byte & (1 << bit)) pcrs.push(octet * 8 + bit);
    });
    selections.push({ hash, pcrs });
  }
  const pcrDigest = r.sized();
  if (!r.done()) throw malformed('bytes after the quote');
  return { qualifiedSigner, extraData, clock, resetCount, restartCount, safe, firmwareVersion, selections, pcrDigest };
}

/** The raw r‖s (32 + 32 bytes) of an ECDSA-SHA256 TPMT_SIGNATURE. */
export function parseQuoteSignature(bytes: Uint8Array): Uint8Array {
  const r = new Reader(bytes);
  const alg = r.u16();
  const hash = r.u16();
  if (alg !== TPM_ALG_ECDSA || hash !== TPM_ALG_SHA256) {
    throw malformed(`signature scheme 0x${alg.toString(16)}/0x${hash.toString(16)} is not ECDSA with SHA-256`);
  }
  const sigR = r.sized();
  const sigS = r.sized();
  if (!r.done()) throw malformed('bytes after the signature');
  if (sigR.length > 32 || sigS.length > 32) throw malformed('ECDSA P-256 signature values longer than 32 bytes');
  const raw = new Uint8Array(64);
  raw.set(sigR, 32 - sigR.length);
  raw.set(sigS, 64 - sigS.length);
  return raw;
}

/** The PCR value a log of extends produces from a reset PCR (all zeros). */
export function replayLog(entries: readonly Uint8Array[]): Uint8Array {
  let value = ZERO_DIGEST;
  for (const entry of entries) value = extend(value, entry);
  return value;
}

export interface QuoteCheck {
  readonly quote: TpmQuote;
  /** The attestation key (P-256). */
  readonly ak: PublicKey;
  /** The nonce the quote must carry as extraData. */
  readonly nonce: Uint8Array;
  /** The measurement log: the digests extended into the PCR since it was reset. */
  readonly log: readonly Uint8Array[];
}

/**
 * Verifies signature, freshness and PCR of a quote: ATTEST_QUOTE_MALFORMED,
 * ATTEST_QUOTE_BAD_SIGNATURE, ATTEST_QUOTE_NONCE (a quote made for another nonce: replayed),
 * ATTEST_PCR_MISMATCH (the PCR holds something the log does not explain, e.g. an extend out of
 * band). Returns the parsed quote.
 */
export function verifyQuote(check: QuoteCheck): QuoteInfo {
  const { quote, ak, nonce, log } = check;
  if (ak.keyType !== 'p256') throw new AttestError('ATTEST_QUOTE_MALFORMED', 'the attestation key must be a P-256 key');
  const info = parseQuoteInfo(quote.attest);
  const signature = parseQuoteSignature(quote.signature);
  // ECDSA over SHA-256(TPMS_ATTEST) is exactly ES256 over the TPMS_ATTEST bytes.
  if (!getVerifier('native').verify(ak, quote.attest, signature)) {
    throw new AttestError('ATTEST_QUOTE_BAD_SIGNATURE', 'the quote is not signed by the attestation key');
  }
  if (!bytesEqual(info.extraData, nonce)) {
    throw new AttestError('ATTEST_QUOTE_NONCE', `the quote was made for nonce ${toHex(info.extraData)}, not for this challenge (a replayed quote)`);
  }
  const selected = info.selections.filter((s) => s.pcrs.length > 0);
  if (selected.length !== 1 || selected[0]!.hash !== TPM_ALG_SHA256 || selected[0]!.pcrs.length !== 1 || selected[0]!.pcrs[0] !== quote.pcr) {
    throw malformed(`the quote must select exactly sha256 PCR ${quote.pcr}`);
  }
  if (log.length > MAX_LOG_ENTRIES) throw malformed(`measurement log of ${log.length} entries (at most ${MAX_LOG_ENTRIES})`);
  const replayed = replayLog(log);
  if (!bytesEqual(sha256(replayed), info.pcrDigest)) {
    throw new AttestError(
      'ATTEST_PCR_MISMATCH',
      `PCR ${quote.pcr} as quoted does not match the measurement log (${log.length} entr${log.length === 1 ? 'y' : 'ies'} replay to ${toHex(replayed)}): something was extended outside the log`,
    );
  }
  return info;
}

function malformed(message: string): AttestError {
  return new AttestError('ATTEST_QUOTE_MALFORMED', message);
}

class Reader {
  private offset = 0;
  private readonly view: DataView;
  constructor(private readonly data: Uint8Array) {
    this.view = new DataView(data.buffer, data.byteOffset, data.byteLength);
  }

  private need(n: number): number {
    if (this.offset + n > this.data.length) throw malformed('truncated');
    const at = this.offset;
    this.offset += n;
    return at;
  }

  u8(): number {
    return this.view.getUint8(this.need(1));
  }

  u16(): number {
    return this.view.getUint16(this.need(2));
  }

  u32(): number {
    return this.view.getUint32(this.need(4));
  }

  u64(): bigint {
    return this.view.getBigUint64(this.need(8));
  }

  bytes(n: number): Uint8Array {
    const at = this.need(n);
    return this.data.slice(at, at + n);
  }

  /** A TPM2B: u16 size, then that many bytes. */
  sized(): Uint8Array {
    return this.bytes(this.u16());
  }

  done(): boolean {
    return this.offset === this.data.length;
  }
}
