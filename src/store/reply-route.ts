// Where a signed answer goes (a command's result, an approval's answer): an MQTT topic and the
// sender's correlation data. Stored with held and unsettled commands, so an answer that comes
// after a restart still reaches its sender. Rows are read back as untrusted JSON: anything that
// is not a route reads as none, and the caller falls back to the default result topic.

export interface ReplyRoute {
  /** The MQTT topic (a sender's response topic, already checked, or the default result topic). */
  readonly topic: string;
  /** The sender's MQTT 5 correlation data, lowercase hex. */
  readonly correlation?: string;
}

const HEX = /^(?:[0-9a-f]{2})*$/;

/** A route read back from stored JSON; null when absent or not a route. */
export function readReplyRoute(value: unknown): ReplyRoute | null {
  if (typeof value !== 'object' || value === null) return null;
  const { topic, correlation } = value as { topic?: unknown; correlation?: unknown };
  if (typeof topic !== 'string' || topic.length === 0) return null;
  if (correlation !== undefined && (typeof correlation !== 'string' || !HEX.test(correlation))) return { topic };
  return correlation === undefined ? { topic } : { topic, correlation };
}
