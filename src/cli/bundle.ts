// `ztedge bundle`: build, sign, verify, inspect, roll back and push signed policy bundles.
import fs from 'node:fs';
import path from 'node:path';
import { loadConfig } from '../agent/config.js';
import { parseDurationMs } from '../duration.js';
import { BundleManager } from '../bundle/activation.js';
import { buildBundle, isoToSeconds, readBundleSource } from '../bundle/build.js';
import { readBundleFile } from '../bundle/file-source.js';
import { type BundleManifest, DEFAULT_BUNDLE_MAX_BYTES } from '../bundle/format.js';
import { readUnverifiedBundle, signBundle } from '../bundle/sign.js';
import { BundleStore } from '../bundle/store.js';
import { type RootKey, type TrustOptions, verifyBundle } from '../bundle/verify.js';
import { COSE_ALG, type CoseAlgorithm, algorithmInfo } from '../crypto/algorithms.js';
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { readPrivateKeyFile, readPublicKeyFile } from '../crypto/key-files.js';
import { type PublicKey, publicKeyFromPem } from '../crypto/keys.js';
import { PolicyParseError, formatDiagnostic, parsePolicies } from '../policy/index.js';
import { BROKER_OPTIONS, BROKER_USAGE, brokerTarget, openLink, publishWithin } from './broker-client.js';
import { type CliIo, type OptionSpecs, type ParsedArgs, UsageError, defineGroup, flag, flagList, requireFlag } from './command.js';
import { AGENT_VERSION as VERSION } from '../version.js';
import { durationFlag } from './command-args.js';

const BUILD_USAGE = `Usage: ztedge bundle build DIR --revision N --out FILE [--expires DURATION] [--not-before TIME]
                           [--id ID] [--site S]... [--device D]... [--profile P]...
                           [--min-agent-version V]

Compiles DIR (*.cedar, entities.json, issuers.json, attestation.json, settings.json,
tests.json), runs its tests, and writes the unsigned bundle to FILE. Scope lists left out
mean any. --expires defaults to 30d; --id to the directory name.`;

const SIGN_USAGE = `Usage: ztedge bundle sign FILE --key KEY [--alg EdDSA|Ed25519|ES256|ESP256] [--out FILE]

Adds one signature by a root key (in place unless --out). Run once per root key (k-of-n).`;

const VERIFY_USAGE = `Usage: ztedge bundle verify FILE --root PUB... --threshold K [--device D] [--site S] [--profile P]
                            [--after-revision N] [--agent-version V]

Checks the bundle as a device would, now, and prints its manifest as JSON. Exit 1 with the
refusal code on standard error when a device would refuse it.`;

const INSPECT_USAGE = `Usage: ztedge bundle inspect FILE

Prints manifest, signers, policies and issuers as JSON (signatures not verified).`;

const ROLLBACK_USAGE = `Usage: ztedge bundle rollback --state-dir DIR (--config FILE | --root PUB... --threshold K
                              [--device D] [--site S] [--profile P])

Makes the device's last-known-good bundle active again, after re-verifying it. For a stopped
agent: the running agent owns its state directory.`;

const PUSH_USAGE = `Usage: ztedge bundle push FILE --mqtt URL --site S --device D [--prefix P] [--timeout 10s]

Publishes the signed bundle, retained, to the device's bundle topic. The device verifies it
and reports the outcome in its retained status (bundle, lastRejection).

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
  summary: 'build, sign, verify, inspect, roll back and push signed policy bundles',
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
      },
      positionals: { min: 1, max: 1, name: 'DIR' },
      run: build,
    },
    {
      name: 'sign',
      summary: 'add one root signature to a bundle',
      usage: SIGN_USAGE,
      options: { key: { type: 'string' }, alg: { type: 'string' }, out: { type: 'string' } },
      positionals: ONE_FILE,
      run: sign,
    },
    {
      name: 'verify',
      summary: 'check a bundle as a device would and print its manifest',
      usage: VERIFY_USAGE,
      options: { ...TRUST_OPTIONS, 'after-revision': { type: 'string' } },
      positionals: ONE_FILE,
      run: verify,
    },
    {
      name: 'inspect',
      summary: 'print a bundle as JSON without verifying it',
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
      name: 'push',
      summary: "publish a signed bundle to a device's bundle topic",
      usage: PUSH_USAGE,
      options: { ...BROKER_OPTIONS, timeout: { type: 'string' } },
      positionals: ONE_FILE,
      run: push,
    },
  ],
});

function build(parsed: ParsedArgs, io: CliIo): number {
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
  const built = buildBundle(readBundleSource(dir), manifest);
  writeFileReplacing(out, built.bytes);
  io.stdout(
    `built ${manifest.id} revision ${manifest.revision}: ${built.policyCount} policies, ` +
      `${built.testOutcomes.length} tests passed, ${built.bytes.length} bytes, expires ${iso(manifest.expires)} → ${out} (unsigned)`,
  );
  return 0;
}

async function sign(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const file = onePositional(parsed);
  const key = readPrivateKeyFile(requireFlag(parsed, 'key'));
  const algName = flag(parsed, 'alg');
  const alg = algName === undefined ? undefined : algorithmByName(algName);
  const signed = signBundle(await readBundleFile(file, DEFAULT_BUNDLE_MAX_BYTES), key, alg === undefined ? {} : { alg });
  const out = flag(parsed, 'out') ?? file;
  writeFileReplacing(out, signed);
  const count = readUnverifiedBundle(signed).signatures.length;
  io.stdout(`signed by ${toHex(key.publicKey.kid)}; ${count} signature${count === 1 ? '' : 's'} → ${out}`);
  return 0;
}

async function verify(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const file = onePositional(parsed);
  const trust = trustFromFlags(parsed);
  const after = flag(parsed, 'after-revision');
  const bundle = verifyBundle(await readBundleFile(file, DEFAULT_BUNDLE_MAX_BYTES), {
    ...trust,
    now: Date.now(),
    ...(after === undefined ? {} : { activeRevision: nonNegativeInteger(after, '--after-revision') }),
  });
  io.stdout(JSON.stringify(bundle.manifest, null, 2));
  return 0;
}

async function inspect(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const file = onePositional(parsed);
  const { payload, signatures } = readUnverifiedBundle(await readBundleFile(file, DEFAULT_BUNDLE_MAX_BYTES));
  const report = {
    manifest: payload.manifest,
    signers: signatures.map((s) => ({ kid: s.kid === undefined ? null : toHex(s.kid), alg: algorithmLabel(s.alg) })),
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

/** Policy ids, names and annotations; parsed, never compiled or evaluated. */
function describePolicies(files: readonly { file: string; text: string }[]): unknown[] {
  const out: unknown[] = [];
  for (const { file, text } of files) {
    try {
      for (const ast of parsePolicies(text, { source: file, startIndex: out.length })) {
        const annotations = Object.fromEntries(ast.annotations.map((a) => [a.key, a.value]));
        out.push({ id: ast.id, ...(annotations.id === undefined ? {} : { name: annotations.id }), effect: ast.effect, file, annotations });
      }
    } catch (err) {
      if (!(err instanceof PolicyParseError)) throw err;
      out.push({ file, errors: err.diagnostics.map(formatDiagnostic) });
    }
  }
  return out;
}

function rollback(parsed: ParsedArgs, io: CliIo): number {
  const stateDir = requireFlag(parsed, 'state-dir');
  const configFile = flag(parsed, 'config');
  const trust = configFile === undefined ? trustFromFlags(parsed) : trustFromConfig(configFile);
  const manager = new BundleManager({
    store: new BundleStore(stateDir, { maxBundleBytes: trust.maxBytes ?? DEFAULT_BUNDLE_MAX_BYTES }),
    trust,
    clock: { now: () => Date.now() },
  });
  const before = manager.start();
  const after = manager.rollback();
  io.stdout(
    `rolled back from revision ${before?.manifest.revision ?? 'none'} to revision ${after.manifest.revision} (${after.digest})` +
      (after.expired ? '; it has expired and is enforced as stale until a newer bundle arrives' : ''),
  );
  return 0;
}

/**
 * Publishes a bundle for a device to pick up. Only its structure is checked here (a file that is
 * not a bundle is refused before it reaches the broker); the device does the verification.
 */
async function push(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const file = onePositional(parsed);
  const target = brokerTarget(parsed);
  const timeoutMs = durationFlag(parsed, 'timeout', '10s', 1);
  const bytes = await readBundleFile(file, DEFAULT_BUNDLE_MAX_BYTES);
  const { manifest } = readUnverifiedBundle(bytes).payload;
  const link = await openLink(target, { timeoutMs });
  try {
    await publishWithin(link, target.topics.bundle, bytes, { qos: 1, retain: true }, timeoutMs);
  } finally {
    await link.close();
  }
  io.stdout(`pushed ${manifest.id} revision ${manifest.revision} (${toHex(sha256(bytes))}, ${bytes.length} bytes) → ${target.topics.bundle} (retained)`);
  return 0;
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

/** Roots, threshold and identity from the agent's configuration file (and ZTEDGE_* variables). */
function trustFromConfig(file: string): TrustOptions {
  let text: string;
  try {
    text = fs.readFileSync(file, 'utf8');
  } catch (err) {
    throw new UsageError(`cannot read --config ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  const config = loadConfig(text, process.env, file);
  const base = path.dirname(path.resolve(file));
  return {
    roots: config.roots.keys.map((spec) => ({ publicKey: readRootKey(spec, base) })),
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
