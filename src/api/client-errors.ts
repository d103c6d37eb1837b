// Requests Node's HTTP parser refuses before the app sees them (bytes past a body's
// Content-Length that are no request, headers beyond the size limit, a request that never
// completes) are answered like every other API error: JSON `{ "error": { "code", "message" } }`
// with a stable code, then the connection is closed. Node's own answer has no body, and it is
// written at once, even over a response still being prepared for an earlier request on the same
// connection, which that request then never gets: here the error waits for it.
import type { Server } from 'node:http';
import type { Duplex } from 'node:stream';

interface ClientError {
  status: number;
  reason: string;
  code: string;
  message: string;
}

function classify(err: NodeJS.ErrnoException): ClientError {
  switch (err.code) {
    case 'HPE_HEADER_OVERFLOW':
      return { status: 431, reason: 'Request Header Fields Too Large', code: 'HTTP_HEADERS_TOO_LARGE', message: 'request headers exceed the server limit' };
    case 'ERR_HTTP_REQUEST_TIMEOUT':
      return { status: 408, reason: 'Request Timeout', code: 'HTTP_REQUEST_TIMEOUT', message: 'the request did not complete in time' };
    default:
      return { status: 400, reason: 'Bad Request', code: 'HTTP_MALFORMED', message: `malformed HTTP request (${String(err.code ?? 'parse error').slice(0, 40)})` };
  }
}

/** Installs the JSON answer on `server`; `refused` is told each code (to count it). */
export function answerClientErrors(server: Server, refused: (code: string) => void): void {
  server.on('clientError', (err: NodeJS.ErrnoException, socket: Duplex) => {
    // A connection reset or closed by the peer has nobody to answer.
    if (err.code === 'ECONNRESET' || !socket.writable) {
      socket.destroy();
      return;
    }
    const error = classify(err);
    refused(error.code);
    const body = JSON.stringify({ error: { code: error.code, message: error.message } });
    const answer = () => {
      if (!socket.writable) return socket.destroy();
      socket.end(
        `HTTP/1.1 ${error.status} ${error.reason}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`,
      );
    };
    // Node keeps the response in progress on the socket; answer after it, in order.
    const inFlight = (socket as Duplex & { _httpMessage?: { writableFinished: boolean; once(event: 'finish' | 'close', cb: () => void): void } })._httpMessage;
    if (inFlight !== undefined && inFlight !== null && !inFlight.writableFinished) {
      let answered = false;
      const once = () => {
        if (answered) return;
        answered = true;
        answer();
      };
      inFlight.once('finish', once);
      inFlight.once('close', once);
      return;
    }
    answer();
  });
}
