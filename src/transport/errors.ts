/**
 * Every failure the transport reports (bad topic ids, broker refusals, oversize or malformed
 * frames, a full outbox) is a TransportError with a stable UPPER_SNAKE `code`.
 */
import { ZtedgeError } from '../errors.js';
export type TransportErrorCode =
  // topics
  | 'TOPIC_SITE_INVALID'
  | 'TOPIC_DEVICE_INVALID'
  | 'TOPIC_PREFIX_INVALID'
  | 'TOPIC_REPLY_PREFIX_INVALID'
  | 'TOPIC_ACTION_INVALID'
  | 'TOPIC_NAME_INVALID'
  // link configuration and connection
  | 'LINK_OPTIONS_INVALID'
  | 'LINK_TLS_FILES_UNREADABLE'
  | 'LINK_TLS_FILES_UNUSABLE'
  | 'LINK_CONNECT_REFUSED'
  | 'LINK_CONNECTION_ERROR'
  | 'LINK_SUBSCRIBE_REFUSED'
  | 'LINK_OFFLINE'
  | 'LINK_CLOSED'
  | 'LINK_HANDLER_FAILED'
  | 'LINK_RESPONSE_TOPIC_INVALID'
  // publishing
  | 'PUBLISH_REJECTED'
  | 'PUBLISH_FAILED'
  // incoming frames
  | 'FRAME_MALFORMED'
  | 'FRAME_TOO_LARGE'
  | 'MESSAGE_OVERSIZE'
  // outbox
  | 'OUTBOX_FULL'
  | 'OUTBOX_OPTIONS_INVALID'
  | 'OUTBOX_MESSAGE_INVALID'
  | 'OUTBOX_CLOSED'
  // audit sync transports
  | 'SYNC_URL_INVALID'
  | 'SYNC_TLS_FILE'
  | 'SYNC_HTTP_ERROR'
  | 'SYNC_TIMEOUT'
  | 'SYNC_UNREACHABLE'
  | 'SYNC_REPLY_TOO_LARGE';

export class TransportError extends ZtedgeError<TransportErrorCode> {
  constructor(
    code: TransportErrorCode,
    message: string,
    /** The broker's MQTT reason/return code, when the broker said no. */
    readonly reasonCode?: number,
  ) {
    super(code, message);
  }
}

export function isTransportError(value: unknown): value is TransportError {
  return value instanceof TransportError;
}
