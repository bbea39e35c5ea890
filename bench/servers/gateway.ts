/**
 * The gateway under test, in a process of its own: `Gateway.start` exactly as `portcullis serve`
 * runs it (config file, users file, audit log, admin listener with /metrics), minus file watching.
 * argon2 parameters come from PORTCULLIS_ARGON2 as in production. Run with `--cpu-prof` when the
 * bench profiles, and with `--expose-gc` so the memory point can collect before reading RSS.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Gateway } from '../../src/main.js';
import { createLogger } from '../../src/audit/logger.js';
import { serve } from '../lib/ipc.js';

const configFile = process.argv[2];
if (!configFile) throw new Error('usage: gateway.js CONFIG_FILE');

const gw = await Gateway.start({
  configFile,
  port: 0,
  host: '127.0.0.1',
  // warnings and errors only, as an operator would run it; they go to the parent's log buffer
  logger: createLogger({ level: 'warn' }),
  watch: false,
  announce: () => undefined,
});

const eld = monitorEventLoopDelay({ resolution: 10 });
eld.enable();
const gc = (globalThis as { gc?: () => void }).gc;

function stats() {
  const m = process.memoryUsage();
  return {
    rss: m.rss,
    heapUsed: m.heapUsed,
    external: m.external,
    arrayBuffers: m.arrayBuffers,
    // event-loop delay since the last reset, in ms
    eldP50: eld.percentile(50) / 1e6,
    eldP99: eld.percentile(99) / 1e6,
    eldMax: eld.max / 1e6,
    hashInFlight: gw.rt.hashBudget.inFlight,
    hashRejected: gw.rt.hashBudget.rejected,
    hashCompleted: gw.rt.hashBudget.completed,
  };
}

await serve(
  { port: gw.port, adminPort: gw.adminPort, pid: process.pid },
  {
    stats,
    resetEld: () => {
      eld.reset();
      return null;
    },
    gc: () => {
      if (!gc) throw new Error('start the gateway child with --expose-gc');
      // twice: the first pass may only promote what the second frees
      gc();
      gc();
      return stats();
    },
    stop: async () => {
      // the load is over: drop every connection at once rather than wait out the grace period
      // Gateway.close() gives requests in flight
      gw.http.server.closeAllConnections();
      await gw.close();
    },
  },
);
