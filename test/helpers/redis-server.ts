/**
 * A throw-away redis-server on a free loopback port, for tests that need to stop, freeze and
 * restart Redis (outage handling). No persistence: a restart starts empty.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { freezeProcess } from './freeze.js';
import { createServer } from 'node:net';

export interface RedisServer {
  url: string;
  port: number;
  /** Stop the server (SIGTERM, then SIGKILL after 2 s); resolves once it has exited. */
  stop(): Promise<void>;
  /** Start it again on the same port; resolves once it accepts connections. */
  start(): Promise<void>;
  /** Suspend the process (SIGSTOP; resolved once it is really stopped): connections stay open but nothing answers. */
  freeze(): Promise<void>;
  /** Resume a frozen process (SIGCONT). */
  thaw(): void;
}

const live = new Set<ChildProcess>();
process.once('exit', () => {
  for (const child of live) child.kill('SIGKILL');
});

async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.once('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      const port = typeof addr === 'object' && addr ? addr.port : 0;
      srv.close(() => (port ? resolve(port) : reject(new Error('no free port'))));
    });
  });
}

function launch(port: number): Promise<ChildProcess> {
  const bin = process.env.REDIS_SERVER_BIN ?? 'redis-server';
  const child = spawn(bin, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  live.add(child);
  child.once('exit', () => live.delete(child));
  return new Promise((resolve, reject) => {
    let out = '';
    let ready = false;
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`redis-server did not start on port ${port}:\n${out}`));
    }, 10_000);
    child.stdout?.on('data', (chunk: Buffer) => {
      if (ready) return; // keep draining so the pipe never fills
      out += chunk.toString('utf8');
      if (out.includes('Ready to accept connections')) {
        ready = true;
        clearTimeout(timer);
        resolve(child);
      }
    });
    child.stderr?.on('data', (chunk: Buffer) => {
      if (!ready) out += chunk.toString('utf8');
    });
    child.once('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
    child.once('exit', (code) => {
      clearTimeout(timer);
      if (!ready) reject(new Error(`redis-server exited with ${code}:\n${out}`));
    });
  });
}

function terminate(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => {
    const kill = setTimeout(() => child.kill('SIGKILL'), 2000);
    child.once('exit', () => {
      clearTimeout(kill);
      resolve();
    });
    child.kill('SIGCONT'); // a frozen server must be able to act on SIGTERM
    child.kill('SIGTERM');
  });
}

/** Start a private redis-server (binary `redis-server`, or $REDIS_SERVER_BIN). */
export async function startRedis(): Promise<RedisServer> {
  const port = await freePort();
  let child: ChildProcess | null = await launch(port);
  return {
    url: `redis://127.0.0.1:${port}/0`,
    port,
    async stop() {
      if (!child) return;
      const c = child;
      child = null;
      await terminate(c);
    },
    async start() {
      if (child) return;
      child = await launch(port);
    },
    freeze() {
      return freezeProcess(child);
    },
    thaw() {
      child?.kill('SIGCONT');
    },
  };
}
