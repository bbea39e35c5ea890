#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs, UsageError, type CliIO, type Command } from './args.js';

/** Each command lives in its own file under ./commands and is loaded on demand. */
const COMMANDS: Record<string, () => Promise<{ run: Command }>> = {
  serve: () => import('./commands/serve.js'),
  'check-config': () => import('./commands/check-config.js'),
  explain: () => import('./commands/explain.js'),
  user: () => import('./commands/user.js'),
  'hash-password': () => import('./commands/hash-password.js'),
  totp: () => import('./commands/totp.js'),
  'app-password': () => import('./commands/app-password.js'),
  allow: () => import('./commands/allow.js'),
  sessions: () => import('./commands/sessions.js'),
  unblock: () => import('./commands/unblock.js'),
  lockdown: () => import('./commands/lockdown.js'),
  attack: () => import('./commands/attack.js'),
  report: () => import('./commands/report.js'),
};

const USAGE = `usage: portcullis <command> [--config FILE] ...
  serve | check-config | explain --url URL --ip IP [--user U] [--method M]
  user add NAME [--email E] [--groups a,b] --password-stdin | user passwd|disable|enable|remove NAME | user list
  totp set NAME --secret BASE32 (or --secret - to read stdin) | totp reset NAME
  app-password add NAME --label L | list NAME | revoke NAME LABEL
  allow add|remove NETWORK CIDR... | allow list
  sessions list [--user U] | sessions revoke (--user U | --all | --handle H)
  unblock (--user U | --ip IP) | lockdown on|off|status
  report [--since 24h] [--format text|json] | hash-password (reads stdin)
`;

export async function runCli(argv: readonly string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === 'help') {
    io.stdout.write(USAGE);
    return name ? 0 : 2;
  }
  const load = COMMANDS[name];
  if (!load) {
    io.stderr.write(`portcullis: unknown command "${name}"\n${USAGE}`);
    return 2;
  }
  try {
    const args = parseArgs(rest);
    const mod = await load();
    return await mod.run(args, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`portcullis ${name}: ${e.message}\n`);
      return 2;
    }
    io.stderr.write(`portcullis ${name}: ${e instanceof Error ? e.message : String(e)}\n`);
    return 1;
  }
}

function invokedDirectly(): boolean {
  try {
    return !!process.argv[1] && pathToFileURL(realpathSync(process.argv[1])).href === import.meta.url;
  } catch {
    return false;
  }
}
if (invokedDirectly()) {
  runCli(process.argv.slice(2), { stdout: process.stdout, stderr: process.stderr, stdin: process.stdin, env: process.env }).then(
    (code) => {
      if (code !== 0 || process.argv[2] !== 'serve') process.exitCode = code;
    },
  );
}
