/**
 * `portcullis unblock (--user U | --ip IP)`: lift the running gateway's throttle blocks on a user
 * (both familiar- and unfamiliar-network lockouts, the daily ceiling, second-factor blocks) or on a
 * source address (its IPv6 /64 for IPv6), through the admin API.
 */
import { allowFlags, UsageError, type Command } from '../args.js';
import { withAdmin } from '../admin-client.js';

export const run: Command = async (args, io) => {
  allowFlags(args, ['user', 'ip']);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
  const user = args.flags.get('user');
  const ip = args.flags.get('ip');
  if ((user === undefined) === (ip === undefined)) throw new UsageError('give exactly one of --user U or --ip IP');
  if (user === '' || ip === '') throw new UsageError('the option needs a value');
  return withAdmin(args, io, 'unblock', async (c) => {
    const r = await c.post<{ lifted: number }>('/api/unblock', user !== undefined ? { user } : { ip });
    const what = user !== undefined ? `user "${user}"` : `address ${ip}`;
    io.stdout.write(r.lifted === 0 ? `no block in force on ${what}; failure counts cleared\n` : `lifted ${r.lifted} block(s) on ${what}\n`);
    return 0;
  });
};
