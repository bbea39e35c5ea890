/**
 * `portcullis allow ...`: the named networks of the configuration file.
 *
 *   allow add NETWORK CIDR...      add ranges (a bare address is one host); creates the network
 *   allow remove NETWORK CIDR...   remove ranges; emptying a network something relies on is refused
 *   allow list [--json]            every network, its entries, and the rules that rely on it
 *
 * The YAML is edited in place: comments, blank lines and quoting stay as the admin wrote them, and
 * only the changed entries differ. The whole edited configuration is validated before anything is
 * written; the write is atomic, under a lock file, so two admins cannot lose each other's edit.
 * A running gateway notices the new file within a second (it watches the directory); when its
 * admin API is reachable it is also asked to reload at once, and the command reports the outcome.
 */
import { readFile } from 'node:fs/promises';
import { allowFlags, UsageError, type CliIO, type Command, type ParsedArgs } from '../args.js';
import { AdminClient, AdminClientError } from '../admin-client.js';
import { describeRefusal, editConfigFile, listNetworks, type FileEditResultOk } from '../../config/edit.js';
import { isPortcullisError } from '../../errors.js';

export const run: Command = async (args, io) => {
  const [sub, ...rest] = args.positionals;
  switch (sub) {
    case 'add':
    case 'remove':
      return edit(args, sub, rest, io);
    case 'list':
      return list(args, rest, io);
    case undefined:
      throw new UsageError('expected a sub-command: add, remove or list');
    default:
      throw new UsageError(`unknown sub-command "${sub}" (expected add, remove or list)`);
  }
};

async function edit(args: ParsedArgs, kind: 'add' | 'remove', rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, []);
  const [network, ...cidrs] = rest;
  if (network === undefined || cidrs.length === 0) throw new UsageError(`usage: portcullis allow ${kind} NETWORK CIDR...`);
  let r;
  try {
    r = await editConfigFile(args.config, { kind, network, cidrs });
  } catch (e) {
    return fail(io, e, args.config);
  }
  if (!r.ok) {
    io.stderr.write(`portcullis allow: ${describeRefusal(r)}\n`);
    return 1;
  }
  io.stdout.write(summary(r, kind, network));
  if (!r.written) {
    io.stdout.write(`nothing to change; ${args.config} is as it was\n`);
    return 0;
  }
  io.stdout.write(`${args.config} updated\n`);
  return applyNow(args.config, io);
}

function summary(r: FileEditResultOk, kind: 'add' | 'remove', network: string): string {
  const lines: string[] = [];
  if (r.changed.length > 0) {
    if (r.created) lines.push(`created network "${network}" with ${r.changed.join(', ')}`);
    else lines.push(`network "${network}": ${kind === 'add' ? 'added' : 'removed'} ${r.changed.join(', ')}`);
  }
  if (r.unchanged.length > 0) lines.push(`network "${network}" already has ${r.unchanged.join(', ')}`);
  for (const n of r.notes) lines.push(`note: ${n}`);
  if (r.reformatted) lines.push('note: the layout of the file could not be kept exactly around this edit; its comments are kept');
  return lines.map((l) => `${l}\n`).join('');
}

/**
 * Ask the running gateway to reload now through its admin API. Not reachable is not an error: the
 * gateway (if one runs) reloads on its own when it sees the file change. A gateway that refuses
 * the new file is: access has not changed, and the admin must know.
 */
async function applyNow(configFile: string, io: CliIO): Promise<number> {
  let client: AdminClient | null = null;
  try {
    client = await AdminClient.connect(configFile);
    await client.post('/api/reload');
    io.stdout.write('the running gateway has applied it\n');
    return 0;
  } catch (e) {
    if (e instanceof AdminClientError && e.code === 'PC_CONFIG_INVALID') {
      io.stderr.write(`portcullis allow: the file was written, but the running gateway refused to reload and keeps its previous configuration: ${e.message}\n`);
      return 1;
    }
    const why = e instanceof Error ? e.message.split('\n')[0] : String(e);
    io.stdout.write(`could not ask the gateway to reload now (${why}); a running gateway applies the change by itself within a second\n`);
    return 0;
  } finally {
    await client?.close();
  }
}

async function list(args: ParsedArgs, rest: string[], io: CliIO): Promise<number> {
  allowFlags(args, ['json']);
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  let text: string;
  try {
    text = await readFile(args.config, 'utf8');
  } catch (e) {
    return fail(io, e, args.config);
  }
  const r = listNetworks(text, args.config);
  if (!r.ok) {
    io.stderr.write(`portcullis allow: ${describeRefusal(r)}\n`);
    return 1;
  }
  if (args.flags.get('json') === 'true') {
    io.stdout.write(`${JSON.stringify(r.networks, null, 2)}\n`);
    return 0;
  }
  if (r.networks.length === 0) {
    io.stdout.write(`no networks are defined in ${args.config}\n`);
    return 0;
  }
  let out = '';
  for (const n of r.networks) {
    const count = n.cidrs.length === 0 ? 'no entries' : `${n.cidrs.length} ${n.cidrs.length === 1 ? 'entry' : 'entries'}`;
    const used = n.usedBy.length > 0 ? `used by ${n.usedBy.join(', ')}` : 'not used by any rule, enrolment or lockdown';
    out += `${safe(n.name)}: ${count}; ${safe(used)}\n`;
    for (const c of n.cidrs) out += `  ${safe(c)}\n`;
  }
  io.stdout.write(out);
  return 0;
}

/** Text from the file shown on a terminal: control characters escaped. */
function safe(s: string): string {
  // eslint-disable-next-line no-control-regex
  return s.replace(/[\u0000-\u001f\u007f-\u009f\u2028\u2029]/g, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

function fail(io: CliIO, e: unknown, file: string): number {
  const code = (e as NodeJS.ErrnoException).code;
  if (code === 'ENOENT') io.stderr.write(`portcullis allow: cannot read ${file}: no such file\n`);
  else if (code === 'EACCES' || code === 'EPERM' || code === 'EROFS') {
    // a read-only configuration directory (a `:ro` mount, a ConfigMap) cannot be edited from here
    io.stderr.write(
      `portcullis allow: ${file}: ${code === 'EROFS' ? 'read-only file system' : 'permission denied'}; edit the configuration where it is managed (the host directory or ConfigMap it is mounted from), then reload\n`,
    );
  }
  else if (isPortcullisError(e)) io.stderr.write(`portcullis allow: ${e.message}\n`);
  else throw e;
  return 1;
}
