// One message as it arrives from the broker (shared by the link and its configuration).

export interface InboundMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
  retain: boolean;
  /** Set by the broker on a redelivery (MQTT requires it; aedes omits it). Not a replay signal. */
  duplicate: boolean;
  /** MQTT 5 only; omitted (and reported) when not a topic this device may publish to. */
  responseTopic?: string;
  correlationData?: Buffer;
  contentType?: string;
}
