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
import { readFileSync } from 'node:fs';
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

function yamlBlocks(): Array<{ line: number; text: string }> {
  const out: Array<{ line: number; text: string }> = [];
  const re = /```yaml\n([\s\S]*?)```/g;
  for (let m = re.exec(README); m; m = re.exec(README)) out.push({ line: README.slice(0, m.index).split('\n').length, text: m[1]! });
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
