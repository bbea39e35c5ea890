/**
 * A/B of two builds of the gateway under the same load: was a change to the hot path worth it?
 *
 *   git worktree add /tmp/before <commit> && (cd /tmp/before && npm ci && npm run build)
 *   npm run build && node dist/bench/ab.js /tmp/before/dist [fa|proxy]
 *
 * Both gateways run as `bench/servers/gateway.js` of their own build (each in its own process,
 * the bench's config, a real sign-in), in front of one trivial upstream; wrk loads each in turn,
 * alternated (A B, B A) for `BENCH_AB_ROUNDS` (6) rounds of `BENCH_AB_SECONDS` (3 s), after a
 * warm-up of each. `fa` sends forward-auth subrequests straight to the gateway (what nginx's
 * auth_request sends, from a trusted proxy address); `proxy` a signed-in GET through it. Prints
 * requests/s and CPU per request (from /proc) of each, and the ratios new / old: within one run
 * the ratio is steady to about ±3 % on a quiet machine (an A/A run gives 1.00).
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { tmpDir } from '../test/helpers/tmp.js';
import { cpuSeconds } from './lib/cpu.js';
import { pickTool, runLoad } from './lib/load.js';
import * as here from './lib/gateway.js';

type GatewayLib = typeof here;

const oldDist = process.argv[2];
const mode = process.argv[3] === 'proxy' ? 'proxy' : 'fa';
if (!oldDist) {
  process.stderr.write('usage: node dist/bench/ab.js OTHER_BUILD_DIST [fa|proxy]\n');
  process.exit(2);
}
const seconds = Number(process.env['BENCH_AB_SECONDS'] ?? 3);
const rounds = Number(process.env['BENCH_AB_ROUNDS'] ?? 6);
const tool = pickTool('wrk');

const other = (await import(pathToFileURL(resolve(oldDist, 'bench/lib/gateway.js')).href)) as GatewayLib;
const work = await tmpDir('pc-ab');
const upstream = createServer((_req, res) => res.end('ok'));
await new Promise<void>((r) => upstream.listen(0, '127.0.0.1', r));
const upstreamUrl = `http://127.0.0.1:${(upstream.address() as AddressInfo).port}`;

const spec = (label: string) => ({
  label,
  workDir: work.dir,
  upstream: upstreamUrl,
  argon2: 'test' as const,
  networks: '  office: ["127.0.0.1/32"]',
  rules: '      - { networks: [office], policy: password }\n      - { policy: deny }',
  profileDir: null,
});

const sides = [] as Array<{ name: 'old' | 'new'; stop: () => Promise<void>; pid: number; url: string; headers: Record<string, string>; requests: number; seconds: number; cpu: number }>;
try {
  for (const [name, lib] of [['old', other], ['new', here]] as const) {
    const gw = await lib.startGateway(spec(name));
    const cookie = await lib.signIn(gw.url);
    const headers: Record<string, string> =
      mode === 'fa'
        ? { host: here.HOST, 'x-original-url': `http://${here.HOST}/inbox`, 'x-original-method': 'GET', 'x-forwarded-for': '127.0.0.1', cookie: `${here.SESSION_COOKIE}=${cookie}` }
        : { host: here.HOST, cookie: `${here.SESSION_COOKIE}=${cookie}` };
    const url = gw.url + (mode === 'fa' ? '/.portcullis/authz/auth-request' : '/inbox');
    sides.push({ name, stop: () => gw.stop(), pid: gw.child.pid, url, headers, requests: 0, seconds: 0, cpu: 0 });
  }
  for (const s of sides) await runLoad(tool, { url: s.url, headers: s.headers, connections: 32, seconds: 1 }, work.dir);
  for (let i = 0; i < rounds; i++) {
    for (const s of i % 2 ? [...sides].reverse() : sides) {
      const c0 = cpuSeconds(s.pid) ?? 0;
      const r = await runLoad(tool, { url: s.url, headers: s.headers, connections: 32, seconds }, work.dir);
      const c1 = cpuSeconds(s.pid) ?? 0;
      if (r.bad || r.errors) throw new Error(`${s.name}: ${r.bad} bad responses, ${r.errors} errors: not a valid point`);
      s.requests += r.requests;
      s.seconds += r.seconds;
      s.cpu += c1 - c0;
    }
  }
  const fig = (s: (typeof sides)[number]) => ({ rps: Math.round(s.requests / s.seconds), cpuUsPerRequest: Number(((s.cpu / s.requests) * 1e6).toFixed(1)) });
  const [a, b] = [fig(sides[0]!), fig(sides[1]!)];
  process.stdout.write(
    `${JSON.stringify({ mode, old: a, new: b, throughput: Number((b.rps / a.rps).toFixed(3)), cpuPerRequest: Number((b.cpuUsPerRequest / a.cpuUsPerRequest).toFixed(3)) })}\n`,
  );
} finally {
  for (const s of sides) await s.stop();
  upstream.close();
  await work.cleanup();
}
