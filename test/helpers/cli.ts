/**
 * Run a `portcullis` command in-process, as the binary would, with in-memory streams: what it
 * printed on stdout and stderr and its exit status.
 */
import { Readable, Writable } from 'node:stream';
import { runCli } from '../../src/cli/main.js';

export interface CliRun {
  code: number;
  out: string;
  err: string;
}

export async function runCommand(argv: readonly string[], opts: { stdin?: string; env?: NodeJS.ProcessEnv } = {}): Promise<CliRun> {
  let out = '';
  let err = '';
  const sink = (f: (s: string) => void) =>
    new Writable({
      write(chunk, _enc, cb) {
        f(String(chunk));
        cb();
      },
    });
  const code = await runCli(argv, {
    stdout: sink((s) => (out += s)),
    stderr: sink((s) => (err += s)),
    stdin: Readable.from(opts.stdin ? [Buffer.from(opts.stdin)] : []),
    env: opts.env ?? {},
  });
  return { code, out, err };
}
