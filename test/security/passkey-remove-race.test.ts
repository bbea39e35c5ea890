/**
 * Review note: removing a passkey checked "is this the user's last second factor?" and then
 * removed it, in two steps. Two removals at once (two tabs, two instances) from outside the enrol
 * networks each saw the other key still there, and together left the account with no second
 * factor, which only the enrol networks may do. The check and the removal now run under one
 * per-user slot in the rate store (src/auth/passkey.ts removeOwnPasskey).
 */
import { test, after, before } from 'node:test';
import assert from 'node:assert/strict';
import { startCoreRuntime, type CoreRuntime } from '../helpers/core-runtime.js';
import { removeOwnPasskey } from '../../src/auth/passkey.js';

let core: CoreRuntime;

before(async () => {
  core = await startCoreRuntime(`
networks: { office: ["10.1.0.0/16"] }
enrol: { networks: [office] }
webauthn: { rp_id: example.org, origins: ["https://mail.example.org"] }
apps:
  - { name: mail, hosts: [mail.example.org], upstream: "builtin:whoami", rules: [{ policy: passkey }] }
`, { users: [{ name: 'alice', password: 'amber lantern orchid gravel 1987' }] });
});
after(async () => core?.close());

test('two removals at once from outside the enrol networks leave the last passkey in place', async () => {
  const { rt } = core;
  for (const id of ['key-one', 'key-two']) {
    assert.ok(await rt.stores.state.addPasskey('alice', { id, publicKey: rt.box.seal('pk', `passkey:alice:${id}`), counter: 0, transports: ['internal'], name: id, createdAt: rt.clock.now() }, 10));
  }
  const remote = { user: 'alice', ip: '203.0.113.9', app: 'mail' };
  const results = await Promise.all([removeOwnPasskey(rt, rt.config, { ...remote, id: 'key-one' }), removeOwnPasskey(rt, rt.config, { ...remote, id: 'key-two' })]);
  const left = await rt.stores.state.listPasskeys('alice');
  assert.equal(left.length, 1, `results ${JSON.stringify(results)}: a second factor is left`);
  assert.deepEqual(results.filter((r) => r === 'ok').length, 1);
  // and one at a time: the second is the last one, refused from outside the enrol networks
  const again = await removeOwnPasskey(rt, rt.config, { ...remote, id: left[0]!.id });
  assert.equal(again, 'last');
  assert.equal((await rt.stores.state.listPasskeys('alice')).length, 1);
});
