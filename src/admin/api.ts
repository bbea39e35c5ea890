/**
 * The admin JSON API under `/api/`, registered in its own fastify context behind the token check.
 * Routes parse and check their input, call `operations.ts` / `lockdown.ts`, and answer JSON.
 *
 *   GET    /api/sessions[?user=U]                  [{handle, user, created, lastSeen, ip, amr, pending}]
 *   POST   /api/sessions/revoke   {user} | {all: true} | {handle}
 *   POST   /api/unblock           {user} | {ip}
 *   GET    /api/blocks
 *   GET    /api/lockdown          POST /api/lockdown {on, by?}
 *   GET    /api/attack            POST /api/attack {off: true, by?}   (the attack posture)
 *   POST   /api/reload
 *   POST   /api/totp/set          {user, secret}     POST /api/totp/reset {user}
 *   POST   /api/app-passwords     {user, label}      -> {user, label, password} (shown once)
 *   GET    /api/app-passwords?user=U                 DELETE /api/app-passwords {user, label}
 *   GET    /api/passkeys?user=U                      DELETE /api/passkeys {user, id}
 */
import type { ReloadOutcome } from '../runtime.js';
import type { FastifyInstance, FastifyPluginAsync, FastifyRequest } from 'fastify';
import { PortcullisError } from '../errors.js';
import type { Runtime } from '../runtime.js';
import type { AttackStatus } from '../auth/attack.js';
import { lockdownStatus, setLockdown } from '../access/lockdown.js';
import {
  addAppPassword,
  listAppPasswords,
  listBlocks,
  listPasskeysOf,
  listSessions,
  removePasskeyOf,
  resetTotp,
  revokeAppPassword,
  revokeSessions,
  setTotp,
  unblock,
  type Actor,
} from './operations.js';

export interface ApiDeps {
  /** Re-read the config and users file (Gateway.reload); absent when there is nothing to reload. */
  reload?: ((trigger: string) => Promise<ReloadOutcome>) | undefined;
}

const BY_RE = /^[A-Za-z0-9._@:+-]{1,64}$/;
const RELOAD_TRIGGER = 'admin api';

function bad(message: string): PortcullisError {
  return new PortcullisError('PC_BAD_REQUEST', message);
}

/** The JSON body as an object with no keys but `allowed` (PC_BAD_REQUEST otherwise). */
function body(req: FastifyRequest, allowed: readonly string[]): Record<string, unknown> {
  const b = req.body ?? {};
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw bad('the request body must be a JSON object');
  for (const k of Object.keys(b)) if (!allowed.includes(k)) throw bad(`unknown field "${k}" (expected ${allowed.map((a) => `"${a}"`).join(', ')})`);
  return b as Record<string, unknown>;
}

/** One optional string query parameter; repeated or unknown parameters are refused. */
function query(req: FastifyRequest, allowed: readonly string[]): Record<string, string> {
  const q = (req.query ?? {}) as Record<string, unknown>;
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(q)) {
    if (!allowed.includes(k)) throw bad(`unknown query parameter "${k}"`);
    if (typeof v !== 'string') throw bad(`query parameter "${k}" must be given once`);
    out[k] = v;
  }
  return out;
}

/** Exactly one of `keys` present in `b`. */
function exactlyOne(b: Record<string, unknown>, keys: readonly string[]): string {
  const present = keys.filter((k) => b[k] !== undefined);
  if (present.length !== 1) throw bad(`give exactly one of ${keys.map((k) => `"${k}"`).join(', ')}`);
  return present[0]!;
}

function actor(req: FastifyRequest): Actor {
  return { ip: req.ip };
}

function iso(ms: number): string | null {
  return ms > 0 ? new Date(ms).toISOString() : null;
}

function lockdownView(rt: Runtime) {
  const s = lockdownStatus(rt);
  return { on: s.on, since: iso(s.since), by: s.by || null, networks: s.networks };
}

/** The attack posture as the API shows it (times in ISO 8601; the count of passwords marked sprayed). */
async function attackView(rt: Runtime, given?: AttackStatus) {
  const [s, sprayedPasswords] = await Promise.all([given ?? rt.attack.status(), rt.throttle.sprayedCount()]);
  const t = (ms: number | null) => (ms === null ? null : iso(ms));
  return {
    configured: s.configured,
    mode: s.mode,
    active: s.active,
    since: t(s.since),
    endsAt: t(s.endsAt),
    failuresThisMinute: s.failuresThisMinute,
    failuresLastMinute: s.failuresLastMinute,
    threshold: s.threshold,
    baselinePerMinute: s.baselinePerMinute,
    cooldownSeconds: s.cooldownMs === null ? null : s.cooldownMs / 1000,
    quietUntil: t(s.quietUntil),
    last: s.last ? { since: iso(s.last.since), endedAt: iso(s.last.endedAt), by: s.last.by } : null,
    sprayedPasswords,
  };
}

export function adminApi(rt: Runtime, deps: ApiDeps): FastifyPluginAsync {
  return async (app: FastifyInstance) => {
    app.get('/api/sessions', async (req) => {
      const q = query(req, ['user']);
      return { sessions: await listSessions(rt, q.user) };
    });

    app.post('/api/sessions/revoke', async (req) => {
      const b = body(req, ['user', 'all', 'handle']);
      const which = exactlyOne(b, ['user', 'all', 'handle']);
      if (which === 'all') {
        if (b.all !== true) throw bad('"all" must be true');
        return revokeSessions(rt, { all: true }, actor(req));
      }
      if (which === 'user') return revokeSessions(rt, { user: b.user as string }, actor(req));
      return revokeSessions(rt, { handle: b.handle as string }, actor(req));
    });

    app.post('/api/unblock', async (req) => {
      const b = body(req, ['user', 'ip']);
      const which = exactlyOne(b, ['user', 'ip']);
      return unblock(rt, which === 'user' ? { user: b.user as string } : { ip: b.ip as string }, actor(req));
    });

    app.get('/api/blocks', async (req) => {
      query(req, []);
      return { blocks: await listBlocks(rt) };
    });

    app.get('/api/lockdown', async (req) => {
      query(req, []);
      return lockdownView(rt);
    });

    app.post('/api/lockdown', async (req) => {
      const b = body(req, ['on', 'by']);
      if (typeof b.on !== 'boolean') throw bad('"on" must be true or false');
      let by = 'admin-api';
      if (b.by !== undefined) {
        if (typeof b.by !== 'string' || !BY_RE.test(b.by)) throw bad('"by" is 1 to 64 characters from A-Z a-z 0-9 . _ @ : + -');
        by = b.by;
      }
      const r = await setLockdown(rt, b.on, by, { ip: req.ip });
      return { ...lockdownView(rt), changed: r.changed, sessionsRevoked: r.sessionsRevoked, connectionsClosed: r.connectionsClosed };
    });

    app.get('/api/attack', async (req) => {
      query(req, []);
      return attackView(rt);
    });

    app.post('/api/attack', async (req) => {
      const b = body(req, ['off', 'by']);
      if (b.off !== true) throw bad('"off" must be true (the posture starts by itself; it can only be ended)');
      let by = 'admin-api';
      if (b.by !== undefined) {
        if (typeof b.by !== 'string' || !BY_RE.test(b.by)) throw bad('"by" is 1 to 64 characters from A-Z a-z 0-9 . _ @ : + -');
        by = b.by;
      }
      const r = await rt.attack.off(by, req.ip);
      return { ...(await attackView(rt, r.status)), changed: r.changed };
    });

    app.post('/api/reload', async (req) => {
      body(req, []);
      if (!deps.reload) throw new PortcullisError('PC_NOT_FOUND', 'this gateway has no configuration to reload');
      const o = await deps.reload(RELOAD_TRIGGER);
      if (!o.ok) throw new PortcullisError('PC_CONFIG_INVALID', `configuration rejected, the running one stays: ${o.reason}`);
      return { reloaded: true, apps: rt.config.apps.map((a) => a.name), users: rt.users.size, ...(o.needsRestart?.length ? { needsRestart: o.needsRestart } : {}) };
    });

    app.post('/api/totp/set', async (req) => {
      const b = body(req, ['user', 'secret']);
      return setTotp(rt, b.user, b.secret, actor(req));
    });

    app.post('/api/totp/reset', async (req) => {
      const b = body(req, ['user']);
      return resetTotp(rt, b.user, actor(req));
    });

    app.post('/api/app-passwords', async (req, reply) => {
      const b = body(req, ['user', 'label']);
      const r = await addAppPassword(rt, b.user, b.label, actor(req));
      return reply.code(201).send(r);
    });

    app.get('/api/app-passwords', async (req) => {
      const q = query(req, ['user']);
      if (q.user === undefined) throw bad('"user" is required');
      return { appPasswords: await listAppPasswords(rt, q.user) };
    });

    app.delete('/api/app-passwords', async (req) => {
      const b = body(req, ['user', 'label']);
      return { revoked: true, ...(await revokeAppPassword(rt, b.user, b.label, actor(req))) };
    });

    app.get('/api/passkeys', async (req) => {
      const q = query(req, ['user']);
      if (q.user === undefined) throw bad('"user" is required');
      return { passkeys: await listPasskeysOf(rt, q.user) };
    });

    app.delete('/api/passkeys', async (req) => {
      const b = body(req, ['user', 'id']);
      return { removed: true, ...(await removePasskeyOf(rt, b.user, b.id, actor(req))) };
    });

    // unknown API paths answer 404 only to a caller holding the token
    app.all('/api/*', async () => {
      throw new PortcullisError('PC_NOT_FOUND', 'no such admin API route');
    });
  };
}
