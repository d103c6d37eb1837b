// The local API maps every error in one place: a ZtedgeError a handler raises becomes
// `{ error: { code, message } }` with the status its code calls for; anything else is INTERNAL
// and says nothing more. Admin endpoints take the admin token, compared in constant time.
import { describe, expect, it } from 'vitest';
import { type ApiDeps, createApi } from '../../src/api/app.js';
import { AuditError } from '../../src/audit/log.js';
import { EnvelopeError } from '../../src/envelope/errors.js';

const TOKEN = 'a3f1c0de-9b8e-4f3a-b2c1-0d9e8f7a6b5c';

function api(over: Partial<ApiDeps> = {}) {
  return createApi({
    decide: async () => {
      throw new EnvelopeError('ENVELOPE_MALFORMED', 'not a COSE_Sign1');
    },
    status: () => ({}),
    ready: () => ({ ready: true, reasons: [] }),
    metrics: () => '',
    audit: (from, limit) => ({
      headSeq: 7,
      records: [{ seq: from, timeMs: 1, kind: 'system' as const, body: new Uint8Array([0xa0]), prevHash: new Uint8Array(32), hash: new Uint8Array(32).fill(1) }].slice(0, limit),
    }),
    adminToken: Buffer.from(TOKEN),
    ...over,
  });
}

const post = (body: string) => ({ method: 'POST', headers: { 'content-type': 'application/cose' }, body });

describe('API errors', () => {
  it('maps a ZtedgeError raised by a handler to its code and status', async () => {
    const malformed = await api().request('/v1/decide', post('x'));
    expect(malformed.status).toBe(400);
    expect(await malformed.json()).toEqual({ error: { code: 'ENVELOPE_MALFORMED', message: 'not a COSE_Sign1' } });

    const auditDown = api({
      decide: async () => {
        throw new AuditError('AUDIT_WRITE_FAILED', 'disk full');
      },
    });
    const down = await auditDown.request('/v1/decide', post('x'));
    expect([down.status, await down.json()]).toEqual([503, { error: { code: 'AUDIT_WRITE_FAILED', message: 'disk full' } }]);
  });

  it('shows anything else as INTERNAL, without its message', async () => {
    const broken = api({
      decide: async () => {
        throw new TypeError('secret detail');
      },
    });
    const res = await broken.request('/v1/decide', post('x'));
    expect([res.status, await res.json()]).toEqual([500, { error: { code: 'INTERNAL', message: 'internal error' } }]);
  });

  it('answers unknown routes, wrong media types, empty and oversize bodies with their codes', async () => {
    const app = api();
    const codeOf = async (res: Response) => [res.status, ((await res.json()) as { error: { code: string } }).error.code];
    expect(await codeOf(await app.request('/v2/nothing'))).toEqual([404, 'NOT_FOUND']);
    expect(await codeOf(await app.request('/v1/decide', { method: 'POST', headers: { 'content-type': 'text/plain' }, body: 'x' }))).toEqual([415, 'UNSUPPORTED_MEDIA_TYPE']);
    expect(await codeOf(await app.request('/v1/decide', post('')))).toEqual([400, 'ENVELOPE_MALFORMED']);
    expect(await codeOf(await api({ maxBodyBytes: 4 }).request('/v1/decide', post('12345')))).toEqual([413, 'ENVELOPE_TOO_LARGE']);
    expect(await codeOf(await app.request('/v1/audit?limit=5000', { headers: { authorization: `Bearer ${TOKEN}` } }))).toEqual([400, 'BAD_REQUEST']);
  });
});

describe('admin endpoints', () => {
  it('need the admin token, and are off when none is configured', async () => {
    const app = api();
    const get = (headers: Record<string, string> = {}) => app.request('/v1/audit?from=3&limit=1', { headers });
    const missing = await get();
    expect([missing.status, missing.headers.get('www-authenticate'), ((await missing.json()) as { error: { code: string } }).error.code]).toEqual([401, 'Bearer', 'ADMIN_TOKEN_REQUIRED']);
    const wrong = await get({ authorization: `Bearer ${TOKEN.slice(0, -1)}x` });
    expect([wrong.status, ((await wrong.json()) as { error: { code: string } }).error.code]).toEqual([401, 'ADMIN_TOKEN_INVALID']);
    const right = await get({ authorization: `Bearer ${TOKEN}` });
    expect(right.status).toBe(200);
    expect(await right.json()).toEqual({ headSeq: 7, records: [{ seq: 3, timeMs: 1, kind: 'system', body: 'a0', prevHash: '00'.repeat(32), hash: '01'.repeat(32) }] });

    const off = await api({ adminToken: undefined }).request('/v1/audit', { headers: { authorization: `Bearer ${TOKEN}` } });
    expect([off.status, ((await off.json()) as { error: { code: string } }).error.code]).toEqual([403, 'ADMIN_DISABLED']);
  });

  it('GET /v1/approvals: held commands and live grants behind the admin token, the limit checked', async () => {
    const limits: number[] = [];
    const app = api({
      approvals: (limit) => {
        limits.push(limit);
        return { pendingCount: 0, pending: [], grantCount: 1, grants: [{ principal: 'Agent::"p"', action: 'weld', resource: 'Arm::"a"', policies: ['weld'], command: 'ab'.repeat(32), bundleRevision: 2, grantedMs: 1000, expiresMs: 601_000 }] };
      },
    });
    const auth = { authorization: `Bearer ${TOKEN}` };
    expect((await app.request('/v1/approvals')).status).toBe(401);
    const res = await app.request('/v1/approvals?limit=10', { headers: auth });
    expect(res.status).toBe(200);
    expect(await res.json()).toMatchObject({ grantCount: 1, grants: [{ policies: ['weld'], expiresMs: 601_000 }] });
    expect((await app.request('/v1/approvals?limit=0', { headers: auth })).status).toBe(400);
    await app.request('/v1/approvals', { headers: auth });
    expect(limits).toEqual([10, 1000]);
    const off = await api({ adminToken: undefined }).request('/v1/approvals', { headers: auth });
    expect(off.status).toBe(403);
  });
});
