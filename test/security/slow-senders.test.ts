/**
 * Slow senders and connection hoarding (slowloris, slow POST / "R.U.D.Y.", slow read).
 *
 * The attack: open connections and keep them busy for nothing. Send headers a byte at a time
 * (slowloris, CVE-2007-6750 against Apache; Node's own CVE-2018-12122, which is why node grew
 * `headersTimeout`, and CVE-2019-5737 for keep-alive), send a sign-in form's body a byte every 20
 * seconds (the adversarial review held a login POST open for 150 s), stop reading a download, or
 * simply open thousands of sockets from one address. Each costs the attacker nothing and holds a
 * socket, a parser and, on the portal, a request handler in the gateway, until it runs out.
 *
 * The safe answer, as nginx draws it (client_header_timeout, client_body_timeout, send_timeout,
 * limit_conn): headers arrive within a time limit on every route; a portal or authz request
 * (under /.portcullis/, where no body is long) arrives whole within a time limit (408, closed); a
 * connection on which the client owes a byte (the rest of its request, or reading the response)
 * and sends or reads nothing for the idle limit is closed; one address holds a bounded number of
 * connections (the PROXY header's client when a trusted proxy sends one), and one more is closed
 * at once. What is not cut: a proxied upload or download that keeps moving however long it takes,
 * and a request waiting for a slow app (upstream_timeouts covers the app). The admin listener has
 * the same limits.
 *
 * Limits are injected short (hundreds of milliseconds) so nothing here sleeps long.
 */
import { test, before, after, describe } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawConnection, rawHttp, get } from '../helpers/raw-http.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const LIMITS = { headersMs: 300, requestMs: 300, idleMs: 450 };
/** Scheduling slack on a loaded CI machine. */
const SLACK = 1500;

let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(
    `
apps:
  - name: files
    hosts: ["files.test"]
    upstream: "${up.url}"
    rules:
      - { networks: ["127.0.0.0/8"], policy: bypass }
`,
    { connectionLimits: LIMITS },
  );
});

after(async () => {
  await gw?.close();
  await up?.close();
});

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function post(path: string, length: number, extra: string[] = []): string {
  return [`POST ${path} HTTP/1.1`, 'Host: files.test', 'Content-Type: application/x-www-form-urlencoded', `Content-Length: ${length}`, ...extra, '', ''].join('\r\n');
}

describe('the portal and authz routes: the whole request within requestMs', { concurrency: true, timeout: 20_000 }, () => {
  test('a sign-in POST whose body trickles in is answered 408 and closed at the limit', async () => {
    const c = rawConnection(gw.port);
    await c.ready;
    const body = `username=alice&password=${'x'.repeat(40)}`;
    c.write(post('/.portcullis/login', body.length));
    const sent = c.trickle(body, 100); // slower than requestMs allows, faster than idleMs
    const r = await c.closed;
    assert.equal(r.status, 408, r.head);
    assert.ok(r.ms < LIMITS.requestMs + SLACK, `held for ${r.ms} ms`);
    assert.ok((await sent) < body.length, 'the gateway stopped listening before the body was complete');
  });

  test('so is a forward-auth request carrying a trickling body', async () => {
    const c = rawConnection(gw.port);
    await c.ready;
    c.write(['GET /.portcullis/authz/forward-auth HTTP/1.1', 'Host: files.test', 'Content-Length: 40', '', ''].join('\r\n'));
    const sent = c.trickle('y'.repeat(40), 100);
    const r = await c.closed;
    assert.ok(r.ms < LIMITS.requestMs + SLACK, `held for ${r.ms} ms`);
    assert.ok((await sent) < 40);
  });

  test('a sign-in POST that arrives in time is served as before', async () => {
    const r = await rawHttp(gw.port, `${post('/.portcullis/login', 3, ['Connection: close'])}a=b`);
    assert.notEqual(r.status, 408);
    assert.ok(r.status >= 200 && r.status < 500, r.head);
  });
});

describe('every route: headers within headersMs, no idle connection', { concurrency: true, timeout: 20_000 }, () => {
  test('headers sent a byte at a time get 408 and the connection is closed', async () => {
    const c = rawConnection(gw.port);
    await c.ready;
    const head = `GET /quick HTTP/1.1\r\nHost: files.test\r\nX-Padding: ${'p'.repeat(60)}\r\n\r\n`;
    const sent = c.trickle(head, 100);
    const r = await c.closed;
    assert.ok(r.status === 408 || r.closedEmpty, r.head);
    assert.ok(r.ms < LIMITS.headersMs + SLACK, `held for ${r.ms} ms`);
    assert.ok((await sent) < head.length);
  });

  test('a connection that never sends a byte is closed', async () => {
    const c = rawConnection(gw.port);
    await c.ready;
    const r = await c.closed;
    assert.ok(r.ms < Math.max(LIMITS.headersMs, LIMITS.idleMs) + SLACK, `held for ${r.ms} ms`);
  });

  test('a proxied upload that stops moving is answered 408 and closed after idleMs', async () => {
    const c = rawConnection(gw.port);
    await c.ready;
    c.write(`${post('/upload', 100)}${'z'.repeat(10)}`);
    const r = await c.closed;
    assert.equal(r.status, 408, r.head);
    assert.ok(r.ms >= LIMITS.idleMs - 50 && r.ms < LIMITS.idleMs + SLACK, `closed after ${r.ms} ms`);
  });

  test('a client that stops reading a proxied download is cut off after idleMs', async () => {
    const total = 1024 ** 3;
    const c = rawConnection(gw.port, { read: false });
    await c.ready;
    c.write(get(`/big?bytes=${total}`, 'files.test'));
    // idleMs plus scheduling slack on a loaded machine: the buffers between app, gateway and
    // client must fill first, and only then does the connection go idle
    await sleep(LIMITS.idleMs * 3 + SLACK * 2);
    // now read whatever is there: a cut connection ends long before the whole GiB
    let received = 0;
    c.socket.on('data', (b: Buffer) => (received += b.length));
    c.socket.resume();
    const r = await c.closed;
    assert.ok(received < total / 4, `received ${received} bytes: the stalled download was not cut`);
    assert.ok(r.ms < LIMITS.idleMs * 3 + SLACK * 2 + 10_000);
  });
});

describe('what is not cut', { concurrency: true, timeout: 20_000 }, () => {
  test('a proxied upload that keeps moving outlives the portal limit many times over', async () => {
    const c = rawConnection(gw.port);
    await c.ready;
    const body = 'm'.repeat(14);
    c.write(post('/upload', body.length, ['Connection: close']));
    const started = Date.now();
    assert.equal(await c.trickle(body, 100), body.length);
    const r = await c.closed;
    assert.equal(r.status, 200, r.head);
    assert.equal((JSON.parse(r.body) as { bytes: number }).bytes, body.length);
    assert.ok(Date.now() - started > 4 * LIMITS.requestMs, 'the upload took longer than the portal limit');
  });

  test('waiting for a slow app is not the client being idle', async () => {
    const r = await rawHttp(gw.port, get('/slow?ms=1000', 'files.test'), { timeoutMs: 10_000 });
    assert.equal(r.status, 200, r.head);
  });

  test('a keep-alive connection serves request after request', async () => {
    const c = rawConnection(gw.port);
    await c.ready;
    const one = ['GET /quick HTTP/1.1', 'Host: files.test', '', ''].join('\r\n');
    c.write(one);
    await sleep(200);
    c.write(one);
    await sleep(200);
    c.write(get('/quick', 'files.test'));
    const r = await c.closed;
    assert.equal(r.status, 200);
    assert.equal(r.body.split('HTTP/1.1 200').length, 3, 'three answers on one connection');
  });
});

describe('connections per source', { concurrency: true, timeout: 20_000 }, () => {
  let capped: TestGateway;
  let proxied: TestGateway;

  before(async () => {
    capped = await startTestGateway(
      `
apps:
  - name: files
    hosts: ["files.test"]
    upstream: "${up.url}"
    rules:
      - { networks: ["127.0.0.0/8"], policy: bypass }
`,
      { connectionLimits: { maxPerSource: 3 } },
    );
    proxied = await startTestGateway(
      `
trusted_proxies: ["127.0.0.1/32"]
proxy_protocol: true
apps:
  - name: files
    hosts: ["files.test"]
    upstream: "${up.url}"
    rules:
      - { networks: ["203.0.113.0/24"], policy: bypass }
`,
      { connectionLimits: { maxPerSource: 2 } },
    );
  });

  after(async () => {
    await capped?.close();
    await proxied?.close();
  });

  test('one address holds at most maxPerSource connections; one more is closed at once; others are unaffected', async () => {
    const held = [rawConnection(capped.port), rawConnection(capped.port), rawConnection(capped.port)];
    await Promise.all(held.map((c) => c.ready));
    await sleep(50);
    const extra = await rawHttp(capped.port, get('/quick', 'files.test'));
    assert.equal(extra.closedEmpty, true, `the fourth connection was served: ${extra.head}`);
    // another address is counted on its own
    const other = await rawHttp(capped.port, get('/quick', 'files.test'), { localAddress: '127.0.0.2' });
    assert.equal(other.status, 200);
    // a closed connection frees its place
    held[0]!.destroy();
    await held[0]!.closed;
    let again = await rawHttp(capped.port, get('/quick', 'files.test'));
    for (let i = 0; i < 20 && again.closedEmpty; i++) {
      await sleep(25);
      again = await rawHttp(capped.port, get('/quick', 'files.test'));
    }
    assert.equal(again.status, 200);
    for (const c of held) c.destroy();
  });

  test('the admin listener has the same cap', async () => {
    const port = capped.gw.adminPort;
    const held = [rawConnection(port), rawConnection(port), rawConnection(port)];
    await Promise.all(held.map((c) => c.ready));
    await sleep(50);
    const extra = await rawHttp(port, get('/readyz', '127.0.0.1'));
    assert.equal(extra.closedEmpty, true, `the fourth admin connection was served: ${extra.head}`);
    for (const c of held) c.destroy();
  });

  test('behind a trusted proxy sending PROXY headers, the reported client is counted, not the proxy', async () => {
    const proxyLine = (src: string) => `PROXY TCP4 ${src} 127.0.0.1 50000 443\r\n`;
    const held = [rawConnection(proxied.port), rawConnection(proxied.port)];
    await Promise.all(held.map((c) => c.ready));
    for (const c of held) c.write(proxyLine('203.0.113.5'));
    await sleep(50);
    const third = await rawHttp(proxied.port, `${proxyLine('203.0.113.5')}${get('/quick', 'files.test')}`);
    assert.equal(third.closedEmpty, true, `a third connection for 203.0.113.5 was served: ${third.head}`);
    // the proxy's own address is not the one counted: another client through it is served
    const other = await rawHttp(proxied.port, `${proxyLine('203.0.113.6')}${get('/quick', 'files.test')}`);
    assert.equal(other.status, 200, other.head);
    for (const c of held) c.destroy();
  });
});

describe('the admin listener', { concurrency: true, timeout: 20_000 }, () => {
  test('headers a byte at a time: closed at the limit', async () => {
    const c = rawConnection(gw.gw.adminPort);
    await c.ready;
    const sent = c.trickle(`GET /readyz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Padding: ${'p'.repeat(60)}\r\n\r\n`, 100);
    const r = await c.closed;
    assert.ok(r.ms < LIMITS.headersMs + SLACK, `held for ${r.ms} ms`);
    assert.ok((await sent) < 80);
  });

  test('a request body that trickles (with the right token): 408 and closed, nothing done', async () => {
    const token = (await readFile(gw.gw.rt.config.admin.tokenFile, 'utf8')).trim();
    const c = rawConnection(gw.gw.adminPort);
    await c.ready;
    const body = `{"on":true,"by":"${'s'.repeat(21)}"}`;
    assert.equal(body.length, 40);
    c.write(['POST /api/lockdown HTTP/1.1', 'Host: 127.0.0.1', `Authorization: Bearer ${token}`, 'Content-Type: application/json', 'Content-Length: 40', '', ''].join('\r\n'));
    const sent = c.trickle(body, 100);
    const r = await c.closed;
    assert.ok(r.status === 408 || r.closedEmpty, r.head);
    assert.ok(r.ms < LIMITS.requestMs + SLACK, `held for ${r.ms} ms`);
    assert.ok((await sent) < 40);
    assert.equal(gw.gw.rt.lockdown.on, false);
  });
});

describe('over TLS', { concurrency: true, timeout: 20_000 }, () => {
  let dir: TmpDir;
  let secure: TestGateway;
  let ca: Buffer;

  before(async () => {
    dir = await tmpDir('pc-slow-tls');
    const key = join(dir.dir, 'key.pem');
    const cert = join(dir.dir, 'cert.pem');
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
    ]);
    ca = await readFile(cert);
    secure = await startTestGateway(
      `
tls: { cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }
apps:
  - name: files
    hosts: ["files.test"]
    upstream: "${up.url}"
    rules:
      - { networks: ["127.0.0.0/8"], policy: bypass }
`,
      { connectionLimits: LIMITS },
    );
  });

  after(async () => {
    await secure?.close();
    await dir?.cleanup();
  });

  test('a connection that never starts its TLS handshake is closed at the header limit', async () => {
    const c = rawConnection(secure.port);
    await c.ready;
    const r = await c.closed;
    assert.ok(r.ms < LIMITS.headersMs + SLACK, `held for ${r.ms} ms`);
  });

  test('after the handshake, headers a byte at a time are cut as over plain HTTP; a normal request is served', async () => {
    const s = tls.connect({ host: '127.0.0.1', port: secure.port, ca, servername: 'localhost' });
    await new Promise<void>((resolve, reject) => s.once('secureConnect', () => resolve()).once('error', reject));
    const started = Date.now();
    const closed = new Promise<number>((resolve) => s.once('close', () => resolve(Date.now() - started)));
    s.on('error', () => undefined);
    s.resume();
    const head = `GET /quick HTTP/1.1\r\nHost: files.test\r\nX-Padding: ${'p'.repeat(60)}\r\n\r\n`;
    let sent = 0;
    let open = true;
    void closed.then(() => (open = false));
    for (; sent < head.length && open; sent++) {
      s.write(head[sent]!);
      await sleep(100);
    }
    const ms = await closed;
    assert.ok(ms < LIMITS.headersMs + SLACK, `held for ${ms} ms`);
    assert.ok(sent < head.length);

    const ok = tls.connect({ host: '127.0.0.1', port: secure.port, ca, servername: 'localhost' });
    const answer = await new Promise<string>((resolve, reject) => {
      let text = '';
      ok.on('data', (b: Buffer) => (text += b.toString('latin1')));
      ok.once('end', () => resolve(text));
      ok.once('error', reject);
      ok.once('secureConnect', () => ok.write(get('/quick', 'files.test')));
    });
    assert.match(answer, /^HTTP\/1\.1 200 /);
  });
});
