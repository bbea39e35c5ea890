/**
 * The Sentinel form of the store URL (pure parsing, no connection), shared by the config compiler
 * and the Redis store:
 *
 *   redis-sentinel://[[USER]:PASSWORD@]HOST[:PORT][,HOST[:PORT]...]/MASTER[/DB][?PARAMS]
 *
 * HOST:PORT are the Sentinels (port 26379 when left out; IPv6 in brackets), MASTER the name the
 * Sentinels monitor (`sentinel monitor MASTER ...`), DB the database number (default 0). USER and
 * PASSWORD authenticate to the Redis primary and replicas (`requirepass` / ACL), as in redis://.
 * PARAMS: `prefix` (the key prefix, as for redis://), `sentinel_password` and `sentinel_username`
 * (when the Sentinels themselves require auth: `requirepass` in sentinel.conf). Percent-encode
 * reserved characters in passwords. WHATWG `URL` cannot parse a host list, hence this parser.
 */

export interface SentinelUrl {
  sentinels: Array<{ host: string; port: number }>;
  name: string;
  db: number;
  username?: string;
  password?: string;
  sentinelUsername?: string;
  sentinelPassword?: string;
  prefix?: string;
}

export const SENTINEL_SCHEME = 'redis-sentinel:';
const PARAMS = ['prefix', 'sentinel_password', 'sentinel_username'] as const;
const MASTER_NAME = /^[A-Za-z0-9._-]{1,64}$/;
const HOST_NAME = /^(?=.{1,253}$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/;
const IPV6 = /^[0-9A-Fa-f:.]{2,45}$/;
export const PREFIX_RE = /^[A-Za-z0-9._:-]{1,64}$/;
const MAX_SENTINELS = 16;

export function isSentinelUrl(s: string): boolean {
  return s.slice(0, SENTINEL_SCHEME.length + 2).toLowerCase() === `${SENTINEL_SCHEME}//`;
}

function decode(s: string, what: string): string {
  try {
    return decodeURIComponent(s);
  } catch {
    throw new Error(`${what} has a broken percent-encoding`);
  }
}

/**
 * Parse a `redis-sentinel://` URL. Throws an Error whose message never contains a password
 * (messages name the part that is wrong, e.g. `sentinel 2 "h2:x": the port ...`).
 */
export function parseSentinelUrl(s: string): SentinelUrl {
  if (!isSentinelUrl(s)) throw new Error('a Sentinel URL starts with redis-sentinel://');
  let rest = s.slice(SENTINEL_SCHEME.length + 2);
  if (rest.includes('#')) throw new Error('a Sentinel URL cannot have a fragment (#...)');
  let query = '';
  const q = rest.indexOf('?');
  if (q >= 0) {
    query = rest.slice(q + 1);
    rest = rest.slice(0, q);
  }
  const slash = rest.indexOf('/');
  if (slash < 0) throw new Error('a Sentinel URL names the monitored master after the hosts: redis-sentinel://h1:26379,h2:26379/mymaster');
  let authority = rest.slice(0, slash);
  const path = rest.slice(slash + 1);
  const out: SentinelUrl = { sentinels: [], name: '', db: 0 };

  const at = authority.lastIndexOf('@');
  if (at >= 0) {
    const userinfo = authority.slice(0, at);
    authority = authority.slice(at + 1);
    const colon = userinfo.indexOf(':');
    const user = colon < 0 ? userinfo : userinfo.slice(0, colon);
    const pass = colon < 0 ? '' : userinfo.slice(colon + 1);
    if (user) out.username = decode(user, 'the user name');
    if (pass) out.password = decode(pass, 'the password');
    if (!user && !pass) throw new Error('the URL has an empty user:password@ part');
  }

  const hosts = authority.split(',');
  if (hosts.length > MAX_SENTINELS) throw new Error(`at most ${MAX_SENTINELS} Sentinels may be listed`);
  hosts.forEach((h, i) => {
    const n = i + 1;
    if (h === '') throw new Error(`Sentinel ${n} is empty (hosts are separated by single commas)`);
    let host: string;
    let portText: string | undefined;
    const v6 = /^\[([^\]]*)\](?::(.*))?$/.exec(h);
    if (v6) {
      host = v6[1]!;
      portText = v6[2];
      if (!IPV6.test(host) || !host.includes(':')) throw new Error(`Sentinel ${n} "${h}": not a valid IPv6 address in brackets`);
    } else {
      const c = h.indexOf(':');
      host = c < 0 ? h : h.slice(0, c);
      portText = c < 0 ? undefined : h.slice(c + 1);
      if (!HOST_NAME.test(host)) throw new Error(`Sentinel ${n} "${h}": "${host}" is not a host name or IPv4 address`);
    }
    let port = 26379;
    if (portText !== undefined) {
      if (!/^[0-9]{1,5}$/.test(portText) || Number(portText) < 1 || Number(portText) > 65535) {
        throw new Error(`Sentinel ${n} "${h}": the port must be a number from 1 to 65535`);
      }
      port = Number(portText);
    }
    out.sentinels.push({ host: host.toLowerCase(), port });
  });

  const parts = path.split('/');
  if (parts.length > 2) throw new Error('the path of a Sentinel URL is /MASTER or /MASTER/DB');
  const name = decode(parts[0] ?? '', 'the master name');
  if (!MASTER_NAME.test(name)) throw new Error('the master name (the path after the hosts) may use letters, digits and . _ - (1 to 64)');
  out.name = name;
  if (parts.length === 2 && parts[1] !== '') {
    if (!/^([0-9]|[1-9][0-9]{1,3})$/.test(parts[1]!)) throw new Error(`the database number after the master name must be a number (0 to 9999), found "${parts[1]}"`);
    out.db = Number(parts[1]);
  }

  if (query !== '') {
    const seen = new Set<string>();
    for (const pair of query.split('&')) {
      const eq = pair.indexOf('=');
      const k = decode(eq < 0 ? pair : pair.slice(0, eq), 'a parameter name');
      const val = decode(eq < 0 ? '' : pair.slice(eq + 1).replace(/\+/g, ' '), `the parameter "${k}"`);
      if (!(PARAMS as readonly string[]).includes(k)) {
        throw new Error(`a Sentinel URL takes only the parameters ${PARAMS.join(', ')}, found "${k}"`);
      }
      if (seen.has(k)) throw new Error(`the parameter "${k}" is given twice`);
      seen.add(k);
      if (val === '') throw new Error(`the parameter "${k}" is empty`);
      if (k === 'prefix') {
        if (!PREFIX_RE.test(val)) throw new Error(`the Redis key prefix "${val}" may use letters, digits and . _ : - (at most 64)`);
        out.prefix = val;
      } else if (k === 'sentinel_password') out.sentinelPassword = val;
      else out.sentinelUsername = val;
    }
  }
  return out;
}

/** The URL without any credential, for messages: `redis-sentinel://h1:26379,h2:26379/mymaster/0`. */
export function describeSentinelUrl(u: SentinelUrl): string {
  const hosts = u.sentinels.map((s) => `${s.host.includes(':') ? `[${s.host}]` : s.host}:${s.port}`).join(',');
  return `redis-sentinel://${hosts}/${u.name}/${u.db}`;
}
