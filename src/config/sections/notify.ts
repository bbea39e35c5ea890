/** `notify`: webhook, SMTP and the events sent. */
import { LOOPBACK } from '../../net/cidr.js';
import { NOTIFY_EVENTS } from '../../audit/events.js';
import { FrozenSet } from '../frozen.js';
import { checkUrl, readSecret, secretShown, type Reader, type Val } from '../reader.js';
import type { NotifyConfig } from '../types.js';

export const EMAIL =
  /^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]{1,64}@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$/;

export function compileNotify(r: Reader, v: Val | undefined, cwd: string, env: NodeJS.ProcessEnv): NotifyConfig {
  const allEvents = new FrozenSet<string>(NOTIFY_EVENTS);
  const d: NotifyConfig = { webhook: null, smtp: null, events: allEvents };
  if (!v) return d;
  const n = r.object(v, ['webhook', 'smtp', 'events']);
  if (!n) return d;
  let webhook: string | null = null;
  if (n.webhook && !r.isNull(n.webhook)) {
    const w = n.webhook;
    const sec = readSecret(r, w, 'an https:// URL', cwd, env);
    const s = sec?.value;
    const u = s === undefined ? undefined : checkUrl(r, w, s, ['https:', 'http:'], secretShown(sec!, 'webhook URL'));
    if (s !== undefined && u) {
      if (u.username || u.password || s.includes('@')) r.issue(w.node, w.path, 'the webhook URL cannot carry credentials (user:password@); put a token in the path or query');
      else if (u.protocol === 'http:' && !isLoopbackHost(u.hostname)) r.issue(w.node, w.path, 'the webhook carries user names and addresses; use https:// (plain http:// only to a loopback address)');
      else webhook = s;
    }
  }
  let smtp: NotifyConfig['smtp'] = null;
  if (n.smtp && !r.isNull(n.smtp)) smtp = compileSmtp(r, n.smtp, cwd, env);
  let events: ReadonlySet<string> = allEvents;
  if (n.events) {
    const items = r.list(n.events, 'event names');
    if (items) {
      const chosen: string[] = [];
      for (const item of items) {
        const e = r.oneOf(item, NOTIFY_EVENTS);
        if (e === undefined) continue;
        if (chosen.includes(e)) r.issue(item.node, item.path, `"${e}" is listed twice`);
        else chosen.push(e);
      }
      events = new FrozenSet(chosen);
    }
  }
  return { webhook, smtp, events };
}

export function isLoopbackHost(hostname: string): boolean {
  return hostname === 'localhost' || LOOPBACK.contains(hostname.replace(/^\[(.*)\]$/, '$1'));
}

export function compileSmtp(r: Reader, v: Val, cwd: string, env: NodeJS.ProcessEnv): NotifyConfig['smtp'] {
  const s = r.object(v, ['url', 'from', 'to'], ['url', 'from', 'to']);
  if (!s) return null;
  let url = '';
  if (s.url) {
    const sec = readSecret(r, s.url, 'an smtp:// or smtps:// URL', cwd, env);
    const text = sec?.value;
    const u = text === undefined ? undefined : checkUrl(r, s.url, text, ['smtp:', 'smtps:'], secretShown(sec!, 'SMTP URL'));
    if (u && text !== undefined) {
      if (u.pathname !== '' && u.pathname !== '/') r.issue(s.url.node, s.url.path, `an SMTP URL has no path, found "${u.pathname}"`);
      else url = text;
    }
  }
  const email = (x: Val): string | undefined => {
    const a = r.str(x, 'an e-mail address');
    if (a === undefined) return undefined;
    if (a.length > 254 || !EMAIL.test(a)) return r.issue(x.node, x.path, `"${a}" is not a plain e-mail address (name@example.org)`);
    return a;
  };
  const from = s.from ? email(s.from) ?? '' : '';
  const to: string[] = [];
  if (s.to) {
    for (const item of r.list(s.to, 'e-mail addresses', { nonEmpty: 'needs at least one recipient' }) ?? []) {
      const a = email(item);
      if (a !== undefined) to.push(a);
    }
  }
  return { url, from, to };
}
