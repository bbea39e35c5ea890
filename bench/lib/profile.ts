/**
 * Where the time goes: a summary of a V8 `.cpuprofile` (from `node --cpu-prof`), by function (self
 * time) and by area (this repository's files, each dependency, node internals, GC, idle).
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
  columnNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
  hitCount?: number;
  children?: number[];
}
interface CpuProfile {
  nodes: ProfileNode[];
  startTime: number;
  endTime: number;
  samples: number[];
  timeDeltas: number[];
}

export interface ProfileSummary {
  file: string;
  /** Profiled wall time, ms. */
  totalMs: number;
  /** Time not idle, ms. */
  busyMs: number;
  topFunctions: Array<{ name: string; where: string; ms: number; pct: number }>;
  areas: Array<{ area: string; ms: number; pct: number }>;
}

function shortPath(url: string, repoRoot: string): string {
  let p = url;
  if (p.startsWith('file://')) {
    try {
      p = fileURLToPath(p);
    } catch {
      // keep the URL
    }
  }
  if (p.startsWith(repoRoot)) p = p.slice(repoRoot.length + 1);
  return p;
}

function areaOf(frame: CallFrame, repoRoot: string): string {
  const n = frame.functionName;
  if (n === '(idle)') return '(idle)';
  if (n === '(garbage collector)') return '(garbage collector)';
  if (n === '(program)') return '(program: native, not attributed)';
  const url = frame.url;
  if (!url) return '(native / V8 builtins)';
  if (url.startsWith('node:')) return 'node internals';
  const p = shortPath(url, repoRoot);
  const nm = p.lastIndexOf('node_modules/');
  if (nm >= 0) {
    const rest = p.slice(nm + 'node_modules/'.length).split('/');
    return rest[0]!.startsWith('@') ? `${rest[0]}/${rest[1]}` : rest[0]!;
  }
  // dist/src/proxy/forward.js -> src/proxy/forward.ts
  return p.replace(/^dist\//, '').replace(/\.js$/, '.ts');
}

/**
 * Self time per function. Source lines are those of the compiled JS in dist/ (tsc keeps the
 * layout close; the .js.map files map them back exactly).
 */
export function summariseProfile(file: string, repoRoot: string, top = 15): ProfileSummary {
  const prof = JSON.parse(readFileSync(file, 'utf8')) as CpuProfile;
  const byId = new Map<number, ProfileNode>();
  for (const n of prof.nodes) byId.set(n.id, n);
  const self = new Map<number, number>();
  for (let i = 0; i < prof.samples.length; i++) {
    const id = prof.samples[i]!;
    // timeDeltas[i] is the time before sample i; attribute the next delta to this sample
    const dt = (prof.timeDeltas[i + 1] ?? 0) / 1000;
    self.set(id, (self.get(id) ?? 0) + dt);
  }
  const fn = new Map<string, { name: string; where: string; ms: number }>();
  const areas = new Map<string, number>();
  let total = 0;
  let idle = 0;
  for (const [id, ms] of self) {
    const f = byId.get(id)!.callFrame;
    total += ms;
    const area = areaOf(f, repoRoot);
    if (area === '(idle)') idle += ms;
    areas.set(area, (areas.get(area) ?? 0) + ms);
    if (area === '(idle)') continue;
    const where = f.url ? `${shortPath(f.url, repoRoot)}:${f.lineNumber + 1}` : '';
    const key = `${f.functionName}|${where}`;
    const e = fn.get(key) ?? { name: f.functionName || '(anonymous)', where, ms: 0 };
    e.ms += ms;
    fn.set(key, e);
  }
  const busy = total - idle;
  const pct = (ms: number) => (busy > 0 ? (100 * ms) / busy : 0);
  return {
    file,
    totalMs: total,
    busyMs: busy,
    topFunctions: [...fn.values()].sort((a, b) => b.ms - a.ms).slice(0, top).map((e) => ({ ...e, pct: pct(e.ms) })),
    areas: [...areas.entries()]
      .filter(([a]) => a !== '(idle)')
      .map(([area, ms]) => ({ area, ms, pct: pct(ms) }))
      .sort((a, b) => b.ms - a.ms)
      .slice(0, top),
  };
}

export function formatProfile(s: ProfileSummary): string {
  const lines = [`profile ${s.file}: ${(s.busyMs / 1000).toFixed(1)} s busy of ${(s.totalMs / 1000).toFixed(1)} s`];
  lines.push('  by area (self time, % of busy):');
  for (const a of s.areas) lines.push(`    ${a.pct.toFixed(1).padStart(5)}%  ${a.area}`);
  lines.push('  top functions (self time):');
  for (const f of s.topFunctions) lines.push(`    ${f.pct.toFixed(1).padStart(5)}%  ${f.name}  ${f.where}`);
  return lines.join('\n');
}
