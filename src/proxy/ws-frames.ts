/**
 * Where the app's stream of WebSocket frames (RFC 6455 §5.2) stands, so that the gateway can end a
 * tunnel with a close frame of its own (1001 "going away", at shutdown) only between two frames,
 * never inside one. Only frame headers are read; payloads are skipped by length. Anything it
 * cannot follow (a length beyond 2^53) marks the stream as unknown: the tunnel is then just closed.
 */
export class FrameBoundary {
  private header: number[] = [];
  private payloadLeft = 0;
  private lost = false;

  feed(chunk: Uint8Array): void {
    let i = 0;
    while (i < chunk.length && !this.lost) {
      if (this.payloadLeft > 0) {
        const take = Math.min(this.payloadLeft, chunk.length - i);
        this.payloadLeft -= take;
        i += take;
        continue;
      }
      this.header.push(chunk[i++]!);
      const size = this.headerSize();
      if (size !== null && this.header.length === size) {
        this.payloadLeft = this.payloadLength();
        this.header = [];
      }
    }
  }

  /** True when the next byte would start a new frame. */
  get atBoundary(): boolean {
    return !this.lost && this.payloadLeft === 0 && this.header.length === 0;
  }

  private headerSize(): number | null {
    if (this.header.length < 2) return null;
    const b1 = this.header[1]!;
    const len = b1 & 0x7f;
    return 2 + (len === 126 ? 2 : len === 127 ? 8 : 0) + (b1 & 0x80 ? 4 : 0);
  }

  private payloadLength(): number {
    const h = this.header;
    const len = h[1]! & 0x7f;
    if (len < 126) return len;
    if (len === 126) return (h[2]! << 8) | h[3]!;
    let n = 0;
    for (let k = 2; k < 10; k++) n = n * 256 + h[k]!;
    if (!Number.isSafeInteger(n)) this.lost = true;
    return n;
  }
}

/** An unmasked close frame (server to client) with status 1001, going away. */
export const CLOSE_GOING_AWAY = Buffer.from([0x88, 0x02, 0x03, 0xe9]);
