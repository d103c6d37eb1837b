// What an executor receives and reports. An executor runs one authorized command against the
// local controller. It is called only after the command's audit record is committed, and it is
// never retried blindly: a timeout or failure is reported and audited, and the sender decides.

export interface ExecutionRequest {
  /**
   * The SHA-256 of the command's envelope bytes, in lowercase hex (64 characters): unique per
   * command (a cti is unique only per issuer), and what an acknowledgement must echo exactly.
   */
  commandId: string;
  action: string;
  principal: string;
  resource: string;
  /** The command's args, JSON-safe (Longs beyond 2^53 are decimal strings). */
  args: unknown;
}

export type ExecutionOutcome =
  | { status: 'ok'; detail?: unknown }
  | { status: 'failed'; code: string; message: string }
  | { status: 'timeout'; afterMs: number };

export interface Executor {
  execute(request: ExecutionRequest): Promise<ExecutionOutcome>;
}

/** Largest reply read back from an executor (program output, HTTP body, acknowledgement). */
export const MAX_EXECUTOR_REPLY_BYTES = 64 * 1024;

/** Parses a bounded executor reply as JSON if it is JSON, else returns the text. */
export function replyDetail(bytes: Buffer): unknown {
  const text = bytes.subarray(0, MAX_EXECUTOR_REPLY_BYTES).toString('utf8').trim();
  if (text === '') return undefined;
  try {
    return JSON.parse(text) as unknown;
  } catch {
    return text;
  }
}
