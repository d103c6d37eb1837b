// `ztedge bundle`: build, sign, verify, inspect, roll back and push signed policy bundles, and the
// signed rollback instructions that roll a running or remote device back.
import fs from 'node:fs';
import path from 'node:path';
import type { AgentConfig } from '../agent/config.js';
import { readAgentConfig } from '../agent/config-file.js';
import { rollbackStoppedAgent } from '../agent/state-dir.js';
import { parseDurationMs } from '../duration.js';
import { buildBundle, isoToSeconds, readBundleSchema, readBundleSource } from '../bundle/build.js';
import { validateBundleSource } from '../bundle/schema.js';
import { readBundleFile } from '../bundle/file-source.js';
import { type BundleManifest, DEFAULT_BUNDLE_MAX_BYTES } from '../bundle/format.js';
import { readUnverifiedBundle, signBundle } from '../bundle/sign.js';
import { type RollbackInstruction, ROLLBACK_MAX_BYTES, encodeRollbackPayload, isRollbackFile, readUnverifiedRollback, signRollback, verifyRollback } from '../bundle/rollback.js';
import type { BundleRef } from '../bundle/store.js';
import { type RootKey, type TrustOptions, verifyBundle } from '../bundle/verify.js';
import { COSE_ALG, type CoseAlgorithm, algorithmInfo } from '../crypto/algorithms.js';
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { readPrivateKeyFile, readPublicKeyFile } from '../crypto/key-files.js';
import { type PublicKey, publicKeyFromPem } from '../crypto/keys.js';
import { type PolicyAst, PolicyParseError, formatDiagnostic, idsFromAnnotations, parsePolicies } from '../policy/index.js';
import { BROKER_OPTIONS, BROKER_USAGE, brokerTarget } from './broker-client.js';
import { type Pushed, pushToDevice } from './bundle-push.js';
import { type CliIo, type OptionSpecs, type ParsedArgs, UsageError, defineGroup, flag, flagList, hasFlag, requireFlag } from './command.js';
import { AGENT_VERSION as VERSION } from '../version.js';
import { durationFlag } from './command-args.js';

const BUILD_USAGE = `Usage: ztedge bundle build DIR --revision N --out FILE [--expires DURATION] [--not-before TIME]
                           [--id ID] [--site S]... [--device D]... [--profile P]...
                           [--min-agent-version V] [--allow-arity-errors]

Compiles DIR (*.cedar, entities.json, issuers.json, attestation.json, settings.json,
tests.json), runs its tests, and writes the unsigned bundle to FILE. Scope lists left out
mean any. --expires defaults to 30d; --id to the directory name.
With a Cedar schema in DIR (one *.cedarschema file, Cedar's human format) the policies,
entities and test requests are validated against it with Cedar's validator (strict mode), and
any error refuses the bundle; without one the build warns that nothing is validated.
A call to an extension function or method with the wrong number of arguments (it fails
whenever it is evaluated) is an error; --allow-arity-errors makes it a warning.`;

const SIGN_USAGE = `Usage: ztedge bundle sign FILE --key KEY [--alg EdDSA|Ed25519|ES256|ESP256] [--out FILE]

Adds one signature by a root key to a bundle or a rollback instruction (in place unless --out).
Run once per root key (k-of-n).`;

const VERIFY_USAGE = `Usage: ztedge bundle verify FILE --root PUB... --threshold K [--device D] [--site S] [--profile P]
                            [--after-revision N] [--agent-version V]

Checks a bundle (or a rollback instruction) as a device would, now, and prints its manifest (or
the instruction) as JSON. Exit 1 with the refusal code on standard error when a device would
refuse it.`;

const INSPECT_USAGE = `Usage: ztedge bundle inspect FILE

Prints a bundle's manifest, digest, signers, policies and issuers (or a rollback instruction and
its signers) as JSON, without verifying signatures.`;

const ROLLBACK_USAGE = `Usage: ztedge bundle rollback (--config FILE | --state-dir DIR --root PUB... --threshold K
                              [--device D] [--site S] [--profile P])

Makes a stopped agent's last-known-good bundle active again, after re-verifying it, and writes
the rollback to the agent's audit log. DIR is the agent's state directory (stateDir in its
configuration; with --config it is read from there, and --state-dir, if given too, must name
the same directory). Refused while the agent runs (it owns its state directory): roll a running
or remote device back with a signed instruction (rollback-build, sign, push).`;

const ROLLBACK_BUILD_USAGE = `Usage: ztedge bundle rollback-build --device D --site S --from BUNDLE --to BUNDLE --out FILE
                                    [--expires DURATION] [--reason TEXT]

Writes an unsigned rollback instruction for device D: make the bundle --to (its last-known-good)
active again in place of --from (its active bundle). BUNDLE is a bundle file, or REVISION:DIGEST
as the device's status shows them (bundle, lastKnownGood). Sign it with \`bundle sign\` once per
root key (k of n, as for bundles) and send it with \`bundle push\`. The device refuses it unless
--from is its active bundle and --to its last-known-good, or after --expires (default 1h, at
most 7d).`;

const PUSH_USAGE = `Usage: ztedge bundle push FILE --mqtt URL --site S --device D (--root PUB... --threshold K [--profile P] | --config FILE)
                          [--no-wait] [--timeout 30s] [--prefix P]

Publishes a signed bundle (retained, on the device's bundle topic) or a signed rollback
instruction (on bundle/rollback) after checking it as the device will: against the roots and
threshold given, or those of the agent's configuration FILE. A bundle or instruction that does
not verify is not published, nor a bundle older than the one the device reports active. Then
waits for the device's retained status to report the outcome.
Exit status: 0 activated (or published, with --no-wait); 1 refused, here or by the device (its
code is printed); 4 published but no outcome within --timeout.

${BROKER_USAGE}`;

const DEFAULT_EXPIRY = '30d';

const TRUST_OPTIONS = {
  root: { type: 'string', multiple: true },
  threshold: { type: 'string' },
  device: { type: 'string' },
  site: { type: 'string' },
  profile: { type: 'string' },
  'agent-version': { type: 'string' },
} as const satisfies OptionSpecs;

const ONE_FILE = { min: 1, max: 1, name: 'FILE' } as const;

export const bundleCommand = defineGroup({
  name: 'bundle',
  summary: 'build, sign, verify, inspect, roll back and push signed policy bundles (and rollback instructions)',
  commands: [
    {
      name: 'build',
      summary: 'compile a bundle source directory, run its tests, write the unsigned bundle',
      usage: BUILD_USAGE,
      options: {
        revision: { type: 'string' },
        out: { type: 'string' },
        expires: { type: 'string' },
        'not-before': { type: 'string' },
        id: { type: 'string' },
        site: { type: 'string', multiple: true },
        device: { type: 'string', multiple: true },
        profile: { type: 'string', multiple: true },
        'min-agent-version': { type: 'string' },
        'allow-arity-errors': { type: 'boolean' },
      },
      positionals: { min: 1, max: 1, name: 'DIR' },
      run: build,
    },
    {
      name: 'sign',
      summary: 'add one root signature to a bundle or a rollback instruction',
      usage: SIGN_USAGE,
      options: { key: { type: 'string' }, alg: { type: 'string' }, out: { type: 'string' } },
      positionals: ONE_FILE,
      run: sign,
    },
    {
      name: 'verify',
      summary: 'check a bundle or rollback instruction as a device would, and print it',
      usage: VERIFY_USAGE,
      options: { ...TRUST_OPTIONS, 'after-revision': { type: 'string' } },
      positionals: ONE_FILE,
      run: verify,
    },
    {
      name: 'inspect',
      summary: 'print a bundle or rollback instruction as JSON without verifying it',
      usage: INSPECT_USAGE,
      options: {},
      positionals: ONE_FILE,
      run: inspect,
    },
    {
      name: 'rollback',
      summary: "make a stopped agent's last-known-good bundle active again",
      usage: ROLLBACK_USAGE,
      options: {
        root: TRUST_OPTIONS.root,
        threshold: TRUST_OPTIONS.threshold,
        device: TRUST_OPTIONS.device,
        site: TRUST_OPTIONS.site,
        profile: TRUST_OPTIONS.profile,
        'state-dir': { type: 'string' },
        config: { type: 'string' },
      },
      run: rollback,
    },
    {
      name: 'rollback-build',
      summary: 'write a rollback instruction for a remote device (sign and push it as a bundle)',
      usage: ROLLBACK_BUILD_USAGE,
      options: {
        device: { type: 'string' },
        site: { type: 'string' },
        from: { type: 'string' },
        to: { type: 'string' },
        out: { type: 'string' },
        expires: { type: 'string' },
        reason: { type: 'string' },
      },
      run: rollbackBuild,
    },
    {
      name: 'push',
      summary: 'publish a signed bundle or rollback instruction to a device and wait for the outcome',
      usage: PUSH_USAGE,
      options: {
        ...BROKER_OPTIONS,
        root: TRUST_OPTIONS.root,
        threshold: TRUST_OPTIONS.threshold,
        profile: TRUST_OPTIONS.profile,
        config: { type: 'string' },
        timeout: { type: 'string' },
        'no-wait': { type: 'boolean' },
      },
      positionals: ONE_FILE,
      exitCodes: { PUSH_NO_OUTCOME: 4 },
      run: push,
    },
  ],
});

async function build(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const dir = onePositional(parsed);
  const out = requireFlag(parsed, 'out');
  const now = Math.floor(Date.now() / 1000);
  const expiresMs = parseDurationMs(flag(parsed, 'expires') ?? DEFAULT_EXPIRY);
  if (expiresMs === undefined || expiresMs < 1000) throw new UsageError('--expires must be a duration such as 12h or 30d');
  const notBefore = flag(parsed, 'not-before');
  const manifest: BundleManifest = {
    id: flag(parsed, 'id') ?? path.basename(path.resolve(dir)),
    revision: positiveInteger(requireFlag(parsed, 'revision'), '--revision'),
    created: now,
    expires: now + Math.floor(expiresMs / 1000),
    ...(notBefore === undefined ? {} : { notBefore: isoSeconds(notBefore, '--not-before') }),
    scope: { sites: flagList(parsed, 'site'), devices: flagList(parsed, 'device'), profiles: flagList(parsed, 'profile') },
    minAgentVersion: flag(parsed, 'min-agent-version') ?? '0.0.0',
  };
  const source = readBundleSource(dir);
  const schema = readBundleSchema(dir);
  const options = { allowArityErrors: hasFlag(parsed, 'allow-arity-errors') };
  if (schema === undefined) {
    io.stderr(`warning: ${dir} has no *.cedarschema: policies, entities and tests are not validated (a mistyped action or entity type goes unnoticed)`);
  } else {
    for (const warning of (await validateBundleSource(source, schema, options)).warnings) io.stderr(warning.message);
  }
  const built = buildBundle(source, manifest, options);
  for (const warning of built.warnings) io.stderr(warning.message);
  writeFileReplacing(out, built.bytes);
  io.stdout(
    `built ${manifest.id} revision ${manifest.revision}: ${built.policyCount} policies, ` +
      `${built.testOutcomes.length} tests passed, ${schema === undefined ? 'not validated' : `validated against ${schema.file}`}, ` +
      `${built.bytes.length} bytes, expires ${iso(manifest.expires)} → ${out} (unsigned)`,
  );
  return 0;
}

async function sign(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const file = onePositional(parsed);
  const key = readPrivateKeyFile(requireFlag(parsed, 'key'));
  const algName = flag(parsed, 'alg');
  const options = algName === undefined ? {} : { alg: algorithmByName(algName) };
  const bytes = await readBundleFile(file, DEFAULT_BUNDLE_MAX_BYTES);
  const rollback = isRollbackFile(bytes);
  const signed = rollback ? signRollback(bytes, key, options) : signBundle(bytes, key, options);
  const out = flag(parsed, 'out') ?? file;
  writeFileReplacing(out, signed);
  const count = rollback ? readUnverifiedRollback(signed).signatures.length : readUnverifiedBundle(signed).signatures.length;
  io.stdout(`signed by ${toHex(key.publicKey.kid)}; ${count} signature${count === 1 ? '' : 's'} → ${out}${rollback ? ' (rollback instruction)' : ''}`);
  return 0;
}

async function verify(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const file = onePositional(parsed);
  const trust = trustFromFlags(parsed);
  const bytes = await readBundleFile(file, DEFAULT_BUNDLE_MAX_BYTES);
  if (isRollbackFile(bytes)) {
    io.stdout(JSON.stringify(describeInstruction(verifyRollback(bytes, { ...trust, now: Date.now() }).instruction), null, 2));
    return 0;
  }
  const after = flag(parsed, 'after-revision');
  const bundle = verifyBundle(bytes, {
    ...trust,
    now: Date.now(),
    ...(after === undefined ? {} : { activeRevision: nonNegativeInteger(after, '--after-revision') }),
  });
  io.stdout(JSON.stringify(bundle.manifest, null, 2));
  return 0;
}

async function inspect(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const file = onePositional(parsed);
  const bytes = await readBundleFile(file, DEFAULT_BUNDLE_MAX_BYTES);
  const signersOf = (signatures: readonly { kid: Uint8Array | undefined; alg: number | undefined }[]) =>
    signatures.map((s) => ({ kid: s.kid === undefined ? null : toHex(s.kid), alg: algorithmLabel(s.alg) }));
  if (isRollbackFile(bytes)) {
    const { instruction, signatures } = readUnverifiedRollback(bytes);
    io.stdout(JSON.stringify({ rollback: describeInstruction(instruction), digest: toHex(sha256(bytes)), signers: signersOf(signatures) }, null, 2));
    io.stderr('note: signatures are listed, not verified (use `ztedge bundle verify`)');
    return 0;
  }
  const { payload, signatures } = readUnverifiedBundle(bytes);
  const report = {
    manifest: payload.manifest,
    digest: toHex(sha256(bytes)),
    signers: signersOf(signatures),
    policies: describePolicies(payload.policies),
    issuers: payload.issuers.map((i) => ({
      kid: toHex(i.kid),
      alg: algorithmLabel(i.alg),
      principal: i.principal,
      ...(i.notBefore === undefined ? {} : { notBefore: iso(i.notBefore) }),
      ...(i.notAfter === undefined ? {} : { notAfter: iso(i.notAfter) }),
      roles: i.roles ?? [],
    })),
    attestation: payload.attestation.map((a) => ({ profile: a.profile, files: a.files.length, composite: a.composite })),
    settings: payload.settings,
    tests: payload.tests.length,
  };
  io.stdout(JSON.stringify(report, null, 2));
  io.stderr('note: signatures are listed, not verified (use `ztedge bundle verify`)');
  return 0;
}

/** Policy ids (the `@id`, else the positional id), files and annotations; parsed, never evaluated. */
function describePolicies(files: readonly { file: string; text: string }[]): unknown[] {
  const out: unknown[] = [];
  const asts: PolicyAst[] = [];
  for (const { file, text } of files) {
    try {
      asts.push(...parsePolicies(text, { source: file, startIndex: asts.length }));
    } catch (err) {
      if (!(err instanceof PolicyParseError)) throw err;
      out.push({ file, errors: err.diagnostics.map((d) => formatDiagnostic(d)) });
    }
  }
  for (const ast of idsFromAnnotations(asts).policies) {
    const annotations = Object.fromEntries(ast.annotations.map((a) => [a.key, a.value]));
    out.push({ id: ast.id, effect: ast.effect, file: ast.loc.source, line: ast.loc.line, annotations });
  }
  return out;
}

async function rollback(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const configFile = flag(parsed, 'config');
  const stateDirFlag = flag(parsed, 'state-dir');
  let stateDir: string;
  let trust: TrustOptions;
  if (configFile !== undefined) {
    for (const name of ['root', 'threshold', 'device', 'site', 'profile']) {
      if (parsed.flags.has(name)) throw new UsageError(`--${name} comes from --config; give one or the other`);
    }
    const config = readAgentConfig(configFile, process.env);
    trust = trustFromConfig(config);
    stateDir = config.stateDir;
    if (stateDirFlag !== undefined && path.resolve(stateDirFlag) !== path.resolve(stateDir)) {
      throw new UsageError(`--state-dir ${stateDirFlag} is not the agent's state directory in ${configFile} (${stateDir})`);
    }
  } else {
    if (stateDirFlag === undefined) throw new UsageError('give the agent\'s --config, or --state-dir with --root and --threshold');
    stateDir = stateDirFlag;
    trust = trustFromFlags(parsed);
  }
  const done = await rollbackStoppedAgent(path.resolve(stateDir), trust, 'ztedge bundle rollback');
  io.stdout(
    `rolled back from revision ${done.fromRevision ?? 'none'} to revision ${done.bundle.manifest.revision} (${done.bundle.digest}); audit record ${done.auditSeq}` +
      (done.bundle.expired ? '; it has expired and is enforced as stale until a newer bundle arrives' : ''),
  );
  return 0;
}

function rollbackBuild(parsed: ParsedArgs, io: CliIo): number {
  const out = requireFlag(parsed, 'out');
  const expiresMs = durationFlag(parsed, 'expires', '1h', 1000);
  const now = Math.floor(Date.now() / 1000);
  const reason = flag(parsed, 'reason');
  const instruction: RollbackInstruction = {
    device: requireFlag(parsed, 'device'),
    site: requireFlag(parsed, 'site'),
    from: bundleRefFlag(parsed, 'from'),
    to: bundleRefFlag(parsed, 'to'),
    created: now,
    expires: now + Math.floor(expiresMs / 1000),
    ...(reason === undefined ? {} : { reason }),
  };
  writeFileReplacing(out, encodeRollbackPayload(instruction));
  io.stdout(
    `rollback instruction for ${instruction.device} at ${instruction.site}: revision ${instruction.from.revision} → ${instruction.to.revision}, ` +
      `expires ${iso(instruction.expires)} → ${out} (unsigned: sign it with each root key, then push it)`,
  );
  return 0;
}

/** `--from`/`--to`: REVISION:DIGEST, or a bundle file (its revision, and the SHA-256 of its bytes). */
function bundleRefFlag(parsed: ParsedArgs, name: string): BundleRef {
  const text = requireFlag(parsed, name);
  const m = /^(\d{1,15}):([0-9a-fA-F]{64})$/.exec(text);
  if (m !== null) return { revision: positiveInteger(m[1]!, `--${name}`), digest: m[2]!.toLowerCase() };
  let bytes: Uint8Array;
  try {
    bytes = fs.readFileSync(text);
  } catch (err) {
    throw new UsageError(`--${name} must be REVISION:DIGEST or a bundle file; cannot read ${text}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  return { revision: readUnverifiedBundle(bytes).payload.manifest.revision, digest: toHex(sha256(bytes)) };
}

/**
 * Publishes a bundle or rollback instruction that verifies for this device (see bundle-push.ts)
 * and, unless --no-wait, waits for the device to report the outcome.
 */
async function push(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const file = onePositional(parsed);
  const target = brokerTarget(parsed);
  const timeoutMs = durationFlag(parsed, 'timeout', '30s', 1);
  const configFile = flag(parsed, 'config');
  let trust: TrustOptions;
  if (configFile !== undefined) {
    for (const name of ['root', 'threshold', 'profile']) {
      if (parsed.flags.has(name)) throw new UsageError(`--${name} comes from --config; give one or the other`);
    }
    const config = readAgentConfig(configFile, process.env);
    if (config.device.id !== target.deviceId || config.device.site !== requireFlag(parsed, 'site')) {
      throw new UsageError(`--site/--device name ${requireFlag(parsed, 'site')}/${target.deviceId}, but ${configFile} is the configuration of ${config.device.site}/${config.device.id}`);
    }
    trust = trustFromConfig(config);
  } else {
    if (!parsed.flags.has('root')) throw new UsageError('push checks what it publishes: give --root and --threshold (the device\'s roots), or --config');
    trust = { ...trustFromFlags(parsed), device: target.deviceId, site: requireFlag(parsed, 'site') };
  }
  const bytes = await readBundleFile(file, Math.max(trust.maxBytes ?? DEFAULT_BUNDLE_MAX_BYTES, ROLLBACK_MAX_BYTES));
  const now = Date.now();
  const what: Pushed = isRollbackFile(bytes)
    ? { kind: 'rollback', instruction: verifyRollback(bytes, { ...trust, now }).instruction }
    : (() => {
        // Expired or not yet valid here means refused there: checked at this machine's time.
        const { manifest } = verifyBundle(bytes, { ...trust, now });
        return { kind: 'bundle' as const, id: manifest.id, revision: manifest.revision };
      })();
  return pushToDevice({ target, bytes, what, timeoutMs, wait: !hasFlag(parsed, 'no-wait') }, io);
}

function describeInstruction(instruction: RollbackInstruction): Record<string, unknown> {
  return { ...instruction, created: iso(instruction.created), expires: iso(instruction.expires) };
}

function trustFromFlags(parsed: ParsedArgs): TrustOptions {
  const roots = flagList(parsed, 'root').map((spec): RootKey => ({ publicKey: readRootKey(spec, process.cwd()) }));
  if (roots.length === 0) throw new UsageError('at least one --root public key is required');
  const device = flag(parsed, 'device');
  const site = flag(parsed, 'site');
  const profile = flag(parsed, 'profile');
  return {
    roots,
    threshold: positiveInteger(requireFlag(parsed, 'threshold'), '--threshold'),
    agentVersion: flag(parsed, 'agent-version') ?? VERSION,
    ...(device === undefined ? {} : { device }),
    ...(site === undefined ? {} : { site }),
    ...(profile === undefined ? {} : { profile }),
  };
}

/** Roots, threshold and identity from the agent's configuration (paths already resolved). */
function trustFromConfig(config: AgentConfig): TrustOptions {
  return {
    roots: config.roots.keys.map((file) => ({ publicKey: readPublicKeyFile(file) })),
    threshold: config.roots.threshold,
    device: config.device.id,
    site: config.device.site,
    profile: config.device.profile,
    agentVersion: VERSION,
    maxBytes: config.limits.bundleMaxBytes,
  };
}

/** A root public key given as PEM text or as the path of a PEM file. */
function readRootKey(spec: string, baseDir: string): PublicKey {
  return spec.trimStart().startsWith('-----BEGIN') ? publicKeyFromPem(spec) : readPublicKeyFile(path.resolve(baseDir, spec));
}

function algorithmByName(name: string): CoseAlgorithm {
  const id = (COSE_ALG as Record<string, CoseAlgorithm>)[name];
  if (id === undefined) throw new UsageError(`--alg must be one of ${Object.keys(COSE_ALG).join(', ')}`);
  return id;
}

function algorithmLabel(id: number | undefined): string | null {
  return id === undefined ? null : (algorithmInfo(id)?.name ?? String(id));
}

/** Replaces `file` whole (temporary sibling, then rename): a crash never leaves half a bundle. */
function writeFileReplacing(file: string, bytes: Uint8Array): void {
  const temp = path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}`);
  fs.writeFileSync(temp, bytes, { mode: 0o644 });
  fs.renameSync(temp, file);
}

function onePositional(parsed: ParsedArgs): string {
  return parsed.positionals[0]!;
}

function positiveInteger(text: string, option: string): number {
  const n = nonNegativeInteger(text, option);
  if (n < 1) throw new UsageError(`${option} must be a positive integer`);
  return n;
}

function nonNegativeInteger(text: string, option: string): number {
  if (!/^\d{1,15}$/.test(text)) throw new UsageError(`${option} must be a non-negative integer`);
  return Number(text);
}

function isoSeconds(text: string, option: string): number {
  const seconds = isoToSeconds(text);
  if (seconds === undefined) throw new UsageError(`${option} must be an ISO 8601 time with a zone, e.g. 2025-06-01T00:00:00Z`);
  return seconds;
}

function iso(seconds: number): string {
  return new Date(seconds * 1000).toISOString();
}
