/**
 * The PROXY-protocol listener over real sockets. A load balancer in TCP mode tells the gateway
 * who the client is only through the PROXY header, so: a trusted proxy's header is believed and
 * nothing else from it is served; anyone else who sends a header is cut off (it would be a forged
 * address), and direct clients are still served as themselves. The http server behind the
 * listener answers with the address `peerAddress()` reports, i.e. what the access rules would see.
 *
 * Loopback has the whole of 127.0.0.0/8, so "another machine" is a client bound to 127.0.0.2.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import * as http from 'node:http';
import * as https from 'node:https';
import { connect, type AddressInfo, type Server, type Socket } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import * as tls from 'node:tls';
import { promisify } from 'node:util';
import { CidrSet } from '../../src/net/cidr.js';
import { createListener, peerAddress } from '../../src/net/listener.js';
import { V2_SIGNATURE } from '../../src/net/proxy-protocol.js';
import { haproxySkip, startHaproxy } from '../helpers/haproxy.js';
import { tmpDir } from '../helpers/tmp.js';

const LOOPBACK = CidrSet.parse(['127.0.0.1/32']);
const ELSEWHERE = CidrSet.parse(['10.0.0.0/8']);

/** Answers every request with what the gateway would see of it. */
function whoami(req: http.IncomingMessage, res: http.ServerResponse): void {
  const chunks: Buffer[] = [];
  req.on('data', (c: Buffer) => chunks.push(c));
  req.on('end', () => {
    res.setHeader('content-type', 'application/json');
    res.end(JSON.stringify({ peer: peerAddress(req.socket), body: Buffer.concat(chunks).toString('latin1') }));
  });
}

interface Gateway {
  port: number;
  server: http.Server | https.Server;
  listener: Server;
  refused: string[];
  close(): Promise<void>;
}

async function startGateway(opts: {
  trusted: CidrSet;
  proxyProtocol: boolean;
  headerTimeoutMs?: number;
  server?: http.Server | https.Server;
}): Promise<Gateway> {
  const server = opts.server ?? http.createServer(whoami);
  const refused: string[] = [];
  const listener = createListener({
    server,
    trusted: () => opts.trusted,
    proxyProtocol: () => opts.proxyProtocol,
    headerTimeoutMs: opts.headerTimeoutMs ?? 2000,
    onRefused: (_peer, reason) => refused.push(reason),
  });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  const port = (listener.address() as AddressInfo).port;
  return {
    port,
    server,
    listener,
    refused,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((resolve) => listener.close(() => resolve()));
      server.close();
    },
  };
}

interface Exchange {
  /** Everything the server sent before the connection ended. */
  response: string;
}

/** Connect (optionally from another loopback address), write each chunk in turn, read until the server hangs up. */
async function exchange(port: number, chunks: Array<Buffer | string>, localAddress = '127.0.0.1'): Promise<Exchange> {
  const sock = connect({ host: '127.0.0.1', port, localAddress, noDelay: true });
  const received: Buffer[] = [];
  const ended = new Promise<void>((resolve) => {
    sock.on('data', (c: Buffer) => received.push(c));
    sock.on('error', () => resolve()); // a reset is a hang-up too
    sock.on('close', () => resolve());
  });
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  for (const c of chunks) {
    if (sock.destroyed) break;
    await new Promise<void>((resolve) => sock.write(c, () => resolve()));
    await new Promise((resolve) => setImmediate(resolve));
  }
  await ended;
  return { response: Buffer.concat(received).toString('latin1') };
}

const GET = 'GET / HTTP/1.1\r\nHost: mail.example.org\r\nConnection: close\r\n\r\n';

function bodyOf(response: string): { peer: string; body: string } {
  assert.match(response, /^HTTP\/1\.1 200 OK\r\n/, `unexpected response: ${JSON.stringify(response.slice(0, 200))}`);
  return JSON.parse(response.slice(response.indexOf('\r\n\r\n') + 4)) as { peer: string; body: string };
}

function v2Header(src: number[] | string, sport: number, opts: { local?: boolean } = {}): Buffer {
  const v6 = typeof src === 'string';
  const addr = Buffer.alloc(v6 ? 36 : 12);
  if (v6) {
    Buffer.from(src.replace(/:/g, ''), 'hex').copy(addr, 0);
    addr[31] = 1; // destination ::1
    addr.writeUInt16BE(sport, 32);
    addr.writeUInt16BE(443, 34);
  } else {
    Buffer.from(src).copy(addr, 0);
    Buffer.from([127, 0, 0, 1]).copy(addr, 4);
    addr.writeUInt16BE(sport, 8);
    addr.writeUInt16BE(443, 10);
  }
  const fixed = Buffer.from([opts.local ? 0x20 : 0x21, v6 ? 0x21 : 0x11, 0, addr.length]);
  return Buffer.concat([V2_SIGNATURE, fixed, addr]);
}

describe('listener with proxy_protocol on, the proxy trusted', { timeout: 20_000 }, () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({ trusted: LOOPBACK, proxyProtocol: true, headerTimeoutMs: 300 });
  });
  after(() => gw.close());

  it('reports the source of a PROXY v1 header as the client', async () => {
    const { response } = await exchange(gw.port, [`PROXY TCP4 192.0.2.10 127.0.0.1 51000 443\r\n${GET}`]);
    assert.equal(bodyOf(response).peer, '192.0.2.10');
  });

  it('reports the source of a PROXY v2 header, IPv4 and IPv6', async () => {
    assert.equal(bodyOf((await exchange(gw.port, [Buffer.concat([v2Header([198, 51, 100, 7], 40000), Buffer.from(GET)])])).response).peer, '198.51.100.7');
    const v6 = v2Header('20010db8000000000000000000000007', 40000);
    assert.equal(bodyOf((await exchange(gw.port, [v6, GET])).response).peer, '2001:db8::7');
  });

  it('reassembles a header that arrives in pieces, and keeps the bytes after it intact', async () => {
    const header = Buffer.from('PROXY TCP6 2001:db8::9 ::1 51000 443\r\n');
    const body = 'x'.repeat(5000) + '\r\n\r\nGET /not-a-request HTTP/1.1\r\n';
    const post = `POST /upload HTTP/1.1\r\nHost: mail.example.org\r\nContent-Length: ${body.length}\r\nConnection: close\r\n\r\n${body}`;
    const bytes = Buffer.concat([header, Buffer.from(post)]);
    // the header split mid-word, the rest of it glued to the request
    const chunks = [bytes.subarray(0, 3), bytes.subarray(3, 20), bytes.subarray(20, header.length + 10), bytes.subarray(header.length + 10)];
    const got = bodyOf((await exchange(gw.port, chunks)).response);
    assert.equal(got.peer, '2001:db8::9');
    assert.equal(got.body, body);
  });

  it('keeps the PROXY source for every request on a kept-alive connection', async () => {
    const keepAlive = 'GET /a HTTP/1.1\r\nHost: mail.example.org\r\n\r\n';
    const { response } = await exchange(gw.port, ['PROXY TCP4 192.0.2.33 127.0.0.1 1 443\r\n', keepAlive, keepAlive, GET]);
    const peers = [...response.matchAll(/"peer":"([^"]+)"/g)].map((m) => m[1]);
    assert.deepEqual(peers, ['192.0.2.33', '192.0.2.33', '192.0.2.33']);
  });

  it('uses the real peer for LOCAL (health checks) and UNKNOWN', async () => {
    assert.equal(bodyOf((await exchange(gw.port, [v2Header([192, 0, 2, 1], 1, { local: true }), GET])).response).peer, '127.0.0.1');
    assert.equal(bodyOf((await exchange(gw.port, [`PROXY UNKNOWN\r\n${GET}`])).response).peer, '127.0.0.1');
  });

  it('closes a connection from the proxy that does not start with a PROXY header', async () => {
    const before = gw.refused.length;
    assert.equal((await exchange(gw.port, [GET])).response, '');
    assert.equal((await exchange(gw.port, ['\u0016\u0003\u0001\u0000\u00a5\u0001'])).response, ''); // a TLS ClientHello
    assert.equal((await exchange(gw.port, ['garbage garbage garbage\r\n\r\n'])).response, '');
    assert.deepEqual(gw.refused.slice(before), Array(3).fill('trusted proxy did not send a PROXY header'));
  });

  it('closes a connection whose PROXY header is malformed', async () => {
    for (const bad of [
      `PROXY TCP4 192.0.2.010 127.0.0.1 51000 443\r\n${GET}`,
      `PROXY TCP4 192.0.2.10 127.0.0.1 51000 443\n${GET}`,
      `PROXY TCP6 192.0.2.10 ::1 51000 443\r\n${GET}`,
      `PROXY ${'x'.repeat(120)}\r\n${GET}`,
    ]) {
      assert.equal((await exchange(gw.port, [bad])).response, '', bad);
    }
    const truncatedV2 = v2Header([192, 0, 2, 1], 1);
    truncatedV2[15] = 200; // claims more address bytes than it sends before the request
    assert.equal((await exchange(gw.port, [Buffer.concat([truncatedV2, Buffer.from(GET)])])).response, '');
  });

  it('closes a connection that stays silent, or stops half-way through its header', async () => {
    const t0 = Date.now();
    assert.equal((await exchange(gw.port, [])).response, '');
    assert.equal((await exchange(gw.port, ['PROXY TCP4 192.0.2.10'])).response, '');
    assert.ok(Date.now() - t0 < 2000, 'closed by the 300 ms header timeout');
    assert.ok(gw.refused.includes('no PROXY header in time'));
  });
});

describe('listener with proxy_protocol on, the peer not trusted', { timeout: 20_000 }, () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({ trusted: ELSEWHERE, proxyProtocol: true });
  });
  after(() => gw.close());

  it('closes a connection that sends a PROXY header: it would be a forged address', async () => {
    assert.equal((await exchange(gw.port, [`PROXY TCP4 10.9.9.9 127.0.0.1 51000 443\r\n${GET}`])).response, '');
    assert.equal((await exchange(gw.port, [Buffer.concat([v2Header([10, 9, 9, 9], 1), Buffer.from(GET)])])).response, '');
    // even a bare signature is enough to refuse
    assert.equal((await exchange(gw.port, [V2_SIGNATURE])).response, '');
    assert.ok(gw.refused.length >= 3, `refusals recorded: ${JSON.stringify(gw.refused)}`);
    assert.ok(gw.refused.every((r) => r === 'PROXY header from a peer that is not a trusted proxy'));
  });

  it('serves plain HTTP as a direct client', async () => {
    assert.equal(bodyOf((await exchange(gw.port, [GET])).response).peer, '127.0.0.1');
    // byte by byte: the listener waits until it can tell a request from a header
    assert.equal(bodyOf((await exchange(gw.port, [...GET].map((c) => c))).response).peer, '127.0.0.1');
    assert.equal(bodyOf((await exchange(gw.port, ['PROPFIND / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n'])).response).peer, '127.0.0.1');
  });
});

describe('listener with proxy_protocol off', { timeout: 20_000 }, () => {
  let gw: Gateway;
  before(async () => {
    gw = await startGateway({ trusted: LOOPBACK, proxyProtocol: false });
  });
  after(() => gw.close());

  it('passes connections straight through; a PROXY header is just a bad request', async () => {
    assert.equal(bodyOf((await exchange(gw.port, [GET])).response).peer, '127.0.0.1');
    const { response } = await exchange(gw.port, [`PROXY TCP4 192.0.2.10 127.0.0.1 51000 443\r\n${GET}`]);
    assert.match(response, /^HTTP\/1\.1 400 /);
    assert.doesNotMatch(response, /192\.0\.2\.10/);
  });

  it('reports the peer from another loopback address as itself', async () => {
    assert.equal(bodyOf((await exchange(gw.port, [GET], '127.0.0.2')).response).peer, '127.0.0.2');
  });
});

describe('listener and the http server timeouts', { timeout: 20_000 }, () => {
  it('still enforces headersTimeout against clients that never finish their request', { timeout: 10_000 }, async () => {
    const server = http.createServer({ headersTimeout: 300, requestTimeout: 1000, connectionsCheckingInterval: 50 }, whoami);
    const gw = await startGateway({ trusted: ELSEWHERE, proxyProtocol: true, server });
    try {
      const t0 = Date.now();
      const { response } = await exchange(gw.port, ['GET / HTTP/1.1\r\nHost: mail.example.org\r\n']);
      assert.match(response, /^HTTP\/1\.1 408 /);
      assert.ok(Date.now() - t0 < 5000);
    } finally {
      await gw.close();
    }
  });
});

describe('listener in front of an https server', { timeout: 20_000 }, () => {
  let dir: { dir: string; cleanup(): Promise<void> };
  let creds: { key: Buffer; cert: Buffer };
  before(async () => {
    dir = await tmpDir('portcullis-tls-');
    const key = join(dir.dir, 'key.pem');
    const cert = join(dir.dir, 'cert.pem');
    await promisify(execFile)('openssl', [
      'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
      '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=localhost', '-addext', 'subjectAltName=IP:127.0.0.1',
    ]);
    creds = { key: await readFile(key), cert: await readFile(cert) };
  });
  after(() => dir.cleanup());

  /** Optionally send `preamble` in clear, then speak TLS (trusting only our cert) and GET /. */
  async function tlsGet(port: number, preamble: Buffer | null): Promise<{ peer: string }> {
    const raw = connect({ host: '127.0.0.1', port, noDelay: true });
    await new Promise<void>((resolve, reject) => {
      raw.once('connect', resolve);
      raw.once('error', reject);
    });
    if (preamble) raw.write(preamble);
    const sock = tls.connect({ socket: raw as Socket, ca: creds.cert, servername: 'localhost' });
    const received: Buffer[] = [];
    await new Promise<void>((resolve, reject) => {
      sock.once('secureConnect', () => sock.write(GET));
      sock.on('data', (c: Buffer) => received.push(c));
      sock.once('end', resolve);
      sock.once('error', reject);
    });
    sock.destroy();
    return bodyOf(Buffer.concat(received).toString('latin1'));
  }

  it('reports the PROXY source on the TLSSocket the https server hands to requests', async () => {
    const gw = await startGateway({ trusted: LOOPBACK, proxyProtocol: true, server: https.createServer(creds, whoami) });
    try {
      assert.equal((await tlsGet(gw.port, Buffer.from('PROXY TCP4 203.0.113.5 127.0.0.1 50000 443\r\n'))).peer, '203.0.113.5');
      assert.equal((await tlsGet(gw.port, v2Header('20010db8000000000000000000000042', 1))).peer, '2001:db8::42');
    } finally {
      await gw.close();
    }
  });

  it('reports the TCP peer of a direct TLS client', async () => {
    const gw = await startGateway({ trusted: ELSEWHERE, proxyProtocol: true, server: https.createServer(creds, whoami) });
    try {
      assert.equal((await tlsGet(gw.port, null)).peer, '127.0.0.1');
    } finally {
      await gw.close();
    }
  });
});

describe('listener behind a real HAProxy', { timeout: 20_000 }, () => {
  /** GET through HAProxy from 127.0.0.2, so the PROXY source differs from HAProxy's own address. */
  function getVia(port: number): Promise<{ peer: string }> {
    return new Promise((resolve, reject) => {
      const req = http.request({ host: '127.0.0.1', port, localAddress: '127.0.0.2', path: '/', headers: { connection: 'close' } }, (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve(JSON.parse(Buffer.concat(chunks).toString()) as { peer: string }));
      });
      req.on('error', reject);
      req.end();
    });
  }

  for (const version of ['v1', 'v2'] as const) {
    it(`believes HAProxy's send-proxy${version === 'v2' ? '-v2' : ''} header`, { skip: haproxySkip() }, async (t) => {
      const gw = await startGateway({ trusted: LOOPBACK, proxyProtocol: true });
      t.after(() => gw.close());
      const lb = await startHaproxy({ backend: { host: '127.0.0.1', port: gw.port }, sendProxyV1: version === 'v1', sendProxyV2: version === 'v2' });
      t.after(() => lb.stop());
      assert.equal((await getVia(lb.port)).peer, '127.0.0.2');
    });
  }
});
