// A streaming filter between the broker's socket and the MQTT parser. mqtt.js buffers each
// packet whole before parsing it, and a remaining length may announce up to 256 MiB; so sizes
// are checked here, from the fixed header, before anything is buffered:
// - a PUBLISH whose payload exceeds its topic's cap is passed on with its payload cut out (topic,
//   packet id and properties kept, so it can still be acknowledged and reported) and the
//   payload bytes are discarded as they arrive;
// - any other packet, or a PUBLISH header, larger than the header cap is a protocol violation
//   and ends the connection.
// Pure: bytes in, bytes out; the caller owns the socket.
import { TransportError } from './errors.js';

export interface FrameGuardLimits {
  /**
   * PUBLISH payloads above this are cut out and reported: one cap, or a cap per topic, asked as
   * soon as the topic is read (before any payload byte is held).
   */
  maxPayloadBytes: number | ((topic: string) => number);
  /** Bound on a PUBLISH variable header (topic, packet id, properties) and on any other packet. */
  maxHeaderBytes: number;
}

/** A PUBLISH forwarded without its payload. `ordinal` counts PUBLISH packets on this stream from 1. */
export interface CutPublish {
  ordinal: number;
  topic: string;
  qos: number;
  messageId?: number;
  payloadBytes: number;
  /** The cap that applied to this topic. */
  limit: number;
}

export interface GuardOutput {
  forward: Buffer[];
  cut: CutPublish[];
}

const PUBLISH = 3;
const MAX_VARINT_BYTES = 4;

type Phase =
  | { kind: 'fixed'; bytes: number[] }
  | { kind: 'publish-head'; first: number; fixed: Buffer; remaining: number; head: Buffer }
  | { kind: 'pass'; left: number }
  | { kind: 'skip'; left: number };

export class FrameGuard {
  private phase: Phase = { kind: 'fixed', bytes: [] };
  private publishes = 0;

  constructor(
    private readonly limits: FrameGuardLimits,
    private readonly protocolVersion: 4 | 5,
  ) {}

  /** Feeds bytes received from the broker. Throws a FRAME_* TransportError on a violation. */
  push(chunk: Buffer): GuardOutput {
    const out: GuardOutput = { forward: [], cut: [] };
    let at = 0;
    while (at < chunk.length) {
      const phase = this.phase;
      switch (phase.kind) {
        case 'fixed':
          at = this.readFixedHeader(phase, chunk, at, out);
          break;
        case 'publish-head':
          at = this.readPublishHead(phase, chunk, at, out);
          break;
        case 'pass': {
          const take = Math.min(phase.left, chunk.length - at);
          out.forward.push(chunk.subarray(at, at + take));
          at += take;
          this.advance(phase.left - take, 'pass');
          break;
        }
        case 'skip': {
          const take = Math.min(phase.left, chunk.length - at);
          at += take;
          this.advance(phase.left - take, 'skip');
          break;
        }
      }
    }
    return out;
  }

  private advance(left: number, kind: 'pass' | 'skip'): void {
    this.phase = left === 0 ? { kind: 'fixed', bytes: [] } : { kind, left };
  }

  private readFixedHeader(phase: Extract<Phase, { kind: 'fixed' }>, chunk: Buffer, at: number, out: GuardOutput): number {
    while (at < chunk.length) {
      const byte = chunk[at++];
      phase.bytes.push(byte);
      if (phase.bytes.length === 1) continue;
      if (byte & 0x80) {
        if (phase.bytes.length > MAX_VARINT_BYTES) throw malformed('remaining length longer than 4 bytes');
        continue;
      }
      const first = phase.bytes[0];
      const fixed = Buffer.from(phase.bytes);
      const remaining = decodeVarint(phase.bytes, 1).value;
      if (first >> 4 === PUBLISH) {
        if (((first >> 1) & 3) === 3) throw malformed('PUBLISH with QoS 3');
        this.publishes++;
        this.phase = { kind: 'publish-head', first, fixed, remaining, head: Buffer.alloc(0) };
        if (remaining === 0) throw malformed('PUBLISH without a topic');
        return at;
      }
      if (remaining > this.limits.maxHeaderBytes) {
        throw new TransportError(
          'FRAME_TOO_LARGE',
          `control packet type ${first >> 4} of ${remaining} bytes exceeds ${this.limits.maxHeaderBytes}`,
        );
      }
      out.forward.push(fixed);
      this.advance(remaining, 'pass');
      return at;
    }
    return at;
  }

  private readPublishHead(phase: Extract<Phase, { kind: 'publish-head' }>, chunk: Buffer, at: number, out: GuardOutput): number {
    const qos = (phase.first >> 1) & 3;
    for (;;) {
      const need = this.publishHeadLength(phase.head, qos);
      if (need.length > phase.remaining) throw malformed('PUBLISH header longer than the packet');
      if (need.length > this.limits.maxHeaderBytes) {
        throw new TransportError('FRAME_TOO_LARGE', `PUBLISH header of ${need.length}+ bytes exceeds ${this.limits.maxHeaderBytes}`);
      }
      if (need.complete) break;
      if (at >= chunk.length) return at;
      const take = Math.min(need.length - phase.head.length, chunk.length - at);
      phase.head = Buffer.concat([phase.head, chunk.subarray(at, at + take)]);
      at += take;
    }
    const headLength = phase.head.length;
    const payloadBytes = phase.remaining - headLength;
    const topicLength = phase.head.readUInt16BE(0);
    const topic = phase.head.toString('utf8', 2, 2 + topicLength);
    const { maxPayloadBytes } = this.limits;
    const limit = typeof maxPayloadBytes === 'number' ? maxPayloadBytes : maxPayloadBytes(topic);
    if (payloadBytes > limit) {
      out.cut.push({
        ordinal: this.publishes,
        topic,
        qos,
        ...(qos > 0 ? { messageId: phase.head.readUInt16BE(2 + topicLength) } : {}),
        payloadBytes,
        limit,
      });
      out.forward.push(Buffer.from([phase.first, ...encodeVarint(headLength)]), phase.head);
      this.advance(payloadBytes, 'skip');
    } else {
      out.forward.push(phase.fixed, phase.head);
      this.advance(payloadBytes, 'pass');
    }
    return at;
  }

  /**
   * How many header bytes the PUBLISH needs, as far as `head` tells: the topic length, the
   * topic, the packet id (QoS > 0) and, in MQTT 5, the properties length and properties.
   */
  private publishHeadLength(head: Buffer, qos: number): { length: number; complete: boolean } {
    if (head.length < 2) return { length: 2, complete: false };
    const base = 2 + head.readUInt16BE(0) + (qos > 0 ? 2 : 0);
    if (this.protocolVersion === 4) return { length: base, complete: head.length >= base };
    if (head.length <= base) return { length: base + 1, complete: false };
    const varint = decodeVarint(head, base);
    if (varint.bytes === 0) {
      if (head.length - base >= MAX_VARINT_BYTES) throw malformed('property length longer than 4 bytes');
      return { length: head.length + 1, complete: false };
    }
    const length = base + varint.bytes + varint.value;
    return { length, complete: head.length >= length };
  }
}

/** MQTT variable byte integer at `offset`; `bytes` is 0 while the encoding is incomplete. */
function decodeVarint(bytes: ArrayLike<number>, offset: number): { value: number; bytes: number } {
  let value = 0;
  for (let i = 0; i < MAX_VARINT_BYTES && offset + i < bytes.length; i++) {
    const byte = bytes[offset + i];
    value += (byte & 0x7f) * 128 ** i;
    if ((byte & 0x80) === 0) return { value, bytes: i + 1 };
  }
  return { value: 0, bytes: 0 };
}

function encodeVarint(value: number): number[] {
  const out: number[] = [];
  do {
    let byte = value % 128;
    value = Math.floor(value / 128);
    if (value > 0) byte |= 0x80;
    out.push(byte);
  } while (value > 0);
  return out;
}

function malformed(why: string): TransportError {
  return new TransportError('FRAME_MALFORMED', `malformed MQTT frame from broker: ${why}`);
}
