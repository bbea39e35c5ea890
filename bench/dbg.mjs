import { startChild } from '/work/main/dist/bench/lib/ipc.js';
import { startGateway, signIn } from '/work/main/dist/bench/lib/gateway.js';
import { runLoad } from '/work/main/dist/bench/lib/load.js';
import { spawn } from 'node:child_process';
import { mkdtempSync } from 'node:fs';
const work = mkdtempSync('/tmp/dbg-');
const up = await startChild(new URL('file:///work/main/dist/bench/servers/upstream.js'));
const upstream = `http://127.0.0.1:${up.info.port}`;
const gw = await startGateway({ label: 'x', workDir: work, upstream, argon2: 'test', networks: '  office: ["127.0.0.1/32"]', rules: '      - { networks: [office], policy: password }\n      - { policy: deny }', profileDir: null });
const cookie = await signIn(gw.url);
const h = { host: 'mail.bench', cookie: `portcullis_dev_session=${cookie}` };
const point = async (name, args) => {
  let b = null; let out = '';
  if (args) { b = spawn('node', ['/tmp/exp/burner.mjs', ...args]); b.stdout.on('data', (d) => (out = d.toString())); await new Promise((r) => setTimeout(r, 1500)); }
  const r = await runLoad('wrk', { url: `${gw.url}/inbox`, headers: h, connections: 32, seconds: 6 }, work);
  if (b) b.kill();
  console.log(name.padEnd(34), Math.round(r.rps), 'rps p50', r.p50.toFixed(2), 'p99', r.p99.toFixed(2), out.trim());
};
await runLoad('wrk', { url: `${gw.url}/inbox`, headers: h, connections: 32, seconds: 2 }, work);
await point('no hashing', null);
await point('4 on libuv pool (gateway today)', ['pool', '4']);
await point('1 on libuv pool', ['pool', '1']);
await point('4 worker threads nice 19', ['nice', '4', '19']);
await point('2 worker threads nice 19', ['nice', '2', '19']);
await point('no hashing', null);
await gw.stop(); await up.stop();
