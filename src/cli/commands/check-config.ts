/**
 * `portcullis check-config --config FILE`: exit 0 and `FILE: ok (N apps)` on stdout, or exit 1
 * with every issue on stderr, one a line, as `FILE:LINE:COL key.path: message`.
 * Works on the file alone; no running gateway is needed. Referenced files (TLS certificate and
 * key) are checked for readability, as `serve` would need them.
 */
import { allowFlags, UsageError, type Command } from '../args.js';
import { formatIssues, loadConfigFile } from '../../config/load.js';
import { probeDirectory } from '../directory-probe.js';

export const run: Command = async (args, io) => {
  allowFlags(args, ['connect', 'user']);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
  const result = await loadConfigFile(args.config, { checkFiles: true });
  if (!result.ok) {
    io.stderr.write(`${formatIssues(result.issues)}\n`);
    return 1;
  }
  io.stdout.write(`${args.config}: ok (${result.config.apps.length} apps)\n`);
  if (args.flags.get('connect') === 'true') {
    // bind with the service account and run user_filter for a test name
    if (!result.config.ldap) {
      io.stdout.write('--connect: no ldap section, nothing to connect to\n');
      return 0;
    }
    return probeDirectory(result.config.ldap, args.flags.get('user') ?? 'portcullis-check', io, false);
  }
  return 0;
};
