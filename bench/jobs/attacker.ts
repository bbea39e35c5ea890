/**
 * A password-guessing attacker, in a process of its own, talking to the gateway through a
 * trusted proxy (the bench's loopback address is in `trusted_proxies`, and each attempt carries
 * the attacking source in X-Forwarded-For).
 *
 * Each attempt is what a scripted attacker sends: POST /.portcullis/login with a CSRF token it
 * made up itself (double-submit: the same random value in the cookie and in the form field).
 *
 * - `rate`: an open-loop attack at a fixed rate (attempts/s) from `sources` addresses in
 *   10.0.0.0/8, against `users` account names, trying the most common passwords first (every
 *   account with the most common password, then the next one, ...). Attempts that would exceed
 *   `maxInFlight` outstanding requests are counted as `skipped`, not queued.
 * - `flood`: closed loop, `connections` attempts in flight at once, every one from a new source
 *   address (for the memory point: how much state a million sources leave behind).
 *
 * Runs until the parent calls `finish`, which answers with what was sent and what came back.
 */
import { randomBytes } from 'node:crypto';
import { Pool } from 'undici';
import * as common from '@zxcvbn-ts/language-common';
import { serve } from '../lib/ipc.js';

export interface AttackOptions {
  origin: string;
  host: string;
  mode: 'rate' | 'flood';
  rate?: number;
  sources: number;
  users: number;
  connections: number;
  maxInFlight?: number;
}

export interface AttackReport {
  seconds: number;
  sent: number;
  completed: number;
  skipped: number;
  errors: number;
  status: Record<string, number>;
  /** Response time of the attempts, ms. */
  p50: number;
  p99: number;
  distinctSources: number;
}

const o = JSON.parse(process.argv[2] ?? '{}') as AttackOptions;
const passwords = common.dictionary.passwords as string[];
const csrf = randomBytes(24).toString('base64url');
const pool = new Pool(o.origin, { connections: o.connections, pipelining: 1, keepAliveTimeout: 30_000 });
const headersBase = {
  host: o.host,
  'content-type': 'application/x-www-form-urlencoded',
  cookie: `portcullis_dev_csrf=${csrf}`,
};

function sourceAddress(i: number): string {
  // 10.0.0.1 upwards; never .0 or .255 in the last octet, to look like hosts
  const n = Math.floor(i / 254) * 256 + (i % 254) + 1;
  return `10.${(n >> 16) & 255}.${(n >> 8) & 255}.${n & 255}`;
}

let sent = 0;
let completed = 0;
let skipped = 0;
let errors = 0;
let inFlight = 0;
const status: Record<string, number> = {};
const latencies: number[] = [];
const started = performance.now();
let stopped = false;

function attempt(k: number, source: string): Promise<void> {
  const account = `mp${String(k % o.users).padStart(5, '0')}`;
  const password = passwords[Math.floor(k / o.users) % passwords.length]!;
  const body = `csrf=${csrf}&username=${encodeURIComponent(account)}&password=${encodeURIComponent(password)}`;
  sent++;
  inFlight++;
  const t0 = performance.now();
  return pool
    .request({ path: '/.portcullis/login', method: 'POST', headers: { ...headersBase, 'x-forwarded-for': source }, body })
    .then(async (r) => {
      await r.body.dump();
      status[r.statusCode] = (status[r.statusCode] ?? 0) + 1;
      latencies.push(performance.now() - t0);
      completed++;
    })
    .catch(() => {
      errors++;
    })
    .finally(() => {
      inFlight--;
    });
}

let stoppedAt: number | null = null;

function report(): AttackReport {
  const sorted = latencies.slice().sort((a, b) => a - b);
  const pick = (q: number) => (sorted.length ? sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))]! : 0);
  return {
    seconds: ((stoppedAt ?? performance.now()) - started) / 1000,
    sent,
    completed,
    skipped,
    errors,
    status,
    p50: pick(0.5),
    p99: pick(0.99),
    distinctSources: o.mode === 'flood' ? sent : Math.min(sent, o.sources),
  };
}

let timer: NodeJS.Timeout | null = null;
if (o.mode === 'rate') {
  const rate = o.rate ?? 500;
  const cap = o.maxInFlight ?? 1024;
  let k = 0;
  timer = setInterval(() => {
    const due = Math.floor(((performance.now() - started) / 1000) * rate);
    while (sent + skipped < due) {
      if (inFlight >= cap) {
        skipped++;
        continue;
      }
      void attempt(k, sourceAddress(k % o.sources));
      k++;
    }
  }, 5);
} else {
  let next = 0;
  const loop = async (): Promise<void> => {
    while (!stopped) {
      const i = next++;
      await attempt(i, sourceAddress(i));
    }
  };
  for (let c = 0; c < o.connections; c++) void loop();
}

await serve(
  { pid: process.pid },
  {
    progress: () => report(),
    finish: async () => {
      stopped = true;
      stoppedAt = performance.now();
      if (timer) clearInterval(timer);
      // let what is in flight come back, so every attempt sent has an outcome
      const deadline = Date.now() + 5000;
      while (inFlight > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 20));
      return report();
    },
    stop: () => pool.destroy(),
  },
);
