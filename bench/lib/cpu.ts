/**
 * CPU time a process has used (user + system), from /proc/PID/stat on Linux. Load points divide
 * it by the requests served: CPU per request is far steadier on a shared machine than requests
 * per second, and says which process the time went to. Null where /proc is not available.
 */
import { readFileSync } from 'node:fs';
import { execFileSync } from 'node:child_process';

let ticks: number | null = null;
function clockTicks(): number {
  if (ticks === null) {
    try {
      ticks = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
    } catch {
      ticks = 100;
    }
  }
  return ticks;
}

export function cpuSeconds(pid: number): number | null {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // the command name may contain spaces and parentheses: fields start after the last ')'
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return (Number(f[11]) + Number(f[12])) / clockTicks();
  } catch {
    return null;
  }
}

/** CPU seconds used by `pids` while `f` runs (null if any cannot be read). */
export async function withCpu<T>(pids: readonly number[], f: () => Promise<T>): Promise<{ value: T; cpu: Array<number | null> }> {
  const before = pids.map(cpuSeconds);
  const value = await f();
  const after = pids.map(cpuSeconds);
  return { value, cpu: pids.map((_, i) => (before[i] === null || after[i] === null ? null : after[i]! - before[i]!)) };
}
