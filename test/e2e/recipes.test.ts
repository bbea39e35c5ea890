/**
 * The README's deployment recipes work as printed. Each fenced block marked
 * `<!-- recipe: NAME -->` is taken out of README.md verbatim, only its addresses, ports and
 * certificate paths replaced (the named substitutions below: nothing else is touched, and each one
 * must still occur in the recipe), and run in the real program — nginx, Caddy, HAProxy — in front
 * of a real gateway and a real app. Through each one a browser on a non-default HTTPS port:
 *
 *   - is sent to the login page (with the port kept in the redirect and in `rd`), and gets it;
 *   - signs in with a POST that carries the port in its Origin (refused if the proxy drops it);
 *   - reaches the app, which receives the gateway's identity headers and a verifiable assertion,
 *     never a Remote-* or assertion header the client forged in any spelling;
 *   - on a bypass path reaches the app with no identity at all (no literal Caddy placeholder);
 *   - uploads a 2 MB attachment (nginx's default limit is 1 MB) and opens a WebSocket.
 *
 * Also: every nginx / Caddy / HAProxy block in the README is marked as a recipe, and every marked
 * recipe is run here, so none can rot; the nginx recipes pass `nginx -t`.
 */
import { describe, test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { request as httpsRequest } from 'node:https';
import { connect } from 'node:net';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { createLocalJWKSet, jwtVerify, type JSONWebKeySet } from 'jose';
import WebSocket from 'ws';
import { startUpstream, type EchoBody, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { nginxSkip, startNginx } from '../helpers/nginx.js';
import { haproxySkip } from '../helpers/haproxy.js';
import { caddySkip, startCaddy } from '../helpers/caddy.js';
import { formBody, hiddenField } from '../helpers/portal.js';
import { freePort, waitForPort } from '../helpers/ports.js';
import { findBinary, spawnDaemon, tmpDir, type TmpDir } from '../helpers/tmp.js';

const run = promisify(execFile);
const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');

const HOST = 'mail.example.org';
const CLIENT = '127.0.0.2';
const PASSWORD = 'amber lantern orchid gravel 1987';
const TESTED = ['nginx-full-proxy', 'nginx-auth-request', 'caddy-forward-auth', 'haproxy-proxy-protocol'];

// ---- the only things a test changes in a recipe -------------------------------------------------
/** The gateway's listener in the recipes. */
const GATEWAY_ADDR = '127.0.0.1:8080';
/** The app (upstream) in the recipes. */
const APP_ADDR = '10.1.1.5:8080';
/** nginx's public listener. */
const NGINX_LISTEN = 'listen 443 ssl;';
/** HAProxy's public listener. */
const HAPROXY_BIND = 'bind :443';
/** The gateways behind HAProxy (TLS at the gateway). */
const HAPROXY_GATEWAYS = ['10.0.0.10:8443', '10.0.0.11:8443'];
/** The certificate and key nginx serves. */
const TLS_CERT = '/etc/letsencrypt/live/mail.example.org/fullchain.pem';
const TLS_KEY = '/etc/letsencrypt/live/mail.example.org/privkey.pem';

/** The fenced block under `<!-- recipe: NAME -->`, exactly as printed. */
export function recipe(markdown: string, name: string): { lang: string; text: string } {
  const marker = `<!-- recipe: ${name} -->\n`;
  const at = markdown.indexOf(marker);
  if (at < 0) throw new Error(`README.md has no recipe "${name}"`);
  if (markdown.indexOf(marker, at + 1) >= 0) throw new Error(`README.md has two recipes named "${name}"`);
  const m = /^```([a-z]+)\n([\s\S]*?)\n```\n/.exec(markdown.slice(at + marker.length));
  if (!m) throw new Error(`the recipe marker "${name}" is not followed by a fenced block`);
  return { lang: m[1]!, text: `${m[2]!}\n` };
}

/** Replace each `from` by `to`; every `from` must occur (a recipe that changed must be looked at). */
export function substitute(text: string, subs: ReadonlyArray<readonly [string, string]>): string {
  let out = text;
  for (const [from, to] of subs) {
    if (!out.includes(from)) throw new Error(`the recipe no longer contains "${from}"; update the test's substitutions`);
    out = out.split(from).join(to);
  }
  return out;
}

test('every nginx, Caddy and HAProxy block in the README is a marked recipe, and every recipe is tested here', () => {
  const fences = [...README.matchAll(/(<!-- recipe: ([a-z0-9-]+) -->\n)?```(nginx|caddy|caddyfile|haproxy)\n/g)];
  assert.ok(fences.length >= TESTED.length);
  for (const f of fences) assert.ok(f[1], `an unmarked \`\`\`${f[3]} block in README.md at offset ${f.index}: mark it <!-- recipe: NAME --> and test it`);
  assert.deepEqual(fences.map((f) => f[2]).sort(), [...TESTED].sort());
  assert.throws(() => substitute('listen 80;', [[NGINX_LISTEN, 'x']]), /no longer contains/);
});

// ---- shared set-up --------------------------------------------------------------------------------
let up: Upstream;
let certs: TmpDir;
let cert: string;
let key: string;
let certPem: Buffer;

before(async () => {
  up = await startUpstream();
  certs = await tmpDir('pc-recipes-tls');
  cert = join(certs.dir, 'fullchain.pem');
  key = join(certs.dir, 'privkey.pem');
  await run('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${HOST}`, '-addext', `subjectAltName=DNS:${HOST}`,
  ]);
  certPem = await readFile(cert);
});
after(async () => {
  await up?.close();
  await certs?.cleanup();
});

function gatewayYaml(extra = ''): string {
  return `
${extra}
networks: { office: ["${CLIENT}/32"] }
apps:
  - name: webmail
    hosts: ["${HOST}"]
    upstream: "${up.url}"
    websocket: true
    rules:
      - { paths: ["/healthz"], policy: bypass }
      - { networks: [office], policy: password }
      - { policy: deny }
`;
}

const USERS = [{ name: 'alice', password: PASSWORD, groups: ['staff', 'mail'], email: 'alice@example.org' }];

// ---- a browser over TLS on a non-default port -----------------------------------------------------
interface Res {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

class Browser {
  readonly jar = new Map<string, string>();
  constructor(
    readonly port: number,
    readonly ca: Buffer,
  ) {}

  get origin(): string {
    return `https://${HOST}:${this.port}`;
  }

  cookieHeader(): string {
    return [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
  }

  request(method: string, target: string, o: { headers?: Record<string, string>; body?: string | Buffer } = {}): Promise<Res> {
    return new Promise((resolve, reject) => {
      const headers: Record<string, string | number> = { host: `${HOST}:${this.port}`, connection: 'close', ...(o.headers ?? {}) };
      const cookie = this.cookieHeader();
      if (cookie) headers['cookie'] = cookie;
      if (o.body !== undefined) headers['content-length'] = Buffer.byteLength(o.body);
      const req = httpsRequest(
        { host: '127.0.0.1', port: this.port, servername: HOST, ca: this.ca, localAddress: CLIENT, method, path: target, headers, agent: false },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            for (const line of res.headers['set-cookie'] ?? []) {
              const [pair, ...attrs] = line.split(';');
              const eq = pair!.indexOf('=');
              const name = pair!.slice(0, eq).trim();
              const value = pair!.slice(eq + 1).trim();
              const gone = value === '' || attrs.some((a) => /^\s*max-age=0\s*$/i.test(a));
              if (gone) this.jar.delete(name);
              else this.jar.set(name, value);
            }
            resolve({ status: res.statusCode!, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
          });
          res.on('error', reject);
        },
      );
      req.setTimeout(10_000, () => req.destroy(new Error(`${method} ${target}: no answer in 10 s`)));
      req.on('error', reject);
      req.end(o.body);
    });
  }

  navigate(target: string, headers: Record<string, string> = {}): Promise<Res> {
    return this.request('GET', target, { headers: { accept: 'text/html,application/xhtml+xml', ...headers } });
  }
}

/** Client-made identity, in the spellings a proxy or app might treat as the real thing. */
const FORGED: Record<string, string> = {
  'Remote-User': 'mallory',
  'remote_user': 'mallory',
  'Remote-Groups': 'admins',
  'Remote-Email': 'mallory@example.net',
  'Remote-Name': 'Mallory',
  'X-Portcullis-Assertion': 'forged',
  'x_portcullis_assertion': 'forged',
};

function noForgery(app: EchoBody, what: string): void {
  const raw = JSON.stringify(app.rawHeaders);
  assert.ok(!/mallory|Mallory|admins|forged/.test(raw), `${what}: a forged identity header reached the app: ${raw}`);
  assert.ok(!raw.includes('{http.'), `${what}: a literal Caddy placeholder reached the app: ${raw}`);
}

/**
 * The whole walk through a recipe: redirected to sign in, the login page, the POST on this port,
 * the app with the identity, a bypass path without one, an attachment and a WebSocket.
 */
async function signInThrough(port: number, ca: Buffer, gw: TestGateway, opts: { forwardedFor: boolean; requestId?: boolean }): Promise<void> {
  const b = new Browser(port, ca);
  const before = up.requests.length;

  // signed out: to the login page, the port kept
  const first = await b.navigate('/inbox?folder=1');
  assert.equal(first.status, 302, first.body);
  const login = new URL(String(first.headers.location), b.origin);
  assert.equal(login.origin, b.origin, `the redirect keeps the port: ${first.headers.location}`);
  assert.equal(login.pathname, '/.portcullis/login');
  // full proxy: `rd` is a path on this host; forward-auth: the whole URL, port included
  assert.equal(new URL(login.searchParams.get('rd') ?? '', b.origin).href, `${b.origin}/inbox?folder=1`);
  assert.equal(up.requests.length, before, 'nothing reached the app signed out');

  // the login page, then the POST with this origin
  const page = await b.navigate(login.pathname + login.search);
  assert.equal(page.status, 200, page.body);
  const csrf = hiddenField(page.body, 'csrf');
  assert.ok(csrf, 'the login page has its CSRF token');
  const fields: Record<string, string> = { csrf, username: 'alice', password: PASSWORD };
  const rd = hiddenField(page.body, 'rd');
  if (rd !== null) fields['rd'] = rd;
  // a genuine cross-origin POST through the same proxy is still refused, and audited with why
  const refusals: string[] = [];
  const off = gw.gw.rt.audit.on((e) => {
    if (e.event === 'csrf_refused') refusals.push(e.reason ?? '');
  });
  const cross = await b.request('POST', '/.portcullis/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: 'https://evil.example' },
    body: formBody(fields),
  });
  off();
  assert.equal(cross.status, 403, `a cross-origin POST on port ${port}: ${cross.status}`);
  assert.ok(!b.jar.has('__Host-portcullis'), 'no session from the cross-origin POST');
  assert.ok(refusals.some((r) => r.includes('evil.example')), `csrf_refused audited with the foreign origin: ${refusals.join(' | ')}`);
  const post = await b.request('POST', '/.portcullis/login', {
    headers: { 'content-type': 'application/x-www-form-urlencoded', origin: b.origin, referer: login.href },
    body: formBody(fields),
  });
  assert.equal(post.status, 303, `POST /.portcullis/login on port ${port}: ${post.status}\n${post.body}`);
  assert.equal(new URL(String(post.headers.location), b.origin).href, `${b.origin}/inbox?folder=1`);
  assert.ok(b.jar.has('__Host-portcullis'), `a Secure session cookie (the gateway knows it is https): ${[...b.jar.keys()].join(', ')}`);

  // the app, with the gateway's identity and nothing forged
  const inbox = await b.request('GET', '/inbox?folder=1', { headers: FORGED });
  assert.equal(inbox.status, 200, inbox.body);
  const app = JSON.parse(inbox.body) as EchoBody;
  assert.equal(app.url, '/inbox?folder=1');
  assert.equal(app.headers['remote-user'], 'alice');
  assert.equal(app.headers['remote-groups'], 'staff,mail');
  assert.equal(app.headers['remote-email'], 'alice@example.org');
  assert.ok(!app.headers['remote-name'], `alice has no display name: ${String(app.headers['remote-name'])}`);
  if (opts.forwardedFor) assert.equal(app.headers['x-forwarded-for'], CLIENT);
  // the gateway's own request id (made by it: the client sent none), passed on to the app
  if (opts.requestId) assert.match(String(app.headers['x-request-id']), /^[0-9a-f]{32}$/, 'the app receives the gateway\'s X-Request-Id');
  noForgery(app, 'signed in');
  const jwks = await b.request('GET', '/.portcullis/jwks.json');
  assert.equal(jwks.status, 200);
  const { payload } = await jwtVerify(String(app.headers['x-portcullis-assertion']), createLocalJWKSet(JSON.parse(jwks.body) as JSONWebKeySet), { issuer: 'portcullis', audience: 'webmail' });
  assert.equal(payload.sub, 'alice');
  assert.equal(payload['ip'], CLIENT);

  // a bypass rule: the app, and no identity at all, signed out
  const anon = new Browser(port, ca);
  const health = await anon.request('GET', '/healthz', { headers: FORGED });
  assert.equal(health.status, 200, health.body);
  const h = JSON.parse(health.body) as EchoBody;
  for (const name of ['remote-user', 'remote-groups', 'remote-email', 'remote-name', 'x-portcullis-assertion']) {
    assert.ok(!h.headers[name], `bypass: ${name} is ${JSON.stringify(h.headers[name])}`);
  }
  noForgery(h, 'bypass');

  // an attachment over nginx's default 1 MB
  const attachment = Buffer.alloc(2 * 1024 * 1024, 0x61);
  const upload = await b.request('POST', '/upload', { headers: { 'content-type': 'application/octet-stream' }, body: attachment });
  assert.equal(upload.status, 200, `2 MB upload: ${upload.status} ${upload.body.slice(0, 200)}`);
  assert.equal((JSON.parse(upload.body) as { bytes: number }).bytes, attachment.length);

  // a WebSocket through the recipe (nginx needs the Upgrade / Connection headers for it)
  const ws = new WebSocket(`wss://127.0.0.1:${port}/ws`, {
    servername: HOST,
    ca,
    localAddress: CLIENT,
    headers: { host: `${HOST}:${port}`, cookie: b.cookieHeader() },
  } as WebSocket.ClientOptions);
  const echoed = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error('WebSocket: no echo in 5 s')), 5_000);
    ws.once('open', () => ws.send('hello through the recipe'));
    ws.once('message', (m) => {
      clearTimeout(timer);
      resolve(String(m));
    });
    ws.once('unexpected-response', (_req, res) => reject(new Error(`WebSocket refused: ${res.statusCode}`)));
    ws.once('error', reject);
  });
  ws.close();
  assert.equal(echoed, 'hello through the recipe');
}

const NGINX = findBinary('nginx', ['/usr/sbin/nginx', '/usr/local/sbin/nginx']);

async function nginxTest(prefix: string): Promise<void> {
  const { stderr } = await run(NGINX!, ['-t', '-p', `${prefix}/`, '-c', join(prefix, 'nginx.conf'), '-e', 'stderr']);
  assert.match(stderr, /syntax is ok/);
  assert.match(stderr, /test is successful/);
}

// ---- the recipes ----------------------------------------------------------------------------------
for (const name of ['nginx-full-proxy', 'nginx-auth-request'] as const) {
  describe(`README recipe ${name}`, { skip: nginxSkip(), timeout: 60_000 }, () => {
    test('passes nginx -t and signs in end to end on a non-default port', async (t) => {
      const r = recipe(README, name);
      assert.equal(r.lang, 'nginx');
      const gw = await startTestGateway(gatewayYaml('trusted_proxies: ["127.0.0.1/32"]'), { users: USERS });
      t.after(() => gw.close());
      const port = await freePort();
      const conf = substitute(r.text, [
        [NGINX_LISTEN, `listen 127.0.0.1:${port} ssl;`],
        [GATEWAY_ADDR, `127.0.0.1:${gw.port}`],
        ...(name === 'nginx-auth-request' ? ([[APP_ADDR, `127.0.0.1:${up.port}`]] as const) : []),
        [TLS_CERT, cert],
        [TLS_KEY, key],
      ]);
      const ng = await startNginx({ port, config: conf });
      t.after(() => ng.stop());
      await nginxTest(ng.prefix);
      await signInThrough(port, certPem, gw, { forwardedFor: true, requestId: true });
    });
  });
}

describe('README recipe caddy-forward-auth', { skip: caddySkip(), timeout: 60_000 }, () => {
  test('Caddy 2.6 runs it and signs in end to end on a non-default port; no placeholder leaks on bypass', async (t) => {
    const r = recipe(README, 'caddy-forward-auth');
    assert.equal(r.lang, 'caddy');
    const gw = await startTestGateway(gatewayYaml('trusted_proxies: ["127.0.0.1/32"]'), { users: USERS });
    t.after(() => gw.close());
    const site = substitute(r.text, [
      [GATEWAY_ADDR, `127.0.0.1:${gw.port}`],
      [APP_ADDR, `127.0.0.1:${up.port}`],
    ]);
    const cd = await startCaddy({ site, host: HOST });
    t.after(() => cd.stop());
    try {
      await signInThrough(cd.port, cd.rootCert, gw, { forwardedFor: true });
    } catch (e) {
      throw e instanceof Error ? Object.assign(e, { message: `${e.message}\ncaddy output:\n${cd.output()}` }) : e;
    }
  });
});

const HAPROXY = findBinary('haproxy', ['/usr/sbin/haproxy', '/usr/local/sbin/haproxy']);

/** `show stat` on HAProxy's stats socket, as one record per proxy / server. */
function showStat(socketPath: string): Promise<Array<Record<string, string>>> {
  return new Promise((resolve, reject) => {
    const s = connect(socketPath);
    let text = '';
    s.on('connect', () => s.write('show stat\n'));
    s.on('data', (c: Buffer) => (text += c.toString('utf8')));
    s.on('error', reject);
    s.on('close', () => {
      const [head, ...lines] = text.trim().split('\n');
      const cols = (head ?? '').replace(/^# /, '').split(',');
      resolve(lines.map((l) => Object.fromEntries(l.split(',').map((v, i) => [cols[i] ?? String(i), v]))));
    });
  });
}

describe('README recipe haproxy-proxy-protocol', { skip: haproxySkip(), timeout: 60_000 }, () => {
  test('HAProxy passes TLS through with PROXY v2; the gateway decides on the client address and signs in end to end', async (t) => {
    const r = recipe(README, 'haproxy-proxy-protocol');
    assert.equal(r.lang, 'haproxy');
    const gw = await startTestGateway(
      gatewayYaml(`trusted_proxies: ["127.0.0.1/32"]\nproxy_protocol: true\ntls: { cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }`),
      { users: USERS },
    );
    t.after(() => gw.close());
    const port = await freePort();
    const dir = await tmpDir('pc-recipes-haproxy');
    t.after(() => dir.cleanup());
    const stats = join(dir.dir, 'stats.sock');
    const cfgText = [
      // the recipe is the frontend and backend; a deployment has its own global section (here
      // with a stats socket, to read what HAProxy's health checks found)
      'global',
      '  log stderr format raw local0 info',
      `  stats socket ${stats} level operator`,
      '',
      substitute(r.text, [
        [HAPROXY_BIND, `bind 127.0.0.1:${port}`],
        ...HAPROXY_GATEWAYS.map((g) => [g, `127.0.0.1:${gw.port}`] as const),
      ]),
    ].join('\n');
    const file = join(dir.dir, 'haproxy.cfg');
    await writeFile(file, cfgText);
    await run(HAPROXY!, ['-c', '-f', file]);
    const lb = spawnDaemon(HAPROXY!, ['-f', file, '-db'], { cwd: dir.dir });
    t.after(() => lb.stop());
    await waitForPort(port, {
      check: () => {
        const st = lb.exitStatus();
        if (st) throw new Error(`haproxy exited (${st.code ?? st.signal}):\n${lb.output()}`);
      },
    });
    try {
      await signInThrough(port, certPem, gw, { forwardedFor: true });
      // HAProxy's own health checks (PROXY header, TLS, GET /.portcullis/healthz) pass: layer 7 OK
      const deadline = Date.now() + 8_000;
      let rows: Array<Record<string, string>> = [];
      for (;;) {
        rows = await showStat(stats);
        const servers = rows.filter((row) => row['pxname'] === 'portcullis' && /^gw\d$/.test(row['svname'] ?? ''));
        if (servers.length === 2 && servers.every((row) => row['check_status'] === 'L7OK' && row['status'] === 'UP')) break;
        if (Date.now() > deadline) assert.fail(`HAProxy's health checks did not pass: ${JSON.stringify(servers)}`);
        await new Promise((res) => setTimeout(res, 200));
      }
    } catch (e) {
      throw e instanceof Error ? Object.assign(e, { message: `${e.message}\nhaproxy.cfg:\n${cfgText}\nhaproxy output:\n${lb.output()}` }) : e;
    }
  });
});
