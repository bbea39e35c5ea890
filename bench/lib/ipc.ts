/**
 * Child processes of the bench and the little protocol between them and the orchestrator.
 *
 * Every server (upstream, bare proxy, gateway, Fastify stub) and every heavy job (memory flood,
 * cost timings, the 2017 replay) runs in a process of its own, so the load generator and the
 * server under test never share an event loop, and one job's garbage never lands in another's
 * measurement.
 *
 *   server child:  serve({ port }, { stats: () => ..., stop: async () => ... })
 *   parent:        const c = await startChild(script, { args }); await c.call('stats'); await c.stop();
 *   job child:     runAsJob(async (input) => result)
 *   parent:        const r = await runJob(script, input);
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';

type Handler = (args: unknown) => unknown;

interface CallMsg {
  type: 'call';
  id: number;
  cmd: string;
  args?: unknown;
}
interface ReplyMsg {
  type: 'reply';
  id: number;
  ok: boolean;
  value?: unknown;
  error?: string;
}
interface ReadyMsg {
  type: 'ready';
  info: unknown;
}
interface ResultMsg {
  type: 'result';
  ok: boolean;
  value?: unknown;
  error?: string;
}

function send(msg: ReplyMsg | ReadyMsg | ResultMsg): Promise<void> {
  return new Promise((resolve, reject) => process.send!(msg, undefined, {}, (err) => (err ? reject(err) : resolve())));
}

/**
 * Child side of a server: announce `info`, then answer calls. `stop` runs the handler (if any),
 * replies, and exits, which also writes a `--cpu-prof` profile.
 */
export async function serve(info: unknown, handlers: Record<string, Handler>): Promise<void> {
  if (!process.send) throw new Error('this bench process is started by bench/run.ts (it needs an IPC channel)');
  process.on('message', (m: CallMsg) => {
    if (!m || m.type !== 'call') return;
    const h = handlers[m.cmd];
    void (async () => {
      try {
        if (!h && m.cmd !== 'stop') throw new Error(`unknown command ${m.cmd}`);
        const value = h ? await h(m.args) : undefined;
        await send({ type: 'reply', id: m.id, ok: true, value });
      } catch (e) {
        await send({ type: 'reply', id: m.id, ok: false, error: e instanceof Error ? e.stack ?? e.message : String(e) });
      }
      if (m.cmd === 'stop') process.exit(0);
    })();
  });
  // the parent going away must not leave a server behind
  process.on('disconnect', () => process.exit(0));
  await send({ type: 'ready', info });
}

/**
 * Child side of a one-shot job: read the input from argv[2] (JSON), post the result, exit. A job
 * given `standalone` defaults may also be run on its own (`node dist/bench/jobs/JOB.js ['{...}']`):
 * the input is argv[2] merged over the defaults, and the result is printed as JSON.
 */
export function runAsJob<I, O>(fn: (input: I) => Promise<O>, standalone?: I): void {
  if (!process.send) {
    if (standalone === undefined) throw new Error('this bench job is started by bench/run.ts (it needs an IPC channel)');
    const input = { ...standalone, ...(JSON.parse(process.argv[2] ?? '{}') as Partial<I>) } as I;
    fn(input).then(
      (value) => process.stdout.write(`${JSON.stringify(value, null, 2)}\n`),
      (e: unknown) => {
        process.stderr.write(`${e instanceof Error ? e.stack ?? e.message : String(e)}\n`);
        process.exitCode = 1;
      },
    );
    return;
  }
  const input = JSON.parse(process.argv[2] ?? 'null') as I;
  fn(input).then(
    async (value) => {
      await send({ type: 'result', ok: true, value });
      process.exit(0);
    },
    async (e: unknown) => {
      await send({ type: 'result', ok: false, error: e instanceof Error ? e.stack ?? e.message : String(e) });
      process.exit(1);
    },
  );
}

export interface ChildOptions {
  args?: string[];
  env?: NodeJS.ProcessEnv;
  execArgv?: string[];
  /** How long to wait for `ready` (default 60 s). */
  timeoutMs?: number;
}

export interface Child<I> {
  readonly info: I;
  readonly pid: number;
  call<T = unknown>(cmd: string, args?: unknown): Promise<T>;
  /** Ask the child to stop; kills it if it does not exit within 10 s. */
  stop(): Promise<void>;
  /** The last 64 KiB of its stdout and stderr. */
  output(): string;
}

const live = new Set<ChildProcess>();
let hooked = false;
function hookExit(): void {
  if (hooked) return;
  hooked = true;
  // only the processes this bench started, each by its own handle
  process.on('exit', () => {
    for (const c of live) c.kill('SIGKILL');
  });
}

function spawnNode(script: URL, o: ChildOptions): { child: ChildProcess; output: () => string } {
  hookExit();
  const child = fork(fileURLToPath(script), o.args ?? [], {
    env: { ...process.env, ...o.env },
    execArgv: o.execArgv ?? [],
    stdio: ['ignore', 'pipe', 'pipe', 'ipc'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  let out = '';
  const append = (b: Buffer) => {
    out += b.toString('utf8');
    if (out.length > 65536) out = out.slice(-65536);
  };
  child.stdout!.on('data', append);
  child.stderr!.on('data', append);
  return { child, output: () => out };
}

export async function startChild<I>(script: URL, o: ChildOptions = {}): Promise<Child<I>> {
  const { child, output } = spawnNode(script, o);
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  let nextId = 1;
  let exited = false;
  const exitedP = new Promise<void>((resolve) => child.once('exit', () => {
    exited = true;
    for (const p of pending.values()) p.reject(new Error(`${script.pathname} exited\n${output()}`));
    pending.clear();
    resolve();
  }));
  child.on('message', (m: ReplyMsg) => {
    if (m?.type !== 'reply') return;
    const p = pending.get(m.id);
    if (!p) return;
    pending.delete(m.id);
    if (m.ok) p.resolve(m.value);
    else p.reject(new Error(m.error));
  });
  const info = await new Promise<I>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`${script.pathname} did not start within ${o.timeoutMs ?? 60_000} ms\n${output()}`)), o.timeoutMs ?? 60_000);
    child.on('message', (m: ReadyMsg) => {
      if (m?.type === 'ready') {
        clearTimeout(timer);
        resolve(m.info as I);
      }
    });
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`${script.pathname} exited (${code ?? signal}) before it was ready\n${output()}`));
    });
  });
  return {
    info,
    pid: child.pid!,
    call<T>(cmd: string, args?: unknown): Promise<T> {
      if (exited) return Promise.reject(new Error(`${script.pathname} has exited\n${output()}`));
      const id = nextId++;
      return new Promise<T>((resolve, reject) => {
        pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
        child.send({ type: 'call', id, cmd, args } satisfies CallMsg);
      });
    },
    async stop() {
      if (exited) return;
      const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
      try {
        child.send({ type: 'call', id: nextId++, cmd: 'stop' } satisfies CallMsg);
      } catch {
        child.kill('SIGTERM');
      }
      await exitedP;
      clearTimeout(timer);
    },
    output,
  };
}

/** Run a one-shot job in its own process and return its result. */
export async function runJob<I, O>(script: URL, input: I, o: Omit<ChildOptions, 'args'> = {}): Promise<O> {
  const { child, output } = spawnNode(script, { ...o, args: [JSON.stringify(input)] });
  return new Promise<O>((resolve, reject) => {
    let done = false;
    child.on('message', (m: ResultMsg) => {
      if (m?.type !== 'result') return;
      done = true;
      if (m.ok) resolve(m.value as O);
      else reject(new Error(`${script.pathname}: ${m.error}`));
    });
    child.once('exit', (code, signal) => {
      if (!done) reject(new Error(`${script.pathname} exited (${code ?? signal}) without a result\n${output()}`));
    });
  });
}
