/**
 * `portcullis healthcheck`, the container's HEALTHCHECK: exit 0 when the gateway configured by
 * `--config` (or `$PORTCULLIS_CONFIG`) answers /.portcullis/healthz on its own listener — plain
 * HTTP, TLS (`tls:`), and a listener that expects a PROXY header from loopback
 * (`proxy_protocol: true` with 127.0.0.1 trusted) — and 1, quickly, when nothing listens, when
 * something else answers, or when nothing answers within `--timeout`.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createServer, type Server } from 'node:net';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { runCommand } from '../helpers/cli.js';
import { startTestGateway, type TestGateway } from '../helpers/gateway.js';
import { freePort } from '../helpers/ports.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';
import { probeTarget } from '../../src/cli/commands/healthcheck.js';
import { CidrSet } from '../../src/net/cidr.js';

const APPS = `apps:
  - { name: app, hosts: [app.test], upstream: "builtin:whoami", rules: [{ policy: password }] }
`;

let dir: TmpDir;
let cert: string;
let key: string;

before(async () => {
  dir = await tmpDir('pc-healthcheck');
  cert = join(dir.dir, 'cert.pem');
  key = join(dir.dir, 'key.pem');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', '/CN=mail.example.org', '-addext', 'subjectAltName=DNS:mail.example.org',
  ]);
});
after(() => dir?.cleanup());

/** A gateway listening on a fixed port written in its config, as a deployment has it. */
async function gatewayOnFixedPort(extra: string): Promise<{ tg: TestGateway; port: number }> {
  const port = await freePort();
  const tg = await startTestGateway(`listen: "127.0.0.1:${port}"\n${extra}\n${APPS}`, { port });
  assert.equal(tg.port, port);
  return { tg, port };
}

test('plain HTTP: exit 0 and one line on stdout; $PORTCULLIS_CONFIG is the default config', async () => {
  const { tg, port } = await gatewayOnFixedPort('');
  try {
    const r = await runCommand(['healthcheck', '--config', tg.configFile]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`^ok: http://127\\.0\\.0\\.1:${port}/\\.portcullis/healthz answered 200 in \\d+ ms\\n$`));
    const viaEnv = await runCommand(['healthcheck'], { env: { PORTCULLIS_CONFIG: tg.configFile } });
    assert.equal(viaEnv.code, 0, viaEnv.err);
  } finally {
    await tg.close();
  }
});

test('TLS listener: probed over https (the certificate names the public host, not loopback)', async () => {
  const { tg, port } = await gatewayOnFixedPort(`tls: { cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }`);
  try {
    const r = await runCommand(['healthcheck', '--config', tg.configFile]);
    assert.equal(r.code, 0, r.err);
    assert.match(r.out, new RegExp(`^ok: https://127\\.0\\.0\\.1:${port}/`));
  } finally {
    await tg.close();
  }
});

test('proxy_protocol with loopback trusted: the probe sends a PROXY header first (TLS or not)', async () => {
  for (const tls of ['', `tls: { cert: ${JSON.stringify(cert)}, key: ${JSON.stringify(key)} }`]) {
    const { tg } = await gatewayOnFixedPort(`trusted_proxies: ["127.0.0.1/32"]\nproxy_protocol: true\n${tls}`);
    try {
      const r = await runCommand(['healthcheck', '--config', tg.configFile]);
      assert.equal(r.code, 0, `${tls ? 'TLS' : 'plain'}: ${r.err}`);
    } finally {
      await tg.close();
    }
  }
  // proxy_protocol on but loopback not trusted: plain HTTP, no header (it would be refused)
  const { tg } = await gatewayOnFixedPort('trusted_proxies: ["192.0.2.10/32"]\nproxy_protocol: true');
  try {
    assert.equal((await runCommand(['healthcheck', '--config', tg.configFile])).code, 0);
  } finally {
    await tg.close();
  }
});

async function configFor(port: number): Promise<string> {
  const file = join(dir.dir, `c-${port}.yaml`);
  await writeFile(file, `listen: "127.0.0.1:${port}"\ndata_dir: ${JSON.stringify(join(dir.dir, 'data'))}\nusers_file: ${JSON.stringify(join(dir.dir, 'users.yaml'))}\n${APPS}`);
  return file;
}

test('exit 1 when nothing listens, when something else answers, and within --timeout when nothing answers', async (t) => {
  const closed = await runCommand(['healthcheck', '--config', await configFor(await freePort())]);
  assert.equal(closed.code, 1);
  assert.match(closed.err, /connection refused/);

  const servers: Server[] = [];
  t.after(() => servers.forEach((s) => s.close()));
  const listen = async (onConn: (s: import('node:net').Socket) => void): Promise<number> => {
    const srv = createServer(onConn);
    servers.push(srv);
    await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
    return (srv.address() as { port: number }).port;
  };
  const notOk = await listen((s) => s.end('HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\nconnection: close\r\n\r\n'));
  const r503 = await runCommand(['healthcheck', '--config', await configFor(notOk)]);
  assert.equal(r503.code, 1);
  assert.match(r503.err, /answered 503/);

  const garbage = await listen((s) => s.end('SSH-2.0-OpenSSH\r\n'));
  assert.equal((await runCommand(['healthcheck', '--config', await configFor(garbage)])).code, 1);

  const silent = await listen((s) => s.on('error', () => undefined)); // accepts, never answers
  const t0 = Date.now();
  const slow = await runCommand(['healthcheck', '--timeout', '300ms', '--config', await configFor(silent)]);
  const took = Date.now() - t0;
  assert.equal(slow.code, 1);
  assert.match(slow.err, /no answer within 300 ms/);
  assert.ok(took >= 290 && took < 2_000, `took ${took} ms`);
});

test('a bad config is an error (1); listen on 0.0.0.0 / :: is probed on loopback; port 0 cannot be probed', async () => {
  const bad = join(dir.dir, 'bad.yaml');
  await writeFile(bad, 'listen: nowhere\n');
  const r = await runCommand(['healthcheck', '--config', bad]);
  assert.equal(r.code, 1);
  assert.match(r.err, /listen/);

  const none = CidrSet.empty;
  assert.deepEqual(
    { ...probeTarget({ listen: { host: '0.0.0.0', port: 8080 }, tls: null, proxyProtocol: false, trustedProxies: none }), proxyProtocolFor: null },
    { host: '127.0.0.1', port: 8080, tls: false, proxyProtocolFor: null },
  );
  assert.equal(probeTarget({ listen: { host: '::', port: 8443 }, tls: { cert: 'c', key: 'k' }, proxyProtocol: false, trustedProxies: none }).host, '::1');

  const zero = join(dir.dir, 'zero.yaml');
  await writeFile(zero, `listen: "127.0.0.1:0"\ndata_dir: ${JSON.stringify(join(dir.dir, 'data'))}\nusers_file: ${JSON.stringify(join(dir.dir, 'users.yaml'))}\n${APPS}`);
  const z = await runCommand(['healthcheck', '--config', zero]);
  assert.equal(z.code, 1);
  assert.match(z.err, /port 0/);
});
