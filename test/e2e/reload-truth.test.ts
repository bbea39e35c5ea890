/**
 * Reload tells the truth (issue 14, item 5), on a real gateway: SIGHUP (`Gateway.reload`) re-reads
 * the TLS certificate and key, so a renewed certificate is served to the next connection without a
 * restart, and a key that does not match refuses the reload with the old certificate still served;
 * keys a running process cannot apply (`listen`, `admin.listen`, `workers`, `store`) are reported
 * as "needs restart" in the outcome, the log and the audit trail instead of being silently kept;
 * the audit file is reopened, so logrotate's rename is followed by a fresh file.
 */
import { strict as assert } from 'node:assert';
import { execFile } from 'node:child_process';
import { copyFile, readFile, rename, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { connect as tlsConnect } from 'node:tls';
import { promisify } from 'node:util';
import { after, before, describe, it } from 'node:test';
import { createLogger } from '../../src/audit/logger.js';
import { restartKeys } from '../../src/main.js';
import { startTestGateway } from '../helpers/gateway.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';
import { get, rawHttp } from '../helpers/raw-http.js';

const APPS = `apps:
  - name: who
    hosts: ["who.test"]
    upstream: "builtin:whoami"
    rules:
      - { policy: bypass }
`;

function capture() {
  const lines: Array<Record<string, unknown>> = [];
  const dest = new Writable({
    write(chunk, _e, cb) {
      for (const l of String(chunk).split('\n').filter(Boolean)) lines.push(JSON.parse(l) as Record<string, unknown>);
      cb();
    },
  });
  return { logger: createLogger({ level: 'info', destination: dest }), lines };
}

let certs: TmpDir;
async function makeCert(name: string): Promise<{ cert: string; key: string }> {
  const key = join(certs.dir, `${name}.key`);
  const cert = join(certs.dir, `${name}.crt`);
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes',
    '-keyout', key, '-out', cert, '-days', '1', '-subj', `/CN=${name}`, '-addext', 'subjectAltName=IP:127.0.0.1',
  ]);
  return { cert, key };
}
before(async () => {
  certs = await tmpDir('pc-reload-certs');
});
after(async () => {
  await certs?.cleanup();
});

/** The CN of the certificate a new TLS connection is served. */
function servedCn(port: number): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = tlsConnect({ host: '127.0.0.1', port, rejectUnauthorized: false }, () => {
      const cn = s.getPeerCertificate().subject?.CN;
      s.destroy();
      resolve(String(cn));
    });
    s.on('error', reject);
  });
}

describe('SIGHUP re-reads the TLS certificate and key', () => {
  it('serves a renewed certificate to the next connection; a mismatched key refuses the reload', async () => {
    const first = await makeCert('first');
    const second = await makeCert('second');
    const other = await makeCert('other');
    const live = { cert: join(certs.dir, 'live.crt'), key: join(certs.dir, 'live.key') };
    await copyFile(first.cert, live.cert);
    await copyFile(first.key, live.key);
    const gw = await startTestGateway(`tls: { cert: ${JSON.stringify(live.cert)}, key: ${JSON.stringify(live.key)} }\n${APPS}`);
    try {
      assert.equal(await servedCn(gw.port), 'first');
      // certbot / cert-manager renews the files in place
      await copyFile(second.cert, live.cert);
      await copyFile(second.key, live.key);
      assert.deepEqual(await gw.gw.reload('SIGHUP'), { ok: true });
      assert.equal(await servedCn(gw.port), 'second', 'renewed without a restart');
      // a half-finished renewal: the new certificate with another key
      await copyFile(first.cert, live.cert);
      await copyFile(other.key, live.key);
      const o = await gw.gw.reload('SIGHUP');
      assert.equal(o.ok, false);
      assert.match(!o.ok ? o.reason : '', /TLS certificate .* and key/);
      assert.equal(await servedCn(gw.port), 'second', 'the running certificate stays');
    } finally {
      await gw.close();
    }
  });
});

describe('keys that need a restart', () => {
  it('listen, admin.listen, workers and store are reported in the outcome, the log and the audit trail', async () => {
    const log = capture();
    const gw = await startTestGateway(APPS, { logger: log.logger });
    try {
      assert.deepEqual(await gw.gw.reload('SIGHUP'), { ok: true }, 'nothing to restart for: the plain { ok: true }');
      const text = await readFile(gw.configFile, 'utf8');
      const changed = text
        .replace(/^listen: "127\.0\.0\.1:0"$/m, 'listen: "127.0.0.1:65010"')
        .replace('admin: { listen: "127.0.0.1:0"', 'admin: { listen: "127.0.0.1:65011"')
        .concat('\nworkers: 2\nstore: "redis://:pw-not-logged@127.0.0.1:6379/3"\n');
      await writeFile(gw.configFile, changed);
      const o = await gw.gw.reload('SIGHUP');
      assert.deepEqual(o, { ok: true, needsRestart: ['listen', 'admin.listen', 'workers', 'store'] });
      const warn = log.lines.find((l) => /need a restart/.test(String(l.msg)));
      assert.ok(warn, 'logged');
      assert.match(String(warn.msg), /listen, admin\.listen, workers, store/);
      assert.ok(!JSON.stringify(log.lines).includes('pw-not-logged'), 'the store URL is not logged');
      const audit = (await readFile(join(gw.dir.dir, 'data', 'audit.jsonl'), 'utf8').catch(() => '')) + JSON.stringify(gw.gw.rt.audit.recent());
      assert.match(audit, /needs restart: listen, admin\.listen, workers, store/);
      // the running process still serves where it was started
      assert.equal((await rawHttp(gw.port, get('/', 'who.test'))).status, 200);
    } finally {
      await gw.close();
    }
  });

  it('restartKeys compares only what a running process cannot change', async () => {
    const { loadConfigText } = await import('../../src/config/index.js');
    const c = (extra: string) => {
      const r = loadConfigText(`${extra}\n${APPS}`, 'p.yaml', { checkFiles: false });
      assert.ok(r.ok);
      return r.config;
    };
    assert.deepEqual(restartKeys(c(''), c('networks: { office: ["10.0.0.0/8"] }\nsession: { idle_timeout: 5m }')), []);
    assert.deepEqual(restartKeys(c(''), c('data_dir: /elsewhere\ntls: { cert: /a, key: /b }')), ['tls', 'admin.token_file', 'data_dir']);
  });
});

describe('the audit log is reopened on reload (logrotate)', () => {
  it('after the file is renamed away, a reload starts a new file and nothing more goes to the old one', async () => {
    const gw = await startTestGateway(APPS);
    try {
      const file = join(gw.dir.dir, 'data', 'audit.jsonl');
      gw.gw.rt.audit.record({ event: 'unblocked', ip: '-', outcome: 'info', reason: 'before rotation' });
      await new Promise((r) => setTimeout(r, 50));
      await rename(file, `${file}.1`);
      await gw.gw.reload('SIGHUP');
      gw.gw.rt.audit.record({ event: 'unblocked', ip: '-', outcome: 'info', reason: 'after rotation' });
      await new Promise((r) => setTimeout(r, 100));
      const fresh = await readFile(file, 'utf8');
      const old = await readFile(`${file}.1`, 'utf8');
      assert.match(fresh, /after rotation/);
      assert.match(fresh, /config_reloaded/);
      assert.match(old, /before rotation/);
      assert.doesNotMatch(old, /after rotation/);
    } finally {
      await gw.close();
    }
  });
});
