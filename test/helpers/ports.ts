/**
 * Loopback ports for end-to-end tests.
 *
 * Prefer `server.listen(0)` and reading the port back whenever the server is ours. `freePort()` is
 * for external programs (HAProxy, nginx) that must be told a port in their config: it binds port 0,
 * reads the port the kernel chose and closes it again. Another process could take that port in the
 * instant before the program binds it; with loopback-only tests and the kernel handing out
 * ephemeral ports in rotation that window is negligible, and `waitForPort` fails loudly if it
 * happens.
 */
import { createServer, connect } from 'node:net';

/** A TCP port that was free on `host` a moment ago. */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', reject);
    srv.listen({ host, port: 0, exclusive: true }, () => {
      const addr = srv.address();
      if (addr === null || typeof addr === 'string') {
        srv.close();
        reject(new Error('freePort: listener has no TCP address'));
        return;
      }
      const { port } = addr;
      srv.close((err) => (err ? reject(err) : resolve(port)));
    });
  });
}

export interface WaitForPortOptions {
  host?: string;
  /** Give up after this long (default 10 s). */
  timeoutMs?: number;
  /**
   * Called before each attempt; throw from it to stop waiting early, e.g. when the child process
   * that should open the port has already exited.
   */
  check?: () => void;
}

/**
 * Resolves once a TCP connection to host:port succeeds (the probe connection is closed at once,
 * without sending a byte). Rejects after `timeoutMs`.
 */
export async function waitForPort(port: number, opts: WaitForPortOptions = {}): Promise<void> {
  const host = opts.host ?? '127.0.0.1';
  const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
  let delay = 10;
  for (;;) {
    opts.check?.();
    const ok = await new Promise<boolean>((resolve) => {
      const sock = connect({ host, port });
      sock.once('connect', () => {
        sock.destroy();
        resolve(true);
      });
      sock.once('error', () => {
        sock.destroy();
        resolve(false);
      });
    });
    if (ok) return;
    if (Date.now() > deadline) throw new Error(`nothing accepted connections on ${host}:${port} within ${opts.timeoutMs ?? 10_000} ms`);
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 200);
  }
}
