// `ztedge bundle`: build, sign, verify, inspect, roll back and push signed policy bundles.
import fs from 'node:fs';
import path from 'node:path';
import { ConfigError, loadConfig } from '../agent/config.js';
import { parseDurationMs } from '../duration.js';
import { BundleManager } from '../bundle/activation.js';
import { buildBundle, isoToSeconds, readBundleSource } from '../bundle/build.js';
import { BundleError } from '../bundle/errors.js';
import { readBundleFile } from '../bundle/file-source.js';
import { type BundleManifest, DEFAULT_BUNDLE_MAX_BYTES } from '../bundle/format.js';
import { readUnverifiedBundle, signBundle } from '../bundle/sign.js';
import { BundleStore, BundleStoreError } from '../bundle/store.js';
import { type RootKey, type TrustOptions, verifyBundle } from '../bundle/verify.js';
import { COSE_ALG, type CoseAlgorithm, algorithmInfo } from '../crypto/algorithms.js';
import { toHex } from '../crypto/bytes.js';
import { sha256 } from '../crypto/hash.js';
import { CryptoError } from '../crypto/errors.js';
import { readPrivateKeyFile, readPublicKeyFile } from '../crypto/key-files.js';
import { type PublicKey, publicKeyFromPem } from '../crypto/keys.js';
import { PolicyParseError, formatDiagnostic, parsePolicies } from '../policy/index.js';
import { TransportError } from '../transport/errors.js';
import { BROKER_USAGE, brokerTarget, openLink, publishWithin } from './broker-client.js';
import { type CliIo, type CommandGroup, type ParsedArgs, UsageError, flag, flagList, parseArgs, requireFlag } from './command.js';
import { AGENT_VERSION as VERSION } from '../version.js';
import { durationFlag } from './command-args.js';

const USAGE = `Usage: ztedge bundle <command> [options]

Commands:
  build DIR --revision N --out FILE [--expires DURATION] [--not-before TIME] [--id ID]
        [--site S]... [--device D]... [--profile P]... [--min-agent-version V]
      Compile DIR (*.cedar, entities.json, issuers.json, attestation.json, settings.json,
      tests.json), run its tests, and write the unsigned bundle. Scope lists left out mean any.
      --expires defaults to 30d; --id to the directory name.
  sign FILE --key KEY [--alg EdDSA|Ed25519|ES256|ESP256] [--out FILE]
      Add one signature by a root key (in place unless --out). Run once per root key.
  verify FILE --root PUB... --threshold K [--device D] [--site S] [--profile P]
        [--after-revision N] [--agent-version V]
      Check the bundle as a device would, now; print its manifest as JSON. Exit 1 with the
      refusal code on stderr when a device would refuse it.
  inspect FILE
      Print manifest, signers, policies and issuers as JSON (signatures not verified).
  rollback --state-dir DIR (--config FILE | --root PUB... --threshold K [--device D]
        [--site S] [--profile P])
      Make the device's last-known-good bundle active again, after re-verifying it. For a
      stopped agent: the running agent owns its state directory.
  push FILE --mqtt URL --site S --device D [--prefix P] [--timeout 10s]
      Publish the signed bundle, retained, to the device's bundle topic. The device verifies
      it and reports the outcome in its retained status (bundle, lastRejection).

${BROKER_USAGE}`;

const DEFAULT_EXPIRY = '30d';

export const bundleCommand: CommandGroup = {
  summary: 'build, sign, verify, inspect, roll back and push signed policy bundles',
  usage: USAGE,
  run: async (args, io) => {
    const [command, ...rest] = args;
    try {
      switch (command) {
        case 'build':
          return build(parseArgs(rest), io);
        case 'sign':
          return await sign(parseArgs(rest), io);
        case 'verify':
          return await verify(parseArgs(rest), io);
        case 'inspect':
          return await inspect(parseArgs(rest), io);
        case 'rollback':
          return rollback(parseArgs(rest), io);
        case 'push':
          return await push(parseArgs(rest), io);
        default:
          throw new UsageError(command === undefined ? 'missing command' : `unknown command '${command}'`);
      }
    } catch (err) {
      if (
        err instanceof BundleError ||
        err instanceof CryptoError ||
        err instanceof BundleStoreError ||
        err instanceof ConfigError ||
        err instanceof TransportError
      ) {
        io.stderr(describeError(err));
        return 1;
      }
      throw err;
    }
  },
};

function describeError(err: BundleError | CryptoError | BundleStoreError | ConfigError | TransportError): string {
  const lines = [`${err.code}: ${err.message}`];
  if (err instanceof BundleError) for (const problem of err.problems) lines.push(`  ${problem.message}`);
  return lines.join('\n');
}

function build(parsed: ParsedArgs, io: CliIo): number {
  const dir = onePositional(parsed, 'DIR');
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
  const file = onePositional(parsed, 'FILE');
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
  const file = onePositional(parsed, 'FILE');
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
  const file = onePositional(parsed, 'FILE');
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
  const file = onePositional(parsed, 'FILE');
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

function onePositional(parsed: ParsedArgs, name: string): string {
  if (parsed.positionals.length !== 1) throw new UsageError(`expected exactly one ${name}`);
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
