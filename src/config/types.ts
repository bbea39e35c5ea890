/**
 * The compiled configuration: validated, resolved (paths absolute, durations in ms,
 * networks parsed), deep-frozen. Everything downstream reads this, never the raw YAML.
 */
import type { CidrSet } from '../net/cidr.js';

export interface ListenAddress {
  host: string;
  port: number;
}

/** Where a value came from in the YAML file, for messages like `portcullis.yaml:12:7`. */
export interface SourcePos {
  file: string;
  line: number;
  col: number;
}

export type PolicyName = 'deny' | 'bypass' | 'password' | 'mfa' | 'passkey';

export interface CompiledRule {
  /** 0-based position in the app's `rules` list. */
  index: number;
  pos: SourcePos;
  policy: PolicyName;
  /** null means the condition is absent (matches anything). */
  paths: readonly PathMatcher[] | null;
  methods: ReadonlySet<string> | null;
  /** Union of the named networks and literal CIDRs. */
  networks: CidrSet | null;
  /** As written (names and CIDRs), for explanations. */
  networkNames: readonly string[] | null;
  groups: readonly string[] | null;
  /** Short human description, e.g. `apps[0].rules[1] {networks: [office]} -> password`. */
  label: string;
}

export interface PathMatcher {
  source: string;
  test(path: string): boolean;
}

export interface CompiledApp {
  name: string;
  hosts: readonly string[];
  /** `builtin:whoami` or an absolute http(s) URL with no path beyond `/`. */
  upstream: { kind: 'builtin'; name: 'whoami' } | { kind: 'http'; url: URL; origin: string };
  websocket: boolean;
  rules: readonly CompiledRule[];
  basicAuthPaths: readonly PathMatcher[];
  /**
   * `case_insensitive_paths`: an app on Windows (IIS). Its rules match in any letter case, and
   * paths Windows would read as another name (trailing dots or spaces, `::$DATA`, `~1`) are refused.
   */
  caseInsensitivePaths: boolean;
  /**
   * `assertion` (default true): send the signed X-Portcullis-Assertion. An app that does not
   * verify it can turn it off (false): nothing is signed for it and its request head is smaller.
   */
  assertion: boolean;
  pos: SourcePos;
}

/** The shortest IPv6 prefix `login_limits.ipv6_prefix` accepts (one bound for config and throttle). */
export const IPV6_PREFIX_MIN = 32;

export interface LoginLimits {
  perIp: { maxFailures: number; windowMs: number; blockMs: number };
  perUser: {
    maxFailures: number;
    windowMs: number;
    lockoutMs: number;
    /** Distinct wrong passwords per account and kind of network (familiar/unfamiliar) in `windowMs`; reaching it refuses that kind of network for the same time. */
    ceiling: { maxFailures: number; windowMs: number };
  };
  spray: { distinctUsers: number; windowMs: number; blockMs: number };
  /**
   * `same_password`: one wrong password (the same typed string, whatever the account) failing
   * against `accounts` distinct accounts within `windowMs` is marked sprayed for `blockMs`.
   */
  samePassword: { accounts: number; windowMs: number; blockMs: number };
  mfa: { maxFailures: number; windowMs: number };
  ipv6Prefix: number;
  /** At most this many password verifications run at once; past it, a fast 503. */
  maxConcurrentHashes: number;
}

export interface PasswordPolicy {
  minLength: number;
  blocklist: 'common' | 'none';
  minStrength: 0 | 1 | 2 | 3 | 4;
  onWeak: 'deny' | 'change' | 'flag';
}

export interface TotpConfig {
  issuer: string;
  period: number;
  digits: 6 | 8;
  algorithm: 'SHA1' | 'SHA256' | 'SHA512';
  skew: number;
  /** Where a first device may be enrolled; empty set means nowhere. */
  enrolNetworks: CidrSet;
  /** Offer enrolment right after a password sign-in from `enrolNetworks` (`totp.enrol.prompt`). */
  enrolPrompt: boolean;
  /** An enrolled user gives a code at every sign-in, even where a rule asks only for `password`. */
  always: boolean;
}

/**
 * `attack`: the attack posture starts when failed sign-ins across the gateway in a minute exceed
 * `threshold` (or `factor` x the per-minute baseline of the last day), and ends once the rate
 * has stayed at or below it for `cooldownMs`. Exactly one of `threshold` and `factor` is set.
 */
export interface AttackConfig {
  threshold: number | null;
  factor: number | null;
  cooldownMs: number;
}

export interface NotifyConfig {
  webhook: string | null;
  smtp: { url: string; from: string; to: readonly string[] } | null;
  events: ReadonlySet<string>;
}

/**
 * `session`: timeouts, and optionally one sign-in across the hosts under `domain`: their session
 * cookie is `__Secure-portcullis` with `Domain=<domain>`, and their sign-in pages live on `portal`.
 */
/**
 * Whether `host` (lower case, no port) is `domain` or a name under it, at a label boundary:
 * `evilexample.org` is not under `example.org`. The one test for "covered by session.domain".
 */
export function hostUnderDomain(host: string, domain: string): boolean {
  return host === domain || host.endsWith(`.${domain}`);
}

/**
 * `webauthn:` (passkeys and security keys). `rpId` is `session.domain` when that is set (one
 * passkey for every app host), else as written; every origin's host is `rpId` or under it.
 */
export interface WebauthnConfig {
  rpId: string;
  rpName: string;
  /** Exact origins (`https://mail.example.org`, with port when not 443) a ceremony may come from. */
  origins: readonly string[];
  /** A passkey alone (discoverable credential, user verification) signs in where a `passkey` rule admits. */
  passwordless: boolean;
}

export interface SessionConfig {
  idleTimeoutMs: number;
  absoluteTimeoutMs: number;
  graceMs: number;
  /** Lower-case DNS name (`session.domain`), or null: per-host `__Host-` cookies. */
  domain: string | null;
  /** With `domain`: the portal's origin (`https://auth.example.org`) and host (no port). */
  portal: { origin: string; host: string } | null;
}

export interface CompiledConfig {
  /** Absolute path of the YAML file. */
  file: string;
  /** Directory relative paths were resolved against (the working directory at load). */
  baseDir: string;
  listen: ListenAddress;
  tls: { cert: string; key: string } | null;
  trustedProxies: CidrSet;
  proxyProtocol: boolean;
  admin: { listen: ListenAddress; tokenFile: string; /** Extra names accepted in Host (lower-case, any port). */ hosts: readonly string[] };
  dataDir: string;
  store: { kind: 'memory' } | { kind: 'redis'; url: string };
  workers: number;
  networks: ReadonlyMap<string, CidrSet>;
  usersFile: string;
  session: SessionConfig;
  totp: TotpConfig;
  /** null: the `webauthn` section is absent (no passkeys). */
  webauthn: WebauthnConfig | null;
  passwordPolicy: PasswordPolicy;
  loginLimits: LoginLimits;
  lockdown: { networks: CidrSet; networkNames: readonly string[] };
  /** null: no attack posture (the section is absent). */
  attack: AttackConfig | null;
  notify: NotifyConfig;
  audit: { file: string | null };
  /** `access_log`: one JSON line per request (null: off, the default). */
  accessLog: { file: string | null };
  /** `upstream_timeouts`: connect, response headers, idle body. */
  upstreamTimeouts: { connectMs: number; headersMs: number; idleMs: number };
  /**
   * `shutdown`: on SIGTERM, not ready at once and serving on for `drainMs` (a load balancer
   * notices), then no new connections and up to `graceMs` for requests in flight.
   */
  shutdown: { drainMs: number; graceMs: number };
  /** `ldap`: users from a directory after the users file (null: no directory). */
  ldap: LdapConfig | null;
  apps: readonly CompiledApp[];
  /** Lower-case host (no port) to app. */
  appsByHost: ReadonlyMap<string, CompiledApp>;
}

export interface ConfigIssue {
  file: string;
  line: number;
  col: number;
  /** Dotted key path, e.g. `apps[0].rules[2].networks[0]`. */
  path: string;
  message: string;
}

/** `ldap:` (issue 12): bind authentication against LDAP / Active Directory. */
export interface LdapConfig {
  implementation: 'activedirectory' | 'openldap' | 'custom';
  /** Tried in order (failover); ldap:// or ldaps://. */
  urls: readonly string[];
  startTls: boolean;
  /** PEM CA bundle that verifies the directory's certificate (null: the system's CAs). */
  caFile: string | null;
  /** Plain ldap:// without StartTLS, allowed only when set (a warning is logged). */
  insecure: boolean;
  bindDn: string;
  bindPassword: string;
  baseDn: string;
  /** RFC 4515 filter with `{username}` (the typed name, escaped). */
  userFilter: string;
  /** Filter over `baseDn` finding a user's groups, with `{dn}` and `{username}` (escaped); null: read `attributes.groups` from the entry. */
  groupFilter: string | null;
  /** Groups are read only under this DN (searched there; `memberOf` values outside it ignored); null: anywhere. */
  groupBaseDn?: string | null;
  attributes: { username: string; email: string; name: string; groups: string; id: string };
  /** The directory's own bad-bind lockout; the per-user limits stay below it. */
  lockoutThreshold: number;
  timeoutMs: number;
  cacheMs: number;
}
