/** Every code in the one error catalogue (src/errors.ts) is used somewhere in src/: no dead codes. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ERRORS } from '../../src/errors.js';

const SRC = fileURLToPath(new URL('../../../src/', import.meta.url));

test('every error code is used outside the catalogue', () => {
  const text = (readdirSync(SRC, { recursive: true }) as string[])
    .filter((f) => f.endsWith('.ts') && f !== 'errors.ts')
    .map((f) => readFileSync(join(SRC, f), 'utf8'))
    .join('\n');
  const unused = Object.keys(ERRORS).filter((code) => !text.includes(`'${code}'`) && !text.includes(`.${code}`));
  assert.deepEqual(unused, [], 'remove the unused codes from src/errors.ts, or use them');
});
