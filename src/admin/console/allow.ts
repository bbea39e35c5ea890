/**
 * POST /console/allow (op=add|remove, network=N, cidr="CIDR[ CIDR...]"): edit an allowlist. The
 * edit goes through `config/edit.ts` (`editConfigFile`: the CLI's validated in-place editor, its
 * lock and atomic write), then the gateway's reload, whose outcome is shown.
 */
import type { FastifyInstance } from 'fastify';
import { editConfigFile, type NetworkEdit } from '../../config/edit.js';
import { formatIssues } from '../../config/load.js';
import { isPortcullisError } from '../../errors.js';
import { action } from './action.js';
import { refuse, type ConsoleContext } from './context.js';

const RELOAD_TRIGGER = 'admin console';
const MAX_CIDRS = 64;

export function allowRoutes(ctx: ConsoleContext) {
  const { rt, deps } = ctx;

  /** Reload through the gateway and report its outcome. */
  async function applyNow(): Promise<{ ok: boolean; message: string }> {
    if (!deps.reload) return { ok: true, message: 'The running gateway applies it when it notices the changed file.' };
    const o = await deps.reload(RELOAD_TRIGGER);
    if (!o.ok) return { ok: false, message: `the gateway refused to reload and keeps its running configuration: ${o.reason}` };
    return { ok: true, message: 'The running gateway has applied it.' };
  }

  return async (app: FastifyInstance) => {
    action(app, ctx, '/console/allow', 'allowlists', async (f) => {
      const kind = f.op;
      if (kind !== 'add' && kind !== 'remove') throw refuse(400, 'Choose to add or remove.');
      const network = (f.network ?? '').trim();
      const cidrs = (f.cidr ?? '').split(/[\s,]+/).filter((c) => c !== '');
      if (network === '' || cidrs.length === 0) throw refuse(400, 'Name a network and at least one address or CIDR.');
      if (cidrs.length > MAX_CIDRS) throw refuse(400, `At most ${MAX_CIDRS} ranges at once.`);
      const cfg = rt.config;
      const op: NetworkEdit = { kind, network, cidrs };
      let r;
      try {
        r = await editConfigFile(cfg.file, op, { cwd: cfg.baseDir });
      } catch (e) {
        if (isPortcullisError(e)) throw e;
        const code = (e as NodeJS.ErrnoException).code;
        const why = code === 'EACCES' || code === 'EPERM' ? 'permission denied' : code === 'ENOENT' ? 'no such file' : (e as Error).message;
        throw refuse(500, `Nothing changed: ${cfg.file} cannot be edited (${why}).`);
      }
      if (!r.ok) throw refuse(400, r.message, r.issues.length > 0 ? formatIssues(r.issues).split('\n') : []);

      const lines: string[] = [];
      if (r.unchanged.length > 0) lines.push(`${network} already has ${r.unchanged.join(', ')}.`);
      lines.push(...r.notes);
      if (r.reformatted) lines.push('The layout of the file could not be kept exactly around this edit; its comments are kept.');
      if (!r.written) return { ok: true, title: `Nothing to change in ${network}.`, lines };
      const did =
        kind === 'add'
          ? `${r.created ? `Created network ${network} with` : `Added to ${network}:`} ${r.changed.join(', ')}.`
          : `Removed from ${network}: ${r.changed.join(', ')}.`;
      rt.logger.info({ network, kind, cidrs: r.changed }, 'admin console: allowlist edited');
      const applied = await applyNow();
      if (!applied.ok) return { ok: false, title: `${did} The file was written, but ${applied.message}`, lines };
      lines.push(applied.message);
      return { ok: true, title: did, lines };
    });
  };
}
