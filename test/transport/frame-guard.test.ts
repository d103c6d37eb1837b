import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { isTransportError } from '../../src/transport/errors.js';
import { FrameGuard, type CutPublish } from '../../src/transport/frame-guard.js';

// MQTT frames built by hand (MQTT 3.1.1 §2-3, MQTT 5 §2-3), independent of the code under test.
function varint(n: number): number[] {
  const out: number[] = [];
  do {
    let b = n % 128;
    n = Math.floor(n / 128);
    if (n > 0) b |= 0x80;
    out.push(b);
  } while (n > 0);
  return out;
}

function publish(opts: { topic: string; payload: Buffer; qos?: 0 | 1; messageId?: number; v5Properties?: Buffer }): Buffer {
  const qos = opts.qos ?? 0;
  const topic = Buffer.from(opts.topic);
  const parts: Buffer[] = [Buffer.from([topic.length >> 8, topic.length & 0xff]), topic];
  if (qos > 0) parts.push(Buffer.from([(opts.messageId ?? 1) >> 8, (opts.messageId ?? 1) & 0xff]));
  if (opts.v5Properties) parts.push(Buffer.from(varint(opts.v5Properties.length)), opts.v5Properties);
  parts.push(opts.payload);
  const body = Buffer.concat(parts);
  return Buffer.concat([Buffer.from([0x30 | (qos << 1), ...varint(body.length)]), body]);
}

const PINGRESP = Buffer.from([0xd0, 0x00]);
const PUBACK = Buffer.from([0x40, 0x02, 0x00, 0x07]);
// MQTT 5 properties: response topic (0x08) and correlation data (0x09).
const V5_PROPS = Buffer.concat([
  Buffer.from([0x08, 0x00, 0x05]),
  Buffer.from('reply'),
  Buffer.from([0x09, 0x00, 0x03]),
  Buffer.from('abc'),
]);

const limits = { maxPayloadBytes: 100, maxHeaderBytes: 1024 };

function run(guard: FrameGuard, chunks: Buffer[]): { bytes: Buffer; cut: CutPublish[] } {
  const forward: Buffer[] = [];
  const cut: CutPublish[] = [];
  for (const chunk of chunks) {
    const out = guard.push(chunk);
    forward.push(...out.forward);
    cut.push(...out.cut);
  }
  return { bytes: Buffer.concat(forward), cut };
}

function split(data: Buffer, points: number[]): Buffer[] {
  const cuts = [...new Set(points.map((p) => p % (data.length + 1)))].sort((a, b) => a - b);
  const chunks: Buffer[] = [];
  let last = 0;
  for (const p of cuts) {
    chunks.push(data.subarray(last, p));
    last = p;
  }
  chunks.push(data.subarray(last));
  return chunks.filter((c) => c.length > 0);
}

function guardError(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return isTransportError(err) ? err.code : String(err);
  }
  return undefined;
}

describe('FrameGuard', () => {
  it('passes packets within the limits through byte for byte, however the stream is chunked', () => {
    const stream = Buffer.concat([
      publish({ topic: 'a/cmd', payload: Buffer.alloc(100, 1), qos: 1, messageId: 9 }),
      PINGRESP,
      publish({ topic: 'a/b', payload: Buffer.alloc(0) }),
      PUBACK,
    ]);
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 12 }), (points) => {
        const { bytes, cut } = run(new FrameGuard(limits, 4), split(stream, points));
        expect(bytes.equals(stream)).toBe(true);
        expect(cut).toEqual([]);
      }),
    );
  });

  it('cuts the payload out of an oversize PUBLISH, keeping topic and packet id, and reports it', () => {
    const big = publish({ topic: 'site/dev/cmd', payload: Buffer.alloc(5000, 7), qos: 1, messageId: 0x1234 });
    const small = publish({ topic: 'site/dev/cmd', payload: Buffer.from('ok'), qos: 1, messageId: 0x1235 });
    const { bytes, cut } = run(new FrameGuard(limits, 4), [big, small]);
    expect(cut).toEqual([{ ordinal: 1, topic: 'site/dev/cmd', qos: 1, messageId: 0x1234, payloadBytes: 5000, limit: 100 }]);
    const emptied = publish({ topic: 'site/dev/cmd', payload: Buffer.alloc(0), qos: 1, messageId: 0x1234 });
    expect(bytes.equals(Buffer.concat([emptied, small]))).toBe(true);
  });

  it('never holds the oversize payload: what it forwards stays small while megabytes stream past', () => {
    const guard = new FrameGuard(limits, 4);
    const frame = publish({ topic: 't', payload: Buffer.alloc(4 * 1024 * 1024), qos: 0 });
    let forwarded = 0;
    for (let at = 0; at < frame.length; at += 64 * 1024) {
      forwarded += guard.push(frame.subarray(at, at + 64 * 1024)).forward.reduce((n, b) => n + b.length, 0);
    }
    expect(forwarded).toBeLessThan(16);
    // And the stream is back in step: the next packet passes untouched.
    expect(Buffer.concat(guard.push(PINGRESP).forward).equals(PINGRESP)).toBe(true);
  });

  it('caps each topic at its own limit, decided from the topic as the header is read', () => {
    const perTopic = { maxPayloadBytes: (topic: string) => (topic.endsWith('/bundle') ? 10_000 : 100), maxHeaderBytes: 1024 };
    const bundle = publish({ topic: 'site/dev/bundle', payload: Buffer.alloc(5000, 1), qos: 1, messageId: 1 });
    const command = publish({ topic: 'site/dev/cmd', payload: Buffer.alloc(5000, 2), qos: 1, messageId: 2 });
    for (const points of [[], [3], [7, 20, 5003]]) {
      const { bytes, cut } = run(new FrameGuard(perTopic, 4), split(Buffer.concat([bundle, command]), points));
      expect(cut).toEqual([{ ordinal: 2, topic: 'site/dev/cmd', qos: 1, messageId: 2, payloadBytes: 5000, limit: 100 }]);
      const emptied = publish({ topic: 'site/dev/cmd', payload: Buffer.alloc(0), qos: 1, messageId: 2 });
      expect(bytes.equals(Buffer.concat([bundle, emptied]))).toBe(true);
    }
  });

  it('reads MQTT 5 properties as part of the header and keeps them when cutting', () => {
    const big = publish({ topic: 'x/cmd', payload: Buffer.alloc(101), qos: 1, messageId: 3, v5Properties: V5_PROPS });
    const fits = publish({ topic: 'x/cmd', payload: Buffer.alloc(100), qos: 0, v5Properties: V5_PROPS });
    for (const points of [[], [1], [3, 9, 12, 14, 20], [...Array(big.length).keys()]]) {
      const { bytes, cut } = run(new FrameGuard(limits, 5), split(Buffer.concat([big, fits]), points));
      const emptied = publish({ topic: 'x/cmd', payload: Buffer.alloc(0), qos: 1, messageId: 3, v5Properties: V5_PROPS });
      expect(bytes.equals(Buffer.concat([emptied, fits]))).toBe(true);
      expect(cut).toEqual([{ ordinal: 1, topic: 'x/cmd', qos: 1, messageId: 3, payloadBytes: 101, limit: 100 }]);
    }
  });

  it('numbers PUBLISH packets so a cut can be matched to the parsed packet', () => {
    const frames = [50, 500, 10, 1000].map((n, i) => publish({ topic: `t/${i}`, payload: Buffer.alloc(n), qos: 0 }));
    const { cut } = run(new FrameGuard(limits, 4), [Buffer.concat([PINGRESP, ...frames])]);
    expect(cut.map((c) => [c.ordinal, c.topic])).toEqual([
      [2, 't/1'],
      [4, 't/3'],
    ]);
  });

  it('ends the connection on a control packet or PUBLISH header above the header limit', () => {
    const hugeSuback = Buffer.from([0x90, ...varint(2000)]);
    expect(guardError(() => new FrameGuard(limits, 4).push(hugeSuback))).toBe('FRAME_TOO_LARGE');
    const longTopic = publish({ topic: 'x'.repeat(2000), payload: Buffer.alloc(1) });
    expect(guardError(() => new FrameGuard(limits, 4).push(longTopic))).toBe('FRAME_TOO_LARGE');
    const bigProps = publish({ topic: 't', payload: Buffer.alloc(1), v5Properties: Buffer.alloc(4000) });
    expect(guardError(() => new FrameGuard(limits, 5).push(bigProps.subarray(0, 12)))).toBe('FRAME_TOO_LARGE');
  });

  it('refuses malformed frames', () => {
    const cases: Array<[string, Buffer, 4 | 5]> = [
      ['5-byte remaining length', Buffer.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x01]), 4],
      ['QoS 3', Buffer.from([0x36, 0x04, 0x00, 0x01, 0x61, 0x00]), 4],
      ['topic longer than the packet', Buffer.from([0x30, 0x03, 0x00, 0x09, 0x61]), 4],
      ['empty PUBLISH', Buffer.from([0x30, 0x00]), 4],
      ['5-byte property length', Buffer.from([0x30, 0x0a, 0x00, 0x01, 0x61, 0xff, 0xff, 0xff, 0xff, 0x01, 0, 0]), 5],
    ];
    for (const [what, bytes, version] of cases) {
      expect(guardError(() => new FrameGuard(limits, version).push(bytes)), what).toBe('FRAME_MALFORMED');
    }
  });
});
