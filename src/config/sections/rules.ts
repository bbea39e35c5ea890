/** `apps[].rules`: conditions (paths, methods, networks, groups) and the policy. */
import type { CidrSet } from '../../net/cidr.js';
import { FrozenSet } from '../frozen.js';
import { enumOf } from '../schema.js';
import { compilePathPattern } from '../paths.js';
import { compileNetworkRefs } from './networks.js';
import type { Reader, Val } from '../reader.js';
import type { CompiledRule, PathMatcher, PolicyName } from '../types.js';

export const POLICIES = enumOf<PolicyName>('apps[].rules[].policy');
/** RFC 9110 token characters. */
export const HTTP_TOKEN = /^[!#$%&'*+.^_`|~0-9A-Za-z-]+$/;
export const REFUSED_METHODS: Record<string, string> = {
  CONNECT: 'CONNECT is refused: the gateway never opens tunnels for clients',
  TRACE: 'TRACE is refused: it echoes the request, credentials and cookies included (cross-site tracing)',
};

export const RULE_KEYS = ['paths', 'methods', 'networks', 'groups', 'policy'] as const;

export function compileRule(r: Reader, v: Val, index: number, networks: ReadonlyMap<string, CidrSet>, caseInsensitive: boolean): CompiledRule | null {
  const f = r.object(v, RULE_KEYS, ['policy']);
  if (!f) return null;
  const emptyList = (key: string) => `an empty ${key} list would never match; remove the key to match any ${key === 'paths' ? 'path' : key.replace(/s$/, '')}`;
  const policy = f.policy ? r.oneOf(f.policy, POLICIES) : undefined;
  const paths = f.paths ? compilePaths(r, f.paths, emptyList('paths'), caseInsensitive) : null;
  const methods = f.methods ? compileMethods(r, f.methods, emptyList('methods')) : null;
  const refs = f.networks ? compileNetworkRefs(r, f.networks, networks, 'rule', emptyList('networks')) : null;
  const groups = f.groups ? compileGroups(r, f.groups, emptyList('groups')) : null;
  if (policy === 'bypass' && f.groups && f.policy) {
    r.issue(f.policy.node, f.policy.path, 'a groups condition is only known after sign-in, so it cannot bypass; use password or mfa, or drop groups');
  }
  if (!policy || paths === undefined || methods === undefined || refs === undefined || groups === undefined) return null;

  const conds: string[] = [];
  if (paths) conds.push(`paths: [${paths.map((p) => p.source).join(', ')}]`);
  if (methods) conds.push(`methods: [${[...methods].join(', ')}]`);
  if (refs) conds.push(`networks: [${refs.names.join(', ')}]`);
  if (groups) conds.push(`groups: [${groups.join(', ')}]`);
  return {
    index,
    pos: r.pos(v.node),
    policy,
    paths,
    methods: methods ? new FrozenSet(methods) : null,
    networks: refs ? refs.set : null,
    networkNames: refs ? refs.names : null,
    groups,
    label: `${v.path} {${conds.join(', ')}} -> ${policy}`,
  };
}

export function compilePaths(r: Reader, v: Val, emptyList?: string, caseInsensitive = false): PathMatcher[] | undefined {
  const items = r.list(v, 'path patterns', emptyList ? { nonEmpty: emptyList } : { nonEmpty: 'needs at least one path pattern' });
  if (!items) return undefined;
  const out: PathMatcher[] = [];
  let failed = false;
  for (const item of items) {
    const s = r.str(item, 'a path pattern');
    const p = s === undefined ? undefined : compilePathPattern(s, { caseInsensitive });
    if (p && !p.ok) r.issue(item.node, item.path, p.error);
    if (p?.ok) out.push(p.matcher);
    else failed = true;
  }
  return failed ? undefined : out;
}

export function compileMethods(r: Reader, v: Val, emptyList: string): string[] | undefined {
  const items = r.list(v, 'HTTP methods', { nonEmpty: emptyList });
  if (!items) return undefined;
  const out: string[] = [];
  let failed = false;
  for (const item of items) {
    const s = r.str(item, 'an HTTP method');
    let why: string | null = null;
    if (s === undefined) why = '';
    else if (!HTTP_TOKEN.test(s)) why = `"${s}" is not an HTTP method`;
    else if (s !== s.toUpperCase()) why = `"${s}": HTTP methods are case-sensitive and "${s}" is not "${s.toUpperCase()}"; write ${s.toUpperCase()}`;
    else if (REFUSED_METHODS[s]) why = REFUSED_METHODS[s]!;
    else if (out.includes(s)) why = `${s} is listed twice`;
    if (why !== null) {
      if (why) r.issue(item.node, item.path, why);
      failed = true;
    } else out.push(s!);
  }
  return failed ? undefined : out;
}

export function compileGroups(r: Reader, v: Val, emptyList: string): string[] | undefined {
  const items = r.list(v, 'group names', { nonEmpty: emptyList });
  if (!items) return undefined;
  const out: string[] = [];
  let failed = false;
  for (const item of items) {
    const s = r.str(item, 'a group name');
    let why: string | null = null;
    if (s === undefined) why = '';
    else if (!/^[^\s,\u0000-\u001f\u007f]+$/.test(s)) why = `"${s}" is not a valid group name (no spaces, commas or control characters)`;
    else if (out.includes(s)) why = `group "${s}" is listed twice`;
    if (why !== null) {
      if (why) r.issue(item.node, item.path, why);
      failed = true;
    } else out.push(s!);
  }
  return failed ? undefined : out;
}
