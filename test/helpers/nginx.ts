/**
 * A real nginx for end-to-end tests: in front of the gateway, or beside it with `auth_request`.
 *
 *   test('...', { skip: nginxSkip() }, async (t) => {
 *     const port = await freePort();
 *     const ng = await startNginx({ port, config: authRequestConfig({ listenPort: port, gatewayUrl, appUrl }) });
 *     t.after(() => ng.stop());
 *   });
 *
 * nginx runs in the foreground (`-g 'daemon off;'`) with its config, pid file, logs and temp
 * paths all inside a temporary prefix directory, so it needs no write access outside it and works
 * as root or not. Its error log goes to stderr and can be read with `output()`.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { freePort, waitForPort } from './ports.js';
import { findBinary, noteSkip, spawnDaemon, tmpDir } from './tmp.js';

export interface NginxOptions {
  /** The port the config listens on, on 127.0.0.1 (default: a free port, passed to `config`). */
  port?: number;
  /**
   * What goes inside `http { }`: `server` blocks, `map`s, `upstream`s. A string must already
   * listen on `port` (so `port` is then required); a function is called with the port.
   */
  config: string | ((port: number) => string);
}

export interface Nginx {
  port: number;
  /** `http://127.0.0.1:<port>`. */
  url: string;
  /** The temporary prefix directory (holds nginx.conf, access.log, temp files). */
  prefix: string;
  /** The full nginx.conf that was run. */
  conf: string;
  /** nginx's error log and stderr so far (last 64 KiB). */
  output(): string;
  /** Stops nginx (fast shutdown) and removes the prefix directory. */
  stop(): Promise<void>;
}

const NGINX = findBinary('nginx', ['/usr/sbin/nginx', '/usr/local/sbin/nginx', '/usr/local/nginx/sbin/nginx']);

export function haveNginx(): boolean {
  return NGINX !== null;
}

/** For node:test's `skip` option; throws in CI when nginx is missing (see `toolSkip`); outside CI a summary line at exit says what was skipped (`noteSkip`). */
export function nginxSkip(): false | string {
  return noteSkip('nginx', haveNginx());
}

function mainConf(prefix: string, httpBody: string): string {
  const isRoot = typeof process.getuid === 'function' && process.getuid() === 0;
  const tmp = (name: string): string => join(prefix, 'tmp', name);
  return [
    // As root, nginx would switch its workers to `nobody`, who cannot write the 0700 prefix; a
    // non-root master ignores `user` with a warning, so it is written only when it matters.
    ...(isRoot ? ['user root root;'] : []),
    'worker_processes 1;',
    `pid ${join(prefix, 'nginx.pid')};`,
    'error_log stderr notice;',
    'events { worker_connections 1024; }',
    'http {',
    `  access_log ${join(prefix, 'access.log')};`,
    `  client_body_temp_path ${tmp('client_body')};`,
    `  proxy_temp_path ${tmp('proxy')};`,
    `  fastcgi_temp_path ${tmp('fastcgi')};`,
    `  uwsgi_temp_path ${tmp('uwsgi')};`,
    `  scgi_temp_path ${tmp('scgi')};`,
    '',
    httpBody,
    '}',
    '',
  ].join('\n');
}

export async function startNginx(opts: NginxOptions): Promise<Nginx> {
  if (!NGINX) throw new Error('nginx is not installed (scripts/install-test-deps.sh installs it)');
  if (typeof opts.config === 'string' && opts.port === undefined) {
    throw new Error('startNginx: pass `port` with a string config (or pass config as a function of the port)');
  }
  const port = opts.port ?? (await freePort());
  const body = typeof opts.config === 'string' ? opts.config : opts.config(port);
  const tmp = await tmpDir('portcullis-nginx-');
  const prefix = tmp.dir;
  await mkdir(join(prefix, 'tmp'));
  const conf = mainConf(prefix, body);
  const confFile = join(prefix, 'nginx.conf');
  await writeFile(confFile, conf);
  // -e: the error log used before the config is read (the compiled-in default may be unwritable).
  const daemon = spawnDaemon(NGINX, ['-p', `${prefix}/`, '-c', confFile, '-e', 'stderr', '-g', 'daemon off;'], { cwd: prefix });
  const stop = async (): Promise<void> => {
    await daemon.stop();
    await tmp.cleanup();
  };
  try {
    await waitForPort(port, {
      timeoutMs: 10_000,
      check: () => {
        const st = daemon.exitStatus();
        if (st) throw new Error(`nginx exited (${st.code ?? st.signal}) before listening`);
      },
    });
  } catch (err) {
    await stop();
    throw err instanceof Error ? new Error(`${err.message}\nnginx.conf:\n${conf}\noutput:\n${daemon.output()}`) : err;
  }
  return { port, url: `http://127.0.0.1:${port}`, prefix, conf, output: daemon.output, stop };
}

export interface AuthRequestConfigOptions {
  /** Port the nginx server block listens on, on 127.0.0.1. */
  listenPort: number;
  /** Base URL of the portcullis listener, e.g. `http://127.0.0.1:8080` (no path). */
  gatewayUrl: string;
  /** Base URL of the protected app (no path). */
  appUrl: string;
}

function origin(url: string, what: string): string {
  const u = new URL(url);
  if (u.protocol !== 'http:' && u.protocol !== 'https:') throw new Error(`authRequestConfig: ${what} must be http(s)`);
  if (u.pathname !== '/' || u.search || u.hash) throw new Error(`authRequestConfig: ${what} must have no path`);
  return u.origin;
}

/** Identity headers the gateway answers with and nginx forwards to the app (SPEC "HTTP"). */
const IDENTITY_HEADERS = ['Remote-User', 'Remote-Groups', 'Remote-Email', 'Remote-Name', 'X-Portcullis-Assertion'] as const;

function varName(header: string): string {
  return `portcullis_${header.toLowerCase().replace(/-/g, '_')}`;
}

/**
 * The `http { }` body for nginx `auth_request` in front of an app, per SPEC's
 * `/.portcullis/authz/auth-request` contract, as an admin would deploy it:
 *
 * - every request to `/` is first sent (without its body) to the gateway's auth-request endpoint
 *   with `X-Original-URL` and `X-Original-Method`, the client's cookies and Authorization header,
 *   and `X-Forwarded-For` set to the peer nginx saw (nginx is the edge, so any client-sent value
 *   is replaced, not appended to);
 * - 2xx: the request goes to the app with the gateway's `Remote-User`, `Remote-Groups`,
 *   `Remote-Email`, `Remote-Name` and `X-Portcullis-Assertion`; a client-sent header of any of
 *   these names is replaced (or dropped when the gateway sent none), and nginx drops header
 *   names with `_` or `.` (`ignore_invalid_headers`, on by default);
 * - 401: redirect (302) to the `Location` the gateway gave (a relative one is made absolute on
 *   the request's Host); with no Location, the 401 is passed on with the gateway's
 *   `WWW-Authenticate` (Basic clients such as ActiveSync);
 * - 403 (and any other refusal) is passed on and the app never sees the request;
 * - `/.portcullis/` (login, MFA, enrolment, logout) is proxied straight to the gateway;
 * - WebSocket upgrades are passed through after the check.
 *
 * Use it once per nginx (it defines a `map`).
 */
export function authRequestConfig(opts: AuthRequestConfigOptions): string {
  const gateway = origin(opts.gatewayUrl, 'gatewayUrl');
  const app = origin(opts.appUrl, 'appUrl');
  const forwarded = [
    '    proxy_set_header Host $http_host;',
    '    proxy_set_header X-Forwarded-For $remote_addr;',
    '    proxy_set_header X-Forwarded-Proto $scheme;',
    '    proxy_set_header X-Forwarded-Host $http_host;',
  ];
  return [
    'map $http_upgrade $portcullis_connection_upgrade {',
    '  default upgrade;',
    "  ''      close;",
    '}',
    '',
    'server {',
    `  listen 127.0.0.1:${opts.listenPort};`,
    '  server_name _;',
    '',
    '  # The gateway\'s own pages: login, MFA, enrolment, password change, logout.',
    '  location /.portcullis/ {',
    `    proxy_pass ${gateway};`,
    ...forwarded,
    '  }',
    '',
    '  # The access check: a subrequest per request, without the body.',
    '  location = /_portcullis_auth {',
    '    internal;',
    `    proxy_pass ${gateway}/.portcullis/authz/auth-request;`,
    '    proxy_pass_request_body off;',
    '    proxy_set_header Content-Length "";',
    '    proxy_set_header X-Original-URL $scheme://$http_host$request_uri;',
    '    proxy_set_header X-Original-Method $request_method;',
    // Forward-auth headers mean something else to the gateway; never pass a client's on.
    '    proxy_set_header X-Forwarded-Method "";',
    '    proxy_set_header X-Forwarded-Uri "";',
    ...forwarded,
    '  }',
    '',
    '  location / {',
    '    auth_request /_portcullis_auth;',
    ...IDENTITY_HEADERS.map((h) => `    auth_request_set $${varName(h)} $upstream_http_${h.toLowerCase().replace(/-/g, '_')};`),
    '    auth_request_set $portcullis_location $upstream_http_location;',
    '    error_page 401 = @portcullis_unauthorized;',
    '',
    `    proxy_pass ${app};`,
    '    proxy_http_version 1.1;',
    '    proxy_set_header Upgrade $http_upgrade;',
    '    proxy_set_header Connection $portcullis_connection_upgrade;',
    ...forwarded,
    ...IDENTITY_HEADERS.map((h) => `    proxy_set_header ${h} $${varName(h)};`),
    '  }',
    '',
    '  location @portcullis_unauthorized {',
    '    if ($portcullis_location != "") {',
    '      return 302 $portcullis_location;',
    '    }',
    // auth_request itself copies the gateway's WWW-Authenticate onto a 401.
    '    return 401;',
    '  }',
    '}',
  ].join('\n');
}
