/**
 * Temporary things an end-to-end test makes and must not leave behind: directories, and the
 * external programs (HAProxy, nginx) it runs as child processes. Also the rule for tests that need
 * such a program: skip with a clear message on a developer's machine that lacks it, fail in CI.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, rmSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';

export interface TmpDir {
  /** Absolute path of a new, empty directory (mode 0700). */
  dir: string;
  /**
   * Removes the directory and everything in it; safe to call twice. A directory not cleaned up
   * by the time the process exits is removed then.
   */
  cleanup(): Promise<void>;
}

const liveDirs = new Set<string>();

/** A fresh directory under the OS temp dir, named `<prefix>XXXXXX`. */
export async function tmpDir(prefix: string): Promise<TmpDir> {
  installExitHook();
  const dir = await mkdtemp(join(tmpdir(), prefix.replace(/[/\\]/g, '_')));
  liveDirs.add(dir);
  return {
    dir,
    cleanup: async () => {
      liveDirs.delete(dir);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** True when `process.env.CI` says this is a CI run (set and not "false"/"0"). */
export function inCi(): boolean {
  const v = process.env.CI;
  return v !== undefined && v !== '' && v !== 'false' && v !== '0';
}

/**
 * Tools a run pretends are missing: `PORTCULLIS_TEST_WITHOUT=nginx,haproxy` (to check what the
 * suite does without them, e.g. that CI fails loudly).
 */
function pretendMissing(name: string): boolean {
  return (process.env.PORTCULLIS_TEST_WITHOUT ?? '')
    .split(',')
    .map((s) => s.trim())
    .includes(name);
}

/**
 * The first executable among `candidates` (absolute paths), else `name` looked up on PATH, else
 * null. Candidates come first because /usr/sbin is often missing from a non-root PATH.
 */
export function findBinary(name: string, candidates: readonly string[] = []): string | null {
  if (pretendMissing(name)) return null;
  const dirs = (process.env.PATH ?? '').split(delimiter).filter(Boolean);
  for (const p of [...candidates, ...dirs.map((d) => join(d, name))]) {
    try {
      accessSync(p, fsConstants.X_OK);
      return p;
    } catch {
      // not here
    }
  }
  return null;
}

/** Tools found missing in this test process (tool -> why), for the summary printed at exit. */
const skippedTools = new Map<string, string>();
let skipSummaryInstalled = false;

/**
 * For node:test's `skip` option: `test('x', { skip: toolSkip('haproxy', haveHaproxy()) }, fn)`.
 * Returns false when the tool is present and a message when it is not; in CI a missing tool
 * throws instead, so the test file fails rather than quietly skipping what CI must prove.
 * `nginxSkip()`, `haproxySkip()` and `chromiumSkip()` use it through `noteSkip`.
 */
export function toolSkip(tool: string, present: boolean): false | string {
  if (present) return false;
  const msg = `${tool} is not installed (scripts/install-test-deps.sh installs it)`;
  if (inCi()) throw new Error(`${msg}: CI must run every end-to-end test`);
  return msg;
}

/**
 * `toolSkip`, and outside CI a summary at exit: each test file that skipped something prints one
 * line on stderr (which the test runner shows) naming the tools and why, so a green local run
 * says what it did not prove.
 */
export function noteSkip(tool: string, present: boolean): false | string {
  const skip = toolSkip(tool, present);
  if (skip === false) return false;
  skippedTools.set(tool, skip);
  if (!skipSummaryInstalled) {
    skipSummaryInstalled = true;
    process.once('exit', () => {
      const file = process.argv[1] ?? 'this test file';
      process.stderr.write(`SKIPPED in ${file}: the tests that need ${[...skippedTools.keys()].join(', ')}, because ${[...skippedTools.values()].join('; ')}. With CI set, this fails instead.\n`);
    });
  }
  return skip;
}

/** A long-running external program started by a test. */
export interface Daemon {
  readonly child: ChildProcess;
  /** The last 64 KiB the program wrote to stdout and stderr, for failure messages. */
  output(): string;
  /** Set once the program has exited. */
  exitStatus(): { code: number | null; signal: NodeJS.Signals | null } | null;
  /** SIGTERM, then SIGKILL after `graceMs` (default 5 s); resolves once it has exited. */
  stop(graceMs?: number): Promise<void>;
}

const live = new Set<ChildProcess>();
let exitHookInstalled = false;

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // A test that forgot stop() or cleanup() must not leave HAProxy or nginx holding ports, or temp
  // directories, after the test process ends. SIGTERM (not SIGKILL) so nginx's master also takes
  // its workers down.
  process.on('exit', () => {
    for (const c of live) c.kill('SIGTERM');
    for (const d of liveDirs) rmSync(d, { recursive: true, force: true });
  });
}

const OUTPUT_LIMIT = 64 * 1024;

/**
 * Starts `cmd args` with stdout/stderr captured. The child does not keep the test process alive
 * on its own (it is unref'd until stop() is awaited), and is sent SIGTERM when the process exits.
 */
export function spawnDaemon(cmd: string, args: readonly string[], opts: { cwd?: string } = {}): Daemon {
  installExitHook();
  const child = spawn(cmd, args, { cwd: opts.cwd, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let status: { code: number | null; signal: NodeJS.Signals | null } | null = null;
  const append = (chunk: Buffer): void => {
    out += chunk.toString('utf8');
    if (out.length > OUTPUT_LIMIT) out = out.slice(-OUTPUT_LIMIT);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      status = { code, signal };
      live.delete(child);
      resolve();
    });
    child.once('error', (err) => {
      append(Buffer.from(`spawn ${cmd}: ${err.message}\n`));
      status ??= { code: null, signal: null };
      live.delete(child);
      resolve();
    });
  });
  live.add(child);
  child.unref();
  (child.stdout as Socket).unref();
  (child.stderr as Socket).unref();

  return {
    child,
    output: () => out,
    exitStatus: () => status,
    async stop(graceMs = 5000) {
      if (status) return;
      child.ref();
      (child.stdout as Socket).ref();
      (child.stderr as Socket).ref();
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
