/**
 * `npm run bench`: what the gateway costs, and whether it meets its targets (issue 7).
 *
 * Everything runs on loopback, each server in a process of its own (upstream, bare proxy, the
 * gateway, the Fastify stub, nginx, the attacker), the load generator (wrk, else autocannon) in
 * this one. The machine is small and shared, so every target is a ratio of two points measured in
 * the same run, alternated (A B, B A) to cancel drift. One table is printed and the full data is
 * written to bench/results.json. See bench/README.md for what each line measures and why.
 *
 *   BENCH_SECONDS=10 BENCH_ONLY=1,2 BENCH_PROFILE=1 npm run bench
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { cpus, totalmem } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { request } from 'undici';
import { haveNginx, startNginx, type Nginx } from '../test/helpers/nginx.js';
import { startRedis, type RedisServer } from '../test/helpers/redis-server.js';
import { Redis } from 'ioredis';
import { tmpDir } from '../test/helpers/tmp.js';
import { readSettings, type BenchSettings, type LoadTool } from './lib/settings.js';
import { runJob, startChild } from './lib/ipc.js';
import { combine, pickTool, runLoad, type LoadResult } from './lib/load.js';
import { withCpu } from './lib/cpu.js';
import {
  BENCH_USER,
  HOST,
  SESSION_COOKIE,
  assertSignedInGet,
  fetchMetrics,
  metricSeries,
  metricValues,
  signIn,
  startGateway,
  type BenchGateway,
  type GatewaySpec,
  type GatewayStats,
} from './lib/gateway.js';
import { formatProfile, summariseProfile, type ProfileSummary } from './lib/profile.js';
import { fmt, int, renderTable, verdict, type Row } from './lib/table.js';
import type { AttackOptions, AttackReport } from './jobs/attacker.js';
import type { FloodInput, FloodResult } from './jobs/flood-memory.js';
import type { SprayMemoryInput, SprayMemoryResult } from './jobs/spray-memory.js';
import type { CostsInput, CostsResult } from './jobs/costs.js';
import type { ReplayInput, ReplayResult, SetupResult } from './jobs/attack-2017.js';
import type { HotPathInput, HotPathResult } from './jobs/hot-path.js';

const REPO = fileURLToPath(new URL('../../', import.meta.url));
const MB = 2 ** 20;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const script = (p: string) => new URL(p, import.meta.url);

interface Ctx {
  s: BenchSettings;
  tool: LoadTool;
  work: string;
  upstream: string;
  upstreamPid: number;
  profileDir: string | null;
  rows: Row[];
  details: Record<string, unknown>;
  profiles: ProfileSummary[];
  /** Signed-in latency under real HTTP attack, by 2017 set-up id (filled by section 3). */
  attackLatency: Map<string, { loaded: LoadResult; unloaded: LoadResult }>;
}

function log(line: string): void {
  process.stderr.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${line}\n`);
}

function signedInLoad(c: Ctx, base: string, cookie: string, seconds: number) {
  return runLoad(c.tool, { url: `${base}/inbox`, headers: { host: HOST, cookie: `${SESSION_COOKIE}=${cookie}` }, connections: c.s.connections, seconds }, c.work);
}

/**
 * The headers the gateway answers a signed-in forward-auth subrequest with (as nginx sends it),
 * as a flat [name, value, ...] list without content-length and date: what the same-headers stub
 * is told to answer.
 */
async function authzAnswerHeaders(base: string, cookie: string): Promise<string[]> {
  const r = await request(`${base}/.portcullis/authz/auth-request`, {
    headers: { host: HOST, 'x-original-url': `http://${HOST}/inbox`, 'x-original-method': 'GET', 'x-forwarded-for': '127.0.0.1', cookie: `${SESSION_COOKIE}=${cookie}` },
  });
  await r.body.dump();
  if (r.statusCode !== 200) throw new Error(`the gateway answered ${r.statusCode} to a signed-in subrequest`);
  const out: string[] = [];
  for (const [k, v] of Object.entries(r.headers)) {
    if (k === 'content-length' || k === 'date' || k === 'connection' || k === 'keep-alive') continue;
    out.push(k, Array.isArray(v) ? v.join(', ') : String(v ?? ''));
  }
  if (!out.includes('x-portcullis-assertion')) throw new Error('the gateway answered without an assertion');
  return out;
}

/** Forward-auth subrequests straight to a gateway, as nginx's auth_request sends them (from the trusted loopback). */
function authzLoad(c: Ctx, base: string, cookie: string, seconds: number) {
  const headers = { host: HOST, 'x-original-url': `http://${HOST}/inbox`, 'x-original-method': 'GET', 'x-forwarded-for': '127.0.0.1', cookie: `${SESSION_COOKIE}=${cookie}` };
  return runLoad(c.tool, { url: `${base}/.portcullis/authz/auth-request`, headers, connections: c.s.connections, seconds }, c.work);
}

/** An information row for a gateway / stub pair: throughput ratio and CPU per subrequest of each. */
function infoPairRow(c: Ctx, id: string, what: string, p: Pair, detail: string): void {
  const bad = invalid(p.a) ?? invalid(p.b);
  const cpu = p.cpuA[0] && p.cpuB[0] ? `${fmt(p.cpuA[0] / p.cpuB[0])} (${us(p.cpuA[0])} / ${us(p.cpuB[0])})` : 'not available';
  c.rows.push({ id, what, measured: `${fmt(p.a.rps / p.b.rps)} (${int(p.a.rps)} / ${int(p.b.rps)} req/s); CPU ${cpu}`, target: '-', result: bad ? 'ERROR' : 'INFO', notes: bad ? [bad] : [] });
  c.details[detail] = { gateway: p.a, stub: p.b, cpuPerRequestUs: { gateway: p.cpuA, stub: p.cpuB } };
}

function describeLoad(r: LoadResult): string {
  return `${int(r.rps)} req/s, p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms`;
}

function invalid(r: LoadResult): string | null {
  if (r.bad === 0 && r.errors === 0) return null;
  return `${int(r.bad)} responses other than 2xx/3xx and ${int(r.errors)} connection errors: the point is not valid`;
}

interface Side {
  run: (seconds: number) => Promise<LoadResult>;
  /** Processes whose CPU time is charged to this side: the server, then the upstream. */
  pids: number[];
}

interface Pair {
  a: LoadResult;
  b: LoadResult;
  /** CPU µs per request of each of the side's pids (null where /proc cannot be read). */
  cpuA: Array<number | null>;
  cpuB: Array<number | null>;
}

/**
 * Two servers under the same load, alternated: warm-up for each, then `rounds` rounds of A B
 * (B A on odd rounds), each run `seconds / rounds` long.
 */
async function measurePair(c: Ctx, a: Side, b: Side): Promise<Pair> {
  if (c.s.warmup > 0) {
    await a.run(c.s.warmup);
    await b.run(c.s.warmup);
  }
  const runs = { a: [] as LoadResult[], b: [] as LoadResult[] };
  const cpu = { a: a.pids.map(() => 0 as number | null), b: b.pids.map(() => 0 as number | null) };
  const each = c.s.seconds / c.s.rounds;
  const one = async (k: 'a' | 'b', side: Side) => {
    const r = await withCpu(side.pids, () => side.run(each));
    runs[k].push(r.value);
    r.cpu.forEach((x, i) => (cpu[k][i] = x === null || cpu[k][i] === null ? null : cpu[k][i]! + x));
  };
  for (let i = 0; i < c.s.rounds; i++) {
    if (i % 2 === 0) {
      await one('a', a);
      await one('b', b);
    } else {
      await one('b', b);
      await one('a', a);
    }
  }
  const A = combine(runs.a);
  const B = combine(runs.b);
  const perReq = (xs: Array<number | null>, r: LoadResult) => xs.map((x) => (x === null ? null : (x / r.requests) * 1e6));
  return { a: A, b: B, cpuA: perReq(cpu.a, A), cpuB: perReq(cpu.b, B) };
}

function us(x: number | null | undefined): string {
  return x === null || x === undefined ? '?' : `${int(x)} µs`;
}

async function stopGateway(c: Ctx, gw: BenchGateway, label: string): Promise<void> {
  await gw.stop();
  if (!c.profileDir) return;
  const file = join(c.profileDir, `gateway-${label}.cpuprofile`);
  try {
    const sum = summariseProfile(file, REPO.replace(/\/$/, ''));
    c.profiles.push(sum);
    log(`\n${formatProfile(sum)}`);
  } catch (e) {
    log(`no profile for ${label}: ${(e as Error).message}`);
  }
}

function gatewaySpec(c: Ctx, label: string, over: Partial<GatewaySpec>): GatewaySpec {
  return {
    label,
    workDir: c.work,
    upstream: c.upstream,
    argon2: 'test',
    networks: '  office: ["127.0.0.1/32"]',
    rules: '      - { networks: [office], policy: password }\n      - { policy: deny }',
    profileDir: c.profileDir,
    ...over,
  };
}

// ---------------------------------------------------------------------------------------------
// 1 and 2: full-proxy mode and forward-auth mode

function nginxConf(port: number, authOrigin: string, appOrigin: string): string {
  const up = (name: string, origin: string) => `upstream ${name} { server ${new URL(origin).host}; keepalive 64; }`;
  return [
    up('pc_auth', authOrigin),
    up('pc_app', appOrigin),
    'server {',
    `  listen 127.0.0.1:${port};`,
    '  access_log off;',
    '  location = /_portcullis_auth {',
    '    internal;',
    '    proxy_pass http://pc_auth/.portcullis/authz/auth-request;',
    '    proxy_http_version 1.1;',
    '    proxy_set_header Connection "";',
    '    proxy_pass_request_body off;',
    '    proxy_set_header Content-Length "";',
    '    proxy_set_header Host $http_host;',
    '    proxy_set_header X-Original-URL $scheme://$http_host$request_uri;',
    '    proxy_set_header X-Original-Method $request_method;',
    '    proxy_set_header X-Forwarded-For $remote_addr;',
    '  }',
    '  location / {',
    '    auth_request /_portcullis_auth;',
    '    auth_request_set $pc_user $upstream_http_remote_user;',
    '    auth_request_set $pc_groups $upstream_http_remote_groups;',
    '    auth_request_set $pc_email $upstream_http_remote_email;',
    '    auth_request_set $pc_assertion $upstream_http_x_portcullis_assertion;',
    '    auth_request_set $pc_location $upstream_http_location;',
    '    error_page 401 = @pc_unauthorized;',
    '    proxy_pass http://pc_app;',
    '    proxy_http_version 1.1;',
    '    proxy_set_header Connection "";',
    '    proxy_set_header Host $http_host;',
    '    proxy_set_header X-Forwarded-For $remote_addr;',
    '    proxy_set_header Remote-User $pc_user;',
    '    proxy_set_header Remote-Groups $pc_groups;',
    '    proxy_set_header Remote-Email $pc_email;',
    '    proxy_set_header X-Portcullis-Assertion $pc_assertion;',
    '  }',
    '  location @pc_unauthorized {',
    '    if ($pc_location != "") { return 302 $pc_location; }',
    '    return 401;',
    '  }',
    '}',
  ].join('\n');
}

async function sections12(c: Ctx): Promise<void> {
  const run1 = !c.s.only || c.s.only.has(1);
  const run2 = !c.s.only || c.s.only.has(2);
  if (!run1 && !run2) return;
  log('starting the gateway (cheap argon2) for full-proxy and forward-auth modes');
  const gw = await startGateway(gatewaySpec(c, 'proxy-modes', {}));
  try {
    const cookie = await signIn(gw.url);
    await assertSignedInGet(gw.url, cookie, 'gateway');
    const gwRun = (sec: number) => signedInLoad(c, gw.url, cookie, sec);

    if (run1) {
      const bare = await startChild<{ port: number }>(script('./servers/bare-proxy.js'), { args: [c.upstream] });
      try {
        const bareUrl = `http://127.0.0.1:${bare.info.port}`;
        const noCookie = await request(`${bareUrl}/inbox`, { headers: { host: HOST } });
        await noCookie.body.dump();
        if (noCookie.statusCode !== 401) throw new Error(`the bare proxy answered ${noCookie.statusCode} without a cookie`);
        log(`1: full proxy, gateway vs bare proxy (${c.s.rounds} x ${fmt(c.s.seconds / c.s.rounds, 1)} s each, ${c.s.connections} connections)`);
        await gw.child.call('resetEld');
        const p = await measurePair(c, { run: gwRun, pids: [gw.child.pid, c.upstreamPid] }, { run: (sec) => signedInLoad(c, bareUrl, cookie, sec), pids: [bare.pid, c.upstreamPid] });
        const st = await gw.stats();
        const thr = p.a.rps / p.b.rps;
        const p99 = p.a.p99 / p.b.p99;
        const bad = invalid(p.a) ?? invalid(p.b);
        c.rows.push({
          id: '1a',
          what: 'Full proxy: signed-in GET throughput, gateway / bare Node proxy',
          measured: `${fmt(thr)} (${int(p.a.rps)} / ${int(p.b.rps)} req/s)`,
          target: '>= 0.90',
          result: bad ? 'ERROR' : verdict(thr >= 0.9),
          notes: [`gateway ${describeLoad(p.a)}; bare proxy ${describeLoad(p.b)}`, `gateway event loop delay p99 ${fmt(st.eldP99)} ms during the runs`, ...(bad ? [bad] : [])],
        });
        c.rows.push({
          id: '1b',
          what: 'Full proxy: signed-in GET p99 latency, gateway / bare Node proxy',
          measured: `${fmt(p99)} (${fmt(p.a.p99)} / ${fmt(p.b.p99)} ms)`,
          target: '<= 1.30',
          result: bad ? 'ERROR' : verdict(p99 <= 1.3),
        });
        c.rows.push({
          id: '1c',
          what: 'Full proxy: CPU per signed-in request (from /proc), gateway / bare proxy',
          measured: p.cpuA[0] && p.cpuB[0] ? `${fmt(p.cpuA[0] / p.cpuB[0])} (${us(p.cpuA[0])} / ${us(p.cpuB[0])})` : 'not available',
          target: '-',
          result: 'INFO',
          notes: [`the upstream spends ${us(p.cpuA[1])} per request behind the gateway, ${us(p.cpuB[1])} behind the bare proxy (it parses the identity headers too)`],
        });
        const hp = await runJob<HotPathInput, HotPathResult>(script('./jobs/hot-path.js'), { workDir: join(c.work, 'hot-path') });
        const top = hp.steps.filter((x) => !x.step.startsWith('    '));
        const own = top.filter((x) => !x.step.startsWith('  ')).reduce((sum, x) => sum + x.us, 0);
        c.rows.push({
          id: '1d',
          what: "Full proxy: the gateway's own steps per signed-in request, each timed alone in-process (tight loops: for ranking)",
          measured: `${fmt(own, 1)} µs in all, of ${us(p.cpuA[0])} CPU per request`,
          target: '-',
          result: 'INFO',
          notes: [
            ...hp.steps.map((x) => `${x.step.replace(/^( *)/, (m) => '.'.repeat(m.length / 2))}: ${fmt(x.us, 1)} µs (${x.where})`),
            `request head the app receives: ${int(hp.upstreamHeadBytes.gateway)} bytes through the gateway, ${int(hp.upstreamHeadBytes.bare)} through the bare proxy`,
          ],
        });
        c.details['fullProxy'] = { gateway: p.a, bare: p.b, cpuPerRequestUs: { gateway: p.cpuA, bare: p.cpuB }, gatewayEventLoop: st, hotPath: hp };
      } finally {
        await bare.stop();
      }
    }

    if (run2) {
      if (!haveNginx()) {
        c.rows.push({ id: '2', what: 'Forward auth: nginx auth_request, gateway / trivial cookie check', measured: 'nginx is not installed', target: '>= 0.95', result: 'SKIP', notes: ['bench/setup.sh installs nginx and wrk'] });
      } else {
        // the gateway's own answer to a signed-in subrequest: the same-headers stub sends exactly it
        const answered = await authzAnswerHeaders(gw.url, cookie);
        const same = await startChild<{ port: number }>(script('./servers/authz-stub.js'), { args: [JSON.stringify(answered)] });
        const light = await startChild<{ port: number }>(script('./servers/authz-stub.js'));
        const started: Nginx[] = [];
        const nginxFor = async (origin: string) => {
          const n = await startNginx({ config: (port) => nginxConf(port, origin, c.upstream) });
          started.push(n);
          return n;
        };
        try {
          const ngGw = await nginxFor(gw.url);
          const ngSame = await nginxFor(`http://127.0.0.1:${same.info.port}`);
          const ngLight = await nginxFor(`http://127.0.0.1:${light.info.port}`);
          await assertSignedInGet(ngGw.url, cookie, 'nginx + gateway');
          await assertSignedInGet(ngSame.url, cookie, 'nginx + stub (same headers)');
          await assertSignedInGet(ngLight.url, cookie, 'nginx + stub (Remote-User only)');
          const anon = await request(`${ngGw.url}/inbox`, { headers: { host: HOST, accept: 'text/html' } });
          await anon.body.dump();
          if (anon.statusCode !== 302 || !String(anon.headers.location ?? '').includes('/.portcullis/login')) {
            throw new Error(`nginx + gateway answered ${anon.statusCode} (location ${String(anon.headers.location)}) to a request without a session`);
          }
          log(`2: forward auth, nginx auth_request to the gateway vs to a trivial node:http stub answering the same headers`);
          const gwSide = { run: (sec: number) => signedInLoad(c, ngGw.url, cookie, sec), pids: [gw.child.pid] };
          const p = await measurePair(c, gwSide, { run: (sec) => signedInLoad(c, ngSame.url, cookie, sec), pids: [same.pid] });
          const thr = p.a.rps / p.b.rps;
          const bad = invalid(p.a) ?? invalid(p.b);
          c.rows.push({
            id: '2',
            what: 'Forward auth: nginx auth_request throughput, gateway / trivial node:http cookie check answering the same headers',
            measured: `${fmt(thr)} (${int(p.a.rps)} / ${int(p.b.rps)} req/s)`,
            target: '>= 0.95',
            result: bad ? 'ERROR' : verdict(thr >= 0.95),
            notes: [
              `p99 ${fmt(p.a.p99)} ms vs ${fmt(p.b.p99)} ms (ratio ${fmt(p.a.p99 / p.b.p99)}); nginx 1 worker, keep-alive to both`,
              `both answer ${answered.length / 2} headers (${answered.filter((_, i) => i % 2 === 0).join(', ')}; ${answered.reduce((n, x) => n + x.length, 0)} bytes of names and values)`,
              ...(bad ? [bad] : []),
            ],
          });
          const cpuRatio = p.cpuA[0] && p.cpuB[0] ? p.cpuA[0] / p.cpuB[0] : null;
          c.rows.push({
            id: '2b',
            what: 'Forward auth: CPU per subrequest (from /proc), gateway / that stub',
            measured: cpuRatio === null ? 'not available' : `${fmt(cpuRatio)} (${us(p.cpuA[0])} / ${us(p.cpuB[0])})`,
            target: '<= 1.20',
            result: cpuRatio === null ? 'INFO' : bad ? 'ERROR' : verdict(cpuRatio <= 1.2),
          });
          c.details['forwardAuth'] = { gateway: p.a, stub: p.b, cpuPerRequestUs: { gateway: p.cpuA, stub: p.cpuB }, stubHeaders: answered.filter((_, i) => i % 2 === 0) };

          // 2c: against the stub of earlier runs, which answers Remote-User alone: nginx and the
          // app then carry no groups, e-mail or assertion, so this also counts what those cost them
          log('2c: the same gateway vs a stub answering Remote-User alone');
          const q = await measurePair(c, gwSide, { run: (sec) => signedInLoad(c, ngLight.url, cookie, sec), pids: [light.pid] });
          infoPairRow(c, '2c', 'Forward auth against a stub answering Remote-User alone: throughput and CPU per subrequest, gateway / stub', q, 'forwardAuthLightStub');

          // 2d: an app with `assertion: false` (it does not verify the assertion): what the
          // gateway's answer costs without the signed token, against the same light stub
          log('2d: forward auth with assertion: false, gateway vs the stub answering Remote-User alone');
          const plain = await startGateway(gatewaySpec(c, 'proxy-modes-no-assertion', { appExtra: ['assertion: false'] }));
          try {
            const plainCookie = await signIn(plain.url);
            const ngPlain = await nginxFor(plain.url);
            await assertSignedInGet(ngPlain.url, plainCookie, 'nginx + gateway (assertion: false)');
            const r = await measurePair(
              c,
              { run: (sec) => signedInLoad(c, ngPlain.url, plainCookie, sec), pids: [plain.child.pid] },
              { run: (sec) => signedInLoad(c, ngLight.url, cookie, sec), pids: [light.pid] },
            );
            infoPairRow(c, '2d', 'Forward auth, app with assertion: false, against the Remote-User stub: throughput and CPU per subrequest', r, 'forwardAuthNoAssertion');
          } finally {
            await stopGateway(c, plain, 'proxy-modes-no-assertion');
          }
        } finally {
          for (const n of started) await n.stop();
          await same.stop();
          await light.stop();
        }
      }
    }
  } finally {
    await stopGateway(c, gw, 'proxy-modes');
  }
}

// ---------------------------------------------------------------------------------------------
// 3 (and the HTTP half of 6): signed-in users while the login endpoint is attacked

const ATTACK_NETWORKS = '  office: ["127.0.0.0/8"]\n  internet: ["10.0.0.0/8"]';
const OPEN_RULES = '      - { networks: [office], policy: password }\n      - { networks: [internet], policy: password }\n      - { policy: deny }';
const ALLOWLIST_RULES = '      - { networks: [office], policy: password }\n      - { policy: deny }';
/** As close to "no throttling" as the config allows: thresholds at the distinct-member cap, 1 s windows. */
const NO_THROTTLE_LIMITS = [
  '  per_ip: { max_failures: 1000, window: 1s, block: 1s }',
  '  per_user: { max_failures: 1000, window: 1s, lockout: 1s }',
  '  spray: { distinct_users: 1000, window: 1s, block: 1s }',
].join('\n');

interface AttackPoint {
  label: string;
  unloaded: LoadResult | null;
  loaded: LoadResult;
  attack: AttackReport;
  inFlight: { max: number; mean: number; limit: number; samples: number };
  rejected: number;
  logins: Array<{ labels: string; value: number }>;
  gateway: GatewayStats;
}

async function attackPoint(c: Ctx, label: string, spec: Partial<GatewaySpec>, withBaseline: boolean): Promise<AttackPoint> {
  log(`3: ${label}: starting the gateway (production argon2id)`);
  const gw = await startGateway(gatewaySpec(c, label, { argon2: 'production', networks: ATTACK_NETWORKS, rules: OPEN_RULES, ...spec }));
  try {
    const cookie = await signIn(gw.url);
    await assertSignedInGet(gw.url, cookie, label);
    if (c.s.warmup > 0) await signedInLoad(c, gw.url, cookie, c.s.warmup);
    let unloaded: LoadResult | null = null;
    if (withBaseline) {
      log(`3: ${label}: signed-in load, no attack (${fmt(c.s.seconds, 0)} s)`);
      unloaded = await signedInLoad(c, gw.url, cookie, c.s.seconds);
    }
    const before = await fetchMetrics(gw.adminUrl);
    const rejected0 = metricValues(before, ['portcullis_hash_rejected_total'])['portcullis_hash_rejected_total'] ?? 0;
    const opts: AttackOptions = { origin: gw.url, host: HOST, mode: 'rate', rate: c.s.attackRate, sources: c.s.attackSources, users: 9000, connections: 64, maxInFlight: 2048 };
    const attacker = await startChild<{ pid: number }>(script('./jobs/attacker.js'), { args: [JSON.stringify(opts)] });
    let report: AttackReport;
    const samples: number[] = [];
    let limit = 0;
    let loaded: LoadResult;
    let stats: GatewayStats;
    try {
      await sleep(2000); // the attack reaches its rate and the hash budget fills
      log(`3: ${label}: signed-in load while ${c.s.attackRate} login attempts/s arrive from ${int(c.s.attackSources)} sources (${fmt(c.s.seconds, 0)} s)`);
      await gw.child.call('resetEld');
      let sampling = true;
      const sampler = (async () => {
        while (sampling) {
          try {
            const v = metricValues(await fetchMetrics(gw.adminUrl), ['portcullis_hash_inflight', 'portcullis_hash_limit']);
            samples.push(v['portcullis_hash_inflight'] ?? 0);
            limit = v['portcullis_hash_limit'] ?? limit;
          } catch {
            // a scrape lost under load is not a measurement
          }
          await sleep(200);
        }
      })();
      loaded = await signedInLoad(c, gw.url, cookie, c.s.seconds);
      sampling = false;
      await sampler;
      stats = await gw.stats();
    } finally {
      report = await attacker.call<AttackReport>('finish');
      await attacker.stop();
    }
    const after = await fetchMetrics(gw.adminUrl);
    const rejected = (metricValues(after, ['portcullis_hash_rejected_total'])['portcullis_hash_rejected_total'] ?? 0) - rejected0;
    return {
      label,
      unloaded,
      loaded,
      attack: report,
      inFlight: { max: Math.max(0, ...samples), mean: samples.length ? samples.reduce((s, x) => s + x, 0) / samples.length : 0, limit, samples: samples.length },
      rejected,
      logins: metricSeries(after, 'portcullis_logins_total'),
      gateway: stats,
    };
  } finally {
    await stopGateway(c, gw, label);
  }
}

function statusLine(r: AttackReport): string {
  const names: Record<string, string> = { '401': 'wrong', '429': 'throttled', '503': 'busy (hash budget)', '403': 'network denied', '303': 'signed in' };
  const parts = Object.entries(r.status)
    .sort((a, b) => b[1] - a[1])
    .map(([code, n]) => `${int(n)} x ${code}${names[code] ? ` ${names[code]}` : ''}`);
  return `${int(r.completed / r.seconds)} attempts/s achieved (${int(r.sent)} sent, ${int(r.skipped)} not sent: over 2,048 in flight); ${parts.join(', ')}; attempt p50 ${fmt(r.p50)} ms, p99 ${fmt(r.p99)} ms`;
}

async function section3(c: Ctx): Promise<void> {
  const run3 = !c.s.only || c.s.only.has(3);
  const run6 = !c.s.only || c.s.only.has(6);
  if (!run3 && !run6) return;
  const def = await attackPoint(c, 'attack-defaults', {}, true);
  const base = def.unloaded!;
  c.attackLatency.set('6.2', { loaded: def.loaded, unloaded: base });
  c.details['underAttack'] = { defaults: def };
  if (run3) await section3Rows(c, def, base);
  if (run6) {
    const none = await attackPoint(c, 'attack-no-throttle', { loginLimits: NO_THROTTLE_LIMITS }, false);
    c.attackLatency.set('6.1', { loaded: none.loaded, unloaded: base });
    const allow = await attackPoint(c, 'attack-allowlist', { rules: ALLOWLIST_RULES }, false);
    c.attackLatency.set('6.4', { loaded: allow.loaded, unloaded: base });
    c.details['attackSetups'] = { noThrottle: none, allowlist: allow };
  }
}

async function section3Rows(c: Ctx, def: AttackPoint, base: LoadResult): Promise<void> {
  const thr = def.loaded.rps / base.rps;
  const p99 = def.loaded.p99 / base.p99;
  const bad = invalid(def.loaded) ?? invalid(base);
  c.rows.push({
    id: '3a',
    what: `Under attack (${c.s.attackRate} logins/s, ${int(c.s.attackSources)} sources via a trusted proxy): signed-in throughput / unloaded`,
    measured: `${fmt(thr)} (${int(def.loaded.rps)} / ${int(base.rps)} req/s)`,
    target: '>= 0.70',
    result: bad ? 'ERROR' : verdict(thr >= 0.7),
    notes: [`unloaded ${describeLoad(base)}; under attack ${describeLoad(def.loaded)}`, `gateway event loop delay under attack: p99 ${fmt(def.gateway.eldP99)} ms, max ${fmt(def.gateway.eldMax)} ms`, ...(bad ? [bad] : [])],
  });
  c.rows.push({
    id: '3b',
    what: 'Under attack: signed-in p99 latency / unloaded',
    measured: `${fmt(p99)} (${fmt(def.loaded.p99)} / ${fmt(base.p99)} ms)`,
    target: '<= 3.00',
    result: bad ? 'ERROR' : verdict(p99 <= 3),
  });
  c.rows.push({
    id: '3c',
    what: 'Under attack: password hashes in flight (admin /metrics portcullis_hash_inflight) vs the budget',
    measured: `max ${int(def.inFlight.max)}, mean ${fmt(def.inFlight.mean, 1)} of ${int(def.inFlight.limit)}; ${int(def.rejected)} refused fast (503)`,
    target: '<= budget',
    result: def.inFlight.samples === 0 ? 'ERROR' : verdict(def.inFlight.max <= def.inFlight.limit),
    notes: [statusLine(def.attack), `${int(def.inFlight.samples)} scrapes; hash verifications completed ${int(def.gateway.hashCompleted)}`],
  });

  if (thr < 0.7 || p99 > 3) {
    // what a smaller budget would buy on this machine: informative, not a target
    const n = Math.max(1, Math.floor(cpus().length / 2));
    const alt = await attackPoint(c, `attack-budget-${n}`, { loginLimits: `  hash_concurrency: ${n}` }, false);
    c.rows.push({
      id: '3d',
      what: `Same attack with login_limits.hash_concurrency: ${n} (half the cores) instead of the default`,
      measured: `throughput ${fmt(alt.loaded.rps / base.rps)}, p99 ${fmt(alt.loaded.p99 / base.p99)} x unloaded`,
      target: '(0.70 / 3.00)',
      result: 'INFO',
      notes: [`${describeLoad(alt.loaded)}; hashes in flight max ${int(alt.inFlight.max)} of ${int(alt.inFlight.limit)}`, statusLine(alt.attack)],
    });
    c.details['underAttack'] = { defaults: def, smallerBudget: alt };
  }
}

// ---------------------------------------------------------------------------------------------
// 4: memory after a million attacking sources

async function section4(c: Ctx): Promise<void> {
  if (c.s.only && !c.s.only.has(4)) return;
  log(`4: in-process flood of ${int(c.s.floodSources)} distinct sources over the real throttle and memory stores`);
  const dataDir = join(c.work, 'flood-state');
  await mkdir(dataDir, { recursive: true, mode: 0o700 });
  const f = await runJob<FloodInput, FloodResult>(script('./jobs/flood-memory.js'), { sources: c.s.floodSources, users: c.s.floodSources, dataDir }, { execArgv: ['--expose-gc'] });
  const grew = f.rssAfterMb - f.rssIdleMb;
  c.rows.push({
    id: '4a',
    what: `Memory: RSS after ${int(f.sources)} distinct attacking sources, above idle (in-process: real LoginThrottle + memory stores, one failure per source, each against a distinct user name)`,
    measured: `+${int(grew)} MB (${int(f.rssIdleMb)} -> ${int(f.rssAfterMb)} MB; peak ${int(f.rssPeakMb)} MB)`,
    target: '<= +256 MB',
    result: verdict(grew <= 256),
    notes: [`heap ${int(f.heapIdleMb)} -> ${int(f.heapAfterMb)} MB; rate tables ${JSON.stringify(f.tables)}; ${int(f.sourcesBlocked)} attempts refused by a throttle; ${fmt(f.seconds, 1)} s`],
  });

  log('4: in-process flood of 1,000,000 distinct wrong passwords from 100,000 sources (same_password)');
  const sp = await runJob<SprayMemoryInput, SprayMemoryResult>(script('./jobs/spray-memory.js'), { passwords: 1_000_000, sources: 100_000 }, { execArgv: ['--expose-gc'] });
  const grewSp = sp.rssAfterMb - sp.rssIdleMb;
  c.rows.push({
    id: '4c',
    what: `Memory: RSS after ${int(sp.passwords)} distinct wrong passwords from ${int(sp.sources)} sources, above idle (in-process: real LoginThrottle with same_password + memory stores, each against a distinct account)`,
    measured: `+${int(grewSp)} MB (${int(sp.rssIdleMb)} -> ${int(sp.rssAfterMb)} MB; peak ${int(sp.rssPeakMb)} MB)`,
    target: '<= +256 MB',
    result: verdict(grewSp <= 256),
    notes: [
      `heap ${int(sp.heapIdleMb)} -> ${int(sp.heapAfterMb)} MB; rate tables ${JSON.stringify(sp.tables)}; spray witness ${JSON.stringify(sp.witness)}; ${fmt(sp.seconds, 1)} s`,
      `a spray made after the flood was marked at account ${sp.sprayMarkedAt ?? 'never'}`,
    ],
  });
  c.details['sprayMemory'] = sp;

  log(`4: HTTP login flood for ${fmt(c.s.floodSeconds, 0)} s, a new source address on every attempt`);
  // cheap hashes and a budget as large as the flood's concurrency: every attempt is verified and
  // recorded, which is what fills the throttle's tables
  const gw = await startGateway(gatewaySpec(c, 'flood-http', { argon2: 'test', networks: ATTACK_NETWORKS, rules: OPEN_RULES, loginLimits: '  hash_concurrency: 64', execArgv: ['--expose-gc'] }));
  try {
    const idle = await gw.child.call<GatewayStats>('gc');
    const opts: AttackOptions = { origin: gw.url, host: HOST, mode: 'flood', sources: 0, users: 1_000_000, connections: 64 };
    const attacker = await startChild<{ pid: number }>(script('./jobs/attacker.js'), { args: [JSON.stringify(opts)] });
    await sleep(c.s.floodSeconds * 1000);
    const r = await attacker.call<AttackReport>('finish');
    await attacker.stop();
    const after = await gw.child.call<GatewayStats>('gc');
    const grewHttp = (after.rss - idle.rss) / MB;
    const failures = r.status['401'] ?? 0;
    c.rows.push({
      id: '4b',
      what: `Memory, confirmed over HTTP: gateway RSS after a login flood from ${int(r.distinctSources)} distinct sources (cheap argon2, hash_concurrency 64, so every attempt is verified and recorded)`,
      measured: `+${int(grewHttp)} MB (${int(idle.rss / MB)} -> ${int(after.rss / MB)} MB) after ${int(r.distinctSources)} sources`,
      target: '<= +256 MB',
      result: verdict(grewHttp <= 256),
      notes: [
        `${int(r.completed / r.seconds)} attempts/s through POST /.portcullis/login; ${int(failures)} recorded failures; ${statusLine(r)}`,
        `a million sources over HTTP would take ${int(1_000_000 / Math.max(1, r.completed / r.seconds) / 60)} min at this rate, hence 4a for the full count`,
      ],
    });
    c.details['memory'] = { inProcess: f, http: { idle, after, attack: r } };
  } finally {
    await stopGateway(c, gw, 'flood-http');
  }
}

// ---------------------------------------------------------------------------------------------
// 5: costs of single operations

async function section5(c: Ctx): Promise<void> {
  if (c.s.only && !c.s.only.has(5)) return;
  log('5: costs of single operations');
  const r = await runJob<CostsInput, CostsResult>(script('./jobs/costs.js'), { argon2Samples: c.s.argon2Samples, workDir: join(c.work, 'costs') });
  const ms = (t: { p50: number }) => `${fmt(t.p50, t.p50 < 1 ? 3 : 1)} ms`;
  const us = (t: { p50: number; p99: number }) => `${int(t.p50 * 1000)} µs (p99 ${int(t.p99 * 1000)} µs)`;
  c.rows.push({ id: '5a', what: `Cost: successful password check, production argon2id (${r.argon2.params})`, measured: `p50 ${ms(r.argon2)} (min ${fmt(r.argon2.min, 1)}, n=${r.argon2.samples})`, target: '-', result: 'INFO', notes: ['measured in-process; the gateway runs verifications on low-priority worker threads (src/auth/hash-pool.ts), one core per verification in flight'] });
  c.rows.push({ id: '5b', what: 'Cost: TOTP verification (6 digits, SHA1, skew 1)', measured: `p50 ${us(r.totpVerify)}`, target: '-', result: 'INFO', notes: [`whole second-factor check (unseal the secret, verify, claim the time step): p50 ${us(r.secondFactor)}`] });
  c.rows.push({ id: '5c', what: 'Cost: signing an identity assertion (ES256)', measured: `p50 ${us(r.assertionSign)}`, target: '-', result: 'INFO', notes: ['reused from the cache for a minute per session, app and address, so not on every request'] });
  c.rows.push({ id: '5d', what: 'Cost: config reload (Gateway.reload: loadConfigFile, users file, swap)', measured: `p50 ${ms(r.reload)} (loadConfigFile alone ${ms(r.loadConfig)})`, target: '-', result: 'INFO', notes: [r.reloadConfig] });
  c.rows.push({ id: '5e', what: 'Cost: password policy assessed at sign-in (zxcvbn, typical 4-word passphrase)', measured: `p50 ${ms(r.guidance)} (p99 ${ms({ p50: r.guidance.p99 })})`, target: '-', result: 'INFO', notes: ['synchronous, on the event loop, once per successful password sign-in'] });
  c.details['costs'] = r;
}

// ---------------------------------------------------------------------------------------------
// 6: the 2017 attack, replayed

async function section6(c: Ctx): Promise<void> {
  if (c.s.only && !c.s.only.has(6)) return;
  log('6: replaying the 2017 attack in-process (9,000 accounts, 50,000 guesses, 2,000 sources)');
  const input: ReplayInput = { accounts: 9000, weakShare: 0.02, guesses: 50_000, sources: 2000, hours: c.s.hours2017, seed: 2017 };
  const r = await runJob<ReplayInput, ReplayResult>(script('./jobs/attack-2017.js'), input);
  const m = r.model;
  const latencyNote = (s: SetupResult): string => {
    const http = c.attackLatency.get(s.id);
    if (http) {
      return `signed-in users during a real HTTP attack (${c.s.attackRate}/s): ${describeLoad(http.loaded)} = ${fmt(http.loaded.rps / http.unloaded.rps)} x unloaded throughput, ${fmt(http.loaded.p99 / http.unloaded.p99)} x p99`;
    }
    if (s.id === '6.1' || s.id === '6.2' || s.id === '6.4') return 'signed-in latency: run section 3 (BENCH_ONLY=3,6) to measure it';
    if (s.id === '6.6' || s.id === '6.7') return 'signed-in latency: not measured over HTTP for this set-up (sprayed guesses are refused before any hash, so the gateway does less work per attempt than in 6.2)';
    return 'signed-in latency: as 6.2 (the same first-factor work per attempt; not measured separately)';
  };
  for (const s of r.setups) {
    // 6.6 throttled: at most 0.05 % of the accounts; 6.7 posture, TOTP and the allowlist: none
    const limit = s.id === '6.3' || s.id === '6.4' || s.id === '6.7' ? 0 : s.id === '6.6' ? Math.floor(m.accounts * 0.0005) : null;
    const blocks = `${int(s.blocksImposed.sources)} source blocks, ${int(s.blocksImposed.accounts)} account locks imposed`;
    const refused = Object.entries(s.legit.refusedBy).map(([k, n]) => `${int(n)} ${k}`).join(', ');
    const sprayNotes =
      s.passwordsMarked || s.postureEpisodes
        ? [`${int(s.passwordsMarked)} passwords marked sprayed (${int(s.attacker.sprayed)} guesses refused as sprayed); ${int(s.postureEpisodes)} attack posture episodes (${int(s.attacker.postureRefused)} right passwords refused by it)`]
        : [];
    c.rows.push({
      id: s.id,
      what: `2017 replay: ${s.name}`,
      measured: `${int(s.compromised)} accounts compromised, ${int(s.passwordsConfirmed)} passwords confirmed, ${int(s.refusedBeforeHash)} guesses refused before hashing`,
      target: limit === null ? '-' : `<= ${limit}`,
      result: limit === null ? 'INFO' : verdict(s.compromised <= limit && (s.id !== '6.6' && s.id !== '6.7' ? true : s.legit.strongRefused === 0)),
      notes: [
        `attacker: ${int(s.attacker.attempts)} attempts over ${s.hours < 1 ? `${int(s.hours * 60)} min` : `${fmt(s.hours, 0)} h`} on ${int(s.attacker.accountsTried)} accounts; ${int(s.attacker.throttled)} throttled, ${int(s.attacker.networkDenied)} network-denied, ${int(s.attacker.refusedCorrect)} right passwords refused as wrong (${int(s.attacker.weakDenied)} weak); first compromise ${s.firstCompromiseHour === null ? 'never' : `after ${fmt(s.firstCompromiseHour, 1)} h`}; ${blocks}`,
        ...sprayNotes,
        `legitimate sign-ins: ${int(s.legit.ok)} of ${int(s.legit.signIns)} got in${s.legit.sentToChange ? ` (${int(s.legit.sentToChange)} sent to change the password first)` : ''}${s.legit.refused ? ` (refused: ${refused}; ${int(s.legit.strongRefused)} with a strong password)` : ''}`,
        latencyNote(s),
      ],
    });
  }
  c.rows.push({
    id: '6.0',
    what: '2017 replay: the model',
    measured: `${int(m.accounts)} accounts, ${int(m.weak)} with common passwords (${int(m.weakGuessableWithin)} within the attacker's reach)`,
    target: '-',
    result: 'INFO',
    notes: [`${int(m.guesses)} guesses from ${int(m.sources)} sources over ${fmt(m.hours, 0)} h, most common first (list of ${int(m.listSize)} from @zxcvbn-ts/language-common); simulated in ${fmt(r.seconds, 1)} s`],
  });
  c.details['replay2017'] = r;
}

// ---------------------------------------------------------------------------------------------


// ---------------------------------------------------------------------------------------------
// 7: several instances: a signed-in request with store: redis vs store: memory (issue 5)

async function section7(c: Ctx): Promise<void> {
  if (c.s.only && !c.s.only.has(7)) return;
  // a redis-server of our own when there is one: its command counts are then ours alone
  let own: RedisServer | null = null;
  try {
    own = await startRedis();
  } catch (e) {
    log(`7: no private redis-server (${(e as Error).message}); using REDIS_URL, whose command counts other clients share`);
  }
  const redisUrl = own?.url ?? process.env.REDIS_URL ?? 'redis://127.0.0.1:6379/0';
  const prefix = `pc-bench-${process.pid}:`;
  const store = `${redisUrl}${redisUrl.includes('?') ? '&' : '?'}prefix=${prefix}`;
  log(`7: signed-in throughput, store redis (${redisUrl}) vs memory`);
  const mem = await startGateway(gatewaySpec(c, 'store-memory', {}));
  let red: BenchGateway | null = null;
  const stats = new Redis(redisUrl, { lazyConnect: true, maxRetriesPerRequest: 1 });
  try {
    await stats.connect();
    red = await startGateway(gatewaySpec(c, 'store-redis', { store }));
    const memCookie = await signIn(mem.url);
    const redCookie = await signIn(red.url);
    await assertSignedInGet(mem.url, memCookie, 'gateway (memory store)');
    await assertSignedInGet(red.url, redCookie, 'gateway (redis store)');
    let before: Record<string, number> = {};
    let calls: Record<string, number> = {};
    const redRun = async (sec: number) => {
      before = await commandCalls(stats);
      const r = await signedInLoad(c, red!.url, redCookie, sec);
      const after = await commandCalls(stats);
      for (const [k, v] of Object.entries(after)) calls[k] = (calls[k] ?? 0) + v - (before[k] ?? 0);
      return r;
    };
    const p = await measurePair(
      c,
      { run: redRun, pids: [red.child.pid, c.upstreamPid] },
      { run: (sec) => signedInLoad(c, mem.url, memCookie, sec), pids: [mem.child.pid, c.upstreamPid] },
    );
    // the warm-up run counted too: count again over the measured rounds only
    calls = {};
    const measured = await redRun(Math.max(1, c.s.seconds / c.s.rounds));
    const bad = invalid(p.a) ?? invalid(p.b);
    const thr = p.a.rps / p.b.rps;
    // the INFO and CLIENT commands are ours (the counting itself)
    const gwCalls = Object.entries(calls).filter(([k, v]) => v > 0 && k !== 'info' && !k.startsWith('client'));
    const total = gwCalls.reduce((sum, [, v]) => sum + v, 0);
    const sessionReads = calls['hmget'] ?? 0;
    const perReq = total / Math.max(1, measured.requests);
    const hit = 1 - sessionReads / Math.max(1, measured.requests);
    c.rows.push({
      id: '7a',
      what: 'Several instances: signed-in GET throughput, store redis / store memory',
      measured: `${fmt(thr)} (${int(p.a.rps)} / ${int(p.b.rps)} req/s)`,
      target: '>= 0.70',
      result: bad ? 'ERROR' : verdict(thr >= 0.7),
      notes: [
        `redis ${describeLoad(p.a)}; memory ${describeLoad(p.b)}`,
        `CPU per request: gateway on redis ${us(p.cpuA[0])}, on memory ${us(p.cpuB[0])}`,
        ...(bad ? [bad] : []),
      ],
    });
    c.rows.push({
      id: '7b',
      what: 'Redis round trips per signed-in request (commandstats delta / requests), and the session cache hit rate',
      measured: `${fmt(perReq, 4)} per request; hit rate ${fmt(hit * 100, 2)} %`,
      target: '-',
      result: 'INFO',
      notes: [
        `${int(measured.requests)} requests in ${fmt(measured.seconds, 1)} s: ${gwCalls.map(([k, v]) => `${k} ${int(v)}`).join(', ') || 'no commands'}${own ? '' : ' (shared Redis: other clients counted too)'}`,
        'a verified session is kept 2 s per instance (evicted at once by the revocation broadcast) and touched at most once a minute',
      ],
    });
    c.details['stores'] = { redis: p.a, memory: p.b, cpuPerRequestUs: { redis: p.cpuA, memory: p.cpuB }, redisCalls: calls, redisPerRequest: perReq, hitRate: hit, privateRedis: !!own };

    // 7c: forward-auth subrequests (as nginx sends them, from the trusted loopback address)
    // straight to each gateway: CPU per subrequest and Redis round trips per subrequest
    log('7c: forward-auth subrequests, store redis vs memory');
    let authzCalls: Record<string, number> = {};
    const redAuthz = async (sec: number) => {
      const b0 = await commandCalls(stats);
      const r = await authzLoad(c, red!.url, redCookie, sec);
      const b1 = await commandCalls(stats);
      for (const [k, v] of Object.entries(b1)) authzCalls[k] = (authzCalls[k] ?? 0) + v - (b0[k] ?? 0);
      return r;
    };
    const fa = await measurePair(c, { run: redAuthz, pids: [red.child.pid] }, { run: (sec) => authzLoad(c, mem.url, memCookie, sec), pids: [mem.child.pid] });
    authzCalls = {};
    const faMeasured = await redAuthz(Math.max(1, c.s.seconds / c.s.rounds));
    const faGw = Object.entries(authzCalls).filter(([k, v]) => v > 0 && k !== 'info' && !k.startsWith('client'));
    const faTotal = faGw.reduce((sum, [, v]) => sum + v, 0);
    const badFa = invalid(fa.a) ?? invalid(fa.b);
    c.rows.push({
      id: '7c',
      what: 'Several instances, forward auth: subrequests/s and CPU per subrequest, store redis / memory; Redis round trips per subrequest',
      measured: `${fmt(fa.a.rps / fa.b.rps)} (${int(fa.a.rps)} / ${int(fa.b.rps)} req/s); CPU ${us(fa.cpuA[0])} / ${us(fa.cpuB[0])}; ${fmt(faTotal / Math.max(1, faMeasured.requests), 4)} round trips per subrequest`,
      target: '-',
      result: badFa ? 'ERROR' : 'INFO',
      notes: [`${int(faMeasured.requests)} subrequests in ${fmt(faMeasured.seconds, 1)} s: ${faGw.map(([k, v]) => `${k} ${int(v)}`).join(', ') || 'no commands'}`, ...(badFa ? [badFa] : [])],
    });
    c.details['storesForwardAuth'] = { redis: fa.a, memory: fa.b, cpuPerRequestUs: { redis: fa.cpuA, memory: fa.cpuB }, redisCalls: authzCalls, redisPerRequest: faTotal / Math.max(1, faMeasured.requests) };
  } finally {
    stats.disconnect();
    if (red) await stopGateway(c, red, 'store-redis');
    await stopGateway(c, mem, 'store-memory');
    await own?.stop();
  }
}

/** `INFO commandstats` as calls by command name (lower case). */
async function commandCalls(r: Redis): Promise<Record<string, number>> {
  const text = await r.info('commandstats');
  const out: Record<string, number> = {};
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+)/gm)) out[m[1]!.toLowerCase()] = Number(m[2]);
  return out;
}

// ---------------------------------------------------------------------------------------------
// 8: what observability costs: the access log on vs off

async function section8(c: Ctx): Promise<void> {
  if (c.s.only && !c.s.only.has(8)) return;
  log('8: full proxy, access log on vs off');
  const off = await startGateway(gatewaySpec(c, 'access-log-off', {}));
  let on: BenchGateway | null = null;
  try {
    on = await startGateway(gatewaySpec(c, 'access-log-on', { extra: [`access_log: { file: ${JSON.stringify(join(c.work, 'access-log-on', 'data', 'access.jsonl'))} }`] }));
    const offCookie = await signIn(off.url);
    const onCookie = await signIn(on.url);
    await assertSignedInGet(off.url, offCookie, 'gateway (access log off)');
    await assertSignedInGet(on.url, onCookie, 'gateway (access log on)');
    const p = await measurePair(
      c,
      { run: (sec) => signedInLoad(c, on!.url, onCookie, sec), pids: [on.child.pid] },
      { run: (sec) => signedInLoad(c, off.url, offCookie, sec), pids: [off.child.pid] },
    );
    const bad = invalid(p.a) ?? invalid(p.b);
    c.rows.push({
      id: '8',
      what: 'Access log: signed-in GET throughput, log on / off',
      measured: `${fmt(p.a.rps / p.b.rps)} (${int(p.a.rps)} / ${int(p.b.rps)} req/s)`,
      target: '-',
      result: bad ? 'ERROR' : 'INFO',
      notes: [`CPU per request: on ${us(p.cpuA[0])}, off ${us(p.cpuB[0])}`, ...(bad ? [bad] : [])],
    });
    c.details['accessLog'] = { on: p.a, off: p.b, cpuPerRequestUs: { on: p.cpuA, off: p.cpuB } };
  } finally {
    if (on) await stopGateway(c, on, 'access-log-on');
    await stopGateway(c, off, 'access-log-off');
  }
}

async function main(): Promise<void> {
  const s = readSettings(process.env);
  const tool = pickTool(s.loadTool);
  const tmp = await tmpDir('portcullis-bench-');
  const profileDir = s.profile ? join(REPO, 'bench', 'profiles') : null;
  if (profileDir) await mkdir(profileDir, { recursive: true });
  const started = Date.now();
  const machine = { cpus: cpus().length, model: cpus()[0]?.model ?? '?', memoryGb: Math.round(totalmem() / 2 ** 30), node: process.version };
  log(`machine: ${machine.cpus} x ${machine.model}, ${machine.memoryGb} GB, node ${machine.node}; load generator ${tool}`);
  const upstream = await startChild<{ port: number }>(script('./servers/upstream.js'));
  const c: Ctx = {
    s,
    tool,
    work: tmp.dir,
    upstream: `http://127.0.0.1:${upstream.info.port}`,
    upstreamPid: upstream.pid,
    profileDir,
    rows: [],
    details: {},
    profiles: [],
    attackLatency: new Map(),
  };
  let failed: unknown = null;
  try {
    await sections12(c);
    await section3(c);
    await section4(c);
    await section5(c);
    await section6(c);
    await section7(c);
    await section8(c);
  } catch (e) {
    failed = e;
  } finally {
    await upstream.stop();
  }
  c.rows.sort((a, b) => a.id.localeCompare(b.id, 'en', { numeric: true }));
  const seconds = (Date.now() - started) / 1000;
  const header = [
    `portcullis bench, ${new Date(started).toISOString()}: ${machine.cpus} x ${machine.model}, node ${machine.node}, load generator ${tool}`,
    `${fmt(s.seconds, 0)} s per point (comparisons: ${s.rounds} alternated rounds; percentiles are the rounds' median), ${s.connections} connections, warm-up ${fmt(s.warmup, 0)} s; total ${fmt(seconds / 60, 1)} min`,
  ];
  process.stdout.write(`\n${header.join('\n')}\n\n${renderTable(c.rows)}\n`);
  if (c.profiles.length) process.stdout.write(`\n${c.profiles.map(formatProfile).join('\n\n')}\n`);
  const out = join(REPO, 'bench', 'results.json');
  await writeFile(out, `${JSON.stringify({ startedAt: new Date(started).toISOString(), seconds, machine, tool, settings: { ...s, only: s.only ? [...s.only] : null }, rows: c.rows, details: c.details, profiles: c.profiles, user: BENCH_USER.name }, null, 2)}\n`);
  process.stdout.write(`\nwritten ${out}\n`);
  await tmp.cleanup();
  if (failed) {
    process.stderr.write(`\nbench failed: ${failed instanceof Error ? failed.stack : String(failed)}\n`);
    process.exitCode = 1;
  } else if (s.strict && c.rows.some((r) => r.result === 'MISS' || r.result === 'ERROR')) process.exitCode = 1;
}

await main();
