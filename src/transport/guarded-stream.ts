// The connection mqtt.js talks to: writes go straight to the socket; reads pass through a
// FrameGuard first. Reading pauses the socket while the parser is behind, so memory held for
// incoming data stays bounded by the guard's limits plus one stream buffer.
import { Duplex } from 'node:stream';
import type net from 'node:net';
import type { CutPublish, FrameGuard } from './frame-guard.js';

export class GuardedStream extends Duplex {
  constructor(
    private readonly connection: net.Socket,
    guard: FrameGuard,
    /** Called for each cut PUBLISH before its bytes are passed on. */
    onCut: (cut: CutPublish) => void,
  ) {
    super({ allowHalfOpen: false });
    connection.on('data', (chunk: Buffer) => {
      let output;
      try {
        output = guard.push(chunk);
      } catch (err) {
        this.destroy(err as Error);
        return;
      }
      for (const cut of output.cut) onCut(cut);
      let wantsMore = true;
      for (const buffer of output.forward) wantsMore = this.push(buffer);
      if (!wantsMore) connection.pause();
    });
    connection.once('end', () => this.push(null));
    connection.once('error', (err) => this.destroy(err));
    connection.once('close', () => this.destroy());
  }

  override _read(): void {
    this.connection.resume();
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, callback: (error?: Error | null) => void): void {
    this.connection.write(chunk, callback);
  }

  /** mqtt-packet writes each packet in pieces while corked: they leave in one socket write. */
  override _writev(chunks: Array<{ chunk: Buffer }>, callback: (error?: Error | null) => void): void {
    this.connection.write(Buffer.concat(chunks.map((c) => c.chunk)), callback);
  }

  override _final(callback: (error?: Error | null) => void): void {
    this.connection.end(() => callback());
  }

  override _destroy(error: Error | null, callback: (error?: Error | null) => void): void {
    this.connection.destroy();
    callback(error);
  }
}
