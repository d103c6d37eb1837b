// Command admission throughput: decode + verify + replay check of command envelopes, per
// second, for Ed25519 and P-256 on the native (OpenSSL) and noble (pure JS) verifiers, against
// the ceiling of raw node:crypto Ed25519 verifications of the same Sig_structure.
//
//   npm run bench:envelope [-- --rounds N --count N --noble-count N]
//
// Three measurements per key type and verifier, on envelopes signed beforehand (each with its
// own cti; signing is not timed):
//   decode+verify   verifyCommand: strict decode, header checks, kid lookup, signature over the
//                   Sig_structure, claim checks, SHA-256 digest;
//   pipeline        what the agent does: verifyCommand, then ReplayGuard.reserve for each of
//                   the commands that arrive together (GROUP, the MQTT link's default receive
//                   maximum), awaiting the one group commit that makes their records durable;
//   one commit each acceptCommand: verifyCommand + ReplayGuard.checkAndRecord, one
//                   synchronous=FULL transaction (one fsync) per command.
// The replay guard runs on a real on-disk SQLite state database (WAL, synchronous=FULL). Every
// measurement runs once per round, interleaved with the ceiling, and the median of the rounds
// is reported, so that a busy machine slows the ceiling and the pipelines alike.
import { verify } from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { parseArgs } from 'node:util';
import { type Database, openStateDb } from '../src/store/state-db.js';
import type { KeyType } from '../src/crypto/algorithms.js';
import { bytesEqual } from '../src/crypto/bytes.js';
import { type PrivateKey, generatePrivateKey, publicKeyToKeyObject } from '../src/crypto/keys.js';
import { sign } from '../src/crypto/signer.js';
import { type VerifierName, getVerifier } from '../src/crypto/verifier.js';
import { encodeCbor } from '../src/envelope/cbor.js';
import { contextAad } from '../src/envelope/claims.js';
import { acceptCommand, signCommand, verifyCommand } from '../src/envelope/command.js';
import { decodeSign1 } from '../src/envelope/cose.js';
import { ReplayGuard } from '../src/store/replay-guard.js';
import type { EnvelopeVerifyOptions } from '../src/envelope/signed-claims.js';

const { values } = parseArgs({
  options: {
    rounds: { type: 'string', default: '5' },
    count: { type: 'string', default: '1024' },
    'noble-count': { type: 'string', default: '128' },
  },
});
const rounds = Number(values.rounds);
const count = Number(values.count);
const nobleCount = Number(values['noble-count']);

const DEVICE = 'robot-1';
const TOPIC = 'cmd';
const keys: Record<KeyType, PrivateKey> = { ed25519: generatePrivateKey('ed25519'), p256: generatePrivateKey('p256') };
const trusted = [keys.ed25519.publicKey, keys.p256.publicKey];
const now = Date.now();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'ztedge-bench-envelope-'));

function envelopes(key: PrivateKey, n: number): Uint8Array[] {
  return Array.from({ length: n }, (_, i) =>
    signCommand({
      key,
      issuer: 'Operator::"ana"',
      deviceId: DEVICE,
      topic: TOPIC,
      action: 'move',
      resource: 'Robot::"arm-1"',
      args: { speed: 250, axis: 'x', seq: i },
      now,
      lifetimeMs: 60_000,
    }),
  );
}

function options(verifier: VerifierName): EnvelopeVerifyOptions {
  return { keyResolver: (kid) => trusted.find((k) => bytesEqual(k.kid, kid)), deviceId: DEVICE, topic: TOPIC, now, verifier: getVerifier(verifier) };
}

function rate(n: number, run: (i: number) => void): number {
  const start = performance.now();
  for (let i = 0; i < n; i++) run(i);
  return (n / (performance.now() - start)) * 1000;
}

function median(samples: number[]): number {
  const sorted = [...samples].sort((a, b) => a - b);
  return sorted[Math.floor(sorted.length / 2)]!;
}

const format = (perSecond: number) => `${Math.round(perSecond).toLocaleString('en-US')}/s`.padStart(9);

const GROUP = 64;

interface Config {
  keyType: KeyType;
  verifier: VerifierName;
  n: number;
  options: EnvelopeVerifyOptions;
  db: Database;
  guard: ReplayGuard;
  verifyOnly: number[];
  pipeline: number[];
  oneCommitEach: number[];
}

/** Admits the envelopes GROUP at a time, as the agent's pipeline does; returns commands/s. */
async function pipelineRate(c: Config, batch: Uint8Array[]): Promise<number> {
  const start = performance.now();
  for (let g = 0; g < batch.length; g += GROUP) {
    const durable = batch.slice(g, g + GROUP).map((e) => {
      const command = verifyCommand(e, c.options);
      return c.guard.reserve({ issuer: command.issuer, cti: command.claims.cti, expMs: command.claims.expMs }, now);
    });
    await Promise.all(durable);
  }
  return (batch.length / (performance.now() - start)) * 1000;
}

try {
  // Ceiling: OpenSSL Ed25519 verifications of the Sig_structure of a real command.
  const sample = envelopes(keys.ed25519, 1)[0]!;
  const message = decodeSign1(sample);
  const toBeSigned = encodeCbor(['Signature1', message.protectedBytes, contextAad(DEVICE, TOPIC), message.payload]);
  const signature = sign(keys.ed25519, toBeSigned);
  const keyObject = publicKeyToKeyObject(keys.ed25519.publicKey);
  const rawVerify = () => {
    if (!verify(null, toBeSigned, keyObject, signature)) throw new Error('ceiling verify failed');
  };

  const configs: Config[] = [];
  for (const keyType of ['ed25519', 'p256'] as const) {
    for (const verifier of ['native', 'noble'] as const) {
      const db = openStateDb(path.join(tmp, `${keyType}-${verifier}.db`));
      const n = verifier === 'native' ? count : nobleCount;
      configs.push({ keyType, verifier, n, options: options(verifier), db, guard: new ReplayGuard(db), verifyOnly: [], pipeline: [], oneCommitEach: [] });
    }
  }
  // Warm-up: JIT, KeyObject cache, SQLite statements.
  rate(count, rawVerify);
  for (const c of configs) {
    await pipelineRate(c, envelopes(keys[c.keyType], GROUP));
    for (const e of envelopes(keys[c.keyType], 8)) acceptCommand(e, c.options, c.guard);
  }

  const ceiling: number[] = [];
  for (let round = 0; round < rounds; round++) {
    ceiling.push(rate(count, rawVerify));
    for (const c of configs) {
      const batch = envelopes(keys[c.keyType], c.n);
      c.verifyOnly.push(rate(c.n, (i) => verifyCommand(batch[i]!, c.options)));
      c.pipeline.push(await pipelineRate(c, batch));
      const more = envelopes(keys[c.keyType], c.n);
      c.oneCommitEach.push(rate(c.n, (i) => acceptCommand(more[i]!, c.options, c.guard)));
    }
  }

  const ceilingRate = median(ceiling);
  console.log(`command envelope: ${sample.length} bytes; median of ${rounds} rounds (${count} native, ${nobleCount} noble commands each)`);
  console.log(`ceiling: raw node:crypto Ed25519 verify ${format(ceilingRate)}`);
  console.log(`key       verifier  decode+verify  pipeline (group commit)  one commit each`);
  for (const c of configs) {
    console.log(`${c.keyType.padEnd(8)}  ${c.verifier.padEnd(8)}  ${format(median(c.verifyOnly))}      ${format(median(c.pipeline))}                ${format(median(c.oneCommitEach))}`);
  }
  for (const keyType of ['ed25519', 'p256'] as const) {
    const [native, noble] = (['native', 'noble'] as const).map((v) => configs.find((c) => c.keyType === keyType && c.verifier === v)!);
    console.log(
      `${keyType} native/noble: decode+verify ${(median(native!.verifyOnly) / median(noble!.verifyOnly)).toFixed(1)}x, pipeline ${(median(native!.pipeline) / median(noble!.pipeline)).toFixed(1)}x`,
    );
  }
  const edNative = configs.find((c) => c.keyType === 'ed25519' && c.verifier === 'native')!;
  console.log(`decode+verify vs ceiling: ${Math.round((median(edNative.verifyOnly) / ceilingRate) * 100)}%`);
  console.log(`one-commit-each vs ceiling: ${Math.round((median(edNative.oneCommitEach) / ceilingRate) * 100)}%`);
  console.log(`pipeline vs ceiling: ${Math.round((median(edNative.pipeline) / ceilingRate) * 100)}%`);
  for (const c of configs) c.db.close();
} finally {
  fs.rmSync(tmp, { recursive: true, force: true });
}
