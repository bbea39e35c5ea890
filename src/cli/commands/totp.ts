/**
 * `portcullis totp ...` on the running gateway, through its admin API.
 *
 *   totp set NAME --secret BASE32      provision a device (a hardware token) whose seed you hold;
 *                                      `--secret -` reads it from stdin, out of `ps` and shell history
 *   totp reset NAME                    forget the user's device and recovery codes; they enrol again
 *
 * Both end the user's sessions. The secret is sealed by the gateway and never shown again.
 */
import { allowFlags, readStdin, requireFlag, UsageError, type CliIO, type Command, type ParsedArgs } from '../args.js';
import { checkUserName } from '../../auth/users.js';
import { withAdmin } from '../admin-client.js';

export const run: Command = async (args, io) => {
  const [sub, ...rest] = args.positionals;
  switch (sub) {
    case 'set':
      return set(args, rest, io);
    case 'reset':
      return reset(args, rest, io);
    case undefined:
      throw new UsageError('expected a sub-command: set or reset');
    default:
      throw new UsageError(`unknown sub-command "${sub}" (expected set or reset)`);
  }
};

function oneName(rest: string[]): string {
  if (rest.length === 0) throw new UsageError('expected a user name');
  if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"`);
  const err = checkUserName(rest[0]!);
  if (err !== null) throw new UsageError(`invalid user name "${rest[0]}": ${err}`);
  return rest[0]!;
}

async function set(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, ['secret']);
  const name = oneName(rest);
  let secret = requireFlag(args, 'secret');
  if (secret === '-') {
    secret = (await readStdin(io.stdin)).trim();
    if (secret === '') throw new UsageError('empty secret on stdin');
  }
  return withAdmin(args, io, 'totp', async (c) => {
    const r = await c.post<{ sessionsRevoked: number }>('/api/totp/set', { user: name, secret });
    io.stdout.write(`TOTP device provisioned for "${name}"${r.sessionsRevoked > 0 ? `; ${r.sessionsRevoked} session(s) ended` : ''}\n`);
    return 0;
  });
}

async function reset(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, []);
  const name = oneName(rest);
  return withAdmin(args, io, 'totp', async (c) => {
    const r = await c.post<{ hadDevice: boolean; sessionsRevoked: number }>('/api/totp/reset', { user: name });
    const ended = r.sessionsRevoked > 0 ? `; ${r.sessionsRevoked} session(s) ended` : '';
    io.stdout.write(
      r.hadDevice
        ? `TOTP device and recovery codes of "${name}" removed${ended}; they enrol a new authenticator at their next sign-in (from a network totp.enrol allows), or provision one with \`portcullis totp set\`\n`
        : `"${name}" had no TOTP device; recovery codes cleared${ended}\n`,
    );
    return 0;
  });
}
