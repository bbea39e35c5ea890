/**
 * Observability (issue 14, item 6) on a real gateway over real sockets: the access log (one JSON
 * line per proxied request, forward-auth subrequest and portal request; never a query string;
 * nothing written when it is off, the default), the request id (a trusted proxy's well-formed
 * X-Request-Id or traceparent is kept; a client's own, or a malformed one, is replaced; the app
 * gets it, forward-auth returns it, audit events carry it), the metrics (`portcullis_build_info`,
 * `portcullis_decisions_total` for proxied and forward-auth decisions) and `apps[].assertion: false`.
 */
import { strict as assert } from 'node:assert';
import { existsSync } from 'node:fs';
import { readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { request } from 'undici';
import { request as httpRequest } from 'node:http';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';
import { PortalClient } from '../helpers/portal.js';
import { get, rawHttp } from '../helpers/raw-http.js';

const OFFICE = '127.0.0.1';
const PROXY = '127.0.0.3';
const ELSEWHERE = '127.0.0.7';
const PASSWORD = 'correct horse battery staple';
const MADE_ID = /^[0-9a-f]{32}$/;

let up: Upstream;
let gw: TestGateway;
let mailCookie: string;
let plainCookie: string;

let logs: TmpDir;
const accessFile = () => join(logs.dir, 'logs', 'access.jsonl');

function config(upstream: string, accessLog: boolean): string {
  return `
trusted_proxies: ["${PROXY}/32"]
networks: { office: ["${OFFICE}/32"] }
${accessLog ? `access_log: { file: ${JSON.stringify(accessFile())} }` : ''}
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${upstream}"
    websocket: true
    rules:
      - { paths: ["/public/**"], policy: bypass }
      - { networks: [office], policy: password }
      - { policy: deny }
  - name: plain
    hosts: ["plain.test"]
    upstream: "${upstream}"
    assertion: false
    rules:
      - { networks: [office], policy: password }
`;
}

async function signIn(host: string): Promise<string> {
  const c = new PortalClient(gw.port, host);
  const r = await c.login('alice', PASSWORD, '/');
  assert.equal(r.status, 303, r.head);
  const [name, value] = [...c.jar].find(([k]) => k.includes('session'))!;
  return `${name}=${value}`;
}

type Line = Record<string, unknown>;

/** The access log's lines so far. */
async function accessLines(): Promise<Line[]> {
  const file = accessFile();
  if (!existsSync(file)) return [];
  return (await readFile(file, 'utf8')).split('\n').filter(Boolean).map((l) => JSON.parse(l) as Line);
}

/** The first line `match` accepts, once it has been written (lines go out in batches: poll, 5 s at most). */
async function lineWhere(match: (l: Line) => boolean): Promise<Line> {
  for (let i = 0; i < 250; i++) {
    const hit = (await accessLines()).find(match);
    if (hit) return hit;
    await new Promise((r) => setTimeout(r, 20));
  }
  throw new Error('no such access log line');
}

function last<T>(xs: T[]): T {
  return xs[xs.length - 1]!;
}

before(async () => {
  logs = await tmpDir('pc-access-log');
  up = await startUpstream();
  gw = await startTestGateway(config(up.url, true));
  mailCookie = await signIn('mail.test');
  plainCookie = await signIn('plain.test');
});
after(async () => {
  await gw?.close();
  await up?.close();
  await logs?.cleanup();
});

describe('the access log', () => {
  test('a proxied request: one line with every field, the path without its query string', async () => {
    const r = await rawHttp(gw.port, get('/inbox/a1?token=SECRET-IN-QUERY', 'mail.test', [`Cookie: ${mailCookie}`]), { localAddress: OFFICE });
    assert.equal(r.status, 200, r.head);
    const sent = last(up.requests);
    const line = await lineWhere((l) => l['path'] === '/inbox/a1');
    assert.equal(line['mode'], 'proxy');
    assert.equal(line['request_id'], sent.headers['x-request-id']);
    assert.match(String(line['request_id']), MADE_ID);
    assert.equal(line['client_ip'], OFFICE);
    assert.equal(line['host'], 'mail.test');
    assert.equal(line['method'], 'GET');
    assert.equal(line['app'], 'mail');
    assert.equal(line['decision'], 'allow');
    assert.equal(line['policy'], 'password');
    assert.equal(line['rule'], 1);
    assert.equal(line['status'], 200);
    assert.equal(typeof line['duration_ms'], 'number');
    assert.equal(typeof line['upstream_ms'], 'number');
    assert.ok(!Number.isNaN(Date.parse(String(line['time']))));
    const text = await readFile(accessFile(), 'utf8');
    assert.ok(!text.includes('SECRET-IN-QUERY'), 'a query string reached the access log');
    assert.ok(!text.includes(mailCookie.split('=')[1]!), 'a session cookie reached the access log');
  });

  test('a forward-auth subrequest: a line for the original request, its query string left out', async () => {
    const r = await rawHttp(
      gw.port,
      get('/.portcullis/authz/forward-auth', 'auth.internal', [
        'X-Forwarded-Proto: http',
        'X-Forwarded-Host: mail.test',
        'X-Forwarded-Uri: /inbox/7?code=SECRET-FA',
        'X-Forwarded-Method: GET',
        `X-Forwarded-For: ${OFFICE}`,
        'X-Request-Id: nginx-req-0001',
        `Cookie: ${mailCookie}`,
      ]),
      { localAddress: PROXY },
    );
    assert.equal(r.status, 200, r.head);
    assert.match(r.head, /^x-request-id: nginx-req-0001$/im);
    assert.match(r.head, /^remote-user: alice$/im);
    const line = await lineWhere((l) => l['request_id'] === 'nginx-req-0001');
    assert.deepEqual(
      { mode: line['mode'], id: line['request_id'], ip: line['client_ip'], host: line['host'], path: line['path'], app: line['app'], decision: line['decision'], status: line['status'] },
      { mode: 'forward-auth', id: 'nginx-req-0001', ip: OFFICE, host: 'mail.test', path: '/inbox/7', app: 'mail', decision: 'allow', status: 200 },
    );
    assert.equal(line['upstream_ms'], null);
    const text = await readFile(accessFile(), 'utf8');
    assert.ok(!text.includes('SECRET-FA'));
  });

  test('refusals are logged with their decision: login, deny', async () => {
    const anon = await rawHttp(gw.port, get('/inbox/r1', 'mail.test'), { localAddress: OFFICE });
    assert.equal(anon.status, 401);
    assert.equal((await lineWhere((l) => l['path'] === '/inbox/r1'))['decision'], 'login');
    const away = await rawHttp(gw.port, get('/inbox/r2', 'mail.test', [`Cookie: ${mailCookie}`]), { localAddress: ELSEWHERE });
    assert.equal(away.status, 403);
    const line = await lineWhere((l) => l['path'] === '/inbox/r2');
    assert.equal(line['decision'], 'deny');
    assert.equal(line['status'], 403);
    assert.equal(line['client_ip'], ELSEWHERE);
  });

  test('a portal request gets a line too', async () => {
    const r = await rawHttp(gw.port, get('/.portcullis/login?rd=%2Fsecret-rd', 'mail.test', [`X-Forwarded-For: ${OFFICE}`, 'X-Request-Id: portal-line-1']), { localAddress: PROXY });
    assert.equal(r.status, 200);
    const line = await lineWhere((l) => l['request_id'] === 'portal-line-1');
    assert.equal(line['client_ip'], OFFICE);
    assert.equal(line['mode'], 'portal');
    assert.equal(line['path'], '/.portcullis/login');
    assert.equal(line['status'], 200);
  });

  test('off by default: nothing is written', async () => {
    const quiet = await startTestGateway(config(up.url, false));
    try {
      assert.equal(quiet.gw.accessLog?.on, false);
      const r = await rawHttp(quiet.port, get('/public/x?q=1', 'mail.test'), { localAddress: OFFICE });
      assert.equal(r.status, 200);
      assert.equal(quiet.gw.rt.config.accessLog.file, null);
      const data = await readdir(join(quiet.dir.dir, 'data'));
      assert.deepEqual(data.filter((f) => f.includes('access')), []);
    } finally {
      await quiet.close();
    }
  });
});

describe('the request id', () => {
  test("a client's own X-Request-Id never reaches the app: a new one is made", async () => {
    const r = await rawHttp(gw.port, get('/public/a', 'mail.test', ['X-Request-Id: client-chosen-id', 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']), { localAddress: OFFICE });
    assert.equal(r.status, 200);
    const id = last(up.requests).headers['x-request-id'];
    assert.match(String(id), MADE_ID);
    assert.notEqual(id, '0af7651916cd43dd8448eb211c80319c');
  });

  test('a spelling variant of X-Request-Id from a client is dropped too', async () => {
    await rawHttp(gw.port, get('/public/b', 'mail.test', ['X_Request_Id: sneaky']), { localAddress: OFFICE });
    const sent = last(up.requests);
    assert.ok(!sent.rawHeaders.some((h) => h === 'sneaky'));
  });

  test("a trusted proxy's well-formed X-Request-Id is passed through; else its traceparent's trace id", async () => {
    await rawHttp(gw.port, get('/public/c', 'mail.test', [`X-Forwarded-For: ${OFFICE}`, 'X-Request-Id: 6f1c2a7e-3b1d-4c55-9a1e-0d2b7c9e4f10']), { localAddress: PROXY });
    assert.equal(last(up.requests).headers['x-request-id'], '6f1c2a7e-3b1d-4c55-9a1e-0d2b7c9e4f10');
    await rawHttp(gw.port, get('/public/d', 'mail.test', [`X-Forwarded-For: ${OFFICE}`, 'traceparent: 00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01']), { localAddress: PROXY });
    assert.equal(last(up.requests).headers['x-request-id'], '0af7651916cd43dd8448eb211c80319c');
  });

  test("a trusted proxy's malformed id is refused and replaced", async () => {
    for (const bad of ['has space', 'x'.repeat(129), 'semi;colon', '<script>', '-leading-dash']) {
      await rawHttp(gw.port, get('/public/e', 'mail.test', [`X-Forwarded-For: ${OFFICE}`, `X-Request-Id: ${bad}`]), { localAddress: PROXY });
      assert.match(String(last(up.requests).headers['x-request-id']), MADE_ID, bad);
    }
    for (const tp of ['00-00000000000000000000000000000000-b7ad6b7169203331-01', 'ff-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01', '00-0AF7651916CD43DD8448EB211C80319C-b7ad6b7169203331-01']) {
      await rawHttp(gw.port, get('/public/f', 'mail.test', [`X-Forwarded-For: ${OFFICE}`, `traceparent: ${tp}`]), { localAddress: PROXY });
      assert.match(String(last(up.requests).headers['x-request-id']), MADE_ID, tp);
    }
  });

  test('a WebSocket upgrade reaches the app with the request id too', async () => {
    const sent = await new Promise<string | undefined>((resolve, reject) => {
      const r = httpRequest({
        host: '127.0.0.1',
        port: gw.port,
        path: '/public/ws',
        localAddress: OFFICE,
        headers: { host: 'mail.test', connection: 'Upgrade', upgrade: 'websocket', 'sec-websocket-version': '13', 'sec-websocket-key': 'dGhlIHNhbXBsZSBub25jZQ==', 'x-request-id': 'client-ws-id' },
      });
      r.on('upgrade', (_res, socket) => {
        socket.destroy();
        resolve(last(up.requests).headers['x-request-id'] as string | undefined);
      });
      r.on('response', (res) => reject(new Error(`no upgrade: ${res.statusCode}`)));
      r.on('error', reject);
      r.end();
    });
    assert.match(String(sent), MADE_ID);
  });

  test('an audit event raised by a request carries its id', async () => {
    // (another source than the earlier refusals: identical refusals within a minute are one aggregate line)
    const r = await rawHttp(gw.port, get('/inbox', 'mail.test', ['X-Forwarded-For: 127.0.0.8', 'X-Request-Id: audit-me-42']), { localAddress: PROXY });
    assert.equal(r.status, 403);
    const e = gw.gw.rt.audit.recent(5).find((x) => x.request_id === 'audit-me-42');
    assert.ok(e, 'no audit event with the request id');
    assert.equal(e.ip, '127.0.0.8');
    const file = await readFile(join(gw.dir.dir, 'data', 'audit.jsonl'), 'utf8');
    assert.match(file, /"request_id":"audit-me-42"/);
  });
});

describe('apps[].assertion', () => {
  test('on (the default): the app gets the signed assertion; off: none, the identity headers still', async () => {
    await rawHttp(gw.port, get('/x', 'mail.test', [`Cookie: ${mailCookie}`]), { localAddress: OFFICE });
    const withA = last(up.requests);
    assert.equal(withA.headers['remote-user'], 'alice');
    assert.match(String(withA.headers['x-portcullis-assertion']), /^ey[\w-]+\.[\w-]+\.[\w-]+$/);
    await rawHttp(gw.port, get('/x', 'plain.test', [`Cookie: ${plainCookie}`]), { localAddress: OFFICE });
    const without = last(up.requests);
    assert.equal(without.headers['remote-user'], 'alice');
    assert.equal(without.headers['x-portcullis-assertion'], undefined);
  });

  test('off, behind forward-auth: the assertion header is present and empty (a copying proxy overwrites a forged one)', async () => {
    const r = await rawHttp(
      gw.port,
      get('/.portcullis/authz/auth-request', 'auth.internal', ['X-Original-URL: http://plain.test/x', `X-Forwarded-For: ${OFFICE}`, `Cookie: ${plainCookie}`]),
      { localAddress: PROXY },
    );
    assert.equal(r.status, 200, r.head);
    assert.match(r.head, /^x-portcullis-assertion: *$/im);
    assert.match(r.head, /^remote-user: alice$/im);
  });
});

describe('metrics', () => {
  test('build info, and decisions counted for proxied requests and forward-auth alike', async () => {
    const scrape = async () => (await (await request(`http://127.0.0.1:${gw.gw.adminPort}/metrics`)).body.text());
    const count = (text: string, labels: string) => Number(new RegExp(`^portcullis_decisions_total\\{${labels}\\} (\\d+)$`, 'm').exec(text)?.[1] ?? 0);
    const before = await scrape();
    assert.match(before, /^portcullis_build_info\{version="\d+\.\d+\.\d+[^"]*",node="v\d+\.\d+\.\d+"\} 1$/m);
    const allow = 'app="mail",policy="password",outcome="allow"';
    const n0 = count(before, allow);
    await rawHttp(gw.port, get('/inbox', 'mail.test', [`Cookie: ${mailCookie}`]), { localAddress: OFFICE });
    await rawHttp(
      gw.port,
      get('/.portcullis/authz/auth-request', 'auth.internal', ['X-Original-URL: http://mail.test/inbox', `X-Forwarded-For: ${OFFICE}`, `Cookie: ${mailCookie}`]),
      { localAddress: PROXY },
    );
    const text = await scrape();
    assert.equal(count(text, allow), n0 + 2);
    assert.ok(count(text, 'app="mail",policy="password",outcome="login"') >= 1);
    assert.ok(count(text, 'app="mail",policy="deny",outcome="deny"') >= 1);
    // labels come from the config: a made-up host adds no app label
    await rawHttp(gw.port, get('/', 'made-up-host.test'), { localAddress: OFFICE });
    assert.doesNotMatch(await scrape(), /made-up-host/);
  });
});
