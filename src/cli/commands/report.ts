/**
 * `portcullis report [--since 24h] [--format text|json] [--top N] [--file AUDIT.jsonl]`
 *
 * Reads the audit trail named by the config (`audit.file`, or `--file`) and prints what happened
 * since then: accounts that signed in after failed attempts (possible compromise) first, then the
 * accounts attacked, the networks the attempts came from, new-network sign-ins, weak passwords,
 * lockouts and IP blocks. `--since` is a duration (`90m`, `24h`, `7d`) or an ISO 8601 time
 * (`2026-01-31T18:00:00Z`). Works on the file alone; no running gateway is needed. `--format json`
 * is stable for scripts.
 */
import { stat } from 'node:fs/promises';
import { allowFlags, UsageError, type Command } from '../args.js';
import { formatIssues, loadConfigFile, parseDuration } from '../../config/index.js';
import { formatReportText, reportFromFile } from '../../audit/report.js';
import { systemClock } from '../../clock.js';

const ISO_TIME = /^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d{1,3})?)?(Z|[+-]\d{2}:\d{2}))?$/;

export const run: Command = async (args, io) => {
  allowFlags(args, ['since', 'format', 'top', 'file']);
  if (args.positionals.length > 0) throw new UsageError(`unexpected argument "${args.positionals[0]}"`);
  const format = args.flags.get('format') ?? 'text';
  if (format !== 'text' && format !== 'json') throw new UsageError('--format is text or json');
  const now = systemClock.now();
  const since = parseSince(args.flags.get('since') ?? '24h', now);
  const topText = args.flags.get('top') ?? '10';
  if (!/^[1-9][0-9]{0,3}$/.test(topText)) throw new UsageError('--top is a whole number from 1 to 9999');

  const loaded = await loadConfigFile(args.config, { checkFiles: false });
  if (!loaded.ok) {
    io.stderr.write(`${formatIssues(loaded.issues)}\n`);
    return 1;
  }
  const file = args.flags.get('file') ?? loaded.config.audit.file;
  if (file === null) {
    io.stderr.write(`portcullis report: ${args.config} sets audit.file to null, so there is no audit file to read (pass --file FILE)\n`);
    return 1;
  }
  try {
    if (!(await stat(file)).isFile()) throw Object.assign(new Error('not a file'), { code: 'EISDIR' });
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file yet (the gateway creates it with its first event)' : code === 'EACCES' ? 'permission denied' : (e as Error).message;
    io.stderr.write(`portcullis report: cannot read the audit file ${file}: ${why}\n`);
    return 1;
  }
  const report = await reportFromFile(file, { since, until: now + 1, top: Number(topText), ipv6Prefix: loaded.config.loginLimits.ipv6Prefix });
  io.stdout.write(format === 'json' ? `${JSON.stringify(report, null, 2)}\n` : formatReportText(report, file));
  return 0;
};

/** `24h` back from now, or an absolute ISO 8601 time (a date alone means its midnight UTC). */
export function parseSince(text: string, now: number): number {
  const ms = parseDuration(text);
  if (ms !== null) return now - ms;
  if (ISO_TIME.test(text)) {
    const t = Date.parse(text);
    if (Number.isFinite(t)) {
      if (t > now) throw new UsageError(`--since ${text} is in the future`);
      return t;
    }
  }
  throw new UsageError(`--since takes a duration such as 90m, 24h or 7d, or a time such as 2026-01-31T18:00:00Z (got "${text}")`);
}
