/**
 * Setting up a real gateway for the bench: a config file and users file in a work directory, the
 * gateway in its own process (servers/gateway.ts), and a real sign-in through the login form.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { PasswordHasher, PRODUCTION_PARAMS, TEST_PARAMS } from '../../src/auth/password.js';
import { hiddenField, parseSetCookie } from '../../test/helpers/portal.js';
import { startChild, type Child } from './ipc.js';

export const HOST = 'mail.bench';
export const SESSION_COOKIE = 'portcullis_dev_session';
const CSRF_COOKIE = 'portcullis_dev_csrf';

/** The signed-in user of every load point; a passphrase the password policy accepts. */
export const BENCH_USER = { name: 'benchuser', password: 'amber lantern orchid gravel 1987', email: 'bench@example.org', groups: ['staff'] };

export type Argon2Mode = 'test' | 'production';

export interface GatewayInfo {
  port: number;
  adminPort: number;
  pid: number;
}

export interface GatewayStats {
  rss: number;
  heapUsed: number;
  external: number;
  arrayBuffers: number;
  eldP50: number;
  eldP99: number;
  eldMax: number;
  hashInFlight: number;
  hashRejected: number;
  hashCompleted: number;
}

export interface BenchGateway {
  child: Child<GatewayInfo>;
  url: string;
  adminUrl: string;
  configFile: string;
  stats(): Promise<GatewayStats>;
  stop(): Promise<void>;
}

export interface GatewaySpec {
  /** A name for the work directory and the profile file. */
  label: string;
  workDir: string;
  upstream: string;
  argon2: Argon2Mode;
  /** YAML lines for `networks`, `rules` of the app, and `login_limits` (or empty). */
  networks: string;
  rules: string;
  loginLimits?: string;
  /** `store:` value (default memory), e.g. a redis:// URL. */
  store?: string;
  /** Extra top-level YAML lines (e.g. `access_log: { file: ... }`). */
  extra?: string[];
  /** Extra YAML keys of the app, each a line like `assertion: false`. */
  appExtra?: string[];
  /** Extra node flags (e.g. --expose-gc). */
  execArgv?: string[];
  /** Directory for a `--cpu-prof` profile, or null. */
  profileDir: string | null;
}

export function configText(spec: GatewaySpec, dir: string): string {
  return [
    'listen: "127.0.0.1:0"',
    // the bench's own loopback address is the proxy in front (nginx, the attacker's path)
    'trusted_proxies: ["127.0.0.1/32"]',
    `admin: { listen: "127.0.0.1:0", token_file: ${JSON.stringify(join(dir, 'data', 'admin.token'))} }`,
    `data_dir: ${JSON.stringify(join(dir, 'data'))}`,
    `users_file: ${JSON.stringify(join(dir, 'users.yaml'))}`,
    `audit: { file: ${JSON.stringify(join(dir, 'data', 'audit.jsonl'))} }`,
    ...(spec.store ? [`store: ${JSON.stringify(spec.store)}`] : []),
    ...(spec.extra ?? []),
    'networks:',
    spec.networks,
    ...(spec.loginLimits ? ['login_limits:', spec.loginLimits] : []),
    'apps:',
    '  - name: mail',
    `    hosts: ["${HOST}"]`,
    `    upstream: "${spec.upstream}"`,
    ...(spec.appExtra ?? []).map((l) => `    ${l}`),
    '    rules:',
    spec.rules,
    '',
  ].join('\n');
}

export async function usersFileText(mode: Argon2Mode): Promise<string> {
  const h = new PasswordHasher(mode === 'production' ? PRODUCTION_PARAMS : TEST_PARAMS);
  const u = BENCH_USER;
  return `users:\n  ${u.name}:\n    password: ${JSON.stringify(await h.hash(u.password))}\n    email: ${u.email}\n    groups: [${u.groups.join(', ')}]\n`;
}

export async function startGateway(spec: GatewaySpec): Promise<BenchGateway> {
  const dir = join(spec.workDir, spec.label);
  await mkdir(join(dir, 'data'), { recursive: true, mode: 0o700 });
  const configFile = join(dir, 'portcullis.yaml');
  await writeFile(configFile, configText(spec, dir));
  await writeFile(join(dir, 'users.yaml'), await usersFileText(spec.argon2), { mode: 0o600 });
  const execArgv = [...(spec.execArgv ?? [])];
  if (spec.profileDir) execArgv.push('--cpu-prof', `--cpu-prof-dir=${spec.profileDir}`, `--cpu-prof-name=gateway-${spec.label}.cpuprofile`);
  const child = await startChild<GatewayInfo>(new URL('../servers/gateway.js', import.meta.url), {
    args: [configFile],
    env: { PORTCULLIS_ARGON2: spec.argon2 },
    execArgv,
  });
  return {
    child,
    url: `http://127.0.0.1:${child.info.port}`,
    adminUrl: `http://127.0.0.1:${child.info.adminPort}`,
    configFile,
    stats: () => child.call<GatewayStats>('stats'),
    stop: () => child.stop(),
  };
}

function cookiesFrom(setCookie: string | string[] | undefined): Map<string, string> {
  const out = new Map<string, string>();
  for (const line of Array.isArray(setCookie) ? setCookie : setCookie ? [setCookie] : []) {
    const c = parseSetCookie(line);
    out.set(c.name, c.value);
  }
  return out;
}

/**
 * Sign in through the login form as a browser would (GET the form for its CSRF cookie and field,
 * POST it) and return the session cookie's value.
 */
export async function signIn(base: string, user = BENCH_USER, extraHeaders: Record<string, string> = {}): Promise<string> {
  const page = await request(`${base}/.portcullis/login?rd=%2Finbox`, { headers: { host: HOST, ...extraHeaders } });
  const html = await page.body.text();
  if (page.statusCode !== 200) throw new Error(`GET /.portcullis/login answered ${page.statusCode}: ${html.slice(0, 300)}`);
  const csrfCookie = cookiesFrom(page.headers['set-cookie']).get(CSRF_COOKIE);
  const csrf = hiddenField(html, 'csrf');
  if (!csrfCookie || !csrf) throw new Error('the login page set no CSRF cookie or field');
  const fields: Record<string, string> = { csrf, username: user.name, password: user.password };
  const rd = hiddenField(html, 'rd');
  if (rd !== null) fields['rd'] = rd;
  const post = await request(`${base}/.portcullis/login`, {
    method: 'POST',
    headers: { host: HOST, 'content-type': 'application/x-www-form-urlencoded', cookie: `${CSRF_COOKIE}=${csrfCookie}`, ...extraHeaders },
    body: new URLSearchParams(fields).toString(),
  });
  const text = await post.body.text();
  const session = cookiesFrom(post.headers['set-cookie']).get(SESSION_COOKIE);
  if (post.statusCode !== 303 || !session) throw new Error(`POST /.portcullis/login answered ${post.statusCode} without a session: ${text.slice(0, 300)}`);
  return session;
}

/**
 * One GET with the session cookie; throws unless it reached the app as `BENCH_USER` (so a load
 * point never measures redirects or refusals by mistake).
 */
export async function assertSignedInGet(base: string, cookie: string, what: string): Promise<void> {
  const r = await request(`${base}/inbox`, { headers: { host: HOST, cookie: `${SESSION_COOKIE}=${cookie}` } });
  const text = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`${what}: a signed-in GET answered ${r.statusCode}: ${text.slice(0, 300)}`);
  const body = JSON.parse(text) as { user: string | null };
  if (body.user !== BENCH_USER.name) throw new Error(`${what}: the app saw Remote-User ${JSON.stringify(body.user)}, not ${BENCH_USER.name}`);
}

/** The value of each named Prometheus sample (summed over labels) in an exposition text. */
export function metricValues(text: string, names: readonly string[]): Record<string, number> {
  const out: Record<string, number> = {};
  for (const line of text.split('\n')) {
    if (!line || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (!m || !names.includes(m[1]!)) continue;
    out[m[1]!] = (out[m[1]!] ?? 0) + Number(m[3]);
  }
  return out;
}

/** Samples of labelled series, e.g. portcullis_logins_total{factor="password",outcome="failure"}. */
export function metricSeries(text: string, name: string): Array<{ labels: string; value: number }> {
  const out: Array<{ labels: string; value: number }> = [];
  for (const line of text.split('\n')) {
    if (!line.startsWith(name)) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)/.exec(line);
    if (m && m[1] === name) out.push({ labels: m[2] ?? '', value: Number(m[3]) });
  }
  return out;
}

export async function fetchMetrics(adminUrl: string): Promise<string> {
  const r = await request(`${adminUrl}/metrics`);
  const t = await r.body.text();
  if (r.statusCode !== 200) throw new Error(`admin /metrics answered ${r.statusCode}`);
  return t;
}
