/**
 * Bench settings from the environment. Every duration and size is configurable so a developer can
 * run a quick pass (`BENCH_SECONDS=3 BENCH_ONLY=1,5 npm run bench`) and CI or a release check a
 * long one. Bad values are refused, never replaced by defaults.
 */
export type LoadTool = 'wrk' | 'autocannon';

export interface BenchSettings {
  /** Measured seconds per load point (split over `rounds`). */
  seconds: number;
  /** Unmeasured seconds of load before each point. */
  warmup: number;
  /** A/B comparisons alternate this many times (A B, B A, ...) to cancel drift on a shared machine. */
  rounds: number;
  /** Concurrent keep-alive connections of the signed-in load. */
  connections: number;
  /** Login attempts per second during the attack points. */
  attackRate: number;
  /** Distinct attacking source addresses during the attack points. */
  attackSources: number;
  /** Seconds of the HTTP login flood of the memory point. */
  floodSeconds: number;
  /** Distinct sources of the in-process memory flood. */
  floodSources: number;
  /** Production argon2 verifications timed for the cost point. */
  argon2Samples: number;
  /** Hours the simulated 2017 attack is spread over. */
  hours2017: number;
  /** Run the gateway children under `--cpu-prof` and summarise where the time goes. */
  profile: boolean;
  /** Sections to run (1..6), or null for all. */
  only: ReadonlySet<number> | null;
  /** Load generator: `auto` picks wrk when installed. */
  loadTool: 'auto' | LoadTool;
  /** Exit with status 1 when a target is missed. */
  strict: boolean;
}

function num(env: NodeJS.ProcessEnv, name: string, dflt: number, o: { min: number; max: number; int?: boolean }): number {
  const raw = env[name];
  if (raw === undefined || raw === '') return dflt;
  const v = Number(raw);
  if (!Number.isFinite(v) || v < o.min || v > o.max || (o.int && !Number.isInteger(v))) {
    throw new Error(`${name} must be ${o.int ? 'an integer' : 'a number'} from ${o.min} to ${o.max}, not ${JSON.stringify(raw)}`);
  }
  return v;
}

function flag(env: NodeJS.ProcessEnv, name: string): boolean {
  const raw = env[name];
  if (raw === undefined || raw === '' || raw === '0' || raw === 'false') return false;
  if (raw === '1' || raw === 'true') return true;
  throw new Error(`${name} must be 0 or 1, not ${JSON.stringify(raw)}`);
}

export function readSettings(env: NodeJS.ProcessEnv): BenchSettings {
  const onlyRaw = env['BENCH_ONLY'];
  let only: Set<number> | null = null;
  if (onlyRaw) {
    only = new Set();
    for (const part of onlyRaw.split(',')) {
      const n = Number(part.trim());
      if (!Number.isInteger(n) || n < 1 || n > 8) throw new Error(`BENCH_ONLY lists sections 1 to 8 (e.g. "1,5"), not ${JSON.stringify(onlyRaw)}`);
      only.add(n);
    }
  }
  const tool = env['BENCH_LOADGEN'] ?? 'auto';
  if (tool !== 'auto' && tool !== 'wrk' && tool !== 'autocannon') throw new Error(`BENCH_LOADGEN must be auto, wrk or autocannon, not ${JSON.stringify(tool)}`);
  return {
    seconds: num(env, 'BENCH_SECONDS', 10, { min: 1, max: 600 }),
    warmup: num(env, 'BENCH_WARMUP', 2, { min: 0, max: 60 }),
    rounds: num(env, 'BENCH_ROUNDS', 3, { min: 1, max: 10, int: true }),
    connections: num(env, 'BENCH_CONNECTIONS', 32, { min: 1, max: 1024, int: true }),
    attackRate: num(env, 'BENCH_ATTACK_RATE', 500, { min: 1, max: 20_000, int: true }),
    attackSources: num(env, 'BENCH_ATTACK_SOURCES', 4000, { min: 1, max: 1_000_000, int: true }),
    floodSeconds: num(env, 'BENCH_FLOOD_SECONDS', 15, { min: 1, max: 600 }),
    floodSources: num(env, 'BENCH_FLOOD_SOURCES', 1_000_000, { min: 1000, max: 10_000_000, int: true }),
    argon2Samples: num(env, 'BENCH_ARGON2_SAMPLES', 15, { min: 1, max: 1000, int: true }),
    hours2017: num(env, 'BENCH_2017_HOURS', 12, { min: 0.01, max: 24 * 30 }),
    profile: flag(env, 'BENCH_PROFILE'),
    only,
    loadTool: tool,
    strict: flag(env, 'BENCH_STRICT'),
  };
}
