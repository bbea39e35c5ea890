#!/usr/bin/env node
import { realpathSync } from 'node:fs';
import { pathToFileURL } from 'node:url';
import { parseArgs, scanForHelp, UsageError, type CliIO, type Command } from './args.js';
import { helpFor, HELP, mainUsage } from './help.js';
import { packageVersion } from './version.js';

/** Each command lives in its own file under ./commands and is loaded on demand. */
export const COMMANDS: Readonly<Record<string, () => Promise<{ run: Command }>>> = {
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
  healthcheck: () => import('./commands/healthcheck.js'),
  schema: () => import('./commands/schema.js'),
  passkey: () => import('./commands/passkey.js'),
};

/**
 * Run one command line (without the program name). Exit status: 0 success, 1 error (invalid
 * configuration, unreachable gateway, refused request), 2 usage error; help and the version go to
 * stdout with 0, usage errors to stderr with 2.
 */
export async function runCli(argv: readonly string[], io: CliIO): Promise<number> {
  const [name, ...rest] = argv;
  if (name === undefined) {
    io.stderr.write(mainUsage());
    return 2;
  }
  if (name === '--help' || name === '-h' || name === 'help') {
    const [topic, sub] = rest;
    if (topic === undefined || topic === '--help' || topic === '-h') {
      io.stdout.write(mainUsage());
      return 0;
    }
    if (!Object.hasOwn(HELP, topic)) {
      io.stderr.write(`portcullis help: unknown command "${topic}"\n\n${mainUsage()}`);
      return 2;
    }
    io.stdout.write(helpFor(topic, sub));
    return 0;
  }
  if (name === '--version' || name === '-V') {
    io.stdout.write(`portcullis ${packageVersion()}\n`);
    return 0;
  }
  const load = Object.hasOwn(COMMANDS, name) ? COMMANDS[name] : undefined;
  if (!load) {
    const what = name.startsWith('-') ? `unknown option "${name}" (options follow the command)` : `unknown command "${name}"`;
    io.stderr.write(`portcullis: ${what}\n\n${mainUsage()}`);
    return 2;
  }
  const scan = scanForHelp(rest);
  if (scan.help) {
    io.stdout.write(helpFor(name, scan.first));
    return 0;
  }
  try {
    const args = parseArgs(rest, io.env);
    const mod = await load();
    return await mod.run(args, io);
  } catch (e) {
    if (e instanceof UsageError) {
      io.stderr.write(`portcullis ${name}: ${e.message}\n(see \`portcullis ${name} --help\`)\n`);
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
