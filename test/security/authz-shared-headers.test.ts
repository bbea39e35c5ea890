/**
 * Forward-auth refusals must not share their header list. The plain node:http path appends
 * `content-length` to the answer's list before writing it; a refusal (403, 429, 400 from the
 * gate) once answered with the module's own `cache-control: no-store` list itself, so every
 * refusal appended to that one array: it grew by two entries per refused subrequest for the life
 * of the process (memory an attacker behind the trusted proxy could grow at will, a longer header
 * list to write each time), and every later answer built from it carried one `Content-Length`
 * per refusal so far, which nginx rejects ("upstream sent duplicate header line") as a 502.
 *
 * Here: many refused subrequests, then each kind of answer must carry exactly one
 * Content-Length and one Cache-Control.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { startUpstream, type Upstream } from '../helpers/upstream.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { rawHttp } from '../helpers/raw-http.js';

const PROXY = '127.0.0.1';
const OFFICE = '192.0.2.10';
const OUTSIDE = '198.51.100.7';
let up: Upstream;
let gw: TestGateway;

before(async () => {
  up = await startUpstream();
  gw = await startTestGateway(`
trusted_proxies: ["${PROXY}/32"]
networks: { office: ["${OFFICE}/32"] }
apps:
  - name: mail
    hosts: ["mail.test"]
    upstream: "${up.url}"
    rules:
      - { paths: ["/public"], policy: bypass }
      - { networks: [office], policy: password }
      - { policy: deny }
`);
});

after(async () => {
  await gw?.close();
  await up?.close();
});

function subrequest(mode: 'auth-request' | 'forward-auth', client: string, target: string): string {
  const head =
    mode === 'auth-request'
      ? [`X-Original-URL: http://mail.test${target}`, 'X-Original-Method: GET']
      : ['X-Forwarded-Proto: http', 'X-Forwarded-Host: mail.test', `X-Forwarded-Uri: ${target}`, 'X-Forwarded-Method: GET'];
  return [`GET /.portcullis/authz/${mode} HTTP/1.1`, 'Host: auth.test', 'Connection: close', `X-Forwarded-For: ${client}`, ...head, '', ''].join('\r\n');
}

/** How many times a header appears in a raw response head. */
function count(head: string, name: string): number {
  return head.split('\r\n').filter((l) => l.toLowerCase().startsWith(`${name}:`)).length;
}

test('refused subrequests leave the next answers with one Content-Length and one Cache-Control', async () => {
  for (let i = 0; i < 20; i++) {
    for (const mode of ['auth-request', 'forward-auth'] as const) {
      const r = await rawHttp(gw.port, subrequest(mode, OUTSIDE, '/inbox'));
      assert.equal(r.status, 403, `${mode}: refused by the deny rule`);
      assert.equal(count(r.head, 'content-length'), 1, `${mode} refusal ${i + 1}: one Content-Length`);
    }
  }
  // every kind of answer after them: refused, signed out (401 + Location), bypass (200)
  for (const mode of ['auth-request', 'forward-auth'] as const) {
    for (const [client, target, status] of [
      [OUTSIDE, '/inbox', 403],
      [OFFICE, '/inbox', 401],
      [OUTSIDE, '/public', 200],
    ] as const) {
      const r = await rawHttp(gw.port, subrequest(mode, client, target));
      assert.equal(r.status, status, `${mode} ${client} ${target}`);
      assert.equal(count(r.head, 'content-length'), 1, `${mode} ${client} ${target}: one Content-Length`);
      assert.equal(count(r.head, 'cache-control'), 1, `${mode} ${client} ${target}: one Cache-Control`);
    }
  }
});
