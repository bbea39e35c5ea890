/**
 * The session manager remembers the SHA-256 of ids that named a live session (the signed-in
 * request path then hashes once per session, not once per request). The id it is given is a
 * slice of the request's Cookie header, and V8 keeps a slice's whole parent string alive: kept
 * as given, every remembered id would hold its request's entire Cookie header (up to node's
 * 16 KB header limit), so a user signing in again and again with a padded Cookie header, or just
 * ordinary large cookies, could make a table documented at a few MB hold hundreds of MB.
 *
 * Here: 2,000 live sessions, each first presented in a 16 KB Cookie header. What stays on the
 * heap after a full GC must be the ids and hashes (well under 1 MB), not the headers (32 MB).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { ManualClock, cryptoRandom } from '../../src/clock.js';
import { SessionManager, sessionCookieName } from '../../src/session/sessions.js';
import { MemorySessionStore } from '../../src/store/memory.js';
import { readSessionCookie } from '../../src/http/request-context.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

function heapAfterGc(): number {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
}

test('remembered session ids do not keep their requests\' Cookie headers alive', async () => {
  const clock = new ManualClock();
  const store = new MemorySessionStore(clock, 10_000);
  const sessions = new SessionManager({ store, clock, random: cryptoRandom, timeouts: () => ({ idleMs: 3_600_000, absoluteMs: 3_600_000 }) });
  const name = sessionCookieName(false);
  const N = 2_000;
  const ids: string[] = [];
  for (let i = 0; i < N; i++) ids.push((await sessions.create({ user: 'alice', amr: ['pwd'], pending: 'none', ip: '192.0.2.1' })).id);

  const before = heapAfterGc();
  for (let i = 0; i < N; i++) {
    // a new header string per request, as node's parser makes one
    const header = `pad=${'x'.repeat(16_000)}${i}; ${name}=${ids[i]}`;
    const s = await sessions.lookup(readSessionCookie(header, name));
    assert.ok(s, 'a live session');
  }
  const grown = heapAfterGc() - before;
  assert.ok(grown < 8 * 2 ** 20, `the heap grew by ${(grown / 2 ** 20).toFixed(1)} MB for ${N} remembered ids (16 KB headers: the headers were kept)`);
  // and the memo is used: a second round finds every session again
  for (let i = 0; i < N; i++) assert.ok(await sessions.lookup(readSessionCookie(`a=b; ${name}=${ids[i]}`, name)));
});
