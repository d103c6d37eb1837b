// A TPM 2.0 driven through tpm2-tools (Debian `tpm2-tools`), each tool spawned without a shell
// with its TCTI in TPM2TOOLS_TCTI. Operations run one at a time: without a resource manager
// (swtpm, /dev/tpm0) transient objects pile up, so every operation ends with
// `tpm2_flushcontext -t`.
//
// What ztedge keeps in the TPM:
//   - an attestation key (AK): a restricted ECDSA P-256 signing key under the owner
//     hierarchy's primary key. Its wrapped blobs are kept in the state directory, so the AK —
//     the key a verifier pins — stays the same across restarts; only this TPM can load them.
//   - one PCR (default 23, resettable by applications): reset when the agent starts, then
//     extended with every new composite measurement. The measurement log is the list of those
//     composites; replaying it must give the PCR. A log that grows too long is compacted by
//     resetting the PCR and extending the current composite again.
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { toHex } from '../crypto/bytes.js';
import { type PublicKey, publicKeyFromPem } from '../crypto/keys.js';
import { AttestError } from './errors.js';
import { MAX_LOG_ENTRIES, type TpmQuote } from './quote.js';

/** PCRs an application may reset from locality 0 (PC Client profile: the debug PCR and 23). */
export const RESETTABLE_PCRS: readonly number[] = [16, 23];
export const DEFAULT_PCR = 23;
const TOOL_TIMEOUT_MS = 30_000;
const MAX_TOOL_OUTPUT = 64 * 1024;

const TCTI = /^(device:\/dev\/tpm(rm)?\d{1,3}|(swtpm|mssim):host=[A-Za-z0-9.:-]{1,253},port=\d{1,5})$/;

/** Checks a TCTI string: `device:/dev/tpmrm0`, `swtpm:host=127.0.0.1,port=2321` (or mssim:). */
export function checkTcti(tcti: string): string | undefined {
  return TCTI.test(tcti) ? undefined : 'must be device:/dev/tpmrm<N>, device:/dev/tpm<N>, or swtpm:host=H,port=P (mssim: likewise)';
}

export type ToolRunner = (tool: string, args: readonly string[]) => Promise<string>;

/** Runs a tpm2-tools binary without a shell; TPM_TOOL_MISSING / TPM_COMMAND_FAILED. */
export function toolRunner(tcti: string): ToolRunner {
  return (tool, args) =>
    new Promise((resolve, reject) => {
      const child = spawn(tool, args, { env: { ...process.env, TPM2TOOLS_TCTI: tcti }, stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (chunk: Buffer) => (stdout = (stdout + chunk.toString()).slice(0, MAX_TOOL_OUTPUT)));
      child.stderr.on('data', (chunk: Buffer) => (stderr = (stderr + chunk.toString()).slice(0, MAX_TOOL_OUTPUT)));
      const timer = setTimeout(() => child.kill('SIGKILL'), TOOL_TIMEOUT_MS);
      child.on('error', (err: NodeJS.ErrnoException) => {
        clearTimeout(timer);
        reject(
          err.code === 'ENOENT'
            ? new AttestError('TPM_TOOL_MISSING', `${tool} is not installed (Debian package tpm2-tools)`)
            : new AttestError('TPM_COMMAND_FAILED', `${tool}: ${err.message}`),
        );
      });
      child.on('close', (code, signal) => {
        clearTimeout(timer);
        if (code === 0) return resolve(stdout);
        const why = stderr.split('\n').find((line) => line.trim() !== '') ?? (signal === null ? `exit code ${code}` : `killed by ${signal}`);
        reject(new AttestError('TPM_COMMAND_FAILED', `${tool} ${args[0] ?? ''} failed: ${why.trim()}`));
      });
    });
}

export interface TpmOptions {
  readonly tcti: string;
  /** Where the AK blobs and transient context files live (created 0700). */
  readonly stateDir: string;
  readonly pcr?: number;
  /** Runs a tool; default spawns it (tests may wrap it). */
  readonly run?: ToolRunner;
}

export interface QuoteWithLog {
  readonly quote: TpmQuote;
  /** The log as it was when the quote was made. */
  readonly log: readonly Uint8Array[];
}

export class Tpm {
  readonly pcr: number;
  #ak: PublicKey | null = null;
  #log: Uint8Array[] = [];
  #queue: Promise<unknown> = Promise.resolve();
  readonly #dir: string;
  readonly #run: ToolRunner;

  private constructor(options: TpmOptions) {
    this.pcr = options.pcr ?? DEFAULT_PCR;
    this.#dir = options.stateDir;
    this.#run = options.run ?? toolRunner(options.tcti);
  }

  /** Loads (creating on first use) the AK and resets the PCR, so the log starts empty. */
  static async open(options: TpmOptions): Promise<Tpm> {
    const problem = checkTcti(options.tcti);
    if (problem !== undefined) throw new AttestError('TPM_CONFIG_INVALID', `TCTI ${JSON.stringify(options.tcti)} ${problem}`);
    const pcr = options.pcr ?? DEFAULT_PCR;
    if (!RESETTABLE_PCRS.includes(pcr)) {
      throw new AttestError('TPM_CONFIG_INVALID', `PCR ${pcr} cannot be reset by an application; use ${RESETTABLE_PCRS.join(' or ')}`);
    }
    fs.mkdirSync(options.stateDir, { recursive: true, mode: 0o700 });
    const tpm = new Tpm(options);
    await tpm.#serial(async () => {
      await tpm.#loadAk();
      await tpm.#tool('tpm2_pcrreset', [String(pcr)]);
    });
    return tpm;
  }

  /** The AK's public key (P-256): what a verifier pins. */
  get ak(): PublicKey {
    return this.#ak!;
  }

  /** Digests extended since the PCR was reset, oldest first. */
  get log(): readonly Uint8Array[] {
    return this.#log;
  }

  /** Extends `digest` (32 bytes) into the PCR and appends it to the log. */
  extend(digest: Uint8Array): Promise<void> {
    return this.#serial(async () => {
      if (this.#log.length >= MAX_LOG_ENTRIES) {
        await this.#tool('tpm2_pcrreset', [String(this.pcr)]);
        this.#log = [];
      }
      await this.#tool('tpm2_pcrextend', [`${this.pcr}:sha256=${toHex(digest)}`]);
      this.#log.push(Uint8Array.from(digest));
    });
  }

  /** The PCR's current value. */
  readPcr(): Promise<Uint8Array> {
    return this.#serial(async () => {
      const out = this.#file('pcr');
      try {
        await this.#tool('tpm2_pcrread', [`sha256:${this.pcr}`, '-o', out]);
        return new Uint8Array(fs.readFileSync(out));
      } finally {
        fs.rmSync(out, { force: true });
      }
    });
  }

  /** A quote of the PCR whose extraData is `nonce`, with the log it corresponds to. */
  quote(nonce: Uint8Array): Promise<QuoteWithLog> {
    return this.#serial(async () => {
      const message = this.#file('msg');
      const signature = this.#file('sig');
      try {
        await this.#tool('tpm2_quote', ['-c', this.#path('ak.ctx'), '-l', `sha256:${this.pcr}`, '-q', toHex(nonce), '-m', message, '-s', signature, '-g', 'sha256']);
        return {
          quote: { attest: new Uint8Array(fs.readFileSync(message)), signature: new Uint8Array(fs.readFileSync(signature)), pcr: this.pcr },
          log: [...this.#log],
        };
      } finally {
        fs.rmSync(message, { force: true });
        fs.rmSync(signature, { force: true });
      }
    });
  }

  async #loadAk(): Promise<void> {
    const primary = this.#path('primary.ctx');
    const pub = this.#path('ak.pub');
    const priv = this.#path('ak.priv');
    // The owner primary is derived from the owner seed with a fixed template: the same key every
    // time, so the AK blobs wrapped under it load again after a restart.
    await this.#tool('tpm2_createprimary', ['-C', 'o', '-g', 'sha256', '-G', 'ecc', '-c', primary]);
    if (!fs.existsSync(pub) || !fs.existsSync(priv)) {
      const tmpPub = `${pub}.new`;
      const tmpPriv = `${priv}.new`;
      await this.#tool('tpm2_create', [
        '-C', primary, '-G', 'ecc256:ecdsa-sha256:null', '-a', 'fixedtpm|fixedparent|sensitivedataorigin|userwithauth|restricted|sign',
        '-u', tmpPub, '-r', tmpPriv,
      ]);
      fs.renameSync(tmpPriv, priv);
      fs.renameSync(tmpPub, pub);
    }
    await this.#tool('tpm2_load', ['-C', primary, '-u', pub, '-r', priv, '-c', this.#path('ak.ctx')]);
    const pem = this.#path('ak.pem');
    await this.#tool('tpm2_readpublic', ['-c', this.#path('ak.ctx'), '-f', 'pem', '-o', pem]);
    this.#ak = publicKeyFromPem(fs.readFileSync(pem, 'utf8'));
    if (this.#ak.keyType !== 'p256') throw new AttestError('TPM_COMMAND_FAILED', 'the attestation key is not a P-256 key');
  }

  /** Runs a tool, then flushes transient objects (no resource manager cleans up after us). */
  async #tool(tool: string, args: readonly string[]): Promise<string> {
    try {
      return await this.#run(tool, args);
    } finally {
      await this.#run('tpm2_flushcontext', ['-t']).catch(() => undefined);
    }
  }

  #serial<T>(work: () => Promise<T>): Promise<T> {
    const result = this.#queue.then(work);
    this.#queue = result.catch(() => undefined);
    return result;
  }

  #path(name: string): string {
    return path.join(this.#dir, name);
  }

  #file(kind: string): string {
    return this.#path(`${kind}-${randomBytes(6).toString('hex')}`);
  }
}
