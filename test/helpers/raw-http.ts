/**
 * Send bytes exactly as written (no URL normalisation by a client library) and read the whole
 * response. For attacks on path parsing and header handling.
 */
import { connect } from 'node:net';

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
