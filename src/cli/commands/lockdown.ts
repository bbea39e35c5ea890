/**
 * `portcullis lockdown on|off|status [--json]` on the running gateway, through its admin API.
 *
 * `on` refuses every request from outside `lockdown.networks` at once, ends every session and
 * closes every open connection; it survives a restart. `off` restores access (users sign in again).
 */
import { allowFlags, UsageError, type Command } from '../args.js';
import { cliActor, shortTime, withAdmin } from '../admin-client.js';

interface LockdownView {
  on: boolean;
  since: string | null;
  by: string | null;
  networks: string[];
  changed?: boolean;
  sessionsRevoked?: number;
  connectionsClosed?: number;
}

export const run: Command = async (args, io) => {
  allowFlags(args, ['json']);
  const [sub, ...rest] = args.positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (sub !== 'on' && sub !== 'off' && sub !== 'status') {
    throw new UsageError(sub === undefined ? 'expected on, off or status' : `unknown sub-command "${sub}" (expected on, off or status)`);
  }
  return withAdmin(args, io, 'lockdown', async (c) => {
    const v = sub === 'status' ? await c.get<LockdownView>('/api/lockdown') : await c.post<LockdownView>('/api/lockdown', { on: sub === 'on', by: cliActor(io.env) });
    if (args.flags.get('json') === 'true') {
      io.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
      return 0;
    }
    io.stdout.write(describe(v, sub));
    return 0;
  });
};

function allowed(v: LockdownView): string {
  return v.networks.length === 0 ? 'no network may reach apps' : `only ${v.networks.join(', ')} may reach apps`;
}

function describe(v: LockdownView, sub: 'on' | 'off' | 'status'): string {
  const since = v.since ? ` since ${shortTime(v.since)}${v.by ? ` (${v.by})` : ''}` : '';
  if (sub === 'status') return v.on ? `lockdown: ON${since}; ${allowed(v)}\n` : `lockdown: off${since}\n`;
  if (sub === 'on') {
    const head = v.changed ? 'lockdown is ON' : 'lockdown was already on';
    return `${head}: ${allowed(v)}; ${v.sessionsRevoked ?? 0} session(s) revoked, ${v.connectionsClosed ?? 0} connection(s) closed\n`;
  }
  return v.changed ? 'lockdown is off: access restored (users sign in again)\n' : 'lockdown was already off\n';
}
