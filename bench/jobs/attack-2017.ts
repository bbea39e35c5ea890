/**
 * The 2017 attack, replayed in-process over the real decision code: the real sign-in steps
 * (`firstFactor` in src/auth/login.ts, and through it the one credential check of
 * src/auth/credential.ts: admission, the atomic reservation in the real LoginThrottle over the
 * real memory stores, verification, record, audit), the real attack posture, the real policy on
 * an app compiled from a real config by `loadConfigText`, and the real password guidance. Only
 * the password check itself is simulated: the runtime's hasher compares a guess with the
 * account's known password instead of running argon2id (50,000 real hashes would take an hour of
 * CPU and change no decision), and counts the checks, so guesses refused before any hash are
 * counted exactly.
 *
 * The model (every number is an input; run.ts documents the defaults):
 * - `accounts` accounts; `weakShare` of them have a password from the common-password list of
 *   @zxcvbn-ts/language-common (ranked by frequency), drawn with Zipf weights (s = 1) over its
 *   first 10,000 entries: popular passwords are popular. The others have strong passphrases that
 *   are on no list.
 * - The attacker makes `guesses` attempts from `sources` addresses (round-robin) outside the office
 *   network, evenly spread over `hours`, trying the most common password against every account
 *   before the next one. It stops attacking an account once in (or once the password is
 *   confirmed, with TOTP). A refused attempt is spent (the attacker moves on): every refusal looks
 *   like a wrong password, or like a throttle.
 * - Every user signs in once, at a random time in the first 12 hours, from the office network
 *   (192.0.2.0/24), which they have signed in from before. A user sent to change a password
 *   (weak under `on_weak: change`, or sprayed) changes it to a strong one.
 * - Set-ups without `samePassword` run the throttle without the same-password fingerprint (the
 *   SPEC's limits as they were before it); set-ups without `throttle` reserve nothing.
 * - With `attack`, the posture is evaluated every 5 simulated seconds, as the gateway's timer does.
 */
import * as common from '@zxcvbn-ts/language-common';
import type { AuditEvent } from '../../src/audit/events.js';
import { AuditLog } from '../../src/audit/audit-log.js';
import { silentLogger } from '../../src/audit/logger.js';
import { ATTACK_TICK_MS, AttackPosture } from '../../src/auth/attack.js';
import { firstFactor } from '../../src/auth/login.js';
import { SecretBox } from '../../src/auth/secret-box.js';
import type { UserRecord } from '../../src/auth/users.js';
import { ManualClock, cryptoRandom } from '../../src/clock.js';
import { loadConfigText } from '../../src/config/index.js';
import type { CompiledApp, CompiledConfig } from '../../src/config/types.js';
import { LoginThrottle, networkKeyFor, type PasswordAttempt } from '../../src/auth/throttle.js';
import { PasswordGuidance, warmPasswordGuidance, type Assessment } from '../../src/auth/guidance.js';
import type { Runtime } from '../../src/runtime.js';
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
  /** `login_limits.same_password` counted and enforced (needs `throttle`). */
  samePassword?: boolean;
  /** The `attack` section, as YAML flow text. */
  attack?: string;
  /** Every user has an authenticator. */
  totp?: boolean;
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
  /** Attacker guesses answered without any password check (network, throttle, sprayed). */
  refusedBeforeHash: number;
  attacker: {
    attempts: number;
    networkDenied: number;
    throttled: number;
    wrong: number;
    /** Refused before any hash: the password is marked sprayed. */
    sprayed: number;
    /** A right password refused like a wrong one (weak under on_weak: deny, attack posture, ...). */
    refusedCorrect: number;
    weakDenied: number;
    postureRefused: number;
    accountsTried: number;
  };
  legit: { signIns: number; ok: number; refused: number; refusedBy: Record<string, number>; strongRefused: number; sentToChange: number };
  /** Blocks the throttle imposed during the replay: sources blocked, account buckets locked. */
  blocksImposed: { sources: number; accounts: number };
  /** Passwords marked sprayed, and attack posture episodes started. */
  passwordsMarked: number;
  postureEpisodes: number;
  firstCompromiseHour: number | null;
}

export interface ReplayResult {
  model: { accounts: number; weak: number; weakGuessableWithin: number; guesses: number; sources: number; hours: number; listSize: number; strongSampleOk: number };
  setups: SetupResult[];
  seconds: number;
}

const HOUR = 3_600_000;
/** `node dist/bench/jobs/attack-2017.js ['{"hours": 12}']`: the inputs run.ts gives section 6. */
const STANDALONE: ReplayInput = { accounts: 9000, weakShare: 0.02, guesses: 50_000, sources: 2000, hours: 12, seed: 2017 };
const OFFICE = '192.0.2.0/24';
/** Set-ups 1 to 4 are about the 2017 controls: weak passwords are only flagged, as before portcullis. */
const RELAXED_POLICY = '{ blocklist: none, min_strength: 0, on_weak: flag }';

export const SETUPS: SetupSpec[] = [
  { id: '6.1', name: 'password only (no throttling)', rules: '- { policy: password }', throttle: false, passwordPolicy: RELAXED_POLICY },
  { id: '6.2', name: 'with throttling (SPEC login_limits)', rules: '- { policy: password }', throttle: true, passwordPolicy: RELAXED_POLICY },
  { id: '6.2b', name: 'with throttling, same guesses in 10 min', rules: '- { policy: password }', throttle: true, passwordPolicy: RELAXED_POLICY, hours: 1 / 6 },
  { id: '6.3', name: 'with TOTP (policy mfa) + throttling', rules: '- { policy: mfa }', throttle: true, totp: true, passwordPolicy: RELAXED_POLICY },
  { id: '6.4', name: 'with office allowlist + throttling', rules: '- { networks: [office], policy: password }\n      - { policy: deny }', throttle: true, passwordPolicy: RELAXED_POLICY },
  { id: '6.5', name: 'password policy at use, on_weak: deny', rules: '- { policy: password }', throttle: true, passwordPolicy: '{ on_weak: deny }' },
  { id: '6.5b', name: 'password policy at use, on_weak: change', rules: '- { policy: password }', throttle: true, passwordPolicy: '{ on_weak: change }' },
  { id: '6.6', name: 'throttled: SPEC login_limits + same_password', rules: '- { policy: password }', throttle: true, samePassword: true, passwordPolicy: RELAXED_POLICY },
  {
    id: '6.7',
    name: 'posture: throttled + attack posture (factor: 10)',
    rules: '- { policy: password }',
    throttle: true,
    samePassword: true,
    attack: '{ factor: 10, cooldown: 30m }',
    passwordPolicy: RELAXED_POLICY,
  },
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
    ...(s.attack ? [`attack: ${s.attack}`] : []),
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
  const box = new SecretBox(Buffer.alloc(32, 17));

  const results: SetupResult[] = [];
  for (const spec of SETUPS) {
    const hours = spec.hours ?? input.hours;
    const { cfg, app } = compile(spec);
    const clock = new ManualClock(Date.UTC(2017, 5, 23, 8, 0, 0));
    const start = clock.now();
    const state = new SimStateStore();
    const stores = createMemoryStores({ clock, state });
    const audit = new AuditLog({ file: null, clock });
    const events: AuditEvent[] = [];
    audit.on((e) => events.push(e));

    // the throttle as configured; without same_password it never sees the password's own fingerprint
    const real = new LoginThrottle({ limits: cfg.loginLimits, rates: stores.rates, state, clock });
    let throttle: LoginThrottle = real;
    if (!spec.throttle) {
      throttle = Object.assign(Object.create(real) as LoginThrottle, {
        reservePassword: async (ctx: { familiar: boolean }): Promise<PasswordAttempt> => ({
          allowed: true,
          ticket: {
            bucket: ctx.familiar ? 'familiar' : 'unfamiliar',
            sprayed: false,
            failed: async () => ({ lockedOut: false, ipBlocked: false }),
            succeeded: async () => undefined,
            cancel: async () => undefined,
          },
        }),
      });
    } else if (!spec.samePassword) {
      throttle = Object.assign(Object.create(real) as LoginThrottle, {
        reservePassword: (ctx: Parameters<LoginThrottle['reservePassword']>[0]) => real.reservePassword({ ...ctx, sameFingerprint: undefined }),
      });
    }
    const attack = new AttackPosture({ rates: stores.rates, clock, config: () => cfg.attack, audit });

    // the users file: the simulated hasher compares with the password itself, and counts
    const users = new Map<string, UserRecord>(accounts.map((a) => [a.name, { name: a.name, passwordHash: a.password, email: null, displayName: null, groups: [], disabled: false }]));
    let hashed = 0;
    const hasher = { verify: async (hash: string | null, pw: string) => (hashed++, hash !== null && hash === pw) };
    // the real guidance on the common passwords; strong passphrases meet it (established above:
    // zxcvbn costs ~15 ms each, and 9,000 of them would take minutes and all say the same)
    const realGuidance = new PasswordGuidance(cfg.passwordPolicy);
    const weakPasswords = new Set(accounts.filter((a) => a.weak).map((a) => a.password));
    const ok: Assessment = { ok: true, reasons: [], score: 4 };
    const guidance = { assess: (pw: string, ctx: { user: string; email?: string | null }) => (weakPasswords.has(pw) ? realGuidance.assess(pw, ctx) : ok) } as unknown as PasswordGuidance;
    const rt = {
      clock,
      random: cryptoRandom,
      logger: silentLogger(),
      audit,
      stores,
      throttle,
      attack,
      hasher,
      // no limit on hashes in flight: the model runs one attempt at a time
      hashBudget: { tryRun: <T>(f: () => Promise<T>) => f(), tryAcquire: () => () => undefined },
      guidance: () => guidance,
      box,
      config: cfg,
      users,
      lockdown: { on: false, since: 0, by: '' },
      live: new Set(),
      reloadUsers: async () => undefined,
    } as unknown as Runtime;

    // users have signed in from the office before
    for (let i = 0; i < accounts.length; i++) {
      await state.addKnownNetwork(accounts[i]!.name, networkKeyFor(`192.0.2.${(i % 254) + 1}`, cfg.loginLimits.ipv6Prefix));
      if (spec.totp) await state.setTotp(accounts[i]!.name, { secret: 'sealed', enrolledAt: start, source: 'provisioned' });
    }

    type Outcome = 'network' | 'throttled' | 'sprayed' | 'wrong' | 'weak-denied' | 'posture' | 'refused-correct' | 'in' | 'mfa' | 'change';
    const attempt = async (i: number, ip: string, pw: string, attacker: boolean): Promise<{ out: Outcome; hashed: boolean }> => {
      const a = accounts[i]!;
      events.length = 0;
      const before = hashed;
      const f = await firstFactor(rt, cfg, { app, ip, username: a.name, password: pw, rd: '/' });
      const didHash = hashed > before;
      for (const e of events) {
        if (e.event === 'ip_blocked') r.blocksImposed.sources++;
        if (e.event === 'locked_out') r.blocksImposed.accounts++;
        if (e.event === 'password_sprayed') r.passwordsMarked++;
      }
      if (f.kind === 'ok') {
        if (f.next === 'mfa') return { out: attacker ? 'mfa' : 'in', hashed: didHash };
        if (f.next === 'password') {
          // the step the session now requires: change the password, knowing the current one
          const next = attacker ? `attacker-chosen ${a.name} 9f3b1c` : `changed ${a.name} after use 4e7d21`;
          users.set(a.name, { ...users.get(a.name)!, passwordHash: next });
          return { out: 'change', hashed: didHash };
        }
        return { out: 'in', hashed: didHash };
      }
      if (f.kind === 'network') return { out: 'network', hashed: didHash };
      if (f.kind === 'throttled' || f.kind === 'busy') return { out: 'throttled', hashed: didHash };
      const refused = events.find((e) => e.event === 'password_refused_correct');
      if (refused) {
        const why = refused.reason ?? '';
        return { out: why.startsWith('attack posture') ? 'posture' : why.includes('below policy') ? 'weak-denied' : 'refused-correct', hashed: didHash };
      }
      if (events.some((e) => e.event === 'login_failed' && e.reason === 'sprayed password')) return { out: 'sprayed', hashed: didHash };
      return { out: 'wrong', hashed: didHash };
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
      refusedBeforeHash: 0,
      attacker: { attempts: 0, networkDenied: 0, throttled: 0, wrong: 0, sprayed: 0, refusedCorrect: 0, weakDenied: 0, postureRefused: 0, accountsTried: 0 },
      legit: { signIns: 0, ok: 0, refused: 0, refusedBy: {}, strongRefused: 0, sentToChange: 0 },
      blocksImposed: { sources: 0, accounts: 0 },
      passwordsMarked: 0,
      postureEpisodes: 0,
      firstCompromiseHour: null,
    };
    // the posture's timer: a tick every few seconds of simulated time, up to `t`
    let nextTick = start + ATTACK_TICK_MS;
    const advanceTo = async (t: number) => {
      if (cfg.attack) {
        for (; nextTick <= t; nextTick += ATTACK_TICK_MS) {
          clock.set(nextTick);
          const wasOn = attack.active;
          await attack.tick();
          if (attack.active && !wasOn) r.postureEpisodes++;
        }
      }
      clock.set(t);
    };
    // what each user knows their password to be (an attacker who changed it has locked them out)
    const known = accounts.map((a) => a.password);
    const legitOrder = accounts.map((_, i) => i).sort((x, y) => legitTimes[x]! - legitTimes[y]!);
    let li = 0;
    const step = (hours * HOUR) / input.guesses;
    for (let g = 0; g <= input.guesses; g++) {
      const tg = g < input.guesses ? g * step : Infinity;
      // legitimate sign-ins due before this guess
      while (li < legitOrder.length && legitTimes[legitOrder[li]!]! <= tg) {
        const i = legitOrder[li++]!;
        await advanceTo(start + legitTimes[i]!);
        const { out } = await attempt(i, `192.0.2.${(i % 254) + 1}`, known[i]!, false);
        if (out === 'change') known[i] = users.get(accounts[i]!.name)!.passwordHash;
        r.legit.signIns++;
        if (out === 'in' || out === 'change') {
          r.legit.ok++;
          if (out === 'change') r.legit.sentToChange++;
        } else {
          r.legit.refused++;
          r.legit.refusedBy[out] = (r.legit.refusedBy[out] ?? 0) + 1;
          if (!accounts[i]!.weak) r.legit.strongRefused++;
        }
      }
      if (g === input.guesses) break;
      const target = nextTarget();
      if (!target) break;
      await advanceTo(start + tg);
      r.attacker.attempts++;
      tried.add(target.i);
      const { out, hashed: didHash } = await attempt(target.i, sources[g % sources.length]!, target.pw, true);
      if (!didHash) r.refusedBeforeHash++;
      switch (out) {
        case 'network':
          r.attacker.networkDenied++;
          break;
        case 'throttled':
          r.attacker.throttled++;
          break;
        case 'sprayed':
          r.attacker.sprayed++;
          break;
        case 'wrong':
          r.attacker.wrong++;
          break;
        case 'weak-denied':
          r.attacker.weakDenied++;
          r.attacker.refusedCorrect++;
          break;
        case 'posture':
          r.attacker.postureRefused++;
          r.attacker.refusedCorrect++;
          break;
        case 'refused-correct':
          r.attacker.refusedCorrect++;
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
}, STANDALONE);
