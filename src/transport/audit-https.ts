// The audit sync over HTTPS: each batch is one POST to the collector's /v1/audit/batches, and
// the answer is the collector's signed acknowledgement. One keep-alive agent, so batches in
// flight share a few connections. The server's certificate is checked against `ca` (or the
// system store); a client certificate and key give mutual TLS where the collector asks for it.
// Plain http:// is accepted for a collector on this host only (loopback), e.g. behind a local
// TLS-terminating proxy.
import fs from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import tls from 'node:tls';
import type { SyncTransport } from '../audit/sync.js';
import { TransportError } from './errors.js';

export const AUDIT_BATCH_PATH = '/v1/audit/batches';
export const AUDIT_BATCH_TYPE = 'application/vnd.ztedge.audit-batch+cbor';
export const AUDIT_ACK_TYPE = 'application/cose; cose-type="cose-sign1"';
/** An acknowledgement is a few hundred bytes; a JSON error a little more. */
const MAX_REPLY_BYTES = 16 * 1024;

export interface HttpsSyncOptions {
  /** `https://host[:port][/base]`, or `http://` on a loopback host. */
  url: string;
  /** CA bundle (PEM file) that signs the collector's certificate; default the system store. */
  caFile?: string;
  /** Client certificate and key (PEM files) for mutual TLS. */
  certFile?: string;
  keyFile?: string;
  /** Sockets kept to the collector (default 4). */
  maxSockets?: number;
}

export class HttpsSyncTransport implements SyncTransport {
  readonly name = 'https';
  private readonly target: URL;
  private readonly agent: http.Agent;
  private readonly request: typeof http.request;

  constructor(opts: HttpsSyncOptions) {
    this.target = checkUrl(opts.url);
    const secure = this.target.protocol === 'https:';
    if (!secure && (opts.caFile !== undefined || opts.certFile !== undefined)) {
      throw new TransportError('SYNC_URL_INVALID', 'TLS files are given for an http:// collector URL');
    }
    if ((opts.certFile === undefined) !== (opts.keyFile === undefined)) throw new TransportError('SYNC_URL_INVALID', 'a client certificate and its key go together');
    const maxSockets = opts.maxSockets ?? 4;
    const files = {
      ...(opts.caFile === undefined ? {} : { ca: readFile(opts.caFile, 'CA') }),
      ...(opts.certFile === undefined ? {} : { cert: readFile(opts.certFile, 'client certificate'), key: readFile(opts.keyFile!, 'client key') }),
    };
    // Checked now, not at the first batch: a key that is not the certificate's would otherwise
    // fail every send, and the log would never leave the device.
    try {
      tls.createSecureContext(files);
    } catch (err) {
      throw new TransportError('SYNC_TLS_FILE', `the collector TLS files cannot be used together: ${(err as Error).message}`);
    }
    this.agent = secure ? new https.Agent({ keepAlive: true, maxSockets, ...files }) : new http.Agent({ keepAlive: true, maxSockets });
    this.request = secure ? https.request : http.request;
  }

  ready(): boolean {
    return true;
  }

  send(batch: Uint8Array, _id: Uint8Array, timeoutMs: number): Promise<Uint8Array> {
    return new Promise((resolve, reject) => {
      const base = this.target.pathname.replace(/\/$/, '');
      const req = this.request(
        {
          protocol: this.target.protocol,
          hostname: this.target.hostname,
          port: this.target.port,
          path: `${base}${AUDIT_BATCH_PATH}`,
          method: 'POST',
          agent: this.agent,
          headers: { 'content-type': AUDIT_BATCH_TYPE, 'content-length': batch.length, accept: AUDIT_ACK_TYPE },
        },
        (res) => {
          const chunks: Buffer[] = [];
          let size = 0;
          res.on('data', (chunk: Buffer) => {
            size += chunk.length;
            if (size > MAX_REPLY_BYTES) {
              req.destroy(new TransportError('SYNC_REPLY_TOO_LARGE', `the collector's reply exceeds ${MAX_REPLY_BYTES} bytes`));
              return;
            }
            chunks.push(chunk);
          });
          res.on('end', () => {
            const body = Buffer.concat(chunks);
            const type = res.headers['content-type'] ?? '';
            // Signed acknowledgements come with any status (stored 200, ahead 409, refused 422);
            // anything else is the server refusing the request before it reached a device's log.
            if (type.startsWith('application/cose')) resolve(new Uint8Array(body));
            else reject(new TransportError('SYNC_HTTP_ERROR', `collector answered ${res.statusCode}: ${errorText(body)}`));
          });
          res.on('error', reject);
        },
      );
      req.setTimeout(timeoutMs, () => req.destroy(new TransportError('SYNC_TIMEOUT', `no answer from the collector within ${timeoutMs} ms`)));
      req.on('error', (err) => reject(err instanceof TransportError ? err : new TransportError('SYNC_UNREACHABLE', `collector unreachable: ${(err as NodeJS.ErrnoException).code ?? err.message}`)));
      req.end(batch);
    });
  }

  close(): void {
    this.agent.destroy();
  }
}

function checkUrl(url: string): URL {
  let parsed: URL;
  try {
    parsed = new URL(url);
  } catch {
    throw new TransportError('SYNC_URL_INVALID', `collector URL ${JSON.stringify(url)} is not a URL`);
  }
  if (parsed.username !== '' || parsed.password !== '' || parsed.search !== '' || parsed.hash !== '') {
    throw new TransportError('SYNC_URL_INVALID', 'the collector URL carries no credentials, query or fragment');
  }
  if (parsed.protocol === 'https:') return parsed;
  if (parsed.protocol === 'http:' && isLoopback(parsed.hostname)) return parsed;
  throw new TransportError('SYNC_URL_INVALID', 'the collector URL must be https:// (http:// only on a loopback host)');
}

function isLoopback(host: string): boolean {
  return host === 'localhost' || host === '[::1]' || /^127\.\d{1,3}\.\d{1,3}\.\d{1,3}$/.test(host);
}

function readFile(file: string, what: string): Buffer {
  try {
    return fs.readFileSync(file);
  } catch (err) {
    throw new TransportError('SYNC_TLS_FILE', `cannot read the ${what} file ${file}: ${(err as NodeJS.ErrnoException).code ?? String(err)}`);
  }
}

function errorText(body: Buffer): string {
  try {
    const parsed = JSON.parse(body.toString('utf8')) as { error?: { code?: unknown; message?: unknown } };
    if (typeof parsed.error?.code === 'string') return `${parsed.error.code} ${String(parsed.error.message ?? '')}`.slice(0, 300);
  } catch {
    // not JSON
  }
  return body.toString('utf8').slice(0, 200);
}
