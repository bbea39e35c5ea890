/**
 * Where a signed-in request's time goes inside the gateway: each step of the full-proxy hot path
 * (src/proxy/handler.ts) timed on its own, in-process, on a real runtime (Gateway.start with the
 * bench's config) with a real session. Tight loops flatter every step equally (warm caches, no
 * I/O); the numbers are for ranking the steps, the load points measure the whole.
 */
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { writeFile, mkdir } from 'node:fs/promises';
import { join } from 'node:path';
import { Gateway } from '../../src/main.js';
import { silentLogger } from '../../src/audit/logger.js';
import { TEST_PARAMS } from '../../src/auth/password.js';
import { clientInfo, readSessionCookie } from '../../src/http/request-context.js';
import { gate } from '../../src/access/gate.js';
import { identityHeaders } from '../../src/access/identity.js';
import { clientResponseHeaders, upstreamRequestHeaders } from '../../src/proxy/headers.js';
import { normaliseRequestTarget } from '../../src/net/path.js';
import { decide } from '../../src/policy/decide.js';
import { hashSessionId } from '../../src/session/sessions.js';
import { runAsJob } from '../lib/ipc.js';
import { BENCH_USER, HOST, SESSION_COOKIE, configText, usersFileText } from '../lib/gateway.js';

export interface HotPathInput {
  workDir: string;
}

export interface HotPathResult {
  /** µs per call, p50 over batches. */
  steps: Array<{ step: string; where: string; us: number }>;
  /** Bytes of the request head the app receives, through the gateway and through the bare proxy. */
  upstreamHeadBytes: { gateway: number; bare: number };
}

const N = 20_000;

async function perCall(f: () => unknown): Promise<number> {
  for (let i = 0; i < 2000; i++) await f();
  const batches: number[] = [];
  for (let b = 0; b < 5; b++) {
    const t0 = performance.now();
    for (let i = 0; i < N / 5; i++) await f();
    batches.push(((performance.now() - t0) * 1000) / (N / 5));
  }
  batches.sort((a, b) => a - b);
  return batches[2]!;
}

function headBytes(h: Record<string, unknown>): number {
  let n = 'GET /inbox HTTP/1.1\r\n'.length + 2;
  for (const [k, v] of Object.entries(h)) for (const x of Array.isArray(v) ? v : [v]) n += k.length + 2 + String(x).length + 2;
  return n;
}

runAsJob<HotPathInput, HotPathResult>(async (input) => {
  const dir = join(input.workDir, 'hot-path');
  await mkdir(join(dir, 'data'), { recursive: true, mode: 0o700 });
  const configFile = join(dir, 'portcullis.yaml');
  const spec = {
    label: 'hot-path',
    workDir: input.workDir,
    upstream: 'http://127.0.0.1:9',
    argon2: 'test' as const,
    networks: '  office: ["127.0.0.1/32"]',
    rules: '      - { networks: [office], policy: password }\n      - { policy: deny }',
    profileDir: null,
  };
  await writeFile(configFile, configText(spec, dir));
  await writeFile(join(dir, 'users.yaml'), await usersFileText('test'), { mode: 0o600 });
  const gw = await Gateway.start({ configFile, port: 0, host: '127.0.0.1', logger: silentLogger(), argon2: TEST_PARAMS, watch: false, announce: () => undefined });
  try {
    const rt = gw.rt;
    const cfg = rt.config;
    const app = cfg.apps[0]!;
    const s = await rt.sessions.create({ user: BENCH_USER.name, amr: ['pwd'], pending: 'none', ip: '127.0.0.1' });
    const inbound = {
      host: HOST,
      cookie: `${SESSION_COOKIE}=${s.id}`,
      'user-agent': 'Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36',
      accept: 'text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8',
      'accept-language': 'en-GB,en;q=0.9',
      'accept-encoding': 'gzip, deflate, br',
      connection: 'keep-alive',
    };
    const fakeReq = () => ({ headers: inbound, socket: { remoteAddress: '127.0.0.1', encrypted: false } }) as unknown as IncomingMessage;
    const greq = { method: 'GET', target: '/inbox', host: HOST, ip: '127.0.0.1', proto: 'http' as const, sessionId: s.id, authorization: undefined };
    const g = await gate(rt, cfg, greq);
    if (g.kind !== 'proxy' || !g.identity) throw new Error(`the gate did not let the bench session through: ${g.kind}`);
    const identity = g.identity;
    const idh = await identityHeaders(rt, app, identity, '127.0.0.1');
    const upHeaders = { 'content-type': 'application/json', 'content-length': '80', date: new Date().toUTCString(), connection: 'keep-alive', 'keep-alive': 'timeout=120' };
    const fwdOpts = { clientIp: '127.0.0.1', proto: 'http' as const, host: HOST, identity: idh, sessionCookie: SESSION_COOKIE, dropAuthorization: false };
    await rt.stores.sessions.get(s.idHash); // warm

    const steps: HotPathResult['steps'] = [];
    const add = async (step: string, where: string, f: () => unknown) => steps.push({ step, where, us: await perCall(f) });
    await add('whole gate() for a signed-in GET', 'src/proxy/gate.ts gate()', () => gate(rt, cfg, greq));
    await add('  session lookup', 'src/session/sessions.ts SessionManager.lookup()', () => rt.sessions.lookup(s.id));
    await add('    SHA-256 of the session id', 'src/session/sessions.ts hashSessionId()', () => hashSessionId(s.id));
    await add('    memory store get (hands out the frozen stored record)', 'src/store/memory.ts MemorySessionStore.get()', () => rt.stores.sessions.get(s.idHash));
    await add('  path normalisation', 'src/net/path.ts normaliseRequestTarget()', () => normaliseRequestTarget('/inbox'));
    await add('  policy decision', 'src/policy/decide.ts decide()', () => decide(app, { method: 'GET', path: '/inbox', ip: '127.0.0.1', subject: null }));
    await add('identity headers (cached assertion)', 'src/proxy/identity.ts identityHeaders()', () => identityHeaders(rt, app, identity, '127.0.0.1'));
    await add('request headers for the app', 'src/proxy/headers.ts upstreamRequestHeaders()', () => upstreamRequestHeaders(inbound, fwdOpts));
    await add('response headers for the client', 'src/proxy/headers.ts clientResponseHeaders()', () => clientResponseHeaders(upHeaders, SESSION_COOKIE));
    await add('client address and scheme', 'src/http/request-context.ts clientInfo()', () => clientInfo(fakeReq(), cfg));
    await add('session cookie from the Cookie header', 'src/http/request-context.ts readSessionCookie()', () => readSessionCookie(inbound.cookie, SESSION_COOKIE));
    await add('dispatch handler object + close listener per request', 'src/proxy/forward.ts forward()', () => {
      const handler = { started: performance.now(), status: 0, onClose: () => undefined };
      const emitter = new EventEmitter();
      emitter.on('close', handler.onClose);
      emitter.off('close', handler.onClose);
    });
    const { cookie: _c, connection: _k, ...bareInbound } = inbound;
    return {
      steps,
      upstreamHeadBytes: { gateway: headBytes(upstreamRequestHeaders(inbound, fwdOpts) as Record<string, unknown>), bare: headBytes({ ...bareInbound, cookie: inbound.cookie }) },
    };
  } finally {
    await gw.close();
  }
});
