import type { Readable, Writable } from 'node:stream';

/** What a command may touch: tests pass buffers and a fake environment. */
export interface CliIO {
  stdout: Writable;
  stderr: Writable;
  stdin: Readable;
  env: NodeJS.ProcessEnv;
}

export interface ParsedArgs {
  /** Words after the command name (and sub-command, if any). */
  positionals: string[];
  /** `--name value` and `--name=value`; flags listed as boolean map to 'true'. */
  flags: Map<string, string>;
  /** `--config FILE`, else `$PORTCULLIS_CONFIG`, else `config/portcullis.yaml`. */
  config: string;
}

export type Command = (args: ParsedArgs, io: CliIO) => Promise<number>;

export class UsageError extends Error {
  override readonly name = 'UsageError';
}

export const BOOLEAN_FLAGS = new Set(['password-stdin', 'all', 'help', 'json', 'force', 'connect']);

/** The configuration file when `--config` is not given. */
export const DEFAULT_CONFIG = 'config/portcullis.yaml';

/** `--config`, else a non-empty `PORTCULLIS_CONFIG`, else `config/portcullis.yaml`. */
export function defaultConfig(env: NodeJS.ProcessEnv = {}): string {
  const v = env.PORTCULLIS_CONFIG;
  return v !== undefined && v !== '' ? v : DEFAULT_CONFIG;
}

/**
 * Whether `argv` (the words after the command name) asks for help (`--help` or `-h` anywhere
 * before `--`, and not as the value of an option), and its first positional word (the
 * sub-command, if the command has them).
 */
export function scanForHelp(argv: readonly string[]): { help: boolean; first: string | undefined } {
  let help = false;
  let first: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') break;
    if (a === '-h' || a === '--help') help = true;
    else if (a.startsWith('--')) {
      if (!a.includes('=') && !BOOLEAN_FLAGS.has(a.slice(2)) && argv[i + 1] !== undefined && !argv[i + 1]!.startsWith('--')) i++;
    } else first ??= a;
  }
  return { help, first };
}

export function parseArgs(argv: readonly string[], env: NodeJS.ProcessEnv = {}): ParsedArgs {
  const positionals: string[] = [];
  const flags = new Map<string, string>();
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      positionals.push(...argv.slice(i + 1));
      break;
    }
    if (a.startsWith('--')) {
      const eq = a.indexOf('=');
      const name = eq < 0 ? a.slice(2) : a.slice(2, eq);
      if (!/^[a-z][a-z0-9-]*$/.test(name)) throw new UsageError(`bad option ${a}`);
      if (eq >= 0) flags.set(name, a.slice(eq + 1));
      else if (BOOLEAN_FLAGS.has(name)) flags.set(name, 'true');
      else {
        const v = argv[i + 1];
        if (v === undefined || v.startsWith('--')) throw new UsageError(`option --${name} needs a value`);
        flags.set(name, v);
        i++;
      }
    } else positionals.push(a);
  }
  const given = flags.get('config');
  if (given === '') throw new UsageError('--config needs a file name');
  const config = given ?? defaultConfig(env);
  flags.delete('config');
  return { positionals, flags, config };
}

/** Refuse flags a command does not know, so a typo never silently does something else. */
export function allowFlags(args: ParsedArgs, allowed: readonly string[]): void {
  for (const k of args.flags.keys()) if (!allowed.includes(k)) throw new UsageError(`unknown option --${k}`);
}

export function requireFlag(args: ParsedArgs, name: string): string {
  const v = args.flags.get(name);
  if (v === undefined || v === '') throw new UsageError(`--${name} is required`);
  return v;
}

/** Read all of stdin (passwords come only from here, never argv). */
export async function readStdin(stdin: Readable): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of stdin) chunks.push(typeof c === 'string' ? Buffer.from(c) : (c as Buffer));
  return Buffer.concat(chunks).toString('utf8');
}

/** A password read from stdin: one line, trailing newline removed. */
export async function readPasswordStdin(stdin: Readable): Promise<string> {
  const text = await readStdin(stdin);
  const line = text.replace(/\r?\n$/, '');
  if (line.includes('\n')) throw new UsageError('expected one line on stdin');
  if (line.length === 0) throw new UsageError('empty password on stdin');
  return line;
}
