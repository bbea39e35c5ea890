/**
 * Send bytes exactly as written (no URL normalisation by a client library) and read the whole
 * response. For attacks on path parsing and header handling.
 */
import { connect, type Socket } from 'node:net';

export interface RawResponse {
  status: number;
  head: string;
  headers: Record<string, string>;
  body: string;
  /** True if the server closed without any response. */
  closedEmpty: boolean;
}

export function rawHttp(port: number, request: string | Buffer, opts: { localAddress?: string; host?: string; timeoutMs?: number } = {}): Promise<RawResponse> {
  return new Promise((resolve, reject) => {
    const s = connect({ host: opts.host ?? '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
    const chunks: Buffer[] = [];
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('raw request timed out'));
    }, opts.timeoutMs ?? 5000);
    s.on('connect', () => s.write(request));
    s.on('data', (c) => chunks.push(c));
    s.on('error', (e) => {
      if ((e as NodeJS.ErrnoException).code === 'ECONNRESET') return; // treated like a close
      clearTimeout(timer);
      reject(e);
    });
    s.on('close', () => {
      clearTimeout(timer);
      const text = Buffer.concat(chunks).toString('latin1');
      if (!text) return resolve({ status: 0, head: '', headers: {}, body: '', closedEmpty: true });
      const end = text.indexOf('\r\n\r\n');
      const head = end < 0 ? text : text.slice(0, end);
      const lines = head.split('\r\n');
      const status = Number(lines[0]!.split(' ')[1]);
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
      }
      resolve({ status, head, headers, body: end < 0 ? '' : text.slice(end + 4), closedEmpty: false });
    });
  });
}

/** A GET request line with Host and `connection: close`, plus extra header lines. */
export function get(target: string, host: string, extra: string[] = []): string {
  return [`GET ${target} HTTP/1.1`, `Host: ${host}`, 'Connection: close', ...extra, '', ''].join('\r\n');
}

/** An open raw connection for tests that send slowly, stop sending, or stop reading. */
export interface RawConnection {
  socket: Socket;
  /** Resolves once connected. */
  ready: Promise<void>;
  /** Write now (ignored once the server has closed the connection). */
  write(data: string | Buffer): void;
  /** Write `data` one byte every `everyMs` until done or the connection closes; resolves with the bytes sent. */
  trickle(data: string | Buffer, everyMs: number): Promise<number>;
  /** Resolves when the server closes the connection: what it answered and how long the connection lived. */
  closed: Promise<RawResponse & { ms: number }>;
  destroy(): void;
}

function parseRaw(text: string): RawResponse {
  if (!text) return { status: 0, head: '', headers: {}, body: '', closedEmpty: true };
  const end = text.indexOf('\r\n\r\n');
  const head = end < 0 ? text : text.slice(0, end);
  const lines = head.split('\r\n');
  const status = Number(lines[0]!.split(' ')[1]);
  const headers: Record<string, string> = {};
  for (const l of lines.slice(1)) {
    const i = l.indexOf(':');
    if (i > 0) headers[l.slice(0, i).trim().toLowerCase()] = l.slice(i + 1).trim();
  }
  return { status, head, headers, body: end < 0 ? '' : text.slice(end + 4), closedEmpty: false };
}

/**
 * Open a connection and keep it: nothing is sent until the test writes. With `read: false` the
 * client never reads (the server's writes back up, as with a client that stopped reading).
 */
export function rawConnection(port: number, opts: { localAddress?: string; read?: boolean } = {}): RawConnection {
  const started = Date.now();
  const s = connect({ host: '127.0.0.1', port, ...(opts.localAddress ? { localAddress: opts.localAddress } : {}) });
  const chunks: Buffer[] = [];
  let gone = false;
  const ready = new Promise<void>((resolve, reject) => {
    s.once('connect', () => resolve());
    s.once('error', reject);
  });
  ready.catch(() => undefined);
  if (opts.read === false) s.pause();
  else s.on('data', (c: Buffer) => chunks.push(c));
  s.on('error', () => undefined); // a reset counts as a close
  const closed = new Promise<RawResponse & { ms: number }>((resolve) => {
    s.once('close', () => {
      gone = true;
      resolve({ ...parseRaw(Buffer.concat(chunks).toString('latin1')), ms: Date.now() - started });
    });
  });
  const write = (data: string | Buffer): void => {
    if (!gone && s.writable) s.write(data);
  };
  return {
    socket: s,
    ready,
    write,
    async trickle(data, everyMs) {
      const b = typeof data === 'string' ? Buffer.from(data, 'latin1') : data;
      let i = 0;
      for (; i < b.length && !gone; i++) {
        write(b.subarray(i, i + 1));
        await new Promise((r) => setTimeout(r, everyMs));
      }
      return i;
    },
    closed,
    destroy: () => s.destroy(),
  };
}
