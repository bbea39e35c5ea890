/**
 * What `portcullis --help`, `portcullis COMMAND --help` and `portcullis COMMAND SUB --help` print.
 * One entry per command, with its sub-commands; the dispatcher (main.ts) prints these and exits 0
 * before a command runs, so asking for help never touches a file or a gateway.
 */

export interface SubHelp {
  /** `portcullis user add NAME [--email E] ...` */
  usage: string;
  /** What it does, a few lines. */
  text: string;
}

export interface CommandHelp {
  /** One line for the command list. */
  summary: string;
  /** Usage lines of the command as a whole (one per sub-command when it has them). */
  usage: string;
  text: string;
  subs?: Readonly<Record<string, SubHelp>>;
}

export const EXIT_CODES = `Exit status: 0 success; 1 error (invalid configuration, file or gateway unreachable, request
refused); 2 usage error (unknown command or option, missing or malformed argument).`;

const CONFIG_OPTION = `  --config FILE   the configuration (default: $PORTCULLIS_CONFIG, else config/portcullis.yaml)`;
const HELP_OPTION = `  -h, --help      print this help and exit`;

const ADMIN_NOTE = 'Acts on the running gateway, through the admin listener and token file that\nthe configuration names.';

export const HELP: Readonly<Record<string, CommandHelp>> = {
  serve: {
    summary: 'run the gateway',
    usage: 'portcullis serve [--config FILE]',
    text: `Run the gateway until SIGTERM or SIGINT. SIGHUP, or a change to the configuration or users
file, reloads them: a new file is validated in full and a bad one is refused (the running
configuration stays). With \`workers: N\`, N processes share the listener.`,
  },
  'check-config': {
    summary: 'validate the configuration',
    usage: 'portcullis check-config [--config FILE] [--connect [--user NAME]]',
    text: `Validate the configuration without running it. Prints "FILE: ok (N apps)" and exits 0, or
exits 1 with every problem on stderr, one a line, as FILE:LINE:COL key.path: message.
--connect also binds to the directory (ldap) with the service account and runs user_filter for
NAME (default "portcullis-check"), printing what it finds; exits 1 when the directory cannot be used.`,
  },
  explain: {
    summary: 'which rule decides a request, and why',
    usage: 'portcullis explain --url URL --ip IP [--user U] [--method M] [--config FILE]',
    text: `Print every rule of the app serving URL, why it was skipped, and the one that decides a
request from IP (optionally by user U, whose groups come from the users file). Works on the
files alone.`,
  },
  user: {
    summary: 'edit the users file',
    usage: `portcullis user add NAME [--email E] [--name N] [--groups a,b] --password-stdin [--force]
portcullis user passwd NAME --password-stdin [--force]
portcullis user disable|enable|remove NAME
portcullis user list [--json]`,
    text: `Edit the users file named by the configuration (users_file), keeping its comments. Passwords
are read from stdin only (one line), never from the command line. A running gateway picks the
change up by itself.`,
    subs: {
      add: {
        usage: 'portcullis user add NAME [--email E] [--name N] [--groups a,b] --password-stdin [--force]',
        text: 'Add a user; the password is read from stdin and stored as an argon2id hash. A password the login policy (password_policy) would refuse is refused, naming the reason; --force sets it with a warning.',
      },
      passwd: {
        usage: 'portcullis user passwd NAME --password-stdin [--force]',
        text: "Set a user's password (read from stdin). Their sessions end. A password the login policy would refuse is refused, naming the reason; --force sets it with a warning.",
      },
      disable: { usage: 'portcullis user disable NAME', text: 'Refuse every sign-in of the user; their sessions end.' },
      enable: { usage: 'portcullis user enable NAME', text: 'Allow a disabled user to sign in again.' },
      remove: { usage: 'portcullis user remove NAME', text: 'Remove a user from the users file; their sessions end.' },
      list: {
        usage: 'portcullis user list [--json] | portcullis user list --source ldap NAME [--json]',
        text: 'Name, email, groups and whether disabled (never password hashes). With --source ldap: what the directory returns for NAME (DN, stable id, e-mail, groups, account state), to debug user_filter.',
      },
    },
  },
  'hash-password': {
    summary: 'argon2id hash of a password read from stdin',
    usage: 'portcullis hash-password < FILE',
    text: 'Read one line (the password) from stdin and print its argon2id hash, for the users file.',
  },
  totp: {
    summary: "provision or reset a user's authenticator",
    usage: `portcullis totp set NAME --secret BASE32     (--secret - reads it from stdin)
portcullis totp reset NAME`,
    text: `Both end the user's sessions.\n${ADMIN_NOTE}`,
    subs: {
      set: { usage: 'portcullis totp set NAME --secret BASE32|-', text: `Provision a TOTP device whose seed you hold (a hardware token).
\`--secret -\` reads the seed from stdin, out of \`ps\` and shell history.
${ADMIN_NOTE}` },
      reset: { usage: 'portcullis totp reset NAME', text: `Forget the user's TOTP device and recovery codes; they enrol again.
${ADMIN_NOTE}` },
    },
  },
  'app-password': {
    summary: 'per-device passwords for ActiveSync, CalDAV, scripts',
    usage: `portcullis app-password add NAME --label L [--json]
portcullis app-password list NAME [--json]
portcullis app-password revoke NAME LABEL`,
    text: `App passwords are accepted over HTTP Basic on an app's basic_auth paths.
${ADMIN_NOTE}`,
    subs: {
      add: { usage: 'portcullis app-password add NAME --label L [--json]', text: `Create one and print it once on stdout; it cannot be shown again.
${ADMIN_NOTE}` },
      list: { usage: 'portcullis app-password list NAME [--json]', text: `Labels, created, last used.
${ADMIN_NOTE}` },
      revoke: { usage: 'portcullis app-password revoke NAME LABEL', text: `Revoke one; connections using it are closed.
${ADMIN_NOTE}` },
    },
  },
  allow: {
    summary: 'edit the named networks in the configuration',
    usage: `portcullis allow add NETWORK CIDR...
portcullis allow remove NETWORK CIDR...
portcullis allow list [--json]`,
    text: `Edit \`networks\` in the configuration file in place, keeping its comments and layout. The
whole edited configuration is validated before it is written (atomically); a running gateway
applies it within a second.`,
    subs: {
      add: { usage: 'portcullis allow add NETWORK CIDR...', text: 'Add ranges to a network (a bare address is one host); creates the network if needed.' },
      remove: { usage: 'portcullis allow remove NETWORK CIDR...', text: 'Remove ranges; emptying a network a rule relies on is refused.' },
      list: { usage: 'portcullis allow list [--json]', text: 'Every network, its entries, and what relies on it.' },
    },
  },
  sessions: {
    summary: "list or revoke the running gateway's sessions",
    usage: `portcullis sessions list [--user U] [--json]
portcullis sessions revoke (--user U | --all | --handle H)`,
    text: ADMIN_NOTE,
    subs: {
      list: { usage: 'portcullis sessions list [--user U] [--json]', text: `User, created, last seen, address, factors and handle of every session.
${ADMIN_NOTE}` },
      revoke: { usage: 'portcullis sessions revoke (--user U | --all | --handle H)', text: `End sessions at once and close the connections they hold.
${ADMIN_NOTE}` },
    },
  },
  unblock: {
    summary: 'lift throttle blocks on a user or an address',
    usage: 'portcullis unblock (--user U | --ip IP)',
    text: `Lift the lockouts of a user, or the block on a source address (its /64 for IPv6).
${ADMIN_NOTE}`,
  },
  attack: {
    summary: 'the attack posture: whether it is on, or end it',
    usage: 'portcullis attack status|off [--json]',
    text: `While failed sign-ins run above attack.threshold a minute (or attack.factor times the day's
baseline), sign-ins from networks unfamiliar to the account need a second factor. \`status\` shows
whether the posture is on, since when and the current rate; \`off\` ends the current episode (it may
start again after attack.cooldown if the rate stays high).
${ADMIN_NOTE}`,
    subs: {
      status: { usage: 'portcullis attack status [--json]', text: `Whether the attack posture is on, since when, and the rate.
${ADMIN_NOTE}` },
      off: { usage: 'portcullis attack off [--json]', text: `End the current attack posture now.
${ADMIN_NOTE}` },
    },
  },
  lockdown: {
    summary: 'shut remote access down, or open it again',
    usage: 'portcullis lockdown on|off|status [--json]',
    text: `\`on\` refuses every request from outside lockdown.networks, ends every session and closes open
connections; it survives a restart. \`off\` restores access.
${ADMIN_NOTE}`,
    subs: {
      on: { usage: 'portcullis lockdown on [--json]', text: `Only lockdown.networks may reach apps; every session ends.
${ADMIN_NOTE}` },
      off: { usage: 'portcullis lockdown off [--json]', text: `Restore access (users sign in again).
${ADMIN_NOTE}` },
      status: { usage: 'portcullis lockdown status [--json]', text: `Whether lockdown is on, since when and by whom.
${ADMIN_NOTE}` },
    },
  },
  report: {
    summary: 'who was attacked, from where (from the audit log)',
    usage: 'portcullis report [--since 24h|ISO-TIME] [--format text|json] [--top N] [--file AUDIT.jsonl]',
    text: `Summarise the audit log (audit.file, or --file): sign-ins after failures, accounts attacked,
source networks, new-network sign-ins, weak passwords, lockouts and blocks.
Works on the file alone.`,
  },
  healthcheck: {
    summary: 'exit 0 when the running gateway answers (container health checks)',
    usage: 'portcullis healthcheck [--timeout 3s] [--config FILE]',
    text: `GET /.portcullis/healthz on the gateway's own listener (\`listen\`, over TLS when \`tls\` is set,
with a PROXY header when \`proxy_protocol\` expects one from this host; 0.0.0.0 and :: are probed
on loopback). Exits 0 on a 200 within the timeout (default 3s), 1 otherwise.`,
  },
  schema: {
    summary: "print the configuration's JSON Schema (for editors)",
    usage: 'portcullis schema',
    text: `Print the JSON Schema of the configuration file on stdout, generated from the same schema
as docs/configuration.md. Editors with the YAML language server complete and validate the file
with it. Reads no file; \`portcullis check-config\` remains the full check.`,
  },
  passkey: {
    summary: "list or remove a user's passkeys",
    usage: `portcullis passkey list NAME [--json]
portcullis passkey remove NAME ID`,
    text: `Users register passkeys themselves from their account page (see docs/passkeys.md).
${ADMIN_NOTE}`,
    subs: {
      list: { usage: 'portcullis passkey list NAME [--json]', text: `The user's passkeys: id, name, when added and last used.
${ADMIN_NOTE}` },
      remove: { usage: 'portcullis passkey remove NAME ID', text: `Remove one passkey (lost or stolen); the user's sessions end.
${ADMIN_NOTE}` },
    },
  },
};

export function commandList(): string {
  const names = Object.keys(HELP);
  const width = Math.max(...names.map((n) => n.length));
  return names.map((n) => `  ${n.padEnd(width)}  ${HELP[n]!.summary}`).join('\n');
}

export function mainUsage(): string {
  return `usage: portcullis COMMAND [ARGS] [--config FILE]
       portcullis COMMAND --help  ·  portcullis --version

Commands:
${commandList()}

Options:
${CONFIG_OPTION}
${HELP_OPTION}
  --version       print the version and exit

${EXIT_CODES}
`;
}

function indent(text: string): string {
  return text
    .split('\n')
    .map((l) => (l ? `  ${l}` : l))
    .join('\n');
}

export function commandUsage(name: string): string {
  const h = HELP[name]!;
  const [first, ...more] = h.usage.split('\n');
  const usage = [`usage: ${first}`, ...more.map((l) => `       ${l}`)].join('\n');
  const subs = h.subs ? `\n\nSub-commands (each takes --help):\n${Object.entries(h.subs).map(([s, sh]) => `  ${s.padEnd(8)}  ${sh.text.split('\n')[0]}`).join('\n')}` : '';
  return `${usage}\n\n${indent(h.text)}${subs}\n\nOptions:\n${CONFIG_OPTION}\n${HELP_OPTION}\n\n${EXIT_CODES}\n`;
}

export function subUsage(name: string, sub: string): string {
  const s = HELP[name]!.subs![sub]!;
  return `usage: ${s.usage}\n\n${indent(s.text)}\n\nOptions:\n${CONFIG_OPTION}\n${HELP_OPTION}\n\n${EXIT_CODES}\n`;
}

/** Help for a command, or for its sub-command when `sub` names one. */
export function helpFor(name: string, sub: string | undefined): string {
  const subs = HELP[name]?.subs;
  if (sub !== undefined && subs && Object.hasOwn(subs, sub)) return subUsage(name, sub);
  return commandUsage(name);
}

/**
 * docs/cli.md, from the same entries `--help` prints (scripts/gen-cli-doc.mjs writes it; a unit
 * test fails when the file and the help differ).
 */
export function markdownReference(): string {
  const out: string[] = [
    '# portcullis command reference',
    '',
    '<!-- Generated from src/cli/help.ts by `npm run docs:cli`; do not edit by hand. -->',
    '',
    'Every command and sub-command prints this help with `--help` (or `-h`) and exits 0;',
    '`portcullis --version` prints the version. From a checkout run',
    '`node dist/src/cli/main.js ...`; `npm install -g .` or `npm link` puts `portcullis` on the PATH.',
    '',
    '## Common options',
    '',
    '| option | meaning |',
    '|---|---|',
    '| `--config FILE` | the configuration; default `$PORTCULLIS_CONFIG`, else `config/portcullis.yaml` (relative to the working directory) |',
    '| `-h`, `--help` | print the command\'s help and exit 0 |',
    '',
    '## Exit status',
    '',
    '| status | meaning |',
    '|---|---|',
    '| 0 | success (help and `--version` included) |',
    '| 1 | error: invalid configuration (every problem on stderr as `FILE:LINE:COL key.path: message`), a file or the running gateway unreachable, a request refused |',
    '| 2 | usage error: unknown command or option, a missing or malformed argument |',
    '',
    '## Environment',
    '',
    '| variable | meaning |',
    '|---|---|',
    '| `PORTCULLIS_CONFIG` | the default `--config` |',
    '| `PORTCULLIS_SECRET_KEY` | the key sealing secrets at rest (base64 or hex, 32 bytes); else `data_dir/secret.key` |',
    '| `PORTCULLIS_LOG_LEVEL` | the gateway\'s log level |',
    '',
    '## Commands',
    '',
    ...Object.keys(HELP).map((n) => `- [\`${n}\`](#${n}): ${HELP[n]!.summary}`),
  ];
  for (const [name, h] of Object.entries(HELP)) {
    out.push('', `### ${name}`, '', '```', h.usage, '```', '', h.text.replace(/\n/g, ' '));
    for (const s of Object.values(h.subs ?? {})) {
      out.push('', `- \`${s.usage}\`: ${s.text.replace(/\n/g, ' ')}`);
    }
  }
  return `${out.join('\n')}\n`;
}
