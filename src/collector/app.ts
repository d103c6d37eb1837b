// The collector's HTTP API (Hono). Errors are JSON with a stable code.
//   POST /v1/audit/batches           a device's batch (application/vnd.ztedge.audit-batch+cbor) →
//                                    the signed acknowledgement (application/cose): 200 stored,
//                                    409 ahead, 422 refused; plain JSON errors before a device
//                                    is established (400 malformed, 403 unknown device, 413 size)
//   GET  /v1/devices                 every device: last seq, last checkpoint, lag, last seen
//   GET  /v1/devices/:id             one device
//   GET  /v1/devices/:id/audit       stored records, ?from=&to=&limit= (JSON, bodies base64)
//   GET  /v1/reports                 refused batches, newest first, ?device=&limit=
//   GET  /healthz, /metrics
// With a read token configured, every GET but /healthz needs `Authorization: Bearer <token>`.
import { timingSafeEqual } from 'node:crypto';
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { toHex } from '../crypto/bytes.js';
import { AUDIT_ACK_TYPE, AUDIT_BATCH_PATH, AUDIT_BATCH_TYPE } from '../transport/audit-https.js';
import type { DeviceState, StoredRecord, SyncReport } from './store.js';

const DEVICE_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
const MAX_PAGE = 10_000;

export type BatchAnswer = { kind: 'ack'; status: 200 | 409 | 422; ack: Uint8Array } | { kind: 'error'; status: 400 | 403 | 413 | 503; code: string; message: string };

export interface CollectorApiDeps {
  receive(batch: Uint8Array): Promise<BatchAnswer>;
  device(id: string): Promise<DeviceState | undefined>;
  devices(): Promise<DeviceState[]>;
  records(id: string, from: number, to: number, limit: number): Promise<StoredRecord[]>;
  reports(device: string | undefined, limit: number): Promise<SyncReport[]>;
  metrics(): Promise<string>;
  now(): number;
  maxBatchBytes: number;
  readToken?: string;
}

export function createCollectorApi(deps: CollectorApiDeps): Hono {
  const app = new Hono();
  const error = (code: string, message: string) => ({ error: { code, message } });

  app.onError((_err, c) => c.json(error('INTERNAL', 'internal error'), 500));
  app.notFound((c) => c.json(error('NOT_FOUND', `no route ${c.req.method} ${c.req.path}`), 404));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));

  app.post(
    AUDIT_BATCH_PATH,
    bodyLimit({ maxSize: deps.maxBatchBytes, onError: (c) => c.json(error('SYNC_TOO_LARGE', `body exceeds ${deps.maxBatchBytes} bytes`), 413) }),
    async (c) => {
      if ((c.req.header('content-type') ?? '').toLowerCase() !== AUDIT_BATCH_TYPE) {
        return c.json(error('UNSUPPORTED_MEDIA_TYPE', `send a batch as ${AUDIT_BATCH_TYPE}`), 415);
      }
      const answer = await deps.receive(new Uint8Array(await c.req.arrayBuffer()));
      if (answer.kind === 'error') return c.json(error(answer.code, answer.message), answer.status);
      return c.body(answer.ack as Uint8Array<ArrayBuffer>, answer.status, { 'content-type': AUDIT_ACK_TYPE });
    },
  );

  if (deps.readToken !== undefined) {
    const expected = Buffer.from(`Bearer ${deps.readToken}`);
    app.use('/v1/devices', bearer(expected));
    app.use('/v1/devices/*', bearer(expected));
    app.use('/v1/reports', bearer(expected));
    app.use('/metrics', bearer(expected));
  }

  app.get('/v1/devices', async (c) => {
    const now = deps.now();
    return c.json({ devices: (await deps.devices()).map((d) => deviceView(d, now)) });
  });

  app.get('/v1/devices/:id', async (c) => {
    const id = c.req.param('id');
    const device = DEVICE_PATTERN.test(id) ? await deps.device(id) : undefined;
    if (device === undefined) return c.json(error('DEVICE_UNKNOWN', `no records from device ${JSON.stringify(id.slice(0, 64))}`), 404);
    return c.json(deviceView(device, deps.now()));
  });

  app.get('/v1/devices/:id/audit', async (c) => {
    const id = c.req.param('id');
    if (!DEVICE_PATTERN.test(id)) return c.json(error('DEVICE_UNKNOWN', 'not a device id'), 404);
    const from = intParam(c.req.query('from'), 1);
    const to = intParam(c.req.query('to'), Number.MAX_SAFE_INTEGER);
    const limit = intParam(c.req.query('limit'), 1000);
    if (from === null || to === null || limit === null || from < 1 || to < from || limit < 1 || limit > MAX_PAGE) {
      return c.json(error('BAD_RANGE', `from and to are seqs (1 ≤ from ≤ to), limit 1 to ${MAX_PAGE}`), 400);
    }
    const device = await deps.device(id);
    if (device === undefined) return c.json(error('DEVICE_UNKNOWN', `no records from device ${id}`), 404);
    const records = await deps.records(id, from, to, limit);
    const next = records.length === limit && records[records.length - 1]!.seq < Math.min(to, device.lastSeq) ? records[records.length - 1]!.seq + 1 : null;
    return c.json({
      device: id,
      lastSeq: device.lastSeq,
      records: records.map((r) => ({ seq: r.seq, time: new Date(r.timeMs).toISOString(), timeMs: r.timeMs, kind: r.kind, body: Buffer.from(r.body).toString('base64'), hash: toHex(r.hash) })),
      next,
    });
  });

  app.get('/v1/reports', async (c) => {
    const device = c.req.query('device');
    const limit = intParam(c.req.query('limit'), 100);
    if (limit === null || limit < 1 || limit > 1000 || (device !== undefined && !DEVICE_PATTERN.test(device))) return c.json(error('BAD_QUERY', 'device is a device id, limit 1 to 1000'), 400);
    const reports = await deps.reports(device, limit);
    return c.json({ reports: reports.map((r) => ({ device: r.device, seq: r.seq, code: r.code, message: r.message, time: new Date(r.timeMs).toISOString(), batch: toHex(r.batch) })) });
  });

  app.get('/metrics', async (c) => c.text(await deps.metrics(), 200, { 'content-type': 'text/plain; version=0.0.4' }));
  return app;
}

/** How /v1/devices shows a device. */
export function deviceView(d: DeviceState, nowMs: number) {
  return {
    device: d.device,
    lastSeq: d.lastSeq,
    lastCheckpoint: d.checkpoint === null ? null : { seq: d.checkpoint.seq, size: d.checkpoint.size, root: toHex(d.checkpoint.root), time: new Date(d.checkpoint.timeMs).toISOString() },
    // What the device said it held beyond what is stored here, and how long ago it last sent.
    lag: { records: Math.max(0, d.headSeq - d.lastSeq), sinceLastSeenMs: Math.max(0, nowMs - d.lastSeenMs) },
    headSeq: d.headSeq,
    lastSeen: new Date(d.lastSeenMs).toISOString(),
    firstSeen: new Date(d.firstSeenMs).toISOString(),
  };
}

function intParam(text: string | undefined, fallback: number): number | null {
  if (text === undefined) return fallback;
  if (!/^\d{1,16}$/.test(text)) return null;
  const n = Number(text);
  return Number.isSafeInteger(n) ? n : null;
}

function bearer(expected: Buffer) {
  return async (c: Parameters<Parameters<Hono['use']>[1]>[0], next: () => Promise<void>) => {
    const given = Buffer.from(c.req.header('authorization') ?? '');
    if (given.length !== expected.length || !timingSafeEqual(given, expected)) {
      return c.json({ error: { code: 'UNAUTHORIZED', message: 'a read token is required' } }, 401);
    }
    await next();
  };
}
