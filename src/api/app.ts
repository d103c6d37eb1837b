// The local HTTP API (Hono). Loopback by default. Errors are JSON with a stable code.
//   POST /v1/decide   body: a signed command envelope (application/cose) → decision, outcome and
//                     the signed result (base64); the same pipeline as MQTT, with source "http".
//   GET  /v1/status   agent, bundle and posture status
//   GET  /healthz     liveness
//   GET  /readyz      ready when a policy bundle is active
//   GET  /metrics     Prometheus text
import { Hono } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import { toHex } from '../crypto/bytes.js';

/** What the API reports of one decided command (the agent's outcome, as the API shows it). */
export interface DecideResult {
  decision: 'allow' | 'deny' | 'pending';
  /** executed | failed | timeout | not_executed | pending_approval | rejected */
  outcome: string;
  policies: string[];
  reasons: string[];
  /** SHA-256 of the envelope bytes, when the bytes could be hashed. */
  digest?: Uint8Array;
  detail?: unknown;
  /** The signed result (COSE_Sign1) the sender can verify with the device key. */
  result: Uint8Array;
}

export interface ApiDeps {
  decide(bytes: Uint8Array): Promise<DecideResult>;
  status(): unknown;
  ready(): boolean;
  metrics(): string;
  /** Largest accepted request body (the envelope size cap). */
  maxBodyBytes?: number;
}

const COSE_TYPES = new Set(['application/cose', 'application/cose; cose-type="cose-sign1"', 'application/octet-stream']);

export function createApi(deps: ApiDeps): Hono {
  const app = new Hono();
  const maxBodyBytes = deps.maxBodyBytes ?? 64 * 1024;

  app.onError((_err, c) => c.json({ error: { code: 'INTERNAL', message: 'internal error' } }, 500));
  app.notFound((c) => c.json({ error: { code: 'NOT_FOUND', message: `no route ${c.req.method} ${c.req.path}` } }, 404));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => (deps.ready() ? c.json({ status: 'ready' }) : c.json({ status: 'not_ready', error: { code: 'NO_ACTIVE_BUNDLE', message: 'no policy bundle is active' } }, 503)));
  app.get('/v1/status', (c) => c.json(deps.status() as object));
  app.get('/metrics', (c) => c.text(deps.metrics(), 200, { 'content-type': 'text/plain; version=0.0.4' }));

  app.post(
    '/v1/decide',
    bodyLimit({
      maxSize: maxBodyBytes,
      onError: (c) => c.json({ error: { code: 'ENVELOPE_TOO_LARGE', message: `body exceeds ${maxBodyBytes} bytes` } }, 413),
    }),
    async (c) => {
      const type = (c.req.header('content-type') ?? '').toLowerCase();
      if (!COSE_TYPES.has(type)) {
        return c.json({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send the signed command envelope as application/cose' } }, 415);
      }
      const bytes = new Uint8Array(await c.req.arrayBuffer());
      if (bytes.length === 0) return c.json({ error: { code: 'ENVELOPE_MALFORMED', message: 'empty body' } }, 400);
      const decided = await deps.decide(bytes);
      const status = decided.outcome === 'rejected' ? 400 : decided.decision === 'deny' ? 403 : decided.decision === 'pending' ? 202 : 200;
      return c.json(
        {
          decision: decided.decision,
          outcome: decided.outcome,
          policies: decided.policies,
          reasons: decided.reasons,
          command: decided.digest === undefined ? null : toHex(decided.digest),
          ...(decided.detail === undefined || decided.outcome === 'rejected' ? {} : { detail: decided.detail }),
          result: Buffer.from(decided.result).toString('base64'),
        },
        status,
      );
    },
  );
  return app;
}
