/**
 * The end-to-end harness itself, over real sockets: if these fail, every e2e test built on the
 * helpers would prove nothing. Each helper is shown doing what the e2e tests rely on: HAProxy
 * really sends a PROXY v2 header, nginx really proxies and really enforces an auth_request answer,
 * Chromium really loads a page, the upstream really echoes, counts, streams and speaks WebSocket.
 */
import { strict as assert } from 'node:assert';
import { spawn } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { existsSync } from 'node:fs';
import { stat, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect, createServer as createTcpServer, type AddressInfo } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { WebSocket } from 'ws';
import { chromiumSkip, launchChromium } from '../helpers/chromium.js';
import { haproxySkip, startHaproxy } from '../helpers/haproxy.js';
import { authRequestConfig, nginxSkip, startNginx } from '../helpers/nginx.js';
import { freePort, waitForPort } from '../helpers/ports.js';
import { tmpDir, toolSkip } from '../helpers/tmp.js';
import { bigBodyByte, startUpstream, type EchoBody } from '../helpers/upstream.js';

interface Reply {
  status: number;
  headers: IncomingHttpHeaders;
  rawHeaders: string[];
  body: Buffer;
}

/** A plain HTTP/1.1 request with exactly the headers given (no redirects followed). */
function request(url: string, opts: { method?: string; headers?: Record<string, string>; body?: Buffer } = {}): Promise<Reply> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(url, { method: opts.method ?? 'GET', headers: opts.headers }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, headers: res.headers, rawHeaders: res.rawHeaders, body: Buffer.concat(chunks) }),
      );
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end(opts.body);
  });
}

function json<T>(r: Reply): T {
  return JSON.parse(r.body.toString('utf8')) as T;
}

/** How many times a header name occurs in raw headers, in any letter case. */
function countRaw(raw: readonly string[], name: string): number {
  let n = 0;
  for (let i = 0; i < raw.length; i += 2) if (raw[i]!.toLowerCase() === name.toLowerCase()) n++;
  return n;
}

// --- ports and tmp -------------------------------------------------------------------------------

test('freePort gives a loopback port that can be listened on; waitForPort sees it open', async () => {
  const port = await freePort();
  assert.ok(port > 0 && port < 65536);
  const srv = createTcpServer((s) => s.destroy());
  await new Promise<void>((r) => srv.listen(port, '127.0.0.1', r));
  try {
    await waitForPort(port, { timeoutMs: 2000 });
  } finally {
    await new Promise((r) => srv.close(r));
  }
  await assert.rejects(waitForPort(port, { timeoutMs: 100 }), /nothing accepted connections/);
});

test('tmpDir makes a private directory and cleanup removes it with its contents', async () => {
  const t = await tmpDir('portcullis-harness-');
  const st = await stat(t.dir);
  assert.ok(st.isDirectory());
  assert.equal(st.mode & 0o077, 0, 'not readable by others');
  await writeFile(join(t.dir, 'f'), 'x');
  await t.cleanup();
  assert.equal(existsSync(t.dir), false);
  await t.cleanup();
});

test('a missing tool skips the test on a developer machine but fails it in CI', (t) => {
  const saved = process.env.CI;
  t.after(() => {
    if (saved === undefined) delete process.env.CI;
    else process.env.CI = saved;
  });
  delete process.env.CI;
  assert.equal(toolSkip('haproxy', true), false);
  assert.match(String(toolSkip('haproxy', false)), /haproxy is not installed/);
  process.env.CI = 'true';
  assert.equal(toolSkip('haproxy', true), false);
  assert.throws(() => toolSkip('haproxy', false), /CI must run every end-to-end test/);
});

// --- upstream ------------------------------------------------------------------------------------

test('upstream echoes method, target and headers, and records every request', async (t) => {
  const up = await startUpstream({ name: 'mail' });
  t.after(() => up.close());
  assert.equal(up.requests.length, 0);
  const r = await request(`${up.url}/owa/inbox?folder=%2Fx`, {
    method: 'PUT',
    headers: { 'X-Test': 'one', 'content-type': 'text/plain' },
    body: Buffer.from('hello'),
  });
  assert.equal(r.status, 200);
  const echo = json<EchoBody>(r);
  assert.equal(echo.app, 'mail');
  assert.equal(echo.method, 'PUT');
  assert.equal(echo.url, '/owa/inbox?folder=%2Fx', 'the target exactly as sent');
  assert.equal(echo.headers['x-test'], 'one');
  assert.ok(echo.rawHeaders.includes('X-Test'), 'raw header case kept');
  assert.equal(echo.bodyBytes, 5);
  assert.equal(echo.remoteAddress, '127.0.0.1');
  assert.equal(up.requests.length, 1);
  assert.deepEqual(
    { method: up.requests[0]!.method, url: up.requests[0]!.url, upgrade: up.requests[0]!.upgrade },
    { method: 'PUT', url: '/owa/inbox?folder=%2Fx', upgrade: false },
  );
});

test('upstream /upload counts and hashes the body it received', async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());
  const body = randomBytes(3 * 1024 * 1024 + 17);
  const r = await request(`${up.url}/upload`, { method: 'POST', body });
  assert.equal(r.status, 200);
  assert.deepEqual(json(r), { bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') });
});

test('upstream /slow answers no sooner than asked', async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());
  const started = performance.now();
  const r = await request(`${up.url}/slow?ms=120`);
  assert.equal(r.status, 200);
  assert.ok(performance.now() - started >= 115, 'waited');
  assert.equal(json<EchoBody>(r).url, '/slow?ms=120');
  assert.equal((await request(`${up.url}/slow?ms=abc`)).status, 400);
});

test('upstream echoes WebSocket text and binary messages on any path', async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());
  const ws = new WebSocket(`${up.url.replace('http', 'ws')}/guacamole/websocket-tunnel?token=x`);
  t.after(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const next = (): Promise<{ data: Buffer; isBinary: boolean }> =>
    new Promise((resolve) => ws.once('message', (data, isBinary) => resolve({ data: data as Buffer, isBinary })));
  let reply = next();
  ws.send('5.mouse,1.0;');
  assert.deepEqual(await reply, { data: Buffer.from('5.mouse,1.0;'), isBinary: false });
  const bin = randomBytes(70_000);
  reply = next();
  ws.send(bin);
  const got = await reply;
  assert.equal(got.isBinary, true);
  assert.ok(got.data.equals(bin));
  const rec = up.requests.at(-1)!;
  assert.equal(rec.upgrade, true);
  assert.equal(rec.url, '/guacamole/websocket-tunnel?token=x');
});

test('upstream streams a 64 MiB download in constant memory', { timeout: 60_000 }, async () => {
  const SIZE = 64 * 1024 * 1024;
  // The upstream runs in a child process so its peak memory is measured alone.
  const moduleUrl = new URL('../helpers/upstream.js', import.meta.url).href;
  const script = `
    const { startUpstream } = await import(process.env.UPSTREAM_MODULE);
    const up = await startUpstream();
    process.stdout.write(JSON.stringify({ port: up.port, maxRssKiB: process.resourceUsage().maxRSS }) + '\\n');
    process.stdin.once('data', async () => {
      const maxRssKiB = process.resourceUsage().maxRSS;
      await up.close();
      process.stdout.write(JSON.stringify({ maxRssKiB }) + '\\n');
    });`;
  const child = spawn(process.execPath, ['--input-type=module', '-e', script], {
    env: { ...process.env, UPSTREAM_MODULE: moduleUrl },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  const lines: string[] = [];
  const waiters: Array<(l: string) => void> = [];
  let buf = '';
  child.stdout!.on('data', (c: Buffer) => {
    buf += c.toString('utf8');
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      const w = waiters.shift();
      if (w) w(line);
      else lines.push(line);
    }
  });
  const nextLine = (): Promise<string> => {
    const l = lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => waiters.push(r));
  };
  const exited = new Promise((r) => child.once('exit', r));
  try {
    const start = JSON.parse(await nextLine()) as { port: number; maxRssKiB: number };

    const hash = createHash('sha256');
    const { length, contentLength } = await new Promise<{ length: number; contentLength: string | undefined }>((resolve, reject) => {
      const req = httpRequest(`http://127.0.0.1:${start.port}/big?bytes=${SIZE}`, (res) => {
        let length = 0;
        res.on('data', (c: Buffer) => {
          length += c.length;
          hash.update(c);
        });
        res.on('end', () => resolve({ length, contentLength: res.headers['content-length'] }));
        res.on('error', reject);
      });
      req.on('error', reject);
      req.end();
    });
    assert.equal(contentLength, String(SIZE));
    assert.equal(length, SIZE);
    const expected = createHash('sha256');
    const chunk = Buffer.alloc(1 << 16);
    for (let i = 0; i < chunk.length; i++) chunk[i] = bigBodyByte(i);
    for (let off = 0; off < SIZE; off += chunk.length) expected.update(chunk);
    assert.equal(hash.digest('hex'), expected.digest('hex'), 'byte i is bigBodyByte(i)');

    child.stdin!.write('report\n');
    const end = JSON.parse(await nextLine()) as { maxRssKiB: number };
    const grewMiB = (end.maxRssKiB - start.maxRssKiB) / 1024;
    // Buffering the body, or writing it without backpressure, would grow the peak by >= 64 MiB.
    assert.ok(grewMiB < 24, `upstream peak memory grew by ${grewMiB.toFixed(1)} MiB while serving 64 MiB`);
  } finally {
    child.stdin!.end();
    child.kill();
    await exited;
  }
});

// --- HAProxy -------------------------------------------------------------------------------------

test('HAProxy with send-proxy-v2 prefixes the backend stream with a PROXY v2 header', { skip: haproxySkip(), timeout: 30_000 }, async (t) => {
  // A bare TCP backend that reads the header bytes itself, then echoes the payload after it.
  const received: Buffer[] = [];
  let connections = 0;
  const backend = createTcpServer((sock) => {
    connections++;
    let buf = Buffer.alloc(0);
    sock.on('data', (c: Buffer) => {
      buf = Buffer.concat([buf, c]);
      if (buf.length < 16) return;
      const len = buf.readUInt16BE(14);
      if (buf.length < 16 + len + 6) return; // header + "hello\n"
      received.push(buf);
      sock.end(Buffer.concat([Buffer.from('got:'), buf.subarray(16 + len)]));
    });
  });
  await new Promise<void>((r) => backend.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => backend.close(r)));
  const backendPort = (backend.address() as AddressInfo).port;

  const lb = await startHaproxy({ backend: { host: '127.0.0.1', port: backendPort }, sendProxyV2: true });
  t.after(() => lb.stop());
  assert.equal(connections, 0, 'the readiness probe never reached the backend');

  const reply = await new Promise<string>((resolve, reject) => {
    const c = connect({ host: '127.0.0.1', port: lb.port });
    let out = '';
    c.on('connect', () => c.write('hello\n'));
    c.on('data', (d: Buffer) => (out += d.toString('latin1')));
    c.on('end', () => resolve(out));
    c.on('error', reject);
  });
  assert.equal(reply, 'got:hello\n', lb.output());

  const h = received[0]!;
  assert.deepEqual([...h.subarray(0, 12)], [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a], 'v2 signature');
  assert.equal(h[12], 0x21, 'version 2, command PROXY');
  assert.equal(h[13], 0x11, 'TCP over IPv4');
  assert.equal([...h.subarray(16, 20)].join('.'), '127.0.0.1', 'source address');
  assert.equal([...h.subarray(20, 24)].join('.'), '127.0.0.1', 'destination address');
  assert.equal(h.readUInt16BE(26), lb.port, 'destination port is the frontend');
});

test('HAProxy in http mode adds X-Forwarded-For or Forwarded for the backend', { skip: haproxySkip(), timeout: 30_000 }, async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());
  const lb = await startHaproxy({ backend: { host: '127.0.0.1', port: up.port }, sourceHeader: 'x-forwarded-for' });
  t.after(() => lb.stop());
  const r = await request(`${lb.url}/x`);
  assert.equal(r.status, 200, lb.output());
  assert.equal(json<EchoBody>(r).headers['x-forwarded-for'], '127.0.0.1');
  assert.equal(up.requests.length, 1);

  // RFC 7239 Forwarded, to a backend on IPv6 loopback.
  const up6 = await startUpstream({ host: '::1' });
  t.after(() => up6.close());
  const lb6 = await startHaproxy({ backend: { host: '::1', port: up6.port }, sourceHeader: 'forwarded' });
  t.after(() => lb6.stop());
  const r6 = await request(`${lb6.url}/y`, { headers: { Forwarded: 'for=198.51.100.7' } });
  assert.equal(r6.status, 200, lb6.output());
  const echo6 = json<EchoBody>(r6);
  assert.equal(echo6.remoteAddress, '::1');
  assert.equal(echo6.headers.forwarded, 'for=198.51.100.7, for=127.0.0.1;proto=http', 'appended after the client\'s own');
});

// --- nginx ---------------------------------------------------------------------------------------

test('nginx proxies to the upstream', { skip: nginxSkip(), timeout: 30_000 }, async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());
  const ng = await startNginx({ config: (port) => `server {\n  listen 127.0.0.1:${port};\n  location / { proxy_pass ${up.url}; }\n}` });
  t.after(() => ng.stop());
  const r = await request(`${ng.url}/calendar/today?x=1`);
  assert.equal(r.status, 200, ng.output());
  assert.match(String(r.headers.server), /^nginx/);
  assert.equal(json<EchoBody>(r).url, '/calendar/today?x=1');
  assert.equal(up.requests.length, 1);
});

test('nginx auth_request config enforces the gateway answer and forwards its identity', { skip: nginxSkip(), timeout: 30_000 }, async (t) => {
  const app = await startUpstream({ name: 'app' });
  t.after(() => app.close());

  // A stand-in for the gateway's auth-request endpoint, answering per SPEC's contract.
  const authCalls: IncomingHttpHeaders[] = [];
  const gw = createHttpServer((req, res) => {
    if (req.url === '/.portcullis/login?rd=x') return void res.end('login form');
    if (req.url !== '/.portcullis/authz/auth-request') return void res.writeHead(404).end();
    authCalls.push(req.headers);
    const original = new URL(String(req.headers['x-original-url']));
    const cookie = String(req.headers.cookie ?? '');
    if (req.headers.authorization === 'Basic ' + Buffer.from('alice:app-password').toString('base64')) {
      return void res.writeHead(200, { 'Remote-User': 'alice' }).end();
    }
    if (!cookie.includes('session=good')) {
      if (original.pathname.startsWith('/Microsoft-Server-ActiveSync')) {
        return void res.writeHead(401, { 'WWW-Authenticate': 'Basic realm="mail"' }).end();
      }
      // Relative, as a gateway that knows only its own paths might answer; nginx makes it absolute.
      const location = `/.portcullis/login?rd=${encodeURIComponent(original.href)}`;
      return void res.writeHead(401, { Location: location }).end();
    }
    if (original.pathname.startsWith('/admin')) return void res.writeHead(403).end();
    res.writeHead(200, {
      'Remote-User': 'alice',
      'Remote-Groups': 'staff,remote-staff',
      'Remote-Email': 'alice@example.org',
      'Remote-Name': 'Alice Example',
      'X-Portcullis-Assertion': 'eyJ.test.sig',
    });
    res.end();
  });
  await new Promise<void>((r) => gw.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => gw.close(r)));
  const gatewayUrl = `http://127.0.0.1:${(gw.address() as AddressInfo).port}`;

  const ng = await startNginx({ config: (port) => authRequestConfig({ listenPort: port, gatewayUrl, appUrl: app.url }) });
  t.after(() => ng.stop());

  // Not signed in: redirected to the login page the gateway named; the app saw nothing.
  const anon = await request(`${ng.url}/inbox?id=7`, { headers: { 'X-Original-URL': 'http://evil.example/' } });
  assert.equal(anon.status, 302, ng.output());
  assert.equal(anon.headers.location, `${ng.url}/.portcullis/login?rd=${encodeURIComponent(`${ng.url}/inbox?id=7`)}`);
  assert.equal(app.requests.length, 0);
  const call = authCalls.at(-1)!;
  assert.equal(call['x-original-url'], `${ng.url}/inbox?id=7`, 'nginx sets X-Original-URL; the client cannot');
  assert.equal(call['x-original-method'], 'GET');
  assert.equal(call['x-forwarded-for'], '127.0.0.1');

  // The login page itself is served by the gateway through nginx.
  const login = await request(`${ng.url}/.portcullis/login?rd=x`);
  assert.equal(login.body.toString(), 'login form');

  // Signed in: the app gets the gateway's identity, never the client's forged one, and the body.
  const body = Buffer.from('{"subject":"hi"}');
  const ok = await request(`${ng.url}/api/send`, {
    method: 'POST',
    body,
    headers: {
      cookie: 'session=good',
      'Remote-User': 'mallory',
      remote_user: 'mallory',
      'Remote-Groups': 'admins',
      'X-Forwarded-For': '203.0.113.9',
      'content-type': 'application/json',
    },
  });
  assert.equal(ok.status, 200, ng.output());
  const echo = json<EchoBody>(ok);
  assert.equal(echo.headers['remote-user'], 'alice');
  assert.equal(countRaw(echo.rawHeaders, 'remote-user'), 1);
  assert.equal(countRaw(echo.rawHeaders, 'remote_user'), 0, 'underscore variant dropped');
  assert.equal(echo.headers['remote-groups'], 'staff,remote-staff');
  assert.equal(echo.headers['remote-email'], 'alice@example.org');
  assert.equal(echo.headers['remote-name'], 'Alice Example');
  assert.equal(echo.headers['x-portcullis-assertion'], 'eyJ.test.sig');
  assert.equal(echo.headers['x-forwarded-for'], '127.0.0.1', 'client-sent X-Forwarded-For replaced');
  assert.equal(echo.method, 'POST');
  assert.equal(echo.bodyBytes, body.length);
  const authPost = authCalls.at(-1)!;
  assert.equal(authPost['x-original-method'], 'POST');
  assert.equal(authPost['content-length'], undefined, 'the access check is sent without the body');

  // An identity header the gateway did not send is not passed on from the client either.
  app.requests.length = 0;
  const basic = await request(`${ng.url}/Microsoft-Server-ActiveSync?Cmd=Sync`, {
    method: 'POST',
    headers: { authorization: 'Basic ' + Buffer.from('alice:app-password').toString('base64'), 'Remote-Groups': 'admins' },
  });
  assert.equal(basic.status, 200);
  assert.equal(json<EchoBody>(basic).headers['remote-user'], 'alice');
  assert.equal(json<EchoBody>(basic).headers['remote-groups'], undefined);

  // Basic client with no credentials: 401 with the gateway's challenge, not a redirect.
  app.requests.length = 0;
  const challenge = await request(`${ng.url}/Microsoft-Server-ActiveSync?Cmd=Sync`, { method: 'POST' });
  assert.equal(challenge.status, 401);
  assert.equal(challenge.headers['www-authenticate'], 'Basic realm="mail"');
  assert.equal(challenge.headers.location, undefined);

  // Refused: 403, and the app never sees it.
  const denied = await request(`${ng.url}/admin/users`, { headers: { cookie: 'session=good' } });
  assert.equal(denied.status, 403);
  assert.equal(app.requests.length, 0);
});

test('nginx auth_request config passes WebSocket upgrades through after the check', { skip: nginxSkip(), timeout: 30_000 }, async (t) => {
  const app = await startUpstream();
  t.after(() => app.close());
  const gw = createHttpServer((req, res) => {
    res.writeHead(String(req.headers.cookie).includes('session=good') ? 200 : 401, { 'Remote-User': 'alice' }).end();
  });
  await new Promise<void>((r) => gw.listen(0, '127.0.0.1', r));
  t.after(() => new Promise((r) => gw.close(r)));
  const gatewayUrl = `http://127.0.0.1:${(gw.address() as AddressInfo).port}`;
  const ng = await startNginx({ config: (port) => authRequestConfig({ listenPort: port, gatewayUrl, appUrl: app.url }) });
  t.after(() => ng.stop());

  const ws = new WebSocket(`ws://127.0.0.1:${ng.port}/tunnel`, { headers: { cookie: 'session=good' } });
  t.after(() => ws.terminate());
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  const echoed = new Promise<string>((r) => ws.once('message', (d) => r(String(d))));
  ws.send('ping');
  assert.equal(await echoed, 'ping');
  assert.equal(app.requests.at(-1)!.headers['remote-user'], 'alice');

  const refused = new WebSocket(`ws://127.0.0.1:${ng.port}/tunnel`);
  const status = await new Promise<number>((resolve) => {
    refused.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    refused.once('open', () => resolve(101));
    refused.once('error', () => resolve(-1));
  });
  refused.terminate();
  assert.equal(status, 401);
  assert.equal(app.requests.filter((r) => r.upgrade).length, 1, 'the refused upgrade never reached the app');
});

// --- Chromium ------------------------------------------------------------------------------------

test('Chromium loads a page from the upstream', { skip: chromiumSkip(), timeout: 60_000 }, async (t) => {
  const up = await startUpstream();
  t.after(() => up.close());
  const browser = await launchChromium();
  t.after(() => browser.close());
  const page = await (await browser.newContext()).newPage();
  const res = await page.goto(`${up.url}/hello/from/chromium?x=1`);
  assert.equal(res?.status(), 200);
  const echo = JSON.parse(await page.locator('body').innerText()) as EchoBody;
  assert.equal(echo.method, 'GET');
  assert.equal(echo.url, '/hello/from/chromium?x=1');
  assert.match(String(echo.headers['user-agent']), /Chrome\//);
  assert.ok(up.requests.some((r) => r.url === '/hello/from/chromium?x=1'));
});
