import cluster from 'node:cluster';
import { loadConfigFile, formatIssues } from '../../config/index.js';
import { Gateway } from '../../main.js';
import { allowFlags, type Command, type CliIO } from '../args.js';

/**
 * `portcullis serve --config FILE`: run the gateway until SIGTERM/SIGINT (a graceful shutdown:
 * see Gateway.shutdown and `shutdown: { drain, grace }`); SIGHUP reloads.
 * With `workers: N` (only allowed with a shared store) the primary forks N workers that share
 * the listening sockets (node:cluster) and restarts any that die.
 */
export const run: Command = async (args, io) => {
  allowFlags(args, []);
  const loaded = await loadConfigFile(args.config);
  if (!loaded.ok) {
    io.stderr.write(`portcullis serve: configuration rejected:\n${formatIssues(loaded.issues)}\n`);
    return 1;
  }
  const workers = loaded.config.workers;
  if (workers > 1 && cluster.isPrimary) return primary(workers, io);
  return worker(args.config, io);
};

async function worker(configFile: string, io: CliIO): Promise<number> {
  let gw: Gateway;
  try {
    gw = await Gateway.start({ configFile, env: io.env, announce: (l) => io.stderr.write(`${l}\n`) });
  } catch (e) {
    io.stderr.write(`portcullis serve: ${(e as Error).message}\n`);
    return 1;
  }
  process.on('SIGHUP', () => void gw.reload('SIGHUP'));
  // SIGTERM (an orchestrator, systemd): the whole graceful shutdown, drain included. SIGINT (a
  // terminal's Ctrl-C) and a lost primary skip the drain. A second signal closes at once.
  // (The same signal twice within a second is one: Ctrl-C reaches a worker from the terminal and
  // again from its primary.)
  let first = 0;
  await new Promise<void>((resolve) => {
    const stop = (trigger: string, drainMs?: number) => () => {
      const now = Date.now();
      if (first !== 0 && now - first < 1_000) return;
      first ||= now;
      void gw.shutdown(trigger, drainMs === undefined ? {} : { drainMs }).then(resolve, resolve);
    };
    process.on('SIGTERM', stop('SIGTERM'));
    process.on('SIGINT', stop('SIGINT', 0));
    if (cluster.isWorker) process.once('disconnect', stop('primary gone', 0));
  });
  // a cluster worker's IPC channel (and any handle a dependency leaves behind) would keep the
  // process alive after a clean close: leave now
  if (cluster.isWorker) process.exit(0);
  return 0;
}

async function primary(n: number, io: CliIO): Promise<number> {
  let stopping = false;
  const started = new Map<number, number>();
  const fork = () => {
    const w = cluster.fork();
    started.set(w.id, Date.now());
  };
  for (let i = 0; i < n; i++) fork();
  cluster.on('exit', (w, code, signal) => {
    if (stopping) return;
    const lived = Date.now() - (started.get(w.id) ?? 0);
    started.delete(w.id);
    io.stderr.write(`portcullis: worker ${w.process.pid} exited (${signal ?? code}); restarting\n`);
    // a worker that dies at once is not restarted in a tight loop
    setTimeout(fork, lived < 5_000 ? 2_000 : 0);
  });
  process.on('SIGHUP', () => {
    for (const w of Object.values(cluster.workers ?? {})) w?.process.kill('SIGHUP');
  });
  // each worker runs its own graceful shutdown (drain, grace); the primary passes the signal on
  const signal = await new Promise<NodeJS.Signals>((resolve) => {
    process.once('SIGTERM', () => resolve('SIGTERM'));
    process.once('SIGINT', () => resolve('SIGINT'));
  });
  stopping = true;
  await Promise.all(
    Object.values(cluster.workers ?? {}).map(
      (w) =>
        new Promise<void>((resolve) => {
          if (!w) return resolve();
          w.once('exit', () => resolve());
          w.process.kill(signal);
        }),
    ),
  );
  return 0;
}
