// The local HTTP API (Hono). Loopback by default. Errors are JSON with a stable code.
//   POST /v1/decide   body: a signed command envelope (application/cose) → decision, outcome and
//                     the signed result (base64); the same pipeline as MQTT, with source "http".
//   GET  /v1/status   agent, bundle and posture status
//   GET  /healthz     liveness
//   GET  /readyz      ready when a policy bundle is active
//   GET  /metrics     Prometheus text
//   POST /v1/attest   body {"nonce": "<hex, 8-64 bytes>"} → {"evidence": base64 COSE_Sign1 EAT,
//                     "posture"}; a nonce is answered once, challenges are rate-limited
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
  /** Evidence for a challenge nonce; absent when the device does not attest. */
  attest?(nonce: Uint8Array): Promise<AttestAnswer>;
}

export type AttestAnswer =
  | { readonly ok: true; readonly evidence: Uint8Array; readonly posture: string }
  | { readonly ok: false; readonly code: string; readonly message: string };

/** HTTP status of each refusal of a challenge; anything else is 503 (the TPM, not ready). */
const ATTEST_STATUS: Record<string, 400 | 409 | 429> = { ATTEST_NONCE_INVALID: 400, ATTEST_NONCE_REUSED: 409, ATTEST_RATE_LIMITED: 429 };

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
    '/v1/attest',
    bodyLimit({ maxSize: 1024, onError: (c) => c.json({ error: { code: 'BODY_TOO_LARGE', message: 'body exceeds 1024 bytes' } }, 413) }),
    async (c) => {
      if (deps.attest === undefined) return c.json({ error: { code: 'ATTEST_NOT_CONFIGURED', message: 'this device does not attest (no attestation section in its configuration)' } }, 503);
      if (!(c.req.header('content-type') ?? '').toLowerCase().startsWith('application/json')) {
        return c.json({ error: { code: 'UNSUPPORTED_MEDIA_TYPE', message: 'send {"nonce": "<hex>"} as application/json' } }, 415);
      }
      let body: unknown;
      try {
        body = JSON.parse(await c.req.text());
      } catch {
        return c.json({ error: { code: 'BODY_MALFORMED', message: 'the body is not JSON' } }, 400);
      }
      const keys = typeof body === 'object' && body !== null && !Array.isArray(body) ? Object.keys(body) : null;
      const nonce = keys !== null && keys.length === 1 && keys[0] === 'nonce' ? (body as { nonce: unknown }).nonce : undefined;
      if (typeof nonce !== 'string' || !/^([0-9a-fA-F]{2}){1,64}$/.test(nonce)) {
        return c.json({ error: { code: 'ATTEST_NONCE_INVALID', message: 'the body must be exactly {"nonce": "<hex>"}' } }, 400);
      }
      const answer = await deps.attest(new Uint8Array(Buffer.from(nonce, 'hex')));
      if (!answer.ok) return c.json({ error: { code: answer.code, message: answer.message } }, ATTEST_STATUS[answer.code] ?? 503);
      return c.json({ evidence: Buffer.from(answer.evidence).toString('base64'), posture: answer.posture });
    },
  );

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
