/** `listen`, `tls`, `admin`, `store`: where the gateway listens and keeps its state. */
import { accessSync, constants as fsConstants, statSync } from 'node:fs';
import { join } from 'node:path';
import { defaultText } from '../schema.js';
import { normaliseHost, parseListen, unsafeUrlText } from '../values.js';
import { isSentinelUrl, parseSentinelUrl } from '../../store/redis-url.js';
import { checkUrl, opt, readSecret, secretShown, type Reader, type Val } from '../reader.js';
import type { CompiledConfig, ListenAddress } from '../types.js';

/** Whether two listeners would collide (port 0 asks the OS for a free port, so never does). */
export function sharesPort(a: ListenAddress, b: ListenAddress): boolean {
  const wildcard = (h: string) => h === '0.0.0.0' || h === '::';
  return a.port !== 0 && a.port === b.port && (a.host === b.host || wildcard(a.host) || wildcard(b.host));
}

export function compileTls(r: Reader, v: Val, cwd: string, checkFiles: boolean): CompiledConfig['tls'] {
  const t = r.object(v, ['cert', 'key'], ['cert', 'key']);
  if (!t) return null;
  const read = (f: Val | undefined, what: string): string => {
    const p = f ? r.filePath(f, cwd) : undefined;
    if (f && p !== undefined && checkFiles) {
      const why = unreadableFile(p);
      if (why) r.issue(f.node, f.path, `cannot read the TLS ${what} ${p}: ${why}`);
    }
    return p ?? '';
  };
  return { cert: read(t.cert, 'certificate'), key: read(t.key, 'key') };
}

export function unreadableFile(p: string): string | null {
  try {
    if (!statSync(p).isFile()) return 'not a regular file';
    accessSync(p, fsConstants.R_OK);
    return null;
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if (code === 'ENOENT') return 'no such file';
    if (code === 'EACCES') return 'permission denied';
    return e instanceof Error ? e.message : String(e);
  }
}


export function compileAdmin(r: Reader, v: Val | undefined, cwd: string, dataDir: string): { admin: CompiledConfig['admin']; listenAt?: Val } {
  const dflt = { listen: parseListen(defaultText('admin.listen'))!, tokenFile: join(dataDir, 'admin.token'), hosts: [] as string[] };
  const a = v ? r.object(v, ['listen', 'token_file', 'hosts']) : null;
  if (!a) return { admin: dflt };
  const listen = opt(a.listen, (x) => r.listen(x), dflt.listen);
  const tokenFile = opt(a.token_file, (x) => r.filePath(x, cwd), dflt.tokenFile);
  const hosts: string[] = [];
  for (const item of a.hosts ? (r.list(a.hosts, 'host names') ?? []) : []) {
    const s = r.str(item, 'a host name');
    if (s === undefined) continue;
    const h = normaliseHost(s);
    if (!h.ok) r.issue(item.node, item.path, h.error);
    else if (!hosts.includes(h.host)) hosts.push(h.host);
  }
  return { admin: { listen, tokenFile, hosts }, ...(a.listen ? { listenAt: a.listen } : {}) };
}

export function compileStore(r: Reader, v: Val, cwd: string, env: NodeJS.ProcessEnv): CompiledConfig['store'] | undefined {
  const sec = readSecret(r, v, '"memory" or a redis:// URL', cwd, env);
  if (sec === undefined) return undefined;
  const s = sec.value;
  if (s === 'memory') return { kind: 'memory' };
  const shown = secretShown(sec, 'Redis URL');
  if (isSentinelUrl(s)) {
    const unsafe = unsafeUrlText(s);
    if (unsafe) return r.issue(v.node, v.path, `the URL ${unsafe}`);
    try {
      parseSentinelUrl(s);
    } catch (e) {
      return r.issue(v.node, v.path, `${shown}: ${(e as Error).message}`);
    }
    return { kind: 'redis', url: s };
  }
  if (!/^rediss?:\/\//i.test(s)) {
    // a typo such as "memroy" is worth showing; anything that may carry a password is not
    const found = sec.inline && /^[A-Za-z0-9+.-]*(:\/\/[^@]*)?$/.test(s) ? `, found "${s}"` : sec.inline ? '' : ` (${sec.source})`;
    return r.issue(v.node, v.path, `expected "memory" or a redis://, rediss:// or redis-sentinel:// URL${found}`);
  }
  const u = checkUrl(r, v, s, ['redis:', 'rediss:'], shown);
  if (!u) return undefined;
  if (!/^(\/([0-9]|[1-9][0-9]{1,3})?)?$/.test(u.pathname)) return r.issue(v.node, v.path, `the path of a Redis URL is the database number (/0), found "${u.pathname}"`);
  for (const k of u.searchParams.keys()) {
    if (k !== 'prefix') return r.issue(v.node, v.path, `a Redis URL takes only the "prefix" parameter (key prefix, to keep gateways apart), found "${k}"`);
  }
  const prefix = u.searchParams.get('prefix');
  if (prefix !== null && !/^[A-Za-z0-9._:-]{1,64}$/.test(prefix)) return r.issue(v.node, v.path, `the Redis key prefix "${prefix}" may use letters, digits and . _ : - (at most 64)`);
  return { kind: 'redis', url: s };
}
