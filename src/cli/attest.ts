// `ztedge attest`: measure a device's files, write reference values from a known-good device,
// challenge a device over MQTT, and verify evidence. Options are parsed strictly: an unknown
// or misspelt flag is an error, never ignored.
import { randomBytes } from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { readChallengeReply } from '../attest/challenge.js';
import type { ReferenceValues } from '../attest/compare.js';
import { AttestError } from '../attest/errors.js';
import { DEFAULT_MAX_AGE_MS, EVIDENCE_MAX_BYTES, type VerifiedEvidence, verifyEvidence } from '../attest/evidence.js';
import { measureTargets } from '../attest/measure.js';
import { type FirmwareProfile, loadShippedProfile, parseDuration, parseProfile } from '../attest/profile.js';
import { formatReferences, parseReferences, referencesFromRecords } from '../attest/references.js';
import { compositeDigest } from '../attest/record.js';
import { bytesEqual, fromHex, toHex } from '../crypto/bytes.js';
import { CryptoError } from '../crypto/errors.js';
import { readPublicKeyFile } from '../crypto/key-files.js';
import type { PublicKey } from '../crypto/keys.js';
import { TransportError } from '../transport/errors.js';
import { BROKER_OPTIONS, BROKER_USAGE, brokerTarget, openLink, publishWithin } from './broker-client.js';
import { type CliIo, type OptionSpecs, type ParsedArgs, UsageError, defineGroup, optionValues } from './command.js';


/** Exit codes of `attest verify` and `attest challenge`: one per reason a verification fails. */
export const VERIFY_EXIT_CODES: Readonly<Record<string, number>> = {
  ATTEST_MALFORMED: 10,
  ATTEST_WRONG_DEVICE: 11,
  ATTEST_BAD_SIGNATURE: 12,
  ATTEST_MEASUREMENT_TAMPERED: 13,
  ATTEST_NONCE_MISMATCH: 14,
  ATTEST_EXPIRED: 15,
  ATTEST_REFERENCE_MISMATCH: 16,
  ATTEST_NO_QUOTE: 20,
  ATTEST_AK_MISMATCH: 21,
  ATTEST_QUOTE_MALFORMED: 22,
  ATTEST_QUOTE_BAD_SIGNATURE: 23,
  ATTEST_QUOTE_NONCE: 24,
  ATTEST_PCR_MISMATCH: 25,
  ATTEST_LOG_MISMATCH: 26,
};
const EXIT_NO_EVIDENCE = 30;
const EXIT_REFUSED = 31;

const MEASURE_USAGE = `Usage: ztedge attest measure --profile P [--root DIR] [--json]

Measures the files firmware profile P names (a name from firmware-profiles/ or the path of a
profile file) under DIR (default /) and prints each record and the composite.`;

const REFERENCES_USAGE = `Usage: ztedge attest references --profile P [--root DIR]

Measures a known-good device and prints its reference values in the attestation.json format of
a bundle source. Refuses when a file is missing, unreadable, not regular or world-writable.`;

const EXIT_TEXT = `Exit status: 0 valid;
  10 malformed, 11 another device, 12 bad signature, 13 tampered measurement, 14 nonce
  mismatch (stale), 15 too old, 16 measurements differ from the references,
  20 no TPM quote, 21 another attestation key, 22 malformed quote, 23 bad quote signature,
  24 quote for another nonce (replayed), 25 PCR does not match the measurement log,
  26 log does not end with the composite; 1 other errors.`;

const CHALLENGE_USAGE = `Usage: ztedge attest challenge --mqtt URL --site S --device D --device-key PUB [--ak PUB]
                              [--references FILE] [--timeout 10s] [--out FILE]

Sends a fresh random nonce to the device's attest/challenge topic, waits for its evidence,
verifies it (as verify does) and prints it; --out also saves the evidence.
${EXIT_TEXT}
  30 no evidence in time, 31 the device refused the challenge.
${BROKER_USAGE}`;

const VERIFY_USAGE = `Usage: ztedge attest verify EVIDENCE --device-key PUB --nonce HEX [--references FILE] [--ak PUB]

Verifies evidence (a file, hex in a file, or - for standard input) made for nonce HEX by the
device whose public key is PUB; with --references its measurements must match them; with --ak
it must carry a TPM quote by that attestation key.
${EXIT_TEXT}`;

function required(values: Record<string, string | boolean | undefined>, name: string): string {
  const value = values[name];
  if (typeof value !== 'string' || value === '') throw new UsageError(`missing required option --${name}`);
  return value;
}

function optional(values: Record<string, string | boolean | undefined>, name: string): string | undefined {
  const value = values[name];
  return typeof value === 'string' ? value : undefined;
}

/** A profile by name (shipped profiles) or by file path. */
export function resolveProfile(spec: string): FirmwareProfile {
  if (spec.includes('/') || spec.endsWith('.json')) {
    let text: string;
    try {
      text = fs.readFileSync(spec, 'utf8');
    } catch (err) {
      throw new AttestError('PROFILE_NOT_FOUND', `cannot read profile file ${spec}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
    return parseProfile(text, spec);
  }
  return loadShippedProfile(spec);
}

function rootOf(values: Record<string, string | boolean | undefined>): string {
  const root = path.resolve(optional(values, 'root') ?? '/');
  if (!fs.existsSync(root) || !fs.statSync(root).isDirectory()) throw new AttestError('ATTEST_ROOT_INVALID', `--root ${root} is not a directory`);
  return root;
}

const MEASURE_OPTIONS = { profile: { type: 'string' }, root: { type: 'string' }, json: { type: 'boolean' } } as const satisfies OptionSpecs;

async function measure(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const values = optionValues(parsed, MEASURE_OPTIONS);
  const profile = resolveProfile(required(values, 'profile'));
  const root = rootOf(values);
  const records = await measureTargets(profile.measure, { root });
  const composite = toHex(compositeDigest(records));
  if (values.json === true) {
    io.stdout(JSON.stringify({ profile: profile.name, root, composite, records }, null, 2));
    return 0;
  }
  for (const r of records) {
    const what = r.state === 'file' ? r.sha256! : r.state === 'symlink' ? `-> ${r.target}` : r.state === 'unreadable' ? `unreadable (${r.error})` : r.state === 'not-regular' ? `not a regular file (${r.kind})` : r.state;
    const mode = r.mode === undefined ? '    ' : r.mode.toString(8).padStart(4, '0');
    io.stdout(`${mode}  ${String(r.uid ?? '-').padStart(5)}:${String(r.gid ?? '-').padEnd(5)}  ${what}  ${r.path}`);
  }
  io.stdout(`composite ${composite} (${records.length} file${records.length === 1 ? '' : 's'}, profile ${profile.name})`);
  return 0;
}

const REFERENCES_OPTIONS = { profile: { type: 'string' }, root: { type: 'string' } } as const satisfies OptionSpecs;

async function references(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const values = optionValues(parsed, REFERENCES_OPTIONS);
  const profile = resolveProfile(required(values, 'profile'));
  const records = await measureTargets(profile.measure, { root: rootOf(values) });
  io.stdout(formatReferences([referencesFromRecords(profile.name, records)]));
  return 0;
}

interface VerifyInputs {
  deviceKey: PublicKey;
  ak?: PublicKey;
  references?: ReferenceValues[];
}

function verifyInputs(values: Record<string, string | boolean | undefined>): VerifyInputs {
  const ak = optional(values, 'ak');
  const refs = optional(values, 'references');
  let referenceText: string | undefined;
  if (refs !== undefined) {
    try {
      referenceText = fs.readFileSync(refs, 'utf8');
    } catch (err) {
      throw new AttestError('REFERENCES_INVALID', `cannot read ${refs}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
    }
  }
  return {
    deviceKey: readPublicKeyFile(required(values, 'device-key')),
    ...(ak === undefined ? {} : { ak: readPublicKeyFile(ak) }),
    ...(referenceText === undefined ? {} : { references: parseReferences(referenceText, refs) }),
  };
}

function describeEvidence(v: VerifiedEvidence, nonce: Uint8Array) {
  return {
    valid: true,
    device: v.deviceId,
    nonce: toHex(nonce),
    issuedAt: new Date(v.iatMs).toISOString(),
    measuredAt: new Date(v.measuredAtMs).toISOString(),
    profile: v.profile,
    posture: v.posture,
    mismatches: v.mismatches,
    composite: v.composite,
    files: v.records.length,
    bundle: v.bundle,
    agentVersion: v.agentVersion,
    rootOfTrust: v.rootOfTrust,
    ...(v.tpm === undefined ? {} : { tpm: { pcr: v.tpm.pcr, ak: toHex(v.tpm.ak.kid), logLength: v.tpm.logLength } }),
    referencesChecked: v.assessment !== undefined,
  };
}

const VERIFY_OPTIONS = { 'device-key': { type: 'string' }, nonce: { type: 'string' }, references: { type: 'string' }, ak: { type: 'string' } } as const satisfies OptionSpecs;

async function verify(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const values = optionValues(parsed, VERIFY_OPTIONS);
  const { positionals } = parsed;
  const file = positionals[0];
  if (file === undefined) throw new UsageError('missing EVIDENCE file');
  const nonceText = required(values, 'nonce');
  const nonce = fromHex(nonceText);
  if (nonce === undefined || nonce.length === 0) throw new UsageError(`--nonce must be hex, not '${nonceText}'`);
  const inputs = verifyInputs(values);
  const bytes = await readEvidence(file, io);
  const verified = verifyEvidence(bytes, { ...inputs, nonce, now: Date.now(), maxAgeMs: DEFAULT_MAX_AGE_MS });
  io.stdout(JSON.stringify(describeEvidence(verified, nonce), null, 2));
  return 0;
}

/** Binary evidence, or its hex (what `attest challenge` prints); `-` reads standard input. */
async function readEvidence(file: string, io: CliIo): Promise<Uint8Array> {
  let raw: Buffer;
  try {
    if (file === '-') raw = await io.readStdin();
    else {
      const size = fs.statSync(file).size;
      if (size > 2 * EVIDENCE_MAX_BYTES + 1) throw new AttestError('ATTEST_MALFORMED', `${file} is ${size} bytes, larger than any evidence`);
      raw = fs.readFileSync(file);
    }
  } catch (err) {
    if (err instanceof AttestError) throw err;
    throw new UsageError(`cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const text = raw.toString('latin1').trim();
  const hex = /^[0-9a-fA-F]+$/.test(text) && text.length % 2 === 0 ? fromHex(text.toLowerCase()) : undefined;
  return hex ?? new Uint8Array(raw);
}

const CHALLENGE_OPTIONS = {
  ...BROKER_OPTIONS,
  'device-key': { type: 'string' },
  ak: { type: 'string' },
  references: { type: 'string' },
  timeout: { type: 'string' },
  out: { type: 'string' },
} as const satisfies OptionSpecs;

async function challenge(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const values = optionValues(parsed, CHALLENGE_OPTIONS);
  const target = brokerTarget(parsed);
  const timeoutText = optional(values, 'timeout') ?? '10s';
  const timeoutMs = parseDuration(timeoutText);
  if (timeoutMs === undefined || timeoutMs < 1) throw new UsageError(`--timeout must be a duration such as 10s, not '${timeoutText}'`);
  const inputs = verifyInputs(values);
  const nonce = new Uint8Array(randomBytes(32));
  let answer: ((bytes: Uint8Array) => void) | null = null;
  const reply = new Promise<Uint8Array>((resolve) => (answer = resolve));
  const link = await openLink(target, {
    subscriptions: [`${target.topics.attestEvidence}/#`],
    maxPayloadBytes: EVIDENCE_MAX_BYTES,
    timeoutMs,
    onMessage: (message) => {
      // Replies to other challengers share the topic on MQTT 3.1.1: ours carries our nonce.
      const recognized = readChallengeReply(message.payload);
      if (recognized !== null && bytesEqual(recognized.nonce, nonce)) answer?.(message.payload);
    },
  });
  let bytes: Uint8Array | null;
  try {
    const correlation = link.protocolVersion === 5 ? new Uint8Array(randomBytes(16)) : undefined;
    const route = correlation === undefined ? {} : { responseTopic: `${target.topics.attestEvidence}/${toHex(correlation.subarray(0, 8))}`, correlationData: correlation };
    await publishWithin(link, target.topics.attestChallenge, nonce, { qos: 1, ...route }, timeoutMs);
    let timer: NodeJS.Timeout | undefined;
    bytes = await Promise.race([reply, new Promise<null>((resolve) => (timer = setTimeout(() => resolve(null), timeoutMs)))]);
    clearTimeout(timer);
  } finally {
    await link.close();
  }
  if (bytes === null) {
    io.stderr(`ATTEST_NO_EVIDENCE: no evidence from ${target.deviceId} within ${timeoutText}`);
    return EXIT_NO_EVIDENCE;
  }
  const recognized = readChallengeReply(bytes)!;
  if (recognized.kind === 'refusal') {
    io.stderr(`${recognized.code}: the device refused the challenge: ${recognized.message}`);
    return EXIT_REFUSED;
  }
  const out = optional(values, 'out');
  if (out !== undefined) fs.writeFileSync(out, bytes);
  const verified = verifyEvidence(bytes, { ...inputs, nonce, now: Date.now() });
  if (verified.deviceId !== target.deviceId) throw new AttestError('ATTEST_WRONG_DEVICE', `the evidence names device ${verified.deviceId}, not ${target.deviceId}`);
  io.stdout(JSON.stringify(describeEvidence(verified, nonce), null, 2));
  return 0;
}

export const attestCommand = defineGroup({
  name: 'attest',
  summary: 'measure files, write reference values, challenge a device, verify evidence',
  commands: [
    { name: 'measure', summary: "measure a firmware profile's files and print the composite", usage: MEASURE_USAGE, options: MEASURE_OPTIONS, run: measure },
    { name: 'references', summary: 'write reference values for a bundle source from a known-good device', usage: REFERENCES_USAGE, options: REFERENCES_OPTIONS, run: references },
    { name: 'challenge', summary: 'challenge a device over MQTT and verify its evidence', usage: CHALLENGE_USAGE, options: CHALLENGE_OPTIONS, exitCodes: VERIFY_EXIT_CODES, run: challenge },
    { name: 'verify', summary: 'verify signed evidence for a nonce', usage: VERIFY_USAGE, options: VERIFY_OPTIONS, positionals: { min: 1, max: 1, name: 'EVIDENCE' }, exitCodes: VERIFY_EXIT_CODES, run: verify },
  ],
});

