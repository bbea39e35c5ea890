/**
 * The configuration contract, written once: every key with its type, default, an example and what
 * it does. The section compilers (sections/*.ts) read their defaults from here, docs/configuration.md
 * and the JSON Schema (`portcullis schema`, docs/portcullis.schema.json) are generated from it, and
 * test/unit/config-schema.test.ts proves that the compiler accepts exactly these keys.
 *
 * Values (`default`, `example`) are written as they are in the YAML (`30m`, not 1800000).
 */
import { NOTIFY_EVENTS } from '../audit/events.js';
import { parseDuration } from './duration.js';
import { IPV6_PREFIX_MIN } from './types.js';

export type YamlValue = string | number | boolean | null | readonly YamlValue[] | { readonly [key: string]: YamlValue };

export type KeyType =
  | 'string'
  | 'integer'
  | 'boolean'
  | 'duration'
  | 'listen'
  | 'path'
  | 'url'
  | 'cidr'
  | 'object'
  | 'list'
  | 'map';

export interface KeySchema {
  readonly type: KeyType;
  readonly description: string;
  /** The default as written in YAML; absent when there is none (or it is computed: see `defaultText`). */
  readonly default?: YamlValue;
  /** A default that is not a literal (`DATA_DIR/audit.jsonl`, `min(4, max(2, CPUs))`), for the docs. */
  readonly defaultText?: string;
  readonly example?: YamlValue;
  readonly enum?: readonly (string | number)[];
  readonly min?: number;
  readonly max?: number;
  /** May also be written `{ file: PATH }` or `{ env: NAME }`; never echoed in messages. */
  readonly secret?: boolean;
  /** `null` is accepted (and means "off"). */
  readonly nullable?: boolean;
  readonly required?: boolean;
  /**
   * Left out of the every-example configuration because it excludes another key there
   * (`attack.factor` excludes `attack.threshold`); the schema test compiles it on its own.
   */
  readonly alternative?: boolean;
  /** An optional section whose absence means "off": its keys' defaults apply only once it is written. */
  readonly optionalSection?: boolean;
  readonly keys?: Readonly<Record<string, KeySchema>>;
  readonly items?: KeySchema;
  readonly values?: KeySchema;
}

/**
 * Sections the SPEC names that other work in progress adds to the compiler (directory users,
 * passkeys, enrolment shared with passkeys, the access log). The schema test tolerates the compiler
 * not knowing them YET; the integrator empties this list once they are merged.
 */
export const PENDING_SECTIONS: readonly string[] = [];

const dur = (description: string, dflt: string | undefined, extra: Partial<KeySchema> = {}): KeySchema => ({
  type: 'duration',
  description,
  ...(dflt !== undefined ? { default: dflt } : {}),
  example: dflt ?? '15m',
  ...extra,
});
const int = (description: string, dflt: number | undefined, min: number, max: number, extra: Partial<KeySchema> = {}): KeySchema => ({
  type: 'integer',
  description,
  ...(dflt !== undefined ? { default: dflt } : {}),
  example: dflt ?? min,
  min,
  max,
  ...extra,
});
const obj = (description: string, keys: Record<string, KeySchema>, extra: Partial<KeySchema> = {}): KeySchema => ({ type: 'object', description, keys, ...extra });
const networkRefs = (description: string, example: YamlValue = ['office']): KeySchema => ({
  type: 'list',
  description,
  items: { type: 'string', description: 'a network name (from `networks`) or a CIDR', example: 'office' },
  default: [],
  example,
});

const ENROL_KEYS = {
  networks: networkRefs('where a first factor (TOTP or passkey) may be enrolled; empty: nowhere (then only `portcullis totp set` provisions devices)'),
  prompt: { type: 'boolean', description: 'offer enrolment right after sign-in on those networks', default: false, example: false },
} as const satisfies Record<string, KeySchema>;

/** Every top-level key, in the order the documentation shows them. */
export const CONFIG_SCHEMA: Readonly<Record<string, KeySchema>> = {
  listen: {
    type: 'listen',
    description: 'address and port of the gateway listener: an IP literal and a port ([::1]:8080 for IPv6; 0.0.0.0 or [::] for every address)',
    default: '127.0.0.1:8080',
    example: '0.0.0.0:443',
  },
  tls: obj(
    'serve HTTPS with this certificate and key (PEM files, re-read on SIGHUP); absent or null: plain HTTP (behind a TLS-terminating proxy)',
    {
      cert: { type: 'path', description: 'certificate chain (PEM)', required: true, example: '/etc/portcullis/tls/fullchain.pem' },
      key: { type: 'path', description: 'private key (PEM)', required: true, example: '/etc/portcullis/tls/privkey.pem' },
    },
    { nullable: true, optionalSection: true },
  ),
  trusted_proxies: {
    type: 'list',
    description: 'peers whose X-Forwarded-* headers and PROXY header are believed; a range covering every address is refused',
    items: { type: 'cidr', description: 'a CIDR (a bare address is a /32 or /128)', example: '10.0.0.0/8' },
    default: [],
    example: ['10.0.0.0/8', '2001:db8::/32'],
  },
  proxy_protocol: { type: 'boolean', description: 'expect a PROXY v1/v2 header from trusted_proxies (needs trusted_proxies)', default: false, example: true },
  admin: obj('the admin listener: /metrics, /readyz and the admin API the CLI uses', {
    listen: { type: 'listen', description: 'address and port of the admin listener (cannot share the gateway\'s port)', default: '127.0.0.1:9090', example: '127.0.0.1:9090' },
    token_file: { type: 'path', description: 'the admin API bearer token (created on first start)', defaultText: 'DATA_DIR/admin.token', example: './data/admin.token' },
    hosts: {
      type: 'list',
      description: 'host names the admin listener also answers to in Host (a TLS proxy in front that passes the public name); besides these only IP addresses, localhost and the listen host are accepted (DNS rebinding)',
      items: { type: 'string', description: 'a host name (matched on any port)', example: 'admin.example.org' },
      default: [],
      example: ['admin.example.org'],
    },
  }),
  data_dir: { type: 'path', description: 'state: sessions and counters of the memory store, the audit log, the admin token', default: './data', example: '/var/lib/portcullis' },
  store: {
    type: 'url',
    description:
      '`memory` (one process), or redis://[user:pass@]host[:port][/db][?prefix=P] (rediss:// for TLS; redis-sentinel://h1:26379,h2:26379/mymaster for Sentinel) to share sessions and counters between gateways',
    default: 'memory',
    example: 'redis://127.0.0.1:6379/0',
    secret: true,
  },
  workers: int('worker processes sharing the listener; above 1 only with a redis store', 1, 1, 64),
  networks: {
    type: 'map',
    description: 'named networks, referred to by rules, lockdown and enrolment; names match ^[a-z0-9][a-z0-9_-]*$ (at most 63 characters)',
    values: { type: 'list', description: 'the CIDRs of the network', items: { type: 'cidr', description: 'a CIDR', example: '192.0.2.0/24' }, example: ['192.0.2.0/24'] },
    default: {},
    example: { office: ['192.0.2.0/24', '2001:db8:10::/48'] },
  },
  users_file: { type: 'path', description: 'the users file (created on first start with one admin user)', default: './config/users.yaml', example: '/etc/portcullis/users.yaml' },
  session: obj('browser sessions', {
    idle_timeout: dur('signed out after this long without a request (at most absolute_timeout)', '30m'),
    absolute_timeout: dur('signed out after this long in any case', '12h'),
    grace: dur('how long a session this instance verified may continue while Redis is unreachable (at most idle_timeout)', '0s'),
    domain: { type: 'string', description: 'one sign-in for every app host under this domain (with portal)', example: 'example.org' },
    portal: { type: 'url', description: 'with domain: the https origin of the host that serves the sign-in pages', example: 'https://auth.example.org' },
  }),
  totp: obj('time-based one-time codes (RFC 6238)', {
    issuer: { type: 'string', description: 'the name authenticator apps show (no ":", at most 64 characters)', default: 'portcullis', example: 'Example Mail' },
    period: int('seconds a code lasts', 30, 15, 120),
    digits: { type: 'integer', description: 'digits of a code', enum: [6, 8], default: 6, example: 6 },
    algorithm: { type: 'string', description: 'HMAC hash', enum: ['SHA1', 'SHA256', 'SHA512'], default: 'SHA1', example: 'SHA1' },
    skew: int('periods accepted either side of now', 1, 0, 2),
    always: { type: 'boolean', description: 'true: an enrolled user gives a code at every sign-in, even under a `password` rule', default: false, example: false },
    enrol: obj('where a first factor may be enrolled (or the top-level `enrol`, not both)', ENROL_KEYS),
  }),
  enrol: obj('where a first factor (TOTP or passkey) may be enrolled; shared with passkeys (or totp.enrol, not both)', ENROL_KEYS, { alternative: true }),
  webauthn: obj(
    'passkeys (WebAuthn) as a second factor, or alone where passwordless',
    {
      rp_id: { type: 'string', description: 'the relying party id: a domain every app host is under (required unless session.domain is set; with it, it is that domain)', example: 'example.org' },
      rp_name: { type: 'string', description: 'the name shown by the authenticator', default: 'portcullis', example: 'Example Mail' },
      origins: { type: 'list', description: 'https origins the ceremonies may come from', items: { type: 'url', description: 'an https origin', example: 'https://mail.example.org' }, example: ['https://mail.example.org'] },
      passwordless: { type: 'boolean', description: 'a discoverable passkey with user verification signs in alone (no password) from networks where some `passkey` rule could admit the client; registration then asks for a discoverable credential', default: false, example: false },
    },
    { optionalSection: true },
  ),
  ldap: obj(
    'users from a directory (users_file users are looked up first)',
    {
      implementation: { type: 'string', description: 'directory flavour; sets the default filters and attributes', enum: ['activedirectory', 'openldap', 'custom'], required: true, example: 'activedirectory' },
      url: { type: 'list', description: 'ldap:// or ldaps:// servers, tried in order', items: { type: 'url', description: 'a server URL', example: 'ldaps://dc1.example.org' }, required: true, example: ['ldaps://dc1.example.org', 'ldaps://dc2.example.org'] },
      start_tls: { type: 'boolean', description: 'upgrade ldap:// with StartTLS', default: false, example: false },
      insecure: { type: 'boolean', description: 'allow plain ldap:// without StartTLS (passwords cross the network in clear; logs a warning)', default: false, example: false },
      ca_file: { type: 'path', description: 'CA certificate(s) to verify the directory (PEM)', example: '/etc/portcullis/ldap-ca.pem' },
      bind_dn: { type: 'string', description: 'the service account that searches for users', example: 'CN=portcullis,OU=Service,DC=example,DC=org' },
      bind_password: { type: 'string', description: 'its password (best written { file: /run/secrets/ldap } or { env: NAME })', secret: true, example: 'service-account-password' },
      base_dn: { type: 'string', description: 'where users are searched', required: true, example: 'DC=example,DC=org' },
      user_filter: { type: 'string', description: 'search filter; {username} is replaced (escaped)', defaultText: 'per implementation', example: '(&(objectClass=user)(sAMAccountName={username}))' },
      group_filter: { type: 'string', description: 'search filter for groups; null: read the groups attribute', nullable: true, default: null, example: null },
      group_base_dn: { type: 'string', description: 'groups count only under this DN (searched there; memberOf values elsewhere ignored); null: anywhere', nullable: true, default: null, example: 'OU=Gateway Groups,DC=example,DC=org' },
      attributes: obj('attribute names', {
        username: { type: 'string', description: 'user name', defaultText: 'per implementation', example: 'sAMAccountName' },
        email: { type: 'string', description: 'e-mail address', defaultText: 'per implementation', example: 'mail' },
        name: { type: 'string', description: 'display name', defaultText: 'per implementation', example: 'displayName' },
        groups: { type: 'string', description: 'group membership', defaultText: 'per implementation', example: 'memberOf' },
        id: { type: 'string', description: 'stable user id', defaultText: 'per implementation', example: 'objectGUID' },
      }),
      lockout_threshold: int("the directory's own bad-bind lockout; per-user limits must stay below it", undefined, 1, 1000, { example: 10 }),
      timeout: dur('time limit of one directory operation', '5s'),
      cache: dur('how long a directory answer is reused', '1m'),
    },
    { optionalSection: true },
  ),
  password_policy: obj('what a new password must meet', {
    min_length: int('minimum length (NIST SP 800-63B: at least 8)', 8, 8, 64),
    blocklist: { type: 'string', description: 'refuse passwords from the common-password list', enum: ['common', 'none'], default: 'common', example: 'common' },
    min_strength: { type: 'integer', description: 'minimum zxcvbn score', enum: [0, 1, 2, 3, 4], default: 3, example: 3 },
    on_weak: {
      type: 'string',
      description: 'a weak password at sign-in: deny, change (sign in, then must change it) or flag (audit only)',
      enum: ['deny', 'change', 'flag'],
      default: 'deny',
      example: 'deny',
    },
  }),
  login_limits: obj('the sign-in throttles (counts 1..1000)', {
    per_ip: obj('failures from one address (or IPv6 prefix)', {
      max_failures: int('failures allowed in the window', 20, 1, 1000),
      window: dur('counting window', '15m'),
      block: dur('how long the address is then refused', '15m'),
    }),
    per_user: obj('failures on one account, counted per familiar/unfamiliar network', {
      max_failures: int('failures allowed in the window', 5, 1, 1000),
      window: dur('counting window', '15m'),
      lockout: dur('how long the account is then locked for that bucket', '15m'),
      ceiling: obj('a second, longer limit', {
        max_failures: int('failures allowed in the window (with ldap: below ldap.lockout_threshold, and lockout_threshold - 1 by default)', 100, 1, 1000, { example: 9 }),
        window: dur('counting window', '24h'),
      }),
    }),
    spray: obj('one address trying many user names', {
      distinct_users: int('distinct user names in the window', 10, 1, 1000),
      window: dur('counting window', '10m'),
      block: dur('how long the address is then refused', '1h'),
    }),
    same_password: obj('one wrong password tried on many accounts', {
      accounts: int('distinct accounts in the window (one is a user retyping an old password)', 20, 2, 1000),
      window: dur('counting window', '1h'),
      block: dur('how long that password is then refused', '24h'),
    }),
    mfa: obj('wrong codes', {
      max_failures: int('failures allowed in the window', 5, 1, 1000),
      window: dur('counting window', '15m'),
    }),
    ipv6_prefix: int('IPv6 addresses are counted per prefix of this length', 64, IPV6_PREFIX_MIN, 128),
    hash_concurrency: int('password hashes verified at once, each on a lowest-priority thread; past it, a fast 503', undefined, 1, 64, {
      defaultText: 'min(4, max(2, CPUs))',
      example: 2,
    }),
  }),
  lockdown: obj('while lockdown is on (`portcullis lockdown on`), who may still reach apps', {
    networks: networkRefs('networks still let in during lockdown (default: nobody)'),
  }),
  attack: obj(
    'the attack posture: past this rate of failed sign-ins, unfamiliar networks need a second factor; absent: off. Give threshold or factor',
    {
      threshold: int('failed sign-ins per minute', undefined, 1, 1_000_000, { example: 300 }),
      factor: int('times the baseline of the last day', undefined, 2, 1000, { example: 10, alternative: true }),
      cooldown: dur('how long the posture stays after the rate falls', '30m'),
    },
    { nullable: true, optionalSection: true },
  ),
  notify: obj('notifications of notable events', {
    webhook: { type: 'url', description: 'POST a JSON message here (https://, or http:// to loopback only)', nullable: true, default: null, secret: true, example: 'https://hooks.example.org/T0K3N' },
    smtp: obj(
      'send e-mail',
      {
        url: { type: 'url', description: 'smtp://host:587 (STARTTLS) or smtps://host:465', required: true, secret: true, example: 'smtp://mail.example.org:587' },
        from: { type: 'string', description: 'sender address', required: true, example: 'portcullis@example.org' },
        to: { type: 'list', description: 'recipients', required: true, items: { type: 'string', description: 'an e-mail address', example: 'ops@example.org' }, example: ['ops@example.org'] },
      },
      { nullable: true, optionalSection: true },
    ),
    events: {
      type: 'list',
      description: 'which events are sent',
      items: { type: 'string', description: 'an event name', enum: NOTIFY_EVENTS, example: 'locked_out' },
      defaultText: 'all of them',
      example: ['new_network_login', 'locked_out', 'weak_password'],
    },
  }),
  audit: obj('the audit log (JSON lines)', {
    file: { type: 'path', description: 'where it is written; null: no audit file', nullable: true, defaultText: 'DATA_DIR/audit.jsonl', example: './data/audit.jsonl' },
  }),
  access_log: obj('the access log: one JSON line a request (time, request id, client, host, path, decision, rule, status, duration)', {
    file: { type: 'path', description: 'where it is written; null: off', nullable: true, default: null, example: './data/access.jsonl' },
  }),
  upstream_timeouts: obj('limits on the apps behind the gateway', {
    connect: dur('to open a connection', '5s'),
    headers: dur('for the response headers', '60s'),
    idle: dur('without a byte either way', '5m'),
  }),
  shutdown: obj('SIGTERM: /readyz answers 503 at once, the listener serves on for drain, then requests in flight get up to grace', {
    drain: dur('serve on while a load balancer notices (0s: none; at most 10m)', '10s'),
    grace: dur('for requests in flight (0s: none; at most 10m)', '30s'),
  }),
  apps: {
    type: 'list',
    description: 'the apps behind the gateway (at least one)',
    required: true,
    items: obj('an app', {
      name: { type: 'string', description: 'lower-case letters, digits and "-", at most 63 characters', required: true, example: 'webmail' },
      hosts: { type: 'list', description: 'host names it serves (matched without the port)', required: true, items: { type: 'string', description: 'a DNS name or IP address', example: 'mail.example.org' }, example: ['mail.example.org'] },
      upstream: { type: 'url', description: 'an http(s) URL with no path, query or credentials, or builtin:whoami', required: true, example: 'http://10.1.1.5:8080' },
      websocket: { type: 'boolean', description: 'pass WebSocket upgrades', default: false, example: true },
      case_insensitive_paths: { type: 'boolean', description: 'rules and basic_auth paths match in any letter case (IIS apps)', default: false, example: false },
      assertion: { type: 'boolean', description: 'send the signed X-Portcullis-Assertion to the app (false: apps that do not verify it are spared its cost)', default: true, example: true },
      rules: {
        type: 'list',
        description: 'first match wins; no match means deny',
        required: true,
        items: obj('a rule: every condition given must match', {
          paths: { type: 'list', description: 'path globs, or ^regex (RE2)', items: { type: 'string', description: 'a path pattern', example: '/healthz' }, example: ['/healthz', '/api/**'] },
          methods: { type: 'list', description: 'HTTP methods (CONNECT and TRACE are refused)', items: { type: 'string', description: 'a method', example: 'GET' }, example: ['GET', 'HEAD'] },
          networks: networkRefs('client networks (names or CIDRs)'),
          groups: { type: 'list', description: "the user's groups (only known after sign-in, so never with bypass)", items: { type: 'string', description: 'a group', example: 'remote-staff' }, example: ['remote-staff'] },
          policy: { type: 'string', description: 'what the rule requires', enum: ['deny', 'bypass', 'password', 'mfa', 'passkey'], required: true, example: 'mfa' },
        }),
        example: [{ paths: ['/healthz'], policy: 'bypass' }, { networks: ['office'], policy: 'password' }, { policy: 'mfa' }],
      },
      basic_auth: obj('paths where app passwords are accepted (HTTP Basic)', {
        paths: { type: 'list', description: 'path patterns', required: true, items: { type: 'string', description: 'a path pattern', example: '/Microsoft-Server-ActiveSync' }, example: ['/Microsoft-Server-ActiveSync'] },
      }),
    }),
  },
};

// ---------------------------------------------------------------------------------------------
// Reading the schema (the section compilers take their defaults through these)

/** The schema of the key at a dotted path (`login_limits.per_user.ceiling.window`; `apps[]` for list items). */
export function schemaAt(path: string): KeySchema {
  let keys: Readonly<Record<string, KeySchema>> | undefined = CONFIG_SCHEMA;
  let node: KeySchema | undefined;
  for (const part of path.split('.')) {
    const name = part.replace(/\[\]$/, '');
    node = keys?.[name];
    if (!node) throw new Error(`config schema: no key ${path}`);
    if (part.endsWith('[]')) node = node.items;
    keys = node?.keys;
  }
  if (!node) throw new Error(`config schema: no key ${path}`);
  return node;
}

/** The literal default of a key; throws (at import time, where the compilers call it) when it has none. */
export function defaultOf(path: string): YamlValue {
  const d = schemaAt(path).default;
  if (d === undefined) throw new Error(`config schema: ${path} has no literal default`);
  return d;
}

export function defaultMs(path: string): number {
  const d = defaultOf(path);
  const ms = typeof d === 'string' ? parseDuration(d) : null;
  if (ms === null) throw new Error(`config schema: the default of ${path} is not a duration`);
  return ms;
}

export function defaultInt(path: string): number {
  const d = defaultOf(path);
  if (typeof d !== 'number') throw new Error(`config schema: the default of ${path} is not a number`);
  return d;
}

export function defaultBool(path: string): boolean {
  const d = defaultOf(path);
  if (typeof d !== 'boolean') throw new Error(`config schema: the default of ${path} is not true or false`);
  return d;
}

export function defaultText(path: string): string {
  const d = defaultOf(path);
  if (typeof d !== 'string') throw new Error(`config schema: the default of ${path} is not text`);
  return d;
}

/** The allowed values of an enum key, typed as the compiler wants them. */
export function enumOf<T extends string | number>(path: string): readonly T[] {
  const e = schemaAt(path).enum;
  if (!e) throw new Error(`config schema: ${path} has no enum`);
  return e as readonly T[];
}
