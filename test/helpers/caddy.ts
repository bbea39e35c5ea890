/**
 * A real Caddy (Debian's `caddy`, 2.6) for end-to-end tests: a site block as an admin writes it
 * (e.g. the README's forward_auth recipe), served over HTTPS on a free loopback port.
 *
 *   test('...', { skip: caddySkip() }, async (t) => {
 *     const cd = await startCaddy({ site: 'mail.example.org {\n\trespond "hi"\n}', host: 'mail.example.org' });
 *     t.after(() => cd.stop());
 *     // https://mail.example.org:<cd.port>/ on 127.0.0.1, trusting cd.rootCert
 *   });
 *
 * The site block is used as given; only a global options block is put before it, which keeps the
 * test hermetic: no admin endpoint, certificates from Caddy's own local CA (no ACME, no network)
 * and never installed into the system's trust store, every listener on 127.0.0.1 (`https_port` is
 * the free port, the HTTP port another one, redirects off), Caddy's storage, autosaved config and
 * logs inside a temporary directory.
 */
import { readFile, writeFile } from 'node:fs/promises';
import { connect as tlsConnect } from 'node:tls';
import { join } from 'node:path';
import { freePort, waitForPort } from './ports.js';
import { findBinary, spawnDaemon, tmpDir, toolSkip } from './tmp.js';

export interface CaddyOptions {
  /** Site blocks (Caddyfile), used verbatim after the test's global options. */
  site: string;
  /** HTTPS port on 127.0.0.1 (default: a free port). */
  port?: number;
  /** A host the site serves: Caddy is ready once a TLS handshake for it succeeds. */
  host: string;
}

export interface Caddy {
  port: number;
  /** The whole Caddyfile that was run. */
  caddyfile: string;
  /** PEM of the local CA's root certificate, which signed the site's certificate. */
  rootCert: Buffer;
  /** Caddy's log so far (last 64 KiB). */
  output(): string;
  /** Stops Caddy and removes its directory. */
  stop(): Promise<void>;
}

const CADDY = findBinary('caddy', ['/usr/bin/caddy', '/usr/local/bin/caddy']);
const ENV = findBinary('env', ['/usr/bin/env', '/bin/env']);

export function haveCaddy(): boolean {
  return CADDY !== null;
}

/** For node:test's `skip` option; throws in CI when Caddy is missing (see `toolSkip`). */
export function caddySkip(): false | string {
  return toolSkip('caddy', haveCaddy());
}

export function globalOptions(o: { httpsPort: number; httpPort: number; storage: string }): string {
  return [
    '{',
    '\tadmin off',
    '\tskip_install_trust',
    '\tlocal_certs',
    '\tauto_https disable_redirects',
    '\tdefault_bind 127.0.0.1',
    '\tgrace_period 1s',
    `\thttp_port ${o.httpPort}`,
    `\thttps_port ${o.httpsPort}`,
    `\tstorage file_system ${o.storage}`,
    '\tlog {',
    '\t\toutput stderr',
    '\t\tlevel WARN',
    '\t}',
    '}',
    '',
  ].join('\n');
}

export async function startCaddy(opts: CaddyOptions): Promise<Caddy> {
  if (!CADDY || !ENV) throw new Error('caddy is not installed (scripts/install-test-deps.sh installs it)');
  const port = opts.port ?? (await freePort());
  const httpPort = await freePort();
  const tmp = await tmpDir('portcullis-caddy-');
  const storage = join(tmp.dir, 'data');
  const caddyfile = `${globalOptions({ httpsPort: port, httpPort, storage })}\n${opts.site}\n`;
  const file = join(tmp.dir, 'Caddyfile');
  await writeFile(file, caddyfile);
  // XDG_*: Caddy's autosaved config and any default storage stay in the temporary directory
  const daemon = spawnDaemon(
    ENV,
    [`HOME=${tmp.dir}`, `XDG_CONFIG_HOME=${join(tmp.dir, 'config')}`, `XDG_DATA_HOME=${join(tmp.dir, 'xdg-data')}`, CADDY, 'run', '--adapter', 'caddyfile', '--config', file],
    { cwd: tmp.dir },
  );
  const stop = async (): Promise<void> => {
    await daemon.stop();
    await tmp.cleanup();
  };
  try {
    await waitForPort(port, {
      timeoutMs: 15_000,
      check: () => {
        const st = daemon.exitStatus();
        if (st) throw new Error(`caddy exited (${st.code ?? st.signal}) before listening`);
      },
    });
  } catch (err) {
    await stop();
    throw err instanceof Error ? new Error(`${err.message}\nCaddyfile:\n${caddyfile}\noutput:\n${daemon.output()}`) : err;
  }
  // Caddy listens before its local CA has issued the site's certificate: wait for a handshake
  let rootCert: Buffer | null = null;
  const deadline = Date.now() + 15_000;
  for (;;) {
    rootCert ??= await readFile(join(storage, 'pki', 'authorities', 'local', 'root.crt')).catch(() => null);
    if (rootCert && (await handshake(port, opts.host, rootCert))) break;
    if (Date.now() > deadline || daemon.exitStatus()) {
      await stop();
      throw new Error(`caddy did not complete a TLS handshake for ${opts.host} within 15 s\nCaddyfile:\n${caddyfile}\noutput:\n${daemon.output()}`);
    }
    await new Promise((r) => setTimeout(r, 100));
  }
  return { port, caddyfile, rootCert, output: daemon.output, stop };
}

function handshake(port: number, servername: string, ca: Buffer): Promise<boolean> {
  return new Promise((resolve) => {
    const s = tlsConnect({ host: '127.0.0.1', port, servername, ca });
    s.once('secureConnect', () => {
      s.destroy();
      resolve(true);
    });
    s.once('error', () => {
      s.destroy();
      resolve(false);
    });
  });
}
