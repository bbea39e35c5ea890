/**
 * What the directory returns for a name, for `user list --source ldap NAME` and
 * `check-config --connect`: binds with the service account, runs `user_filter`, reads the
 * groups. Never binds as the user, never prints a password.
 */
import type { LdapConfig } from '../config/types.js';
import { createLogger } from '../audit/logger.js';
import { LdapDirectory } from '../directory/ldap.js';
import { isPortcullisError } from '../errors.js';
import type { CliIO } from './args.js';

export async function probeDirectory(cfg: LdapConfig, name: string, io: CliIO, json: boolean): Promise<number> {
  const logger = createLogger({ level: 'error', destination: io.stderr as NodeJS.WritableStream });
  const d = new LdapDirectory(cfg, { clock: { now: () => Date.now() }, logger });
  try {
    const { entry, url } = await d.probe(name);
    if (json) {
      io.stdout.write(
        `${JSON.stringify(
          entry
            ? { url, found: true, dn: entry.dn, id: entry.id, name: entry.record.name, email: entry.record.email, displayName: entry.record.displayName, groups: entry.record.groups, refused: entry.refused, mustChange: entry.mustChange, directoryFailures: entry.directoryFailures }
            : { url, found: false },
          null,
          2,
        )}\n`,
      );
    } else if (!entry) {
      io.stdout.write(`${url}: service bind ok; user_filter finds no single entry for "${name}" (none, or more than one)\n`);
    } else {
      const r = entry.record;
      io.stdout.write(
        [
          `${url}: service bind ok`,
          `dn:       ${entry.dn}`,
          `id:       ${entry.id}`,
          `name:     ${r.name}`,
          `email:    ${r.email ?? '-'}`,
          `display:  ${r.displayName ?? '-'}`,
          `groups:   ${r.groups.join(',') || '-'}`,
          `state:    ${entry.refused ?? (entry.mustChange ? 'password must be changed' : 'ok')}`,
          `failures: ${entry.directoryFailures} failed binds counted by the directory (lockout at ${cfg.lockoutThreshold})`,
          '',
        ].join('\n'),
      );
    }
    return 0;
  } catch (e) {
    io.stderr.write(`directory: ${isPortcullisError(e, 'PC_DIRECTORY_UNAVAILABLE') ? (d.unhealthyReason() ?? e.message) : (e as Error).message}\n`);
    return 1;
  } finally {
    await d.close();
  }
}
