/** `audit`, `shutdown`, `upstream_timeouts`. */
import { join } from 'node:path';
import { formatDuration } from '../duration.js';
import { opt, type Reader, type Val } from '../reader.js';
import type { CompiledConfig } from '../types.js';
import { defaultMs } from '../schema.js';

export function compileAudit(r: Reader, v: Val | undefined, cwd: string, dataDir: string): CompiledConfig['audit'] {
  const d = { file: join(dataDir, 'audit.jsonl') };
  if (!v) return d;
  const a = r.object(v, ['file']);
  if (!a?.file) return d;
  if (r.isNull(a.file)) return { file: null };
  return { file: opt(a.file, (x) => r.filePath(x, cwd), d.file) };
}

/** `shutdown: { drain: 10s, grace: 30s }`; 0s is allowed for either (no drain, no grace). */
export function compileShutdown(r: Reader, v: Val | undefined): CompiledConfig['shutdown'] {
  const d = { drainMs: defaultMs('shutdown.drain'), graceMs: defaultMs('shutdown.grace') };
  if (!v) return d;
  const o = r.object(v, ['drain', 'grace']);
  if (!o) return d;
  const max = 10 * 60_000;
  const bounded = (x: Val): number | undefined => {
    const ms = r.duration(x, { allowZero: true });
    if (ms !== undefined && ms > max) return r.issue(x.node, x.path, `at most ${formatDuration(max)}: an orchestrator kills a process that takes longer`);
    return ms;
  };
  return { drainMs: opt(o.drain, bounded, d.drainMs), graceMs: opt(o.grace, bounded, d.graceMs) };
}

export function compileUpstreamTimeouts(r: Reader, v: Val | undefined): CompiledConfig['upstreamTimeouts'] {
  const d = { connectMs: defaultMs('upstream_timeouts.connect'), headersMs: defaultMs('upstream_timeouts.headers'), idleMs: defaultMs('upstream_timeouts.idle') };
  if (!v) return d;
  const u = r.object(v, ['connect', 'headers', 'idle']);
  if (!u) return d;
  return {
    connectMs: opt(u.connect, (x) => r.duration(x), d.connectMs),
    headersMs: opt(u.headers, (x) => r.duration(x), d.headersMs),
    idleMs: opt(u.idle, (x) => r.duration(x), d.idleMs),
  };
}

/** `access_log: { file: PATH | null }`: off (null) by default; a relative path is read as audit.file's is. */
export function compileAccessLog(r: Reader, v: Val | undefined, cwd: string): CompiledConfig['accessLog'] {
  const off = { file: null };
  if (!v || r.isNull(v)) return off;
  const a = r.object(v, ['file']);
  if (!a?.file || r.isNull(a.file)) return off;
  return { file: opt(a.file, (x) => r.filePath(x, cwd), null as string | null) };
}
