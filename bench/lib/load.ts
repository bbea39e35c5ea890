/**
 * Closed-loop HTTP load with latency percentiles: wrk (C, multi-threaded; the default when it is
 * installed: `bench/setup.sh`) or autocannon (always there, a devDependency, but it runs in this
 * process and records latency in whole milliseconds). Every point of a comparison uses the same
 * tool, so the ratios are fair either way. A point where any request failed or answered other
 * than 2xx/3xx is reported as such: a fast 401 is not a result.
 */
import { spawn } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import autocannon from 'autocannon';
import { findBinary } from '../../test/helpers/tmp.js';
import type { LoadTool } from './settings.js';

export interface LoadResult {
  tool: LoadTool;
  seconds: number;
  requests: number;
  /** Requests per second. */
  rps: number;
  /** Latency percentiles, ms. */
  p50: number;
  p90: number;
  p99: number;
  max: number;
  /** Connection errors and timeouts. */
  errors: number;
  /** Responses other than 2xx/3xx. */
  bad: number;
}

export interface LoadRequest {
  url: string;
  headers: Record<string, string>;
  connections: number;
  seconds: number;
}

const WRK = findBinary('wrk', ['/usr/bin/wrk', '/usr/local/bin/wrk']);

export function pickTool(want: 'auto' | LoadTool): LoadTool {
  if (want === 'wrk' && !WRK) throw new Error('BENCH_LOADGEN=wrk but wrk is not installed (bench/setup.sh installs it)');
  if (want === 'auto') return WRK ? 'wrk' : 'autocannon';
  return want;
}

const WRK_SCRIPT = `
done = function(summary, latency, requests)
  local e = summary.errors
  io.write(string.format(
    "BENCHJSON {\\"requests\\":%.0f,\\"duration_us\\":%.0f,\\"connect\\":%.0f,\\"read\\":%.0f,\\"write\\":%.0f,\\"status\\":%.0f,\\"timeout\\":%.0f,\\"p50\\":%.0f,\\"p90\\":%.0f,\\"p99\\":%.0f,\\"max\\":%.0f}\\n",
    summary.requests, summary.duration, e.connect, e.read, e.write, e.status, e.timeout,
    latency:percentile(50), latency:percentile(90), latency:percentile(99), latency.max))
end
`;

let scriptFile: string | null = null;

async function runWrk(r: LoadRequest, workDir: string): Promise<LoadResult> {
  if (!scriptFile) {
    scriptFile = join(workDir, 'report.lua');
    writeFileSync(scriptFile, WRK_SCRIPT);
  }
  const args = ['-t1', `-c${r.connections}`, `-d${Math.max(1, Math.round(r.seconds))}s`, '--timeout', '10s', '-s', scriptFile];
  // wrk adds its own `Host` unless one is given under exactly that spelling (a lower-case `host`
  // would be sent twice), so header names are written in their canonical case
  for (const [k, v] of Object.entries(r.headers)) args.push('-H', `${k.replace(/(^|-)([a-z])/g, (_m, d: string, ch: string) => d + ch.toUpperCase())}: ${v}`);
  args.push(r.url);
  const out = await new Promise<string>((resolve, reject) => {
    const p = spawn(WRK!, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let text = '';
    p.stdout.on('data', (b: Buffer) => (text += b.toString()));
    p.stderr.on('data', (b: Buffer) => (text += b.toString()));
    p.once('error', reject);
    p.once('exit', (code) => (code === 0 ? resolve(text) : reject(new Error(`wrk exited ${code}:\n${text}`))));
  });
  const line = out.split('\n').find((l) => l.startsWith('BENCHJSON '));
  if (!line) throw new Error(`wrk printed no summary:\n${out}`);
  const j = JSON.parse(line.slice('BENCHJSON '.length)) as Record<string, number>;
  const seconds = j['duration_us']! / 1e6;
  return {
    tool: 'wrk',
    seconds,
    requests: j['requests']!,
    rps: j['requests']! / seconds,
    p50: j['p50']! / 1000,
    p90: j['p90']! / 1000,
    p99: j['p99']! / 1000,
    max: j['max']! / 1000,
    errors: j['connect']! + j['read']! + j['write']! + j['timeout']!,
    bad: j['status']!,
  };
}

async function runAutocannon(r: LoadRequest): Promise<LoadResult> {
  const res = await autocannon({ url: r.url, connections: r.connections, duration: Math.max(1, Math.round(r.seconds)), headers: r.headers, timeout: 10 });
  let bad = 0;
  for (const [code, s] of Object.entries(res.statusCodeStats ?? {})) if (Number(code) >= 400) bad += Number(s.count);
  return {
    tool: 'autocannon',
    seconds: res.duration,
    requests: res.requests.total,
    rps: res.requests.total / res.duration,
    p50: res.latency.p50,
    p90: res.latency.p90,
    p99: res.latency.p99,
    max: res.latency.max,
    errors: res.errors,
    bad,
  };
}

export function runLoad(tool: LoadTool, r: LoadRequest, workDir: string): Promise<LoadResult> {
  return tool === 'wrk' ? runWrk(r, workDir) : runAutocannon(r);
}

/**
 * Several runs of one point taken as one: total requests over total time; each percentile the
 * median of the runs' (one run disturbed by a neighbour on a shared machine does not move it).
 */
export function combine(runs: readonly LoadResult[]): LoadResult {
  if (runs.length === 0) throw new Error('no runs');
  const seconds = runs.reduce((s, r) => s + r.seconds, 0);
  const requests = runs.reduce((s, r) => s + r.requests, 0);
  const median = (f: (r: LoadResult) => number) => {
    const xs = runs.map(f).sort((a, b) => a - b);
    const m = xs.length >> 1;
    return xs.length % 2 ? xs[m]! : (xs[m - 1]! + xs[m]!) / 2;
  };
  return {
    tool: runs[0]!.tool,
    seconds,
    requests,
    rps: requests / seconds,
    p50: median((r) => r.p50),
    p90: median((r) => r.p90),
    p99: median((r) => r.p99),
    max: Math.max(...runs.map((r) => r.max)),
    errors: runs.reduce((s, r) => s + r.errors, 0),
    bad: runs.reduce((s, r) => s + r.bad, 0),
  };
}
