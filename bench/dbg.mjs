import { startChild } from '/work/main/dist/bench/lib/ipc.js';
import { startGateway, signIn } from '/work/main/dist/bench/lib/gateway.js';
import { runLoad } from '/work/main/dist/bench/lib/load.js';
import { mkdtempSync, readFileSync } from 'node:fs';
const work = mkdtempSync('/tmp/dbg-');
const up = await startChild(new URL('file:///work/main/dist/bench/servers/upstream.js'));
const upstream = `http://127.0.0.1:${up.info.port}`;
const gw = await startGateway({ label: 'x', workDir: work, upstream, argon2: 'test', networks: '  office: ["127.0.0.1/32"]', rules: '      - { networks: [office], policy: password }\n      - { policy: deny }', profileDir: null });
const cookie = await signIn(gw.url);
const b = await startChild(new URL('file:///work/main/dist/bench/servers/bare-proxy.js'), { args: [upstream] });
const bx = await startChild(new URL('file:///tmp/bare-extra.js'), { args: [upstream] });
const h = { host: 'mail.bench', cookie: `portcullis_dev_session=${cookie}` };
const usage = (pid) => { const s = readFileSync(`/proc/${pid}/stat`, 'utf8').split(') ')[1].split(' '); return (Number(s[11]) + Number(s[12])) / 100; };
const pts = [['gw', gw.url, gw.child.pid], ['bare', `http://127.0.0.1:${b.info.port}`, b.pid], ['bare+idheaders', `http://127.0.0.1:${bx.info.port}`, bx.pid]];
for (let round = 0; round < 2; round++) for (const [name, url, pid] of pts) {
  const u0 = usage(pid), upu0 = usage(up.pid);
  const r = await runLoad('wrk', { url: `${url}/inbox`, headers: h, connections: 32, seconds: 4 }, work);
  const u1 = usage(pid), upu1 = usage(up.pid);
  console.log(name.padEnd(16), Math.round(r.rps), 'rps; server µs/req', ((u1 - u0) / r.requests * 1e6).toFixed(1), 'upstream µs/req', ((upu1 - upu0) / r.requests * 1e6).toFixed(1), 'p99', r.p99.toFixed(2));
}
await gw.stop(); await b.stop(); await bx.stop(); await up.stop();
