/**
 * The account page, GET /.portcullis/account: who is signed in, the authenticator and recovery
 * codes left, and the ways to change them (for a fully signed-in session with enough factors).
 */
import type { FastifyInstance } from 'fastify';
import type { Form, PortalContext } from './context.js';
import { accountPage } from './pages.js';
import { knownUser } from '../directory/source.js';

export function accountRoutes(portal: PortalContext) {
  const { rt, send, signedIn, afterStep, shortOfFactors, stepUpTo } = portal;

  return async (app: FastifyInstance): Promise<void> => {
    app.get('/.portcullis/account', async (req, reply) => {
      const g = await signedIn(req, reply);
      if (!g) return reply;
      const { c, s } = g;
      if (s.rec.pending !== 'none') return reply.redirect(afterStep(s), 303);
      if (shortOfFactors(c, s)) return stepUpTo(reply, c, s, '/.portcullis/account');
      const user = knownUser(rt, s.rec.user)!;
      const [totp, left, keys] = await Promise.all([
        rt.stores.state.getTotp(s.rec.user),
        rt.stores.state.countRecoveryCodes(s.rec.user),
        c.cfg.webauthn ? rt.stores.state.listPasskeys(s.rec.user) : Promise.resolve(null),
      ]);
      const day = (ms: number) => new Date(ms).toISOString().slice(0, 10);
      const done = (req.query as Form).done;
      return send(
        reply,
        200,
        accountPage({
          csrf: s.rec.csrf,
          user: user.name,
          name: user.displayName ?? null,
          email: user.email ?? null,
          groups: user.groups,
          totp: totp ? { enrolledAt: new Date(totp.enrolledAt).toISOString().slice(0, 10), source: totp.source } : null,
          recoveryLeft: left,
          canEnrol: c.cfg.totp.enrolNetworks.contains(c.info.ip),
          message: done === 'removed' ? 'Your authenticator was removed.' : null,
          // a first second factor only from the enrol networks; with one, from anywhere (after proving it)
          passkeyAdd: totp !== null || (keys?.length ?? 0) > 0 || c.cfg.totp.enrolNetworks.contains(c.info.ip),
          passkeys: keys ? keys.map((k) => ({ name: k.name, created: day(k.createdAt), lastUsed: k.lastUsedAt ? day(k.lastUsedAt) : null })) : null,
        }),
      );
    });
  };
}
