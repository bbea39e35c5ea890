/**
 * Every YAML block in the README (the configuration walkthrough and the gateway side of each
 * deployment recipe) is a configuration the gateway accepts as printed. Fragments without `apps`
 * get one minimal app; the certificate paths under /etc/portcullis/ point at a freshly made
 * self-signed pair. Anything else the compiler refuses fails here, so the README cannot drift
 * from the config schema.
 */
import { test, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdirSync, readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { loadConfigText } from '../../src/config/index.js';
import { tmpDir, type TmpDir } from '../helpers/tmp.js';

const ROOT = fileURLToPath(new URL('../../../', import.meta.url));
const README = readFileSync(join(ROOT, 'README.md'), 'utf8');
const MINIMAL_APP = '\napps:\n  - { name: example, hosts: [example.test], upstream: "builtin:whoami", rules: [{ policy: deny }] }\n';

let dir: TmpDir;

before(async () => {
  dir = await tmpDir('pc-readme');
  await promisify(execFile)('openssl', [
    'req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:P-256', '-nodes',
    '-keyout', join(dir.dir, 'privkey.pem'), '-out', join(dir.dir, 'fullchain.pem'), '-days', '1', '-subj', '/CN=mail.example.org',
  ]);
});

after(async () => dir?.cleanup());

function yamlBlocks(doc = README): Array<{ line: number; text: string; fragment: boolean }> {
  const out: Array<{ line: number; text: string; fragment: boolean }> = [];
  const re = /```yaml\n([\s\S]*?)```/g;
  for (let m = re.exec(doc); m; m = re.exec(doc)) {
    const before = doc.slice(0, m.index);
    // a block marked `<!-- fragment ... -->` completes another block and is not a config alone
    out.push({ line: before.split('\n').length, text: m[1]!, fragment: /<!-- fragment[^>]*-->\n$/.test(before) });
  }
  return out;
}

test('every YAML block in the README is a configuration the gateway accepts', () => {
  const blocks = yamlBlocks();
  assert.ok(blocks.length >= 5, `found ${blocks.length} YAML blocks`);
  for (const b of blocks) {
    let text = b.text.replaceAll('/etc/portcullis/', `${dir.dir}/`);
    if (!/^apps:/m.test(text)) text += MINIMAL_APP;
    const r = loadConfigText(text, `README.md (block at line ${b.line})`);
    assert.ok(r.ok, `README.md line ${b.line}: ${r.ok ? '' : r.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`).join('; ')}`);
  }
});

test('every YAML block in docs/ is a configuration the gateway accepts as printed', () => {
  // secrets named as files under /run/secrets/ (a container's secret mount) are made here; an
  // { env: NAME } secret reads a placeholder; the files a config names are not opened
  mkdirSync(join(dir.dir, 'secrets'), { recursive: true });
  const env = new Proxy({}, { get: () => 'placeholder-secret-value', has: () => true }) as NodeJS.ProcessEnv;
  let n = 0;
  for (const f of readdirSync(join(ROOT, 'docs')).filter((x) => x.endsWith('.md'))) {
    for (const b of yamlBlocks(readFileSync(join(ROOT, 'docs', f), 'utf8'))) {
      if (b.fragment) continue;
      let text = b.text;
      for (const m of text.matchAll(/\/run\/secrets\/([\w.-]+)/g)) {
        writeFileSync(join(dir.dir, 'secrets', m[1]!), /redis/.test(m[1]!) ? 'redis://127.0.0.1:6379/0' : 'placeholder-secret-value');
      }
      text = text.replaceAll('/run/secrets/', `${dir.dir}/secrets/`);
      if (!/^apps:/m.test(text)) text += MINIMAL_APP;
      const r = loadConfigText(text, `docs/${f} (block at line ${b.line})`, { checkFiles: false, env });
      assert.ok(r.ok, `docs/${f} line ${b.line}: ${r.ok ? '' : r.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`).join('; ')}`);
      n++;
    }
  }
  assert.ok(n >= 6, `found ${n} YAML blocks in docs/`);
});
