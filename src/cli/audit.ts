// `ztedge audit verify|export|tail|prove|checkpoint`: read and check an agent's audit log. Every
// command opens the state database read-only, so it runs beside a running agent without ever
// blocking it (WAL: readers and the writer do not wait on each other).
import fs from 'node:fs';
import type { Database } from 'better-sqlite3';
import { CryptoError } from '../crypto/errors.js';
import { readPublicKeyFile } from '../crypto/key-files.js';
import type { PublicKey } from '../crypto/keys.js';
import { type CborValue, decodeCbor } from '../envelope/cbor.js';
import type { AuditRecord } from '../audit/chain.js';
import { CheckpointError, decodeCheckpointBody, noteVerifierKey, readUnverifiedCheckpoint, signedNote, verifyCheckpointBody, verifySignedNote } from '../audit/checkpoint.js';
import { ExportError, cborItem, exportRange, jsonLine, parseExport, verifyExport } from '../audit/export.js';
import { leafHash, verifyInclusion } from '../audit/merkle.js';
import { AuditReadError, AuditReader, openReadOnly, stateDbPath } from '../audit/reader.js';
import { TreeStoreError } from '../audit/tree-store.js';
import { type TrustedCheckpoint, type VerifyFailureCode, type VerifyReport, verifyStoredLog } from '../audit/verify.js';
import { type CliIo, type OptionSpecs, type ParsedArgs, UsageError, defineGroup, optionValues } from './command.js';

/** Exit codes of `audit verify`, one per kind of failure. */
export const VERIFY_EXIT: Record<VerifyFailureCode, number> = {
  AUDIT_HASH_MISMATCH: 10,
  AUDIT_PREV_MISMATCH: 11,
  AUDIT_SEQ_GAP: 12,
  AUDIT_TRUNCATED: 13,
  AUDIT_CHECKPOINT_SIGNATURE: 14,
  AUDIT_CHECKPOINT_KEY: 15,
  AUDIT_CHECKPOINT_ROOT: 16,
  AUDIT_CHECKPOINT_LINK: 17,
  AUDIT_CHECKPOINT_MISPLACED: 18,
  AUDIT_CHECKPOINT_DEVICE: 19,
  AUDIT_CHECKPOINT_MALFORMED: 20,
  AUDIT_ROLLED_BACK: 21,
  AUDIT_FORK: 22,
  AUDIT_TREE_MISMATCH: 23,
  AUDIT_PROOF_INVALID: 24,
};
/** The input could not be read: missing, not a database or export, no audit log, a bad key file. */
export const EXIT_UNREADABLE = 3;
/** `prove`: the record cannot be proven (pruned, not yet checkpointed, out of range). */
export const EXIT_NOT_PROVABLE = 4;

const INTRO = `Reads an agent's audit log. --state-dir is the agent's stateDir (its state.db is opened
read-only: safe beside a running agent, which it never blocks).`;

const VERIFY_USAGE = `Usage: ztedge audit verify (--state-dir DIR | --file EXPORT) [--device-key PUB]... [--device ID]
                           [--checkpoint NOTE]... [--json]

Checks the hash chain, every checkpoint's signature, placement and root (each root is
recomputed from the records before it, which makes consecutive checkpoints consistent)
and its link to the previous one, and the stored Merkle tree. --device-key pins the
device's public key (SPKI PEM; repeat for a rotated key); without it the keys recorded
in the database (or the export) are used, which a forger with write access could have
replaced. --checkpoint is a signed checkpoint note seen earlier (\`audit checkpoint\`):
the log must extend it, which catches a rollback or truncation to an older state.
With --file, an export is checked on its own (chain within the range, every record's
inclusion proof and every checkpoint's consistency proof against its newest checkpoint).
Names the first bad seq. Exit status:
   0  intact                          15  checkpoint signed by another key (re-signed)
   1  unexpected error                16  checkpoint root ≠ the records before it
   2  usage                           17  checkpoint does not link to the previous one
   3  input unreadable                18  checkpoint moved (size ≠ its seq − 1)
  10  record edited (hash)            19  checkpoint of another device / origin
  11  records reordered / replaced    20  checkpoint malformed
  12  record deleted (seq gap)        21  log rolled back (shorter than --checkpoint)
  13  log truncated at its end        22  fork (another history than --checkpoint)
  14  checkpoint signature forged     23  stored tree disagrees with the records
                                      24  inclusion / consistency proof invalid (export)`;

const EXPORT_USAGE = `Usage: ztedge audit export --state-dir DIR --from SEQ [--to SEQ] --format jsonl|cbor [--out FILE]

Records SEQ…SEQ (default: to the last) with their inclusion proofs against the newest
checkpoint, which heads the export with the device keys. jsonl goes to standard output
unless --out; cbor (an RFC 8742 CBOR sequence) needs --out.`;

const TAIL_USAGE = `Usage: ztedge audit tail --state-dir DIR [--lines N] [--follow]

The last N records (default 20), one line each; --follow keeps printing new ones.`;

const PROVE_USAGE = `Usage: ztedge audit prove --state-dir DIR --seq N [--size M]

Inclusion proof of record N against the newest checkpoint covering it (or the tree of the first M
records), checked before it is printed as JSON. Exit 4 when N cannot be proven (pruned, or not
yet covered by a checkpoint: then use --size).`;

const CHECKPOINT_USAGE = `Usage: ztedge audit checkpoint --state-dir DIR [--seq N] [--format note|json] [--out FILE]

The newest checkpoint (or the one at seq N) as a C2SP tlog-checkpoint signed note (the device's
verifier key is printed with --format json).`;

const VERIFY_OPTIONS = {
  'state-dir': { type: 'string' },
  file: { type: 'string' },
  'device-key': { type: 'string', multiple: true },
  device: { type: 'string' },
  checkpoint: { type: 'string', multiple: true },
  json: { type: 'boolean' },
} as const satisfies OptionSpecs;
const EXPORT_OPTIONS = {
  'state-dir': { type: 'string' },
  from: { type: 'string' },
  to: { type: 'string' },
  format: { type: 'string' },
  out: { type: 'string' },
} as const satisfies OptionSpecs;
const TAIL_OPTIONS = {
  'state-dir': { type: 'string' },
  lines: { type: 'string' },
  follow: { type: 'boolean' },
} as const satisfies OptionSpecs;
const PROVE_OPTIONS = { 'state-dir': { type: 'string' }, seq: { type: 'string' }, size: { type: 'string' } } as const satisfies OptionSpecs;
const CHECKPOINT_OPTIONS = { 'state-dir': { type: 'string' }, seq: { type: 'string' }, format: { type: 'string' }, out: { type: 'string' } } as const satisfies OptionSpecs;
/** Unreadable input (no database, not an export, a bad key file) exits 3 from every command. */
const UNREADABLE_CODES: Readonly<Record<string, number>> = Object.fromEntries(
  [
    'AUDIT_DB_UNREADABLE', 'AUDIT_SCHEMA_MISMATCH', 'AUDIT_NOT_FOUND', 'AUDIT_BAD_RANGE', 'AUDIT_NO_CHECKPOINT', 'AUDIT_EXPORT_MALFORMED',
    'CHECKPOINT_MALFORMED', 'CHECKPOINT_UNKNOWN_KEY', 'CHECKPOINT_BAD_SIGNATURE', 'CHECKPOINT_BAD_NOTE',
    'KEY_FILE_UNREADABLE', 'KEY_FILE_PERMISSIONS', 'KEY_INVALID', 'KEY_TYPE_UNSUPPORTED',
  ].map((code) => [code, EXIT_UNREADABLE]),
);

export const auditCommand = defineGroup({
  name: 'audit',
  summary: 'verify, export, tail and prove the audit log',
  footer: INTRO,
  commands: [
    { name: 'verify', summary: 'check the chain, the checkpoints and the stored tree; name the first bad seq', usage: VERIFY_USAGE, options: VERIFY_OPTIONS, run: verify, exitCodes: UNREADABLE_CODES },
    { name: 'export', summary: 'records with their inclusion proofs, as JSON lines or a CBOR sequence', usage: EXPORT_USAGE, options: EXPORT_OPTIONS, run: exportCommand, exitCodes: UNREADABLE_CODES },
    { name: 'tail', summary: 'the last records, one line each; --follow for new ones', usage: TAIL_USAGE, options: TAIL_OPTIONS, run: tail, exitCodes: UNREADABLE_CODES },
    { name: 'prove', summary: 'the inclusion proof of one record', usage: PROVE_USAGE, options: PROVE_OPTIONS, run: prove, exitCodes: UNREADABLE_CODES },
    { name: 'checkpoint', summary: 'the newest checkpoint as a C2SP signed note', usage: CHECKPOINT_USAGE, options: CHECKPOINT_OPTIONS, run: checkpoint, exitCodes: UNREADABLE_CODES },
  ],
});

function integer(value: string | undefined, name: string, min = 1): number | undefined {
  if (value === undefined) return undefined;
  if (!/^\d{1,15}$/.test(value) || Number(value) < min) throw new UsageError(`--${name} must be an integer ≥ ${min}, got '${value}'`);
  return Number(value);
}

function required<T>(value: T | undefined, name: string): T {
  if (value === undefined) throw new UsageError(`missing required option --${name}`);
  return value;
}

function withReader<T>(stateDir: string, fn: (reader: AuditReader, db: Database) => T): T {
  const db = openReadOnly(stateDbPath(stateDir));
  try {
    const reader = new AuditReader(db);
    return fn(reader, db);
  } finally {
    db.close();
  }
}

// ---------------------------------------------------------------------------------------
// verify

async function verify(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const values = optionValues(parsed, VERIFY_OPTIONS);
  if ((values['state-dir'] === undefined) === (values.file === undefined)) throw new UsageError('give exactly one of --state-dir and --file');
  if (values.file !== undefined && values.checkpoint !== undefined) throw new UsageError('--checkpoint checks a state directory, not an export');
  const pinned = (values['device-key'] ?? []).map((file) => readPublicKeyFile(file));

  const keysNote =
    pinned.length > 0 ? 'pinned with --device-key' : `taken from the ${values.file === undefined ? 'database' : 'export'} itself (pin them with --device-key)`;
  let report: VerifyReport;
  if (values.file !== undefined) {
    const parsed = parseExport(readBounded(values.file));
    report = verifyExport(parsed, pinned.length > 0 ? pinned : parsed.header.keys);
  } else {
    report = withReader(values['state-dir']!, (reader) => {
      const keys = pinned.length > 0 ? pinned : reader.keys().map((k) => k.key);
      const trusted = (values.checkpoint ?? []).map((file) => readTrustedCheckpoint(file, keys, reader));
      return verifyStoredLog(reader, { keys, ...(values.device === undefined ? {} : { device: values.device }), trusted });
    });
  }
  if (values.json) io.stdout(JSON.stringify(jsonReport(report, keysNote), null, 2));
  if (report.failure !== undefined) {
    const { code, seq, message } = report.failure;
    io.stderr(`${code} at seq ${seq}: ${message}`);
    if (report.records > 0 && !values.json) io.stderr(`records ${report.firstSeq}…${report.lastSeq} verified before it`);
    return VERIFY_EXIT[code];
  }
  if (!values.json) io.stdout(describeReport(report, keysNote));
  return 0;
}

function readTrustedCheckpoint(file: string, keys: readonly PublicKey[], reader: AuditReader): TrustedCheckpoint {
  const text = readBounded(file, 16 * 1024).toString();
  const origin = reader.latestCheckpoint()?.checkpoint.origin;
  for (const key of keys) {
    try {
      const note = verifySignedNote(text, key, origin);
      return { size: note.size, root: note.root };
    } catch (err) {
      if (!(err instanceof CheckpointError) || err.code !== 'CHECKPOINT_UNKNOWN_KEY') throw err;
    }
  }
  throw new CheckpointError('CHECKPOINT_UNKNOWN_KEY', `${file} is not signed by a device key`);
}

function describeReport(r: VerifyReport, keysNote: string): string {
  const lines = [`audit log intact: records ${r.firstSeq}…${r.lastSeq} (${r.records}), ${r.checkpoints} checkpoint${r.checkpoints === 1 ? '' : 's'} verified`];
  if (r.lastCheckpoint !== undefined) {
    lines.push(`newest checkpoint: seq ${r.lastCheckpoint.seq}, ${r.lastCheckpoint.size} records, root ${hex(r.lastCheckpoint.root)}, ${new Date(r.lastCheckpoint.timeMs).toISOString()}`);
  }
  if (r.uncovered > 0) lines.push(`${r.uncovered} record${r.uncovered === 1 ? '' : 's'} after it chained but not yet covered by a checkpoint`);
  lines.push(`device keys ${keysNote}`);
  return lines.join('\n');
}

function jsonReport(r: VerifyReport, keysNote: string) {
  return {
    ok: r.failure === undefined,
    ...(r.failure === undefined ? {} : { failure: r.failure, exitCode: VERIFY_EXIT[r.failure.code] }),
    firstSeq: r.firstSeq,
    lastSeq: r.lastSeq,
    records: r.records,
    checkpoints: r.checkpoints,
    lastCheckpoint: r.lastCheckpoint === undefined ? null : { ...r.lastCheckpoint, root: hex(r.lastCheckpoint.root) },
    uncovered: r.uncovered,
    keys: keysNote,
  };
}

// ---------------------------------------------------------------------------------------
// export

function exportCommand(parsed: ParsedArgs, io: CliIo): number {
  const values = optionValues(parsed, EXPORT_OPTIONS);
  const stateDir = required(values['state-dir'], 'state-dir');
  const from = required(integer(values.from, 'from'), 'from');
  const toFlag = integer(values.to, 'to');
  const format = required(values.format, 'format');
  if (format !== 'jsonl' && format !== 'cbor') throw new UsageError(`--format must be jsonl or cbor, got '${format}'`);
  if (format === 'cbor' && values.out === undefined) throw new UsageError('--format cbor writes binary: give --out FILE');
  if (toFlag !== undefined && toFlag < from) throw new UsageError('--to must not be below --from');
  return withReader(stateDir, (reader) =>
    reader.snapshot(() => {
      const last = reader.lastSeq();
      const to = toFlag ?? last;
      const { prunedSeq } = reader.meta();
      if (from <= prunedSeq) throw new AuditReadError('AUDIT_BAD_RANGE', `records up to ${prunedSeq} were pruned after upstream sync`);
      if (to > last || from > last) throw new AuditReadError('AUDIT_BAD_RANGE', `the log ends at ${last}`);
      const out = values.out === undefined ? undefined : fs.openSync(values.out, 'w', 0o600);
      let count = 0;
      try {
        for (const item of exportRange(reader, from, to)) {
          if (format === 'jsonl') {
            const line = jsonLine(item);
            if (out === undefined) io.stdout(line.slice(0, -1));
            else fs.writeSync(out, line);
          } else fs.writeSync(out!, cborItem(item));
          count++;
        }
        if (out !== undefined) fs.fsyncSync(out);
      } finally {
        if (out !== undefined) fs.closeSync(out);
      }
      if (values.out !== undefined) io.stderr(`exported records ${from}…${to} (${count - 1}) to ${values.out}`);
      return 0;
    }),
  );
}

// ---------------------------------------------------------------------------------------
// tail

const FOLLOW_POLL_MS = 500;

async function tail(parsed: ParsedArgs, io: CliIo): Promise<number> {
  const values = optionValues(parsed, TAIL_OPTIONS);
  const stateDir = required(values['state-dir'], 'state-dir');
  const count = integer(values.lines, 'lines', 0) ?? 20;
  const db = openReadOnly(stateDbPath(stateDir));
  try {
    const reader = new AuditReader(db);
    const last = reader.lastSeq();
    let next = Math.max(reader.meta().prunedSeq + 1, last - count + 1);
    const print = () => {
      for (const record of reader.iterate(next)) {
        // Without --follow, the last N as of the start: records appended meanwhile are not shown.
        if (!values.follow && record.seq > last) break;
        io.stdout(describeRecord(record));
        next = record.seq + 1;
      }
    };
    print();
    if (!values.follow) return 0;
    await new Promise<void>((resolve) => {
      const timer = setInterval(print, FOLLOW_POLL_MS);
      const stop = () => {
        clearInterval(timer);
        process.off('SIGINT', stop);
        process.off('SIGTERM', stop);
        resolve();
      };
      process.on('SIGINT', stop);
      process.on('SIGTERM', stop);
    });
    return 0;
  } finally {
    db.close();
  }
}

/** One human-readable line: seq, time, kind, the body in short (checkpoints: unverified). */
export function describeRecord(r: AuditRecord): string {
  const head = `${String(r.seq).padStart(8)}  ${new Date(r.timeMs).toISOString()}  ${r.kind.padEnd(10)}`;
  if (r.kind === 'checkpoint') {
    try {
      const cp = readUnverifiedCheckpoint(r.body);
      return `${head}  size=${cp.size} root=${hex(cp.root).slice(0, 16)}… ${cp.origin} (signature not checked: use verify)`;
    } catch {
      return `${head}  malformed checkpoint`;
    }
  }
  let text: string;
  try {
    text = short(decodeCbor(r.body, { maxBytes: 1 << 20, maxDepth: 16 }));
  } catch {
    text = `${r.body.length} bytes ${hex(r.body.subarray(0, 16))}${r.body.length > 16 ? '…' : ''}`;
  }
  return `${head}  ${text.length > 240 ? `${text.slice(0, 239)}…` : text}`;
}

function short(v: CborValue): string {
  if (v instanceof Uint8Array) return v.length > 12 ? `h'${hex(v.subarray(0, 12))}…'` : `h'${hex(v)}'`;
  if (v instanceof Map) return `{${[...v].map(([k, x]) => `${String(k)}: ${short(x)}`).join(', ')}}`;
  if (Array.isArray(v)) return `[${v.map(short).join(', ')}]`;
  if (typeof v === 'string') return JSON.stringify(v).replace(/[\u0000-\u001f\u007f-\u009f]/g, '?');
  if (typeof v === 'bigint') return v.toString();
  if (v !== null && typeof v === 'object') return `tag(${String((v as { tag: number }).tag)})`;
  return String(v);
}

// ---------------------------------------------------------------------------------------
// prove

function prove(parsed: ParsedArgs, io: CliIo): number {
  const values = optionValues(parsed, PROVE_OPTIONS);
  const stateDir = required(values['state-dir'], 'state-dir');
  const seq = required(integer(values.seq, 'seq'), 'seq');
  const size = integer(values.size, 'size');
  return withReader(stateDir, (reader) =>
    reader.snapshot(() => {
      const record = reader.record(seq);
      if (record === undefined) {
        io.stderr(`AUDIT_NOT_FOUND: record ${seq} is not in the log (${seq <= reader.meta().prunedSeq ? 'pruned after upstream sync' : `the log ends at ${reader.lastSeq()}`})`);
        return EXIT_NOT_PROVABLE;
      }
      let target: { size: number; root: Uint8Array; checkpoint?: { seq: number; note: string } };
      if (size !== undefined) {
        if (size < seq || size > reader.lastSeq()) {
          io.stderr(`AUDIT_BAD_RANGE: --size must be from ${seq} to ${reader.lastSeq()}`);
          return EXIT_NOT_PROVABLE;
        }
        target = { size, root: reader.rootAt(size) };
      } else {
        const latest = reader.latestCheckpoint();
        if (latest === undefined || latest.checkpoint.size < seq) {
          io.stderr(`AUDIT_NOT_CHECKPOINTED: record ${seq} is not covered by a checkpoint yet${latest === undefined ? '' : ` (the newest covers ${latest.checkpoint.size})`}; use --size`);
          return EXIT_NOT_PROVABLE;
        }
        const { note } = decodeCheckpointBody(latest.body);
        target = { size: latest.checkpoint.size, root: latest.checkpoint.root, checkpoint: { seq: latest.seq, note: signedNote(latest.checkpoint, note) } };
      }
      let proof: Uint8Array[];
      try {
        proof = reader.inclusionProof(seq, target.size);
      } catch (err) {
        if (!(err instanceof TreeStoreError)) throw err;
        io.stderr(`${err.code}: ${err.message}`);
        return EXIT_NOT_PROVABLE;
      }
      // Checked here so that a damaged tree never yields a proof that looks fine.
      verifyInclusion(seq - 1, target.size, leafHash(record.hash), proof, target.root);
      io.stdout(
        JSON.stringify(
          {
            seq,
            leafIndex: seq - 1,
            recordHash: hex(record.hash),
            leafHash: hex(leafHash(record.hash)),
            treeSize: target.size,
            root: hex(target.root),
            proof: proof.map(hex),
            ...(target.checkpoint === undefined ? {} : { checkpoint: target.checkpoint }),
          },
          null,
          2,
        ),
      );
      return 0;
    }),
  );
}

// ---------------------------------------------------------------------------------------
// checkpoint

function checkpoint(parsed: ParsedArgs, io: CliIo): number {
  const values = optionValues(parsed, CHECKPOINT_OPTIONS);
  const stateDir = required(values['state-dir'], 'state-dir');
  const seq = integer(values.seq, 'seq');
  const format = values.format ?? 'note';
  if (format !== 'note' && format !== 'json') throw new UsageError(`--format must be note or json, got '${format}'`);
  return withReader(stateDir, (reader) => {
    const found = reader.latestCheckpoint(seq);
    if (found === undefined || (seq !== undefined && found.seq !== seq)) {
      io.stderr(seq === undefined ? 'AUDIT_NO_CHECKPOINT: the log has no checkpoint yet' : `AUDIT_NO_CHECKPOINT: record ${seq} is not a checkpoint`);
      return EXIT_NOT_PROVABLE;
    }
    // Checked with the key the log recorded, so that what is exported at least verifies.
    const verified = verifyCheckpointBody(found.body, reader.keys().map((k) => k.key));
    const note = signedNote(verified.checkpoint, verified.note);
    const text =
      format === 'note'
        ? note
        : `${JSON.stringify(
            {
              seq: found.seq,
              origin: verified.checkpoint.origin,
              device: verified.checkpoint.device,
              size: verified.checkpoint.size,
              root: hex(verified.checkpoint.root),
              time: new Date(verified.checkpoint.timeMs).toISOString(),
              prevSize: verified.checkpoint.prevSize,
              prevRoot: hex(verified.checkpoint.prevRoot),
              note,
              verifierKey: noteVerifierKey(verified.checkpoint.origin, verified.key),
              cose: Buffer.from(verified.cose).toString('base64'),
            },
            null,
            2,
          )}\n`;
    if (values.out === undefined) io.stdout(text.endsWith('\n') ? text.slice(0, -1) : text);
    else fs.writeFileSync(values.out, text, { mode: 0o644 });
    return 0;
  });
}

// ---------------------------------------------------------------------------------------

const MAX_EXPORT_BYTES = 512 * 1024 * 1024;

function readBounded(file: string, max = MAX_EXPORT_BYTES): Buffer {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch (err) {
    throw new AuditReadError('AUDIT_DB_UNREADABLE', `cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
  if (size > max) throw new AuditReadError('AUDIT_DB_UNREADABLE', `${file} is larger than ${max} bytes`);
  return fs.readFileSync(file);
}

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
