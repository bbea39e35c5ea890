/**
 * What single operations cost, each timed in this otherwise idle process:
 *
 * - a successful password check with the PRODUCTION argon2id parameters (the real PasswordHasher);
 * - a TOTP verification (verifyCode with the default parameters and skew 1: up to 3 HMACs), and
 *   the whole second-factor check around it (unseal the secret, verify, claim the time step);
 * - signing an identity assertion (the real AssertionSigner, ES256);
 * - the password policy assessed at sign-in (zxcvbn on a typical passphrase; synchronous);
 * - a configuration reload: `loadConfigFile` alone, and `Gateway.reload()` (load, validate, read
 *   the users file, swap) on a running gateway with a config of 10 apps and 50 users.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { cryptoRandom, systemClock } from '../../src/clock.js';
import { PasswordHasher, PRODUCTION_PARAMS, TEST_PARAMS } from '../../src/auth/password.js';
import { generateCode, generateSecret, verifyCode } from '../../src/auth/totp.js';
import { AssertionSigner } from '../../src/auth/assertion.js';
import { PasswordGuidance, warmPasswordGuidance } from '../../src/auth/guidance.js';
import { SecretBox } from '../../src/auth/secret-box.js';
import { loadConfigFile } from '../../src/config/index.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { silentLogger } from '../../src/audit/logger.js';
import { Gateway } from '../../src/main.js';
import { runAsJob } from '../lib/ipc.js';
import { SimStateStore } from '../lib/sim-state.js';

export interface CostsInput {
  argon2Samples: number;
  workDir: string;
}

export interface Timing {
  samples: number;
  /** ms */
  p50: number;
  p99: number;
  min: number;
}

export interface CostsResult {
  argon2: Timing & { params: string };
  totpVerify: Timing;
  secondFactor: Timing;
  assertionSign: Timing;
  guidance: Timing;
  loadConfig: Timing;
  reload: Timing;
  reloadConfig: string;
}

function timing(ms: number[]): Timing {
  const s = ms.slice().sort((a, b) => a - b);
  const at = (q: number) => s[Math.min(s.length - 1, Math.floor(q * s.length))]!;
  return { samples: s.length, p50: at(0.5), p99: at(0.99), min: s[0]! };
}

async function time(n: number, f: (i: number) => unknown): Promise<number[]> {
  const out: number[] = [];
  for (let i = 0; i < n; i++) {
    const t0 = performance.now();
    await f(i);
    out.push(performance.now() - t0);
  }
  return out;
}

function reloadConfigText(dir: string): string {
  const nets = ['office: ["192.0.2.0/24", "2001:db8:10::/48"]', 'vpn: ["198.51.100.0/24"]', 'branch: ["203.0.113.0/25"]', 'partners: ["203.0.113.128/25"]', 'dc: ["10.0.0.0/8"]'];
  const apps: string[] = [];
  for (let i = 0; i < 10; i++) {
    apps.push(
      `  - name: app${i}`,
      `    hosts: ["app${i}.example.org"]`,
      '    upstream: "builtin:whoami"',
      '    rules:',
      '      - { paths: ["/healthz"], policy: bypass }',
      '      - { networks: [office, vpn], policy: password }',
      '      - { groups: [remote-staff], policy: mfa }',
      '      - { policy: deny }',
    );
  }
  return [
    'listen: "127.0.0.1:0"',
    'trusted_proxies: ["127.0.0.1/32"]',
    `admin: { listen: "127.0.0.1:0", token_file: ${JSON.stringify(join(dir, 'data', 'admin.token'))} }`,
    `data_dir: ${JSON.stringify(join(dir, 'data'))}`,
    `users_file: ${JSON.stringify(join(dir, 'users.yaml'))}`,
    `audit: { file: ${JSON.stringify(join(dir, 'data', 'audit.jsonl'))} }`,
    'networks:',
    ...nets.map((n) => `  ${n}`),
    'apps:',
    ...apps,
    '',
  ].join('\n');
}

runAsJob<CostsInput, CostsResult>(async (input) => {
  // argon2id, production parameters: the successful check a real sign-in pays
  const hasher = new PasswordHasher(PRODUCTION_PARAMS);
  const pw = 'amber lantern orchid gravel 1987';
  const hash = await hasher.hash(pw);
  await hasher.verify(hash, pw); // warm
  const argon = await time(input.argon2Samples, async () => {
    if (!(await hasher.verify(hash, pw))) throw new Error('the production hash did not verify');
  });

  // TOTP
  const secret = generateSecret(cryptoRandom, 'SHA1');
  const p = { period: 30, digits: 6 as const, algorithm: 'SHA1' as const };
  const now = Date.now();
  const code = generateCode(secret, { ...p, time: now });
  for (let i = 0; i < 200; i++) verifyCode(secret, code, { ...p, now, skew: 1 });
  const totp = await time(3000, () => {
    if (verifyCode(secret, code, { ...p, now, skew: 1 }) === null) throw new Error('TOTP did not verify');
  });

  // the whole second-factor check: unseal, verify, claim the step (memory store)
  await mkdir(join(input.workDir, 'box'), { recursive: true, mode: 0o700 });
  const box = await SecretBox.fromDataDir(join(input.workDir, 'box'), {}, cryptoRandom);
  const sealed = box.seal(secret, 'totp:alice');
  const stores = createMemoryStores({ clock: systemClock, state: new SimStateStore() });
  const second = await time(3000, async (i) => {
    const s = box.open(sealed, 'totp:alice');
    const step = verifyCode(s, code, { ...p, now, skew: 1 });
    if (step === null) throw new Error('TOTP did not verify');
    await stores.rates.claim(`totp:user${i}:${step}`, 120_000, now);
  });
  await stores.close();

  // assertion signing
  const signer = await AssertionSigner.open({ dataDir: join(input.workDir, 'keys'), clock: systemClock, issuer: 'portcullis' });
  const claims = { aud: 'mail', sub: 'alice', email: 'alice@example.org', groups: ['staff', 'remote-staff'], amr: ['pwd', 'otp'] as const, ip: '192.0.2.10' };
  for (let i = 0; i < 200; i++) await signer.sign({ ...claims, amr: [...claims.amr] });
  const sign = await time(2000, () => signer.sign({ ...claims, amr: [...claims.amr] }));

  // password policy at the moment of use (zxcvbn), on distinct typical passphrases
  warmPasswordGuidance();
  const g = new PasswordGuidance({ minLength: 8, blocklist: 'common', minStrength: 3, onWeak: 'deny' });
  const words = ['amber', 'lantern', 'orchid', 'gravel', 'copper', 'meadow', 'violin', 'tractor', 'saffron', 'kettle', 'glacier', 'pylon'];
  const guidance = await time(60, (i) => g.assess(`${words[i % 12]} ${words[(i * 5 + 1) % 12]} ${words[(i * 7 + 2) % 12]} ${words[(i * 11 + 3) % 12]} ${1000 + i}`, { user: `user${i}` }));

  // reload
  const dir = join(input.workDir, 'reload');
  await mkdir(join(dir, 'data'), { recursive: true, mode: 0o700 });
  const configFile = join(dir, 'portcullis.yaml');
  await writeFile(configFile, reloadConfigText(dir));
  const th = new PasswordHasher(TEST_PARAMS);
  let users = 'users:\n';
  for (let i = 0; i < 50; i++) users += `  user${i}:\n    password: ${JSON.stringify(await th.hash(`pass phrase number ${i} for reload`))}\n    groups: [staff]\n`;
  await writeFile(join(dir, 'users.yaml'), users, { mode: 0o600 });
  for (let i = 0; i < 10; i++) await loadConfigFile(configFile);
  const load = await time(50, async () => {
    const r = await loadConfigFile(configFile);
    if (!r.ok) throw new Error('the reload config was refused');
  });
  const gw = await Gateway.start({ configFile, port: 0, host: '127.0.0.1', logger: silentLogger(), argon2: TEST_PARAMS, watch: false, announce: () => undefined });
  try {
    for (let i = 0; i < 5; i++) await gw.reload('bench');
    const reload = await time(30, async () => {
      const before = gw.rt.config;
      await gw.reload('bench');
      if (gw.rt.config === before) throw new Error('the reload did not swap the config');
    });
    return {
      argon2: { ...timing(argon), params: `m=${PRODUCTION_PARAMS.memoryCost} KiB, t=${PRODUCTION_PARAMS.timeCost}, p=${PRODUCTION_PARAMS.parallelism}` },
      totpVerify: timing(totp),
      secondFactor: timing(second),
      assertionSign: timing(sign),
      guidance: timing(guidance),
      loadConfig: timing(load),
      reload: timing(reload),
      reloadConfig: '10 apps x 4 rules, 5 networks, 50 users',
    };
  } finally {
    await gw.close();
  }
});
