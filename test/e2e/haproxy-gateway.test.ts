/**
 * The real gateway behind a real HAProxy sending PROXY protocol v2: the allowlist is decided on
 * the client address HAProxy reports, not on HAProxy's own. A client on the office address gets
 * through; the same HAProxy relaying a client from elsewhere is refused; and with HAProxy not in
 * trusted_proxies, its PROXY header is not believed (the connection is closed).
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { haproxySkip, startHaproxy, type Haproxy } from '../helpers/haproxy.js';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp, get } from '../helpers/raw-http.js';

let up: Upstream;
const skip = haproxySkip();

before(async () => {
  up = await startUpstream();
});
after(async () => {
  await up?.close();
});

function config(trusted: string): string {
  return `
trusted_proxies: ["${trusted}"]
proxy_protocol: true
networks:
  office: ["127.0.0.2/32"]
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { networks: [office], policy: bypass }
      - { policy: deny }
`;
}

test('behind HAProxy (send-proxy-v2) the gateway decides on the client address HAProxy reports', { skip }, async () => {
  const gw: TestGateway = await startTestGateway(config('127.0.0.1/32'));
  let lb: Haproxy | null = null;
  try {
    lb = await startHaproxy({ backend: { host: '127.0.0.1', port: gw.port }, sendProxyV2: true });
    const office = await rawHttp(lb.port, get('/inbox', 'mail.test'), { localAddress: '127.0.0.2' });
    assert.equal(office.status, 200);
    assert.equal(JSON.parse(office.body).headers['x-forwarded-for'], '127.0.0.2');
    const elsewhere = await rawHttp(lb.port, get('/inbox', 'mail.test'), { localAddress: '127.0.0.5' });
    assert.equal(elsewhere.status, 403);
  } finally {
    await lb?.stop();
    await gw.close();
  }
});

test('a PROXY header from a peer not in trusted_proxies is not believed', { skip }, async () => {
  const gw: TestGateway = await startTestGateway(config('10.0.0.0/8'));
  let lb: Haproxy | null = null;
  try {
    lb = await startHaproxy({ backend: { host: '127.0.0.1', port: gw.port }, sendProxyV2: true });
    const before = up.requests.length;
    const r = await rawHttp(lb.port, get('/inbox', 'mail.test'), { localAddress: '127.0.0.2' });
    assert.notEqual(r.status, 200);
    assert.equal(up.requests.length, before, 'nothing reached the app');
  } finally {
    await lb?.stop();
    await gw.close();
  }
});
