/**
 * `portcullis passkey ...` on the running gateway, through its admin API.
 *
 *   passkey list NAME [--json]     the user's passkeys: id, name, added, last used
 *   passkey remove NAME ID         remove one (a lost or stolen key); the user's sessions end
 */
import { allowFlags, UsageError, type CliIO, type Command, type ParsedArgs } from '../args.js';
import { checkUserName } from '../../auth/users.js';
import { shortTime, table, withAdmin } from '../admin-client.js';

export const run: Command = async (args, io) => {
  const [sub, ...rest] = args.positionals;
  switch (sub) {
    case 'list':
      return list(args, rest, io);
    case 'remove':
      return remove(args, rest, io);
    case undefined:
      throw new UsageError('expected a sub-command: list or remove');
    default:
      throw new UsageError(`unknown sub-command "${sub}" (expected list or remove)`);
  }
};

function userName(raw: string | undefined): string {
  if (raw === undefined) throw new UsageError('expected a user name');
  const err = checkUserName(raw);
  if (err !== null) throw new UsageError(`invalid user name "${raw}": ${err}`);
  return raw;
}

async function list(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, ['json']);
  if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"`);
  const name = userName(rest[0]);
  return withAdmin(args, io, 'passkey', async (c) => {
    const { passkeys } = await c.get<{ passkeys: Array<{ id: string; name: string; created: string; lastUsed: string | null; transports: string[] }> }>('/api/passkeys', { user: name });
    if (args.flags.get('json') === 'true') {
      io.stdout.write(`${JSON.stringify(passkeys, null, 2)}\n`);
      return 0;
    }
    if (passkeys.length === 0) {
      io.stdout.write(`"${name}" has no passkeys\n`);
      return 0;
    }
    io.stdout.write(table(['ID', 'NAME', 'ADDED', 'LAST USED'], passkeys.map((p) => [p.id, p.name, shortTime(p.created), shortTime(p.lastUsed)])));
    return 0;
  });
}

async function remove(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, []);
  if (rest.length !== 2) throw new UsageError('expected a user name and a passkey id: passkey remove NAME ID');
  const name = userName(rest[0]);
  const id = rest[1]!;
  return withAdmin(args, io, 'passkey', async (c) => {
    const r = await c.delete<{ sessionsRevoked: number }>('/api/passkeys', { user: name, id });
    io.stdout.write(`passkey ${id} of "${name}" removed${r.sessionsRevoked > 0 ? `; ${r.sessionsRevoked} session(s) ended` : ''}\n`);
    return 0;
  });
}
