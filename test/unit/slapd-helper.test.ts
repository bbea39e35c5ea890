import { test } from 'node:test';
import assert from 'node:assert/strict';
import { slapdMissing, startSlapd } from '../helpers/slapd.js';

const missing = slapdMissing();

test('the slapd helper serves the fixture and counts failed binds', { skip: missing ?? false }, async () => {
  const s = await startSlapd({ tls: true });
  try {
    assert.equal(await s.canBind('uid=alice,ou=people,dc=example,dc=org', 'Wonderland-Rabbit-1865'), true);
    assert.equal(await s.canBind('uid=alice,ou=people,dc=example,dc=org', 'nope'), false);
    assert.equal(await s.failures('alice'), 1);
    assert.equal(await s.canBind('uid=alice,ou=people,dc=example,dc=org', 'Wonderland-Rabbit-1865'), true);
    assert.equal(await s.failures('alice'), 0, 'a success clears the failures');
    assert.equal(await s.canBind('uid=bob,ou=people,dc=example,dc=org', 'nope'), false);
    assert.equal(await s.failures('bob'), 1);
    await s.stop();
    await s.start();
    assert.equal(await s.failures('bob'), 1, 'data survives a restart');
  } finally {
    await s.close();
  }
});
