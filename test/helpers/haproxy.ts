/**
 * A real HAProxy in front of something, for tests of what a load balancer sends the gateway:
 * the PROXY protocol header (`sendProxyV2` / `sendProxyV1`) in TCP mode, or X-Forwarded-For /
 * Forwarded (`sourceHeader`) in HTTP mode.
 *
 *   test('...', { skip: haproxySkip() }, async (t) => {
 *     const lb = await startHaproxy({ backend: { host: '127.0.0.1', port }, sendProxyV2: true });
 *     t.after(() => lb.stop());
 *     // connect to 127.0.0.1:lb.port
 *   });
 *
 * The config is written to a temporary directory and HAProxy runs in the foreground (`-db`) as a
 * child of the test process. Readiness is checked on a separate monitor listener, so no probe
 * connection ever reaches the backend.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, waitForPort } from './ports.js';
import { findBinary, noteSkip, spawnDaemon, tmpDir } from './tmp.js';

export interface HaproxyOptions {
  /** Port HAProxy listens on, on 127.0.0.1 (default: a free port). */
  frontendPort?: number;
  /** Where it forwards to. An IPv6 host is written without brackets, e.g. `::1`. */
  backend: { host: string; port: number };
  /** Default: `http` when `sourceHeader` is set, else `tcp`. */
  mode?: 'tcp' | 'http';
  /** Prefix every backend connection with a PROXY protocol v2 (binary) header. */
  sendProxyV2?: boolean;
  /** Prefix every backend connection with a PROXY protocol v1 (text) header. */
  sendProxyV1?: boolean;
  /**
   * HTTP mode only: add the client's address as `X-Forwarded-For` (`option forwardfor`) or as an
   * RFC 7239 `Forwarded: for=<ip>;proto=http` header. Either is added after any the client sent.
   */
  sourceHeader?: 'x-forwarded-for' | 'forwarded';
}

export interface Haproxy {
  port: number;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** What HAProxy has logged (last 64 KiB), for failure messages. */
  output(): string;
  /** Stops HAProxy and removes its temporary directory. */
  stop(): Promise<void>;
}

const HAPROXY = findBinary('haproxy', ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy']);

export function haveHaproxy(): boolean {
  return HAPROXY !== null;
}

/** For node:test's `skip` option; throws in CI when HAProxy is missing (see `toolSkip`); outside CI a summary line at exit says what was skipped (`noteSkip`). */
export function haproxySkip(): false | string {
  return noteSkip('haproxy', haveHaproxy());
}

function address(host: string, port: number): string {
  return host.includes(':') ? `ipv6@${host}:${port}` : `${host}:${port}`;
}

/** The haproxy.cfg text for `opts`; exported so a failing test can print what it ran. */
export function haproxyConfig(opts: HaproxyOptions & { frontendPort: number; monitorPort: number }): string {
  if (opts.sendProxyV1 && opts.sendProxyV2) throw new Error('startHaproxy: choose one of sendProxyV1 and sendProxyV2');
  const mode = opts.mode ?? (opts.sourceHeader ? 'http' : 'tcp');
  if (opts.sourceHeader && mode !== 'http') throw new Error('startHaproxy: sourceHeader needs mode http');
  const proxy = opts.sendProxyV2 ? ' send-proxy-v2' : opts.sendProxyV1 ? ' send-proxy' : '';
  const lines = [
    'global',
    '  log stderr format raw local0 info',
    '  maxconn 1024',
    '',
    'defaults',
    `  mode ${mode}`,
    '  log global',
    `  option ${mode === 'http' ? 'httplog' : 'tcplog'}`,
    '  timeout connect 5s',
    '  timeout client 60s',
    '  timeout server 60s',
    '  timeout tunnel 1h',
    ...(mode === 'http' ? ['  timeout http-request 10s'] : []),
    '',
    // Answers only the readiness probe; HAProxy binds every listener before it serves any.
    'frontend monitor',
    '  mode http',
    `  bind 127.0.0.1:${opts.monitorPort}`,
    '  monitor-uri /ready',
    '',
    'frontend fe',
    `  bind 127.0.0.1:${opts.frontendPort}`,
    ...(opts.sourceHeader === 'x-forwarded-for' ? ['  option forwardfor'] : []),
    // HAProxy 2.6 has no `option forwarded`; the frontend is IPv4-only, so `for=` needs no quoting.
    ...(opts.sourceHeader === 'forwarded' ? ['  http-request add-header Forwarded for=%[src];proto=http'] : []),
    '  default_backend be',
    '',
    'backend be',
    `  server s1 ${address(opts.backend.host, opts.backend.port)}${proxy}`,
    '',
  ];
  return lines.join('\n');
}

export async function startHaproxy(opts: HaproxyOptions): Promise<Haproxy> {
  if (!HAPROXY) throw new Error('haproxy is not installed (scripts/install-test-deps.sh installs it)');
  const frontendPort = opts.frontendPort ?? (await freePort());
  const monitorPort = await freePort();
  const cfgText = haproxyConfig({ ...opts, frontendPort, monitorPort });
  const tmp = await tmpDir('portcullis-haproxy-');
  const cfg = join(tmp.dir, 'haproxy.cfg');
  await writeFile(cfg, cfgText);
  const daemon = spawnDaemon(HAPROXY, ['-f', cfg, '-db'], { cwd: tmp.dir });
  const stop = async (): Promise<void> => {
    await daemon.stop();
    await tmp.cleanup();
  };
  try {
    await waitForPort(monitorPort, {
      timeoutMs: 10_000,
      check: () => {
        const st = daemon.exitStatus();
        if (st) throw new Error(`haproxy exited (${st.code ?? st.signal}) before listening`);
      },
    });
  } catch (err) {
    await stop();
    throw err instanceof Error ? new Error(`${err.message}\nconfig:\n${cfgText}\noutput:\n${daemon.output()}`) : err;
  }
  return { port: frontendPort, url: `http://127.0.0.1:${frontendPort}`, output: daemon.output, stop };
}
