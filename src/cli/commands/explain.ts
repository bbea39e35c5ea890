/**
 * `portcullis explain --config FILE --url URL --ip IP [--user U] [--method M]`: which rule decides
 * a request and why, rule by rule, without running the gateway (Authelia's check-policy).
 */
import { loadConfigFile, formatIssues } from '../../config/index.js';
import { normaliseIp } from '../../net/ip.js';
import { normaliseRequestTarget } from '../../net/path.js';
import { explain } from '../../policy/decide.js';
import { appForHost } from '../../access/gate.js';
import { loadUsersFile } from '../../auth/users.js';
import { allowFlags, requireFlag, UsageError, type Command } from '../args.js';

export const run: Command = async (args, io) => {
  allowFlags(args, ['url', 'ip', 'user', 'method']);
  const rawUrl = requireFlag(args, 'url');
  const ip = normaliseIp(requireFlag(args, 'ip'));
  if (!ip) throw new UsageError(`--ip ${args.flags.get('ip')} is not an IP address`);
  const method = args.flags.get('method') ?? 'GET';
  const loaded = await loadConfigFile(args.config, { checkFiles: false });
  if (!loaded.ok) {
    io.stderr.write(`${formatIssues(loaded.issues)}\n`);
    return 1;
  }
  const cfg = loaded.config;
  const m = /^(https?):\/\/([^/?#\s]+)(\/[^#\s]*)?$/i.exec(rawUrl);
  if (!m) throw new UsageError(`--url must be an absolute http(s) URL, got ${rawUrl}`);
  const host = m[2]!;
  const app = appForHost(cfg, host);
  if (!app) {
    io.stdout.write(`${rawUrl}: no app serves host ${host}: 421, never reaches an app\n`);
    return 0;
  }
  const p = normaliseRequestTarget(m[3] ?? '/', { windows: app.caseInsensitivePaths });
  if (!p.ok) {
    io.stdout.write(`${rawUrl}: refused with 400 before any rule: ${p.reason}\n`);
    return 0;
  }
  if (method === 'CONNECT' || method === 'TRACE') {
    io.stdout.write(`${method}: refused with 405 before any rule\n`);
    return 0;
  }
  let subject = null;
  const userName = args.flags.get('user');
  if (userName) {
    const users = await loadUsersFile(cfg.usersFile);
    const u = users.ok ? users.users.get(userName) : undefined;
    if (!u) io.stdout.write(`note: user ${userName} is not in ${cfg.usersFile}; explaining with no groups\n`);
    subject = { name: userName, groups: u?.groups ?? [] };
  }
  const { decision, trace } = explain(app, { method, path: p.path, ip, subject });
  const who = subject ? `user ${subject.name} [${subject.groups.join(', ')}]` : 'anonymous';
  io.stdout.write(`app ${app.name} (${app.pos.file}:${app.pos.line}), ${method} ${p.path} from ${ip}, ${who}\n`);
  for (const line of trace) io.stdout.write(`${line}\n`);
  const what: Record<string, string> = {
    deny: decision.networkDenied ? 'deny (403, network_denied: another rule would admit this request from an allowed network)' : 'deny (403)',
    bypass: 'bypass (no sign-in; still subject to lockdown)',
    password: decision.needsSubject ? 'sign-in required to learn the groups, then decided again' : 'password (one factor)',
    mfa: 'mfa (password then a second factor: a TOTP code or a passkey)',
    passkey: 'passkey (password then a passkey or security key; a TOTP session is stepped up)',
  };
  io.stdout.write(`decision: ${what[decision.policy]}\n  because ${decision.reason}\n`);
  return 0;
};
