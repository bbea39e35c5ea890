/**
 * `portcullis user ...`: edit the users file named by the config (`users_file`).
 *
 *   user add NAME [--email E] [--groups a,b] [--name N] --password-stdin
 *   user passwd NAME --password-stdin
 *   user disable|enable|remove NAME
 *   user list [--json]                  name, email, groups, disabled (never hashes)
 *   user list --source ldap NAME        what the directory returns for NAME (issue 12)
 *
 * Passwords come only from stdin (one line), never from argv, where `ps` and shell history
 * would show them. Edits keep the file's comments, are validated before they are written, and
 * are written atomically; the running gateway picks them up through its file watcher.
 *
 * Hashing uses the production argon2id parameters unless `PORTCULLIS_ARGON2=test` (the test
 * suite sets it to stay fast; never set it on a real gateway).
 */
import type { CompiledConfig } from '../../config/types.js';
import { probeDirectory } from '../directory-probe.js';
import { PasswordGuidance } from '../../auth/guidance.js';
import { allowFlags, readPasswordStdin, UsageError, type CliIO, type Command, type ParsedArgs } from '../args.js';
import { formatIssues, loadConfigFile } from '../../config/index.js';
import { isUnwritable, unwritableMessage, usersFileHint } from '../../util/writable.js';
import { paramsFromEnv, PasswordHasher } from '../../auth/password.js';
import {
  addUser,
  checkDisplayName,
  checkEmail,
  checkGroupName,
  checkUserName,
  editUsersFile,
  loadUsersFile,
  removeUser,
  setDisabled,
  setPassword,
  type UserRecord,
} from '../../auth/users.js';

export const run: Command = async (args, io) => {
  const [sub, ...rest] = args.positionals;
  switch (sub) {
    case 'add':
      return add(args, rest, io);
    case 'passwd':
      return passwd(args, rest, io);
    case 'disable':
    case 'enable':
      return toggle(args, rest, io, sub === 'disable');
    case 'remove':
      return remove(args, rest, io);
    case 'list':
      return list(args, rest, io);
    case undefined:
      throw new UsageError('expected a sub-command: add, passwd, disable, enable, remove or list');
    default:
      throw new UsageError(`unknown sub-command "${sub}" (expected add, passwd, disable, enable, remove or list)`);
  }
};

async function add(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, ['email', 'groups', 'name', 'password-stdin', 'force']);
  const name = oneName(rest);
  requirePasswordStdin(args);
  const email = args.flags.get('email');
  if (email !== undefined) check(checkEmail(email), `--email`);
  const displayName = args.flags.get('name');
  if (displayName !== undefined) check(checkDisplayName(displayName), `--name`);
  const groups = parseGroups(args.flags.get('groups'));
  const cfg = await configOf(args, io);
  if (cfg === null) return 1;
  const password = await readPasswordStdin(io.stdin);
  if (!checkPolicy(cfg, password, { user: name, email }, args.flags.get('force') === 'true', io)) return 1;
  const hash = await hasherFor(io).hash(password);
  await edit(cfg, (doc) => addUser(doc, { name, passwordHash: hash, email, displayName, groups }), { create: true });
  io.stdout.write(`user "${name}" added\n`);
  return 0;
}

async function passwd(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, ['password-stdin', 'force']);
  const name = oneName(rest);
  requirePasswordStdin(args);
  const cfg = await configOf(args, io);
  if (cfg === null) return 1;
  const password = await readPasswordStdin(io.stdin);
  if (!checkPolicy(cfg, password, { user: name }, args.flags.get('force') === 'true', io)) return 1;
  const hash = await hasherFor(io).hash(password);
  await edit(cfg, (doc) => setPassword(doc, name, hash));
  io.stdout.write(`password of "${name}" changed\n`);
  return 0;
}

async function toggle(args: ParsedArgs, rest: string[], io: CliIO, disabled: boolean): Promise<number> {
  allowFlags(args, []);
  const name = oneName(rest);
  const cfg = await configOf(args, io);
  if (cfg === null) return 1;
  await edit(cfg, (doc) => setDisabled(doc, name, disabled));
  io.stdout.write(`user "${name}" ${disabled ? 'disabled' : 'enabled'}\n`);
  return 0;
}

async function remove(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, []);
  const name = oneName(rest);
  const cfg = await configOf(args, io);
  if (cfg === null) return 1;
  await edit(cfg, (doc) => removeUser(doc, name));
  io.stdout.write(`user "${name}" removed\n`);
  return 0;
}

async function list(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, ['json', 'source']);
  const source = args.flags.get('source') ?? 'file';
  if (source !== 'file' && source !== 'ldap') throw new UsageError(`--source is file or ldap, not "${source}"`);
  if (source === 'ldap') {
    // what the directory returns for one name (a directory is not listed whole)
    if (rest.length !== 1) throw new UsageError('user list --source ldap takes one NAME: what the directory returns for it');
    const cfg = await configOf(args, io);
    if (!cfg) return 1;
    if (!cfg.ldap) {
      io.stderr.write('no ldap section in the configuration\n');
      return 1;
    }
    return probeDirectory(cfg.ldap, rest[0]!, io, args.flags.get('json') === 'true');
  }
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  const usersFile = await usersFileOf(args, io);
  if (usersFile === null) return 1;
  const loaded = await loadUsersFile(usersFile);
  if (!loaded.ok) {
    io.stderr.write(`${formatIssues(loaded.issues)}\n`);
    return 1;
  }
  const users = [...loaded.users.values()].sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  if (args.flags.get('json') === 'true') {
    // Deliberately field by field: a hash must never reach the output.
    const out = users.map((u) => ({ name: u.name, email: u.email, displayName: u.displayName, groups: u.groups, disabled: u.disabled }));
    io.stdout.write(`${JSON.stringify(out, null, 2)}\n`);
    return 0;
  }
  io.stdout.write(table(users));
  return 0;
}

function table(users: readonly UserRecord[]): string {
  const rows = [['NAME', 'EMAIL', 'GROUPS', 'DISABLED'], ...users.map((u) => [u.name, u.email ?? '-', u.groups.join(',') || '-', u.disabled ? 'yes' : 'no'])];
  const widths = rows[0]!.map((_, c) => Math.max(...rows.map((r) => r[c]!.length)));
  return rows.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')).join('\n') + '\n';
}

function oneName(rest: string[]): string {
  if (rest.length === 0) throw new UsageError('expected a user name');
  if (rest.length > 1) throw new UsageError(`unexpected argument "${rest[1]}"`);
  const name = rest[0]!;
  check(checkUserName(name), `user name "${name}"`);
  return name;
}

function requirePasswordStdin(args: ParsedArgs): void {
  if (args.flags.get('password-stdin') !== 'true') {
    throw new UsageError('--password-stdin is required: the password is read from stdin, never from the command line');
  }
}

function parseGroups(v: string | undefined): string[] {
  if (v === undefined) return [];
  const groups = v.split(',').map((g) => g.trim()).filter((g) => g.length > 0);
  for (const g of groups) check(checkGroupName(g), `group "${g}"`);
  return [...new Set(groups)];
}

function check(err: string | null, what: string): void {
  if (err !== null) throw new UsageError(`invalid ${what}: ${err}`);
}

function hasherFor(io: CliIO): PasswordHasher {
  return new PasswordHasher(paramsFromEnv(io.env));
}

/** `editUsersFile` on the config's users file; "cannot write there" says why and what to do. */
async function edit(cfg: CompiledConfig, ...rest: EditArgs): Promise<void> {
  try {
    await editUsersFile(cfg.usersFile, ...rest);
  } catch (e) {
    if (isUnwritable(e)) throw new Error(unwritableMessage(e, 'the users file', cfg.usersFile, usersFileHint(cfg)), { cause: e });
    throw e;
  }
}
type EditArgs = Parameters<typeof editUsersFile> extends [string, ...infer R] ? R : never;

/** The users file named by the config, or null after printing the config's issues. */
async function usersFileOf(args: ParsedArgs, io: CliIO): Promise<string | null> {
  return (await configOf(args, io))?.usersFile ?? null;
}

async function configOf(args: ParsedArgs, io: CliIO): Promise<CompiledConfig | null> {
  const loaded = await loadConfigFile(args.config);
  if (!loaded.ok) {
    io.stderr.write(`${formatIssues(loaded.issues)}\n`);
    return null;
  }
  return loaded.config;
}

const WEAK_REASONS: Record<string, string> = {
  too_short: 'it is shorter than password_policy.min_length',
  common: 'it is on the list of common (breached) passwords',
  contains_user: "it contains the user's name or email",
  weak: 'it is too easy to guess (zxcvbn score below password_policy.min_strength)',
};

/**
 * The password the login policy would refuse is refused here too (the user could never sign in
 * with it under `on_weak: deny`), naming the reason; with --force it is set with a warning.
 */
function checkPolicy(cfg: CompiledConfig, password: string, who: { user: string; email?: string | undefined }, force: boolean, io: CliIO): boolean {
  const v = new PasswordGuidance(cfg.passwordPolicy).assess(password, { user: who.user, email: who.email ?? null });
  if (v.ok) return true;
  const why = v.reasons.map((r) => WEAK_REASONS[r] ?? r).join('; ');
  if (!force) {
    io.stderr.write(`portcullis: the password does not meet the password policy: ${why} (use --force to set it anyway)\n`);
    return false;
  }
  io.stderr.write(`warning: the password does not meet the password policy: ${why}; set anyway (--force)\n`);
  return true;
}
