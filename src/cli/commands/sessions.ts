/**
 * `portcullis sessions ...`: sessions of the running gateway, through its admin API.
 *
 *   sessions list [--user U] [--json]          user, created, last seen, address, factors, handle
 *   sessions revoke (--user U | --all | --handle H)
 *
 * Session ids never leave the gateway; a session is named by its handle (a prefix of its id's
 * hash), which `revoke --handle` accepts. Revoking also closes the WebSockets the sessions hold.
 */
import { allowFlags, UsageError, type CliIO, type Command, type ParsedArgs } from '../args.js';
import { shortTime, table, withAdmin } from '../admin-client.js';
/** The API's JSON shape (src/admin/operations.ts answers it). */
import type { SessionView } from '../../admin/operations.js';


export const run: Command = async (args, io) => {
  const [sub, ...rest] = args.positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  switch (sub) {
    case 'list':
      return list(args, io);
    case 'revoke':
      return revoke(args, io);
    case undefined:
      throw new UsageError('expected a sub-command: list or revoke');
    default:
      throw new UsageError(`unknown sub-command "${sub}" (expected list or revoke)`);
  }
};

async function list(args: ParsedArgs, io: CliIO): Promise<number> {
  allowFlags(args, ['user', 'json']);
  const user = args.flags.get('user');
  if (user === '') throw new UsageError('--user needs a value');
  return withAdmin(args, io, 'sessions', async (c) => {
    const { sessions } = await c.get<{ sessions: SessionView[] }>('/api/sessions', { user });
    if (args.flags.get('json') === 'true') {
      io.stdout.write(`${JSON.stringify(sessions, null, 2)}\n`);
      return 0;
    }
    if (sessions.length === 0) {
      io.stdout.write(user === undefined ? 'no sessions\n' : `no sessions for "${user}"\n`);
      return 0;
    }
    io.stdout.write(
      table(
        ['USER', 'CREATED', 'LAST SEEN', 'ADDRESS', 'FACTORS', 'STATE', 'HANDLE'],
        sessions.map((s) => [s.user, shortTime(s.created), shortTime(s.lastSeen), s.ip, s.amr.join('+'), s.pending === 'none' ? 'signed in' : `awaiting ${s.pending}`, s.handle]),
      ),
    );
    return 0;
  });
}

async function revoke(args: ParsedArgs, io: CliIO): Promise<number> {
  allowFlags(args, ['user', 'all', 'handle']);
  const user = args.flags.get('user');
  const handle = args.flags.get('handle');
  const all = args.flags.get('all') === 'true';
  const given = [user !== undefined, handle !== undefined, all].filter(Boolean).length;
  if (given !== 1) throw new UsageError('give exactly one of --user U, --handle H or --all');
  const body = all ? { all: true } : user !== undefined ? { user } : { handle };
  return withAdmin(args, io, 'sessions', async (c) => {
    const r = await c.post<{ revoked: number; connectionsClosed: number }>('/api/sessions/revoke', body);
    const closed = r.connectionsClosed > 0 ? `; ${r.connectionsClosed} open connection(s) closed` : '';
    const what = all ? 'all sessions' : user !== undefined ? `sessions of "${user}"` : `session ${handle}`;
    io.stdout.write(`revoked ${r.revoked} ${r.revoked === 1 ? 'session' : 'sessions'} (${what})${closed}\n`);
    return 0;
  });
}
