/**
 * The 2017 attack, replayed in-process over the real decision code: the real LoginThrottle over
 * the real memory stores with a ManualClock, the real policy (`decide` on an app compiled from a
 * real config by `loadConfigText`), the real password guidance. Only the password check itself is
 * simulated: a guess is compared with the account's known password instead of running argon2id
 * (50,000 real hashes would take an hour of CPU and change no decision).
 *
 * The model (every number is an input; run.ts documents the defaults):
 * - `accounts` accounts; `weakShare` of them have a password from the common-password list of
 *   @zxcvbn-ts/language-common (ranked by frequency), drawn with Zipf weights (s = 1) over its
 *   first 10,000 entries: popular passwords are popular. The others have strong passphrases that
 *   are on no list.
 * - The attacker makes `guesses` attempts from `sources` addresses (round-robin) outside the office
 *   network, evenly spread over `hours`, trying the most common password against every account
 *   before the next one. It stops attacking an account once in (or once the password is
 *   confirmed, with TOTP). A throttled attempt is spent (the attacker moves on).
 * - Every user signs in once, at a random time in the first 12 hours, from the office network
 *   (192.0.2.0/24), which they have signed in from before.
 * - A sign-in follows firstFactor (src/auth/login.ts): network (a rule that would deny the target
 *   means no attempt), throttle check, password, on failure recordFailure with the familiarity of
 *   the source; on success the password policy at the moment of use, recordSuccess, then the
 *   policy with the user known (mfa: a second factor is needed; the attacker has none).
 */
import { createHmac } from 'node:crypto';
import * as common from '@zxcvbn-ts/language-common';
import { ManualClock } from '../../src/clock.js';
import { loadConfigText } from '../../src/config/index.js';
import type { CompiledApp, CompiledConfig } from '../../src/config/types.js';
import { decide } from '../../src/policy/decide.js';
import { LoginThrottle, networkKeyFor } from '../../src/auth/throttle.js';
import { PasswordGuidance, warmPasswordGuidance } from '../../src/auth/guidance.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { runAsJob } from '../lib/ipc.js';
import { SimStateStore } from '../lib/sim-state.js';

export interface ReplayInput {
  accounts: number;
  weakShare: number;
  guesses: number;
  sources: number;
  hours: number;
  seed: number;
}

export interface SetupSpec {
  id: string;
  name: string;
  rules: string;
  throttle: boolean;
  passwordPolicy: string;
  /** Override of `hours` (the burst variant). */
  hours?: number;
}

export interface SetupResult {
  id: string;
  name: string;
  hours: number;
  compromised: number;
  /** Correct passwords the attacker learnt without getting in (stopped by the second factor). */
  passwordsConfirmed: number;
  attacker: { attempts: number; networkDenied: number; throttled: number; wrong: number; weakDenied: number; accountsTried: number };
  legit: { signIns: number; ok: number; refused: number; refusedBy: Record<string, number> };
  /** Blocks the throttle imposed during the replay: sources blocked, account buckets locked. */
  blocksImposed: { sources: number; accounts: number };
  firstCompromiseHour: number | null;
}

export interface ReplayResult {
  model: { accounts: number; weak: number; weakGuessableWithin: number; guesses: number; sources: number; hours: number; listSize: number; strongSampleOk: number };
  setups: SetupResult[];
  seconds: number;
}

const HOUR = 3_600_000;
const OFFICE = '192.0.2.0/24';
/** Set-ups 1 to 4 are about the 2017 controls: weak passwords are only flagged, as before portcullis. */
const RELAXED_POLICY = '{ blocklist: none, min_strength: 0, on_weak: flag }';

export const SETUPS: SetupSpec[] = [
  { id: '6.1', name: 'password only (no throttling)', rules: '- { policy: password }', throttle: false, passwordPolicy: RELAXED_POLICY },
  { id: '6.2', name: 'with throttling (SPEC login_limits)', rules: '- { policy: password }', throttle: true, passwordPolicy: RELAXED_POLICY },
  { id: '6.2b', name: 'with throttling, same guesses in 10 min', rules: '- { policy: password }', throttle: true, passwordPolicy: RELAXED_POLICY, hours: 1 / 6 },
  { id: '6.3', name: 'with TOTP (policy mfa) + throttling', rules: '- { policy: mfa }', throttle: true, passwordPolicy: RELAXED_POLICY },
  { id: '6.4', name: 'with office allowlist + throttling', rules: '- { networks: [office], policy: password }\n      - { policy: deny }', throttle: true, passwordPolicy: RELAXED_POLICY },
  { id: '6.5', name: 'password policy at use, on_weak: deny', rules: '- { policy: password }', throttle: true, passwordPolicy: '{ on_weak: deny }' },
  { id: '6.5b', name: 'password policy at use, on_weak: change', rules: '- { policy: password }', throttle: true, passwordPolicy: '{ on_weak: change }' },
];

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function compile(s: SetupSpec): { cfg: CompiledConfig; app: CompiledApp } {
  const yaml = [
    `networks: { office: ["${OFFICE}"] }`,
    `password_policy: ${s.passwordPolicy}`,
    'apps:',
    '  - name: mail',
    '    hosts: ["mail.example.org"]',
    '    upstream: "builtin:whoami"',
    '    rules:',
    `      ${s.rules}`,
    '',
  ].join('\n');
  const r = loadConfigText(yaml, `2017-${s.id}.yaml`, { checkFiles: false });
  if (!r.ok) throw new Error(`set-up ${s.id}: ${JSON.stringify(r.issues)}`);
  return { cfg: r.config, app: r.config.apps[0]! };
}

interface Account {
  name: string;
  password: string;
  weak: boolean;
}

runAsJob<ReplayInput, ReplayResult>(async (input) => {
  const t0 = performance.now();
  const rnd = mulberry32(input.seed);
  const list = (common.dictionary.passwords as string[]).map(String);
  const K = Math.min(10_000, list.length);
  const cum: number[] = [];
  let acc = 0;
  for (let r = 1; r <= K; r++) cum.push((acc += 1 / r));
  const zipf = (): number => {
    const x = rnd() * acc;
    let lo = 0;
    let hi = K - 1;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (cum[mid]! < x) lo = mid + 1;
      else hi = mid;
    }
    return lo; // 0-based rank
  };

  // the accounts
  const words = ['amber', 'lantern', 'orchid', 'gravel', 'copper', 'meadow', 'violin', 'tractor', 'saffron', 'kettle', 'glacier', 'pylon', 'walnut', 'harbour', 'cinder', 'ribbon', 'juniper', 'quarry', 'mosaic', 'beacon'];
  const weakCount = Math.round(input.accounts * input.weakShare);
  const weakIdx = new Set<number>();
  while (weakIdx.size < weakCount) weakIdx.add(Math.floor(rnd() * input.accounts));
  const accounts: Account[] = [];
  for (let i = 0; i < input.accounts; i++) {
    const name = `mp${String(i).padStart(5, '0')}`;
    if (weakIdx.has(i)) accounts.push({ name, password: list[zipf()]!, weak: true });
    else {
      const w = () => words[Math.floor(rnd() * words.length)]!;
      accounts.push({ name, password: `${w()} ${w()} ${w()} ${w()} ${Math.floor(rnd() * 9000) + 1000}`, weak: false });
    }
  }
  const maxRank = Math.ceil(input.guesses / input.accounts);
  const rankOf = new Map<string, number>();
  for (let r = 0; r < Math.min(list.length, 20_000); r++) if (!rankOf.has(list[r]!)) rankOf.set(list[r]!, r);
  const weakGuessable = accounts.filter((a) => a.weak && (rankOf.get(a.password) ?? Infinity) < maxRank).length;

  // the policy verdict on strong passphrases is established on a sample (zxcvbn costs ~15 ms on
  // each; 9,000 of them would take minutes and all say the same)
  warmPasswordGuidance();
  const strictGuidance = new PasswordGuidance({ minLength: 8, blocklist: 'common', minStrength: 3, onWeak: 'deny' });
  const strong = accounts.filter((a) => !a.weak).slice(0, 25);
  const strongOk = strong.filter((a) => strictGuidance.assess(a.password, { user: a.name }).ok).length;
  if (strongOk !== strong.length) throw new Error(`only ${strongOk} of ${strong.length} sampled strong passwords meet the policy; the model's assumption fails`);

  const sources = Array.from({ length: input.sources }, (_, i) => `198.18.${(i >> 8) & 255}.${i & 255}`);
  const legitTimes = accounts.map(() => rnd() * 12 * HOUR);
  const key = Buffer.from('bench-2017-fingerprint-key');
  const fingerprint = (u: string, pw: string) => createHmac('sha256', key).update(`${u}\u0000${pw}`).digest('base64url');

  const results: SetupResult[] = [];
  for (const spec of SETUPS) {
    const hours = spec.hours ?? input.hours;
    const { cfg, app } = compile(spec);
    const clock = new ManualClock(Date.UTC(2017, 5, 23, 8, 0, 0));
    const start = clock.now();
    const state = new SimStateStore();
    const stores = createMemoryStores({ clock, state });
    const throttle = spec.throttle ? new LoginThrottle({ limits: cfg.loginLimits, rates: stores.rates, state, clock }) : null;
    const guidance = new PasswordGuidance(cfg.passwordPolicy);
    const verdicts = new Map<string, boolean>();
    const meetsPolicy = (a: Account, pw: string): boolean => {
      if (!a.weak || pw !== a.password) return true; // strong passphrases: established above
      let v = verdicts.get(pw);
      if (v === undefined) {
        v = guidance.assess(pw, { user: a.name }).ok;
        verdicts.set(pw, v);
      }
      return v;
    };
    // users have signed in from the office before
    for (let i = 0; i < accounts.length; i++) {
      await state.addKnownNetwork(accounts[i]!.name, networkKeyFor(`192.0.2.${(i % 254) + 1}`, cfg.loginLimits.ipv6Prefix));
    }
    const passwords = accounts.map((a) => a.password);

    type Outcome = 'network' | 'throttled' | 'wrong' | 'weak-denied' | 'in' | 'mfa' | 'change';
    const attempt = async (i: number, ip: string, pw: string, attacker: boolean): Promise<Outcome> => {
      const a = accounts[i]!;
      const anon = decide(app, { method: 'GET', path: '/', ip, subject: null });
      if (anon.policy === 'deny') return 'network';
      if (throttle && !(await throttle.check({ ip, user: a.name })).allowed) return 'throttled';
      if (pw !== passwords[i]) {
        if (throttle) {
          const familiar = await throttle.isFamiliar(a.name, ip);
          const b = await throttle.recordFailure({ ip, user: a.name, passwordFingerprint: fingerprint(a.name, pw), familiar });
          if (b.ipBlocked) r.blocksImposed.sources++;
          if (b.lockedOut) r.blocksImposed.accounts++;
        }
        return 'wrong';
      }
      let change = false;
      if (cfg.passwordPolicy.onWeak !== 'flag' && !meetsPolicy(a, pw)) {
        if (cfg.passwordPolicy.onWeak === 'deny') return 'weak-denied'; // firstFactor records no throttle failure here
        // as src/auth/login.ts: the change is offered only after a second factor or from a network
        // the user has signed in from before; otherwise the sign-in is refused like on_weak: deny
        const d0 = decide(app, { method: 'GET', path: '/', ip, subject: { name: a.name, groups: [] } });
        const familiar = await state.knownNetworks(a.name).then((n) => n.includes(networkKeyFor(ip, cfg.loginLimits.ipv6Prefix)));
        if (d0.policy !== 'mfa' && !familiar) return 'weak-denied';
        change = true;
      }
      if (throttle) await throttle.recordSuccess({ ip, user: a.name });
      const d = decide(app, { method: 'GET', path: '/', ip, subject: { name: a.name, groups: [] } });
      if (d.policy === 'deny') return 'network';
      if (d.policy === 'mfa' && attacker) return 'mfa';
      if (change) {
        // the step the session now requires: change the password, knowing the current one
        if (attacker) passwords[i] = `attacker-chosen ${a.name} 9f3b1c`;
        return 'change';
      }
      return 'in';
    };

    // the attacker's order: most common password first, every account still worth attacking
    const done = new Set<number>();
    const tried = new Set<number>();
    let rank = 0;
    let acct = 0;
    const nextTarget = (): { i: number; pw: string } | null => {
      for (;;) {
        if (rank >= list.length) return null;
        if (acct >= accounts.length) {
          acct = 0;
          rank++;
          continue;
        }
        const i = acct++;
        if (!done.has(i)) return { i, pw: list[rank]! };
      }
    };

    const r: SetupResult = {
      id: spec.id,
      name: spec.name,
      hours,
      compromised: 0,
      passwordsConfirmed: 0,
      attacker: { attempts: 0, networkDenied: 0, throttled: 0, wrong: 0, weakDenied: 0, accountsTried: 0 },
      legit: { signIns: 0, ok: 0, refused: 0, refusedBy: {} },
      blocksImposed: { sources: 0, accounts: 0 },
      firstCompromiseHour: null,
    };
    const legitOrder = accounts.map((_, i) => i).sort((x, y) => legitTimes[x]! - legitTimes[y]!);
    let li = 0;
    const step = (hours * HOUR) / input.guesses;
    for (let g = 0; g <= input.guesses; g++) {
      const tg = g < input.guesses ? g * step : Infinity;
      // legitimate sign-ins due before this guess
      while (li < legitOrder.length && legitTimes[legitOrder[li]!]! <= tg) {
        const i = legitOrder[li++]!;
        clock.set(start + legitTimes[i]!);
        const out = await attempt(i, `192.0.2.${(i % 254) + 1}`, accounts[i]!.password, false);
        r.legit.signIns++;
        if (out === 'in' || out === 'change') r.legit.ok++;
        else {
          r.legit.refused++;
          r.legit.refusedBy[out] = (r.legit.refusedBy[out] ?? 0) + 1;
        }
      }
      if (g === input.guesses) break;
      const target = nextTarget();
      if (!target) break;
      clock.set(start + tg);
      r.attacker.attempts++;
      tried.add(target.i);
      const out = await attempt(target.i, sources[g % sources.length]!, target.pw, true);
      switch (out) {
        case 'network':
          r.attacker.networkDenied++;
          break;
        case 'throttled':
          r.attacker.throttled++;
          break;
        case 'wrong':
          r.attacker.wrong++;
          break;
        case 'weak-denied':
          r.attacker.weakDenied++;
          break;
        case 'mfa':
          r.passwordsConfirmed++;
          done.add(target.i);
          break;
        case 'in':
        case 'change':
          r.compromised++;
          r.firstCompromiseHour ??= tg / HOUR;
          done.add(target.i);
          break;
      }
    }
    r.attacker.accountsTried = tried.size;
    await stores.close();
    results.push(r);
  }
  return {
    model: {
      accounts: input.accounts,
      weak: weakCount,
      weakGuessableWithin: weakGuessable,
      guesses: input.guesses,
      sources: input.sources,
      hours: input.hours,
      listSize: list.length,
      strongSampleOk: strongOk,
    },
    setups: results,
    seconds: (performance.now() - t0) / 1000,
  };
});
