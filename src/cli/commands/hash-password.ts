/**
 * `portcullis hash-password`: read one line (the password) from stdin and print its argon2id
 * hash, for pasting into the users file by hand. The password is never taken from argv.
 *
 * Uses the production argon2id parameters unless `PORTCULLIS_ARGON2=test` (tests only).
 */
import { allowFlags, readPasswordStdin, UsageError, type Command } from '../args.js';
import { paramsFromEnv, PasswordHasher } from '../../auth/password.js';

export const run: Command = async (args, io) => {
  allowFlags(args, []);
  if (args.positionals.length > 0) {
    throw new UsageError('takes no arguments: write the password on stdin (e.g. `portcullis hash-password < file`)');
  }
  const hasher = new PasswordHasher(paramsFromEnv(io.env));
  const hash = await hasher.hash(await readPasswordStdin(io.stdin));
  io.stdout.write(`${hash}\n`);
  return 0;
};
