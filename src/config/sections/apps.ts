/** `apps`: names, hosts, upstreams, WebSocket, Basic paths; each app's rules are in rules.ts. */
import type { CidrSet } from '../../net/cidr.js';
import { FrozenURL } from '../frozen.js';
import { defaultBool } from '../schema.js';
import { normaliseHost } from '../values.js';
import { checkUrl, opt, type Reader, type Val } from '../reader.js';
import { MAX_NAME_LENGTH } from './networks.js';
import { compilePaths, compileRule } from './rules.js';
import type { CompiledApp, CompiledRule, PathMatcher } from '../types.js';

export const APP_NAME = /^[a-z0-9][a-z0-9-]*$/;

export function compileApps(r: Reader, v: Val, networks: ReadonlyMap<string, CidrSet>): CompiledApp[] {
  const items = r.list(v, 'apps', { nonEmpty: 'at least one app is needed' });
  if (!items) return [];
  const apps: CompiledApp[] = [];
  const names = new Map<string, string>();
  const hostOwners = new Map<string, { app: string; path: string }>();
  for (const item of items) {
    const app = compileApp(r, item, networks);
    if (!app) continue;
    const { compiled, nameVal, hostVals } = app;
    const prevName = names.get(compiled.name);
    if (prevName !== undefined) r.issue(nameVal.node, nameVal.path, `app name "${compiled.name}" is already used by ${prevName}`);
    else if (compiled.name) names.set(compiled.name, item.path);
    compiled.hosts.forEach((h, i) => {
      const owner = hostOwners.get(h);
      const hv = hostVals[i]!;
      if (owner) r.issue(hv.node, hv.path, `host "${h}" is already served by app "${owner.app}" (${owner.path})`);
      else hostOwners.set(h, { app: compiled.name, path: item.path });
    });
    apps.push(compiled);
  }
  return apps;
}

export function compileApp(
  r: Reader,
  v: Val,
  networks: ReadonlyMap<string, CidrSet>,
): { compiled: CompiledApp; nameVal: Val; hostVals: Val[] } | null {
  const a = r.object(v, ['name', 'hosts', 'upstream', 'websocket', 'case_insensitive_paths', 'rules', 'basic_auth', 'assertion'], ['name', 'hosts', 'upstream', 'rules']);
  if (!a) return null;
  const nameVal = a.name ?? v;
  const name = opt(
    a.name,
    (x) => {
      const s = r.str(x, 'an app name');
      if (s === undefined) return undefined;
      if (!APP_NAME.test(s) || s.length > MAX_NAME_LENGTH) {
        return r.issue(x.node, x.path, `"${s}" is not a valid app name: lower-case letters, digits and "-", starting with a letter or digit, at most ${MAX_NAME_LENGTH} characters`);
      }
      return s;
    },
    '',
  );

  const hosts: string[] = [];
  const hostVals: Val[] = [];
  if (a.hosts) {
    for (const item of r.list(a.hosts, 'host names', { nonEmpty: 'an app needs at least one host' }) ?? []) {
      const s = r.str(item, 'a host name');
      if (s === undefined) continue;
      const h = normaliseHost(s);
      if (!h.ok) {
        r.issue(item.node, item.path, h.error);
        continue;
      }
      if (hosts.includes(h.host)) {
        r.issue(item.node, item.path, `host "${h.host}" is listed twice`);
        continue;
      }
      hosts.push(h.host);
      hostVals.push(item);
    }
  }

  // on an issue the placeholder is never used: a config with issues is not built
  const upstream = (a.upstream && compileUpstream(r, a.upstream)) || { kind: 'builtin' as const, name: 'whoami' as const };
  const websocket = opt(a.websocket, (x) => r.bool(x), defaultBool('apps[].websocket'));
  // IIS-hosted apps (Outlook on the web, ECP, RD Web) treat /ECP and /ecp alike: their rules must too,
  // or a deny on /ecp/** is dodged by changing the letter case
  const ci = opt(a.case_insensitive_paths, (x) => r.bool(x), defaultBool('apps[].case_insensitive_paths'));

  const rules: CompiledRule[] = [];
  if (a.rules) {
    (r.list(a.rules, 'rules') ?? []).forEach((item, index) => {
      const rule = compileRule(r, item, index, networks, ci);
      if (rule) rules.push(rule);
    });
  }

  let basicAuthPaths: PathMatcher[] = [];
  if (a.basic_auth) {
    const b = r.object(a.basic_auth, ['paths'], ['paths']);
    if (b?.paths) basicAuthPaths = compilePaths(r, b.paths, undefined, ci) ?? [];
  }

  return {
    compiled: { name, hosts, upstream, websocket, rules, basicAuthPaths, caseInsensitivePaths: ci, assertion: opt(a.assertion, (x) => r.bool(x), defaultBool('apps[].assertion')), pos: r.pos(v.node) },
    nameVal,
    hostVals,
  };
}

export function compileUpstream(r: Reader, v: Val): CompiledApp['upstream'] | undefined {
  const s = r.str(v, 'builtin:whoami or an http:// or https:// URL');
  if (s === undefined) return undefined;
  if (s === 'builtin:whoami') return { kind: 'builtin', name: 'whoami' };
  if (s.startsWith('builtin:')) return r.issue(v.node, v.path, `unknown built-in upstream "${s}"; the only one is builtin:whoami`);
  const u = checkUrl(r, v, s, ['http:', 'https:']);
  if (!u) return undefined;
  if (u.username || u.password || s.includes('@')) {
    return r.issue(v.node, v.path, 'the upstream URL cannot carry credentials (user:password@); the gateway forwards identity in headers');
  }
  if (s.includes('?')) return r.issue(v.node, v.path, 'the upstream URL cannot have a query string');
  if (u.pathname !== '/') {
    return r.issue(v.node, v.path, `the upstream URL cannot have a path ("${u.pathname}"): the app receives exactly the path that was authorised`);
  }
  const url = new FrozenURL(u.href);
  return { kind: 'http', url, origin: url.origin };
}
