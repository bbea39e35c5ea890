/**
 * `portcullis app-password ...`: per-device passwords for clients that cannot do TOTP (ActiveSync,
 * CalDAV, scripts), accepted over HTTP Basic on an app's `basic_auth` paths. Through the running
 * gateway's admin API.
 *
 *   app-password add NAME --label L [--json]   prints the new password once (stdout); it is stored
 *                                              only as a keyed hash and cannot be shown again
 *   app-password list NAME [--json]            labels, created, last used
 *   app-password revoke NAME LABEL
 */
import { allowFlags, requireFlag, UsageError, type CliIO, type Command, type ParsedArgs } from '../args.js';
import { checkUserName } from '../../auth/users.js';
import { shortTime, table, withAdmin } from '../admin-client.js';

export const run: Command = async (args, io) => {
  const [sub, ...rest] = args.positionals;
  switch (sub) {
    case 'add':
      return add(args, rest, io);
    case 'list':
      return list(args, rest, io);
    case 'revoke':
      return revoke(args, rest, io);
    case undefined:
      throw new UsageError('expected a sub-command: add, list or revoke');
    default:
      throw new UsageError(`unknown sub-command "${sub}" (expected add, list or revoke)`);
  }
};

function userName(s: string | undefined): string {
  if (s === undefined) throw new UsageError('expected a user name');
  const err = checkUserName(s);
  if (err !== null) throw new UsageError(`invalid user name "${s}": ${err}`);
  return s;
}

async function add(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, ['label', 'json']);
  if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"`);
  const name = userName(rest[0]);
  const label = requireFlag(args, 'label');
  return withAdmin(args, io, 'app-password', async (c) => {
    const r = await c.post<{ user: string; label: string; password: string }>('/api/app-passwords', { user: name, label });
    if (args.flags.get('json') === 'true') {
      io.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    // The password alone on stdout (scripts can capture it); the explanation on stderr.
    io.stderr.write(`app password "${r.label}" for "${r.user}" (shown once; it cannot be retrieved later):\n`);
    io.stdout.write(`${r.password}\n`);
    return 0;
  });
}

async function list(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, ['json']);
  if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"`);
  const name = userName(rest[0]);
  return withAdmin(args, io, 'app-password', async (c) => {
    const { appPasswords } = await c.get<{ appPasswords: Array<{ label: string; created: string; lastUsed: string | null }> }>('/api/app-passwords', { user: name });
    if (args.flags.get('json') === 'true') {
      io.stdout.write(`${JSON.stringify(appPasswords, null, 2)}\n`);
      return 0;
    }
    if (appPasswords.length === 0) {
      io.stdout.write(`"${name}" has no app passwords\n`);
      return 0;
    }
    io.stdout.write(table(['LABEL', 'CREATED', 'LAST USED'], appPasswords.map((p) => [p.label, shortTime(p.created), shortTime(p.lastUsed)])));
    return 0;
  });
}

async function revoke(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, []);
  if (rest.length !== 2) throw new UsageError('expected a user name and a label: app-password revoke NAME LABEL');
  const name = userName(rest[0]);
  const label = rest[1]!;
  return withAdmin(args, io, 'app-password', async (c) => {
    const r = await c.delete<{ connectionsClosed: number }>('/api/app-passwords', { user: name, label });
    io.stdout.write(`app password "${label}" of "${name}" revoked${r.connectionsClosed > 0 ? `; ${r.connectionsClosed} connection(s) closed` : ''}\n`);
    return 0;
  });
}
