// The local HTTP API (Hono). Loopback by default. Every error is JSON `{ error: { code, message } }`
// with a stable code: any ZtedgeError a handler raises is mapped in one place (onError), with the
// HTTP status its code calls for.
//   POST /v1/decide   body: a signed command envelope (application/cose) → decision, outcome and
//                     the signed result (base64); the same pipeline as MQTT, with source "http".
//   GET  /v1/status   agent, bundle, readiness and posture status
//   GET  /v1/audit    audit records (admin token): ?from=SEQ&limit=N
//   GET  /v1/approvals commands held for approval and live just-in-time grants (admin token):
//                     ?limit=N (each list; the counts say how many there are)
//   GET  /healthz     liveness
//   GET  /readyz      ready when a policy bundle is active, the agent is not fail-closed and its
//                     audit log is writable; otherwise 503 with every reason
//   GET  /metrics     Prometheus text
//   POST /v1/attest   body {"nonce": "<hex, 8-64 bytes>"} → {"evidence": base64 COSE_Sign1 EAT,
//                     "posture"}; a nonce is answered once, challenges are rate-limited
import { createHash, timingSafeEqual } from 'node:crypto';
import { Hono } from 'hono';
import type { Context, MiddlewareHandler } from 'hono';
import { bodyLimit } from 'hono/body-limit';
import type { ContentfulStatusCode } from 'hono/utils/http-status';
import type { AuditRecord } from '../audit/chain.js';
import { toHex } from '../crypto/bytes.js';
import { EnvelopeError } from '../envelope/errors.js';
import { ZtedgeError } from '../errors.js';

export type ApiErrorCode =
  | 'NOT_FOUND'
  | 'UNSUPPORTED_MEDIA_TYPE'
  | 'BAD_REQUEST'
  | 'ADMIN_DISABLED'
  | 'ADMIN_TOKEN_REQUIRED'
  | 'ADMIN_TOKEN_INVALID';

/** A request the API itself refuses. */
export class ApiError extends ZtedgeError<ApiErrorCode> {}

/** HTTP status by error code; a ZtedgeError not listed is a 500 that still says its code. */
const STATUS_BY_CODE: Readonly<Record<string, ContentfulStatusCode>> = {
  NOT_FOUND: 404,
  UNSUPPORTED_MEDIA_TYPE: 415,
  BAD_REQUEST: 400,
  ENVELOPE_MALFORMED: 400,
  ENVELOPE_TOO_LARGE: 413,
  ADMIN_DISABLED: 403,
  ADMIN_TOKEN_REQUIRED: 401,
  ADMIN_TOKEN_INVALID: 401,
  AUDIT_WRITE_FAILED: 503,
  STATE_COMMIT_FAILED: 503,
};

/** What the API reports of one decided command (the agent's outcome, as the API shows it). */
export interface DecideResult {
  decision: 'allow' | 'deny' | 'pending';
  /** executed | failed | timeout | not_executed | pending_approval | rejected */
  outcome: string;
  policies: readonly string[];
  reasons: readonly string[];
  /** SHA-256 of the envelope bytes, when the bytes could be hashed. */
  digest?: Uint8Array;
  detail?: unknown;
  /** Expiry of the just-in-time grant the command created or was allowed by. */
  grantExpiresMs?: number;
  /** The signed result (COSE_Sign1) the sender can verify with the device key. */
  result: Uint8Array;
}

/** What GET /v1/approvals shows: held commands with the approvals they have, and live grants. */
export interface ApprovalsView {
  pendingCount: number;
  pending: Array<{
    /** The command's digest (hex): what `ztedge approve --command` takes. */
    command: string;
    principal: string;
    action: string;
    resource: string;
    required: number;
    /** Entity uids an approver must be in; empty: any approver the policy permits. */
    approvers: readonly string[];
    approvals: Array<{ approver: string; timeMs: number }>;
    createdMs: number;
    expiresMs: number;
  }>;
  grantCount: number;
  grants: Array<{
    principal: string;
    action: string;
    resource: string;
    /** The policies (with @grant_ttl) it was granted under. */
    policies: readonly string[];
    /** The approved command that created it (hex digest). */
    command: string;
    bundleRevision: number;
    grantedMs: number;
    expiresMs: number;
  }>;
}

/** Why the agent is not ready to enforce; empty when it is. */
export interface Readiness {
  ready: boolean;
  reasons: Array<{ code: string; message: string }>;
}

export interface ApiDeps {
  decide(bytes: Uint8Array): Promise<DecideResult>;
  status(): unknown;
  ready(): Readiness;
  metrics(): string;
  /** Audit records from `fromSeq`, at most `limit` (an admin endpoint). */
  audit?(fromSeq: number, limit: number): { records: AuditRecord[]; headSeq: number };
  /** Held commands and live grants, at most `limit` of each (an admin endpoint). */
  approvals?(limit: number): ApprovalsView;
  /** The admin token's bytes; without one, admin endpoints answer ADMIN_DISABLED. */
  adminToken?: Uint8Array;
  /** Largest accepted request body (the envelope size cap). */
  maxBodyBytes?: number;
  /** Evidence for a challenge nonce; absent when the device does not attest. */
  attest?(nonce: Uint8Array): Promise<AttestAnswer>;
  /** Told the code of every request refused before (or instead of) a decision, so each is counted. */
  refused?(code: string): void;
}

export type AttestAnswer =
  | { readonly ok: true; readonly evidence: Uint8Array; readonly posture: string }
  | { readonly ok: false; readonly code: string; readonly message: string };

/** HTTP status of each refusal of a challenge; anything else is 503 (the TPM, not ready). */
const ATTEST_STATUS: Record<string, 400 | 409 | 429> = { ATTEST_NONCE_INVALID: 400, ATTEST_NONCE_REUSED: 409, ATTEST_RATE_LIMITED: 429 };

const COSE_TYPES = new Set(['application/cose', 'application/cose; cose-type="cose-sign1"', 'application/octet-stream']);
const MAX_AUDIT_PAGE = 500;
const MAX_APPROVALS_PAGE = 1000;

export function createApi(deps: ApiDeps): Hono {
  const app = new Hono();
  const maxBodyBytes = deps.maxBodyBytes ?? 64 * 1024;

  /** Every refusal answered here is counted (deps.refused), whatever raised it. */
  const fail = (c: Context, err: unknown): Response => {
    deps.refused?.(err instanceof ZtedgeError ? err.code : 'INTERNAL');
    return errorResponse(c, err);
  };

  app.onError((err, c) => fail(c, err));
  app.notFound((c) => fail(c, new ApiError('NOT_FOUND', `no route ${c.req.method} ${c.req.path.slice(0, 200)}`)));

  app.get('/healthz', (c) => c.json({ status: 'ok' }));
  app.get('/readyz', (c) => {
    const readiness = deps.ready();
    if (readiness.ready) return c.json({ status: 'ready' });
    return c.json({ status: 'not_ready', error: readiness.reasons[0], reasons: readiness.reasons }, 503);
  });
  app.get('/v1/status', (c) => c.json(deps.status() as object));
  app.get('/metrics', (c) => c.text(deps.metrics(), 200, { 'content-type': 'text/plain; version=0.0.4' }));

  app.get('/v1/audit', adminOnly(deps.adminToken), (c) => {
    if (deps.audit === undefined) throw new ApiError('NOT_FOUND', 'this agent keeps no audit log');
    const from = queryInteger(c.req.query('from'), 'from', 1, 1, Number.MAX_SAFE_INTEGER);
    const limit = queryInteger(c.req.query('limit'), 'limit', 100, 1, MAX_AUDIT_PAGE);
    const { records, headSeq } = deps.audit(from, limit);
    return c.json({
      headSeq,
      records: records.map((r) => ({ seq: r.seq, timeMs: r.timeMs, kind: r.kind, body: toHex(r.body), prevHash: toHex(r.prevHash), hash: toHex(r.hash) })),
    });
  });

  app.get('/v1/approvals', adminOnly(deps.adminToken), (c) => {
    if (deps.approvals === undefined) throw new ApiError('NOT_FOUND', 'this agent holds no approvals');
    return c.json(deps.approvals(queryInteger(c.req.query('limit'), 'limit', MAX_APPROVALS_PAGE, 1, MAX_APPROVALS_PAGE)));
  });

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
      onError: (c) => fail(c, new EnvelopeError('ENVELOPE_TOO_LARGE', `body exceeds ${maxBodyBytes} bytes`)),
    }),
    async (c) => {
      const type = (c.req.header('content-type') ?? '').toLowerCase();
      if (!COSE_TYPES.has(type)) throw new ApiError('UNSUPPORTED_MEDIA_TYPE', 'send the signed command envelope as application/cose');
      const bytes = new Uint8Array(await c.req.arrayBuffer());
      if (bytes.length === 0) throw new EnvelopeError('ENVELOPE_MALFORMED', 'empty body');
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
          ...(decided.grantExpiresMs === undefined ? {} : { grantExpiresMs: decided.grantExpiresMs }),
          result: Buffer.from(decided.result).toString('base64'),
        },
        status,
      );
    },
  );
  return app;
}

/** The one mapping from an error to a response; anything but a ZtedgeError is a defect, shown as INTERNAL. */
function errorResponse(c: Context, err: unknown): Response {
  if (!(err instanceof ZtedgeError)) return c.json({ error: { code: 'INTERNAL', message: 'internal error' } }, 500);
  const headers: Record<string, string> = err.code === 'ADMIN_TOKEN_REQUIRED' || err.code === 'ADMIN_TOKEN_INVALID' ? { 'www-authenticate': 'Bearer' } : {};
  return c.json({ error: { code: err.code, message: err.message } }, STATUS_BY_CODE[err.code] ?? 500, headers);
}

/** Admin endpoints: a bearer token equal to the configured one, compared in constant time. */
function adminOnly(token: Uint8Array | undefined): MiddlewareHandler {
  const expected = token === undefined ? undefined : digest(token);
  return async (c, next) => {
    if (expected === undefined) throw new ApiError('ADMIN_DISABLED', 'admin endpoints are disabled: no admin token is configured (http.adminTokenFile)');
    const header = c.req.header('authorization');
    const match = header === undefined ? null : /^Bearer (\S+)$/.exec(header);
    if (match === null) throw new ApiError('ADMIN_TOKEN_REQUIRED', 'this endpoint needs the admin token: Authorization: Bearer <token>');
    // Hashing first gives equal lengths, so the comparison time says nothing about the token.
    if (!timingSafeEqual(digest(Buffer.from(match[1]!, 'utf8')), expected)) throw new ApiError('ADMIN_TOKEN_INVALID', 'the admin token does not match');
    await next();
  };
}

function digest(bytes: Uint8Array): Buffer {
  return createHash('sha256').update(bytes).digest();
}

function queryInteger(text: string | undefined, name: string, fallback: number, min: number, max: number): number {
  if (text === undefined) return fallback;
  const n = /^\d{1,16}$/.test(text) ? Number(text) : NaN;
  if (!(n >= min && n <= max)) throw new ApiError('BAD_REQUEST', `query parameter ${name} must be an integer from ${min} to ${max}`);
  return n;
}
