/**
 * `portcullis healthcheck [--timeout 3s]`: exit 0 when the running gateway answers
 * `GET /.portcullis/healthz` with 200 on its own listener, 1 otherwise (for a container's
 * HEALTHCHECK, a systemd watchdog, a monitoring probe).
 *
 * The listener is the configuration's: `listen` (0.0.0.0 and :: are probed on loopback), over TLS
 * when `tls` is set (the certificate is not verified: it names the public host, and this is a
 * liveness probe of our own process, not a client), and with a PROXY v1 header first when
 * `proxy_protocol` is on and this probe's own address is in `trusted_proxies` (the gateway would
 * otherwise wait for one and close the connection). One connection, no redirects, no retries.
 */
import { connect as netConnect, isIPv4, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { allowFlags, UsageError, type Command } from '../args.js';
import { formatIssues, loadConfigFile, parseDuration } from '../../config/index.js';
import type { CompiledConfig } from '../../config/index.js';
import { packageVersion } from '../version.js';

const DEFAULT_TIMEOUT_MS = 3_000;
const PATH = '/.portcullis/healthz';
const MAX_RESPONSE = 64 * 1024;

export interface ProbeTarget {
  host: string;
  port: number;
  tls: boolean;
  /** Send a PROXY v1 header when our own source address is one of these peers. */
  proxyProtocolFor: ((ip: string) => boolean) | null;
}

/** Where the gateway configured in `cfg` listens, as seen from this host. */
export function probeTarget(cfg: Pick<CompiledConfig, 'listen' | 'tls' | 'proxyProtocol' | 'trustedProxies'>): ProbeTarget {
  let host = cfg.listen.host;
  if (host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::') host = '::1';
  const trusted = cfg.trustedProxies;
  return {
    host,
    port: cfg.listen.port,
    tls: cfg.tls !== null,
    proxyProtocolFor: cfg.proxyProtocol ? (ip) => trusted.contains(ip) : null,
  };
}

export function probeUrl(t: ProbeTarget): string {
  return `${t.tls ? 'https' : 'http'}://${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}${PATH}`;
}

export type ProbeResult = { ok: true; status: number; ms: number } | { ok: false; reason: string };

/** One GET of /.portcullis/healthz; never throws. */
export function probe(t: ProbeTarget, timeoutMs: number): Promise<ProbeResult> {
  const started = performance.now();
  return new Promise((resolve) => {
    let done = false;
    let sock: Socket = netConnect({ host: t.host, port: t.port });
    const chunks: Buffer[] = [];
    let size = 0;
    const finish = (r: ProbeResult) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      sock.destroy();
      resolve(r);
    };
    const timer = setTimeout(() => finish({ ok: false, reason: `no answer within ${timeoutMs} ms` }), timeoutMs);
    const onError = (e: NodeJS.ErrnoException) => finish({ ok: false, reason: e.code === 'ECONNREFUSED' ? 'connection refused (is the gateway running?)' : e.message });
    const onData = (c: Buffer) => {
      chunks.push(c);
      size += c.length;
      if (size > MAX_RESPONSE) finish({ ok: false, reason: 'answer too large' });
    };
    const onEnd = () => {
      const text = Buffer.concat(chunks).toString('latin1');
      const m = /^HTTP\/1\.[01] (\d{3})/.exec(text);
      if (!m) return finish({ ok: false, reason: text === '' ? 'the connection was closed without an answer' : 'the answer is not HTTP' });
      const status = Number(m[1]);
      if (status !== 200) return finish({ ok: false, reason: `answered ${status}` });
      finish({ ok: true, status, ms: Math.round(performance.now() - started) });
    };
    const request = [
      `GET ${PATH} HTTP/1.1`,
      `Host: ${t.host.includes(':') ? `[${t.host}]` : t.host}:${t.port}`,
      `User-Agent: portcullis-healthcheck/${packageVersion()}`,
      'Accept: application/json',
      'Connection: close',
      '',
      '',
    ].join('\r\n');
    sock.once('error', onError);
    sock.once('connect', () => {
      if (t.proxyProtocolFor && sock.localAddress && t.proxyProtocolFor(sock.localAddress)) {
        const family = isIPv4(sock.localAddress) ? 'TCP4' : 'TCP6';
        sock.write(`PROXY ${family} ${sock.localAddress} ${sock.remoteAddress} ${sock.localPort} ${sock.remotePort}\r\n`);
      }
      if (!t.tls) {
        sock.on('data', onData);
        sock.once('end', onEnd);
        sock.write(request);
        return;
      }
      const raw = sock;
      const secure = tlsConnect({ socket: raw, rejectUnauthorized: false, ...(isIPv4(t.host) || t.host.includes(':') ? {} : { servername: t.host }) });
      sock = secure;
      secure.once('error', onError);
      secure.once('secureConnect', () => secure.write(request));
      secure.on('data', onData);
      secure.once('end', onEnd);
    });
  });
}

export const run: Command = async (args, io) => {
  allowFlags(args, ['timeout']);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
  const timeoutText = args.flags.get('timeout');
  const timeoutMs = timeoutText === undefined ? DEFAULT_TIMEOUT_MS : parseDuration(timeoutText);
  if (timeoutMs === null || timeoutMs <= 0 || timeoutMs > 60_000) throw new UsageError('--timeout is a duration from 1ms to 60s, e.g. 500ms or 3s');
  const loaded = await loadConfigFile(args.config, { checkFiles: false });
  if (!loaded.ok) {
    io.stderr.write(`${formatIssues(loaded.issues)}\n`);
    return 1;
  }
  const t = probeTarget(loaded.config);
  if (t.port === 0) {
    io.stderr.write(`portcullis healthcheck: listen in ${args.config} has port 0 (chosen at start), so there is nothing to probe; give it a fixed port\n`);
    return 1;
  }
  const url = probeUrl(t);
  const r = await probe(t, timeoutMs);
  if (!r.ok) {
    io.stderr.write(`portcullis healthcheck: ${url}: ${r.reason}\n`);
    return 1;
  }
  io.stdout.write(`ok: ${url} answered ${r.status} in ${r.ms} ms\n`);
  return 0;
};
