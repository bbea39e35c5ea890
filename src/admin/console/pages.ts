/**
 * The admin console's pages, server-rendered: no script at all, a stylesheet of its own allowed
 * by hash (as the portal's is), forms with labels, and every dynamic value escaped by the `html`
 * template of `portal/html.ts`. Pure functions from view data to HTML text; no fastify.
 */
import { createHash } from 'node:crypto';
import type { AuditEvent } from '../../audit/events.js';
import type { BlockInfo } from '../../auth/throttle.js';
import { esc, html, raw, type Raw } from '../../http/html.js';
import type { LockdownStatus } from '../../access/lockdown.js';
import type { SessionView } from '../operations.js';
import type { Flash } from './console-sessions.js';
import type { TargetStat } from './stats.js';

export const CONSOLE_STYLE = `
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2330;margin:0;line-height:1.4}
header{background:#1d2330;color:#fff;padding:.7rem 1.5rem;display:flex;align-items:center;gap:1.5rem;flex-wrap:wrap}
header h1{font-size:1.1rem;margin:0}
header nav a{color:#cfd8ea;margin-right:1rem}
header form{margin-left:auto}
main{max-width:72rem;margin:1.5rem auto;padding:0 1rem}
main.narrow{max-width:26rem;margin-top:8vh}
section{background:#fff;border-radius:8px;padding:1.2rem 1.5rem;margin:0 0 1.5rem;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h2{font-size:1.15rem;margin:0 0 .8rem}
h3{font-size:1rem;margin:1rem 0 .5rem}
table{border-collapse:collapse;width:100%;font-size:.92rem}
th,td{text-align:left;padding:.35rem .5rem;border-bottom:1px solid #e3e6ec;vertical-align:top}
th{background:#f0f2f6;font-weight:600}
td form{display:inline;margin:0}
code,.mono{font-family:ui-monospace,Menlo,Consolas,monospace;overflow-wrap:anywhere}
td.mono,time{white-space:nowrap}
label{font-weight:600}
.field{margin:.6rem 0}
.field label{display:block;margin-bottom:.25rem}
.check{display:flex;gap:.5rem;align-items:flex-start}
.check input{margin-top:.25rem}
input[type=text],input[type=password]{padding:.45rem;font-size:1rem;border:1px solid #9aa3b2;border-radius:4px;width:100%;max-width:24rem}
input:focus,button:focus{outline:3px solid #7aa7ff;outline-offset:1px}
button{padding:.4rem .9rem;font-size:.95rem;border:0;border-radius:4px;background:#2456d3;color:#fff;cursor:pointer}
button.danger{background:#b3261e}
button.quiet{background:#e3e6ec;color:#1d2330}
header button{background:#3b4357}
.inline{display:flex;gap:.5rem;align-items:flex-end;flex-wrap:wrap;margin:.5rem 0}
.inline .field{margin:0}
.flash{padding:.7rem 1rem;border-radius:6px;margin:0 0 1.5rem}
.flash.ok{background:#e6f4ea;color:#0f5223}
.flash.error{background:#fdecea;color:#8a1c12}
.flash p{margin:.2rem 0}
.error{background:#fdecea;color:#8a1c12;padding:.6rem .8rem;border-radius:4px}
.state{display:inline-block;padding:.15rem .6rem;border-radius:999px;font-weight:700}
.state.on{background:#b3261e;color:#fff}
.state.off{background:#e6f4ea;color:#0f5223}
.outcome-failure,.outcome-denied{color:#8a1c12;font-weight:600}
.outcome-success{color:#0f5223}
.note{color:#4a5365;font-size:.9rem}
.grid2{display:grid;grid-template-columns:repeat(auto-fit,minmax(20rem,1fr));gap:1.5rem}
.vh{position:absolute;width:1px;height:1px;overflow:hidden;clip:rect(0 0 0 0);white-space:nowrap}
svg.chart{max-width:100%;height:auto;display:block;margin:.5rem 0}
svg.chart .bar{fill:#c0392b}
svg.chart .grid{stroke:#e3e6ec;stroke-width:1}
svg.chart .axis{stroke:#6b7385;stroke-width:1}
svg.chart .lbl{fill:#4a5365;font-size:11px;font-family:system-ui,sans-serif}
ul.issues{margin:.3rem 0 0;padding-left:1.2rem}
`;

const STYLE_HASH = createHash('sha256').update(CONSOLE_STYLE).digest('base64');

/** No script at all; styles only from this stylesheet; forms post only here; never framed. */
export const CONSOLE_CSP = [
  "default-src 'none'",
  `style-src 'sha256-${STYLE_HASH}'`,
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

export const CONSOLE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': CONSOLE_CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // Not `no-referrer`: under it a browser sends `Origin: null` with every form post, and the
  // Origin check could not tell our own forms from a sandboxed attacker's. `same-origin` keeps
  // the Referer (and a real Origin) within the console and sends nothing elsewhere.
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
  'cross-origin-resource-policy': 'same-origin',
  'x-robots-tag': 'noindex',
};

export function layout(title: string, body: Raw, signedIn: { csrf: string } | null, narrow = false): string {
  const head = signedIn
    ? html`<header><h1>portcullis admin console</h1>
<nav aria-label="Sections"><a href="/console#lockdown">Lockdown</a><a href="/console#attempts">Attempts</a><a href="/console#attacks">Attacks</a><a href="/console#blocks">Blocks</a><a href="/console#sessions">Sessions</a><a href="/console#allowlists">Allowlists</a><a href="/console/users">Users</a></nav>
<form method="post" action="/console/logout">${csrfField(signedIn.csrf)}<button type="submit">Sign out</button></form></header>`
    : html`<header><h1>portcullis admin console</h1></header>`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${esc(title)}</title><style>${CONSOLE_STYLE}</style></head>
<body>${head.html}<main${narrow ? ' class="narrow"' : ''}>${body.html}</main></body></html>`;
}

export function csrfField(csrf: string): Raw {
  return html`<input type="hidden" name="csrf" value="${csrf}">`;
}

/** `2026-01-01T12:00:00.000Z` -> `2026-01-01 12:00:00 UTC`, inside a <time> element. */
export function time(iso: string): Raw {
  const shown = /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d/.test(iso) ? `${iso.slice(0, 10)} ${iso.slice(11, 19)} UTC` : iso;
  return html`<time datetime="${iso}">${shown}</time>`;
}

export function isoOf(ms: number): string {
  return new Date(ms).toISOString();
}

/** `3 min`, `2 h 5 min`, `40 s`. */
export function duration(sec: number): string {
  if (sec < 60) return `${sec} s`;
  const m = Math.round(sec / 60);
  if (m < 60) return `${m} min`;
  const h = Math.floor(m / 60);
  return m % 60 === 0 ? `${h} h` : `${h} h ${m % 60} min`;
}

// ---------------------------------------------------------------------------------------------
// Sign-in

export function loginPage(opts: { error?: string; notice?: string } = {}): string {
  return layout(
    'Sign in · portcullis admin',
    html`<section><h2>Sign in</h2>
${opts.notice ? html`<p class="note" role="status">${opts.notice}</p>` : ''}
${opts.error ? html`<p class="error" role="alert">${opts.error}</p>` : ''}
<form method="post" action="/console/login">
<div class="field"><label for="token">Admin token</label>
<input type="password" id="token" name="token" autocomplete="current-password" required autofocus spellcheck="false"></div>
<p class="note">The token is in the file named by <code>admin.token_file</code> on the gateway's host.</p>
<button type="submit">Sign in</button>
</form></section>`,
    null,
    true,
  );
}

export function messagePage(title: string, message: string, opts: { signedIn?: { csrf: string } | null; link?: { href: string; text: string } } = {}): string {
  return layout(
    `${title} · portcullis admin`,
    html`<section><h2>${title}</h2><p>${message}</p>${opts.link ? html`<p><a href="${opts.link.href}">${opts.link.text}</a></p>` : ''}</section>`,
    opts.signedIn ?? null,
    true,
  );
}

// ---------------------------------------------------------------------------------------------
// Dashboard

/** Something that may be unavailable (the store is down) without taking the page with it. */
export type Part<T> = { ok: true; value: T } | { ok: false; error: string };

export interface DashboardView {
  csrf: string;
  flash: Flash | null;
  lockdown: LockdownStatus;
  attempts: AuditEvent[];
  /** How many events the in-memory ring holds and since when (ISO), for the captions. */
  ring: { events: number; since: string | null };
  accounts: TargetStat[];
  sources: TargetStat[];
  /** Inline <svg> elements from chart.ts. */
  charts: Array<{ heading: string; svg: string }>;
  blocks: Part<BlockInfo[]>;
  sessions: Part<{ rows: SessionView[]; total: number }>;
  networks: Array<{ name: string; cidrs: string[] }>;
  /** Absolute path of the configuration file the allowlists are written to. */
  configFile: string;
}

export function flashBox(f: Flash): Raw {
  return html`<div class="flash ${f.ok ? 'ok' : 'error'}" role="${f.ok ? 'status' : 'alert'}"><p><strong>${f.title}</strong></p>
${f.lines.length > 0 ? html`<ul class="issues">${f.lines.map((l) => html`<li>${l}</li>`)}</ul>` : ''}</div>`;
}

function lockdownSection(v: DashboardView): Raw {
  const l = v.lockdown;
  const who = l.networks.length > 0 ? html`only ${l.networks.join(', ')} may still reach apps` : html`nobody may reach apps (no <code>lockdown.networks</code>)`;
  const since = l.since > 0 ? html` since ${time(isoOf(l.since))}${l.by ? html` (by ${l.by})` : ''}` : '';
  const form = l.on
    ? html`<form method="post" action="/console/lockdown">${csrfField(v.csrf)}<input type="hidden" name="state" value="off">
<button type="submit">Turn lockdown off</button></form>
<p class="note">Turning it off restores access; every user signs in again.</p>`
    : html`<form method="post" action="/console/lockdown">${csrfField(v.csrf)}<input type="hidden" name="state" value="on">
<div class="field check"><input type="checkbox" id="lockdown-confirm" name="confirm" value="yes" required>
<label for="lockdown-confirm">I understand: every session ends and every open connection closes; while it is on, ${who}.</label></div>
<button type="submit" class="danger">Turn lockdown on</button></form>`;
  return html`<section id="lockdown" aria-labelledby="lockdown-h"><h2 id="lockdown-h">Lockdown</h2>
<p>Lockdown is <span class="state ${l.on ? 'on' : 'off'}">${l.on ? 'ON' : 'off'}</span>${since}.${l.on ? html` While it is on, ${who}.` : ''}</p>
${form}</section>`;
}

function attemptsSection(v: DashboardView): Raw {
  const caption = v.ring.since
    ? html`Newest first, from the last ${v.ring.events} audit events held in memory (since ${time(v.ring.since)}). The audit log file has the full history.`
    : html`No audit events yet.`;
  const rows = v.attempts.map(
    (e) => html`<tr><td>${time(e.ts)}</td><td><code>${e.event}</code></td><td>${e.user ?? ''}</td><td class="mono">${e.ip}</td><td>${e.app ?? ''}</td><td class="outcome-${e.outcome}">${e.outcome}</td><td>${e.reason ?? ''}</td></tr>`,
  );
  return html`<section id="attempts" aria-labelledby="attempts-h"><h2 id="attempts-h">Recent sign-in attempts</h2>
<p class="note">${caption}</p>
${
  rows.length === 0
    ? html`<p>No sign-in attempts recorded yet.</p>`
    : html`<table><thead><tr><th scope="col">Time</th><th scope="col">Event</th><th scope="col">User</th><th scope="col">Source</th><th scope="col">App</th><th scope="col">Outcome</th><th scope="col">Reason</th></tr></thead>
<tbody>${rows}</tbody></table>`
}</section>`;
}

function targetTable(caption: string, first: string, distinct: string, rows: TargetStat[]): Raw {
  if (rows.length === 0) return html`<h3>${caption}</h3><p>No failed attempts in the recent events.</p>`;
  return html`<h3>${caption}</h3><table><thead><tr><th scope="col">${first}</th><th scope="col">Failures</th><th scope="col">${distinct}</th><th scope="col">Latest</th></tr></thead>
<tbody>${rows.map((r) => html`<tr><td class="mono">${r.label}</td><td>${r.failures}</td><td>${r.distinct}</td><td>${time(r.last)}</td></tr>`)}</tbody></table>`;
}

function attacksSection(v: DashboardView): Raw {
  return html`<section id="attacks" aria-labelledby="attacks-h"><h2 id="attacks-h">Failed attempts</h2>
<p class="note">Wrong passwords (including attempts a throttle refused) and wrong or replayed second-factor codes, from the recent events held in memory. Times in UTC.</p>
${v.charts.map((c) => html`<h3>${c.heading}</h3>${raw(c.svg)}`)}
<div class="grid2"><div>${targetTable('Most attacked accounts', 'Account', 'Source networks', v.accounts)}</div>
<div>${targetTable('Most active sources (IPv4 /24, IPv6 /64)', 'Source network', 'Accounts tried', v.sources)}</div></div></section>`;
}

/** The address to post to unblock a source: the source key without its prefix length. */
function sourceAddress(source: string): string {
  const slash = source.indexOf('/');
  return slash < 0 ? source : source.slice(0, slash);
}

export const KIND_TEXT: Record<BlockInfo['kind'], string> = {
  ip: 'too many failures from this source',
  spray: 'password spraying (many accounts from this source)',
  user: 'account locked out',
  ceiling: 'account reached its failure ceiling',
  mfa: 'too many wrong codes',
  sprayed: 'password being sprayed at many accounts',
};

function unblockButton(csrf: string, field: 'user' | 'ip', value: string, what: string): Raw {
  return html`<form method="post" action="/console/unblock">${csrfField(csrf)}<input type="hidden" name="${field}" value="${value}">
<button type="submit" class="quiet">Unblock<span class="vh"> ${what}</span></button></form> `;
}

function blocksSection(v: DashboardView): Raw {
  let body: Raw;
  if (!v.blocks.ok) body = html`<p class="error">${v.blocks.error}</p>`;
  else if (v.blocks.value.length === 0) body = html`<p>Nothing is blocked.</p>`;
  else {
    body = html`<table><thead><tr><th scope="col">Blocked</th><th scope="col">Why</th><th scope="col">Lifts in</th><th scope="col">Action</th></tr></thead><tbody>${v.blocks.value.map((b) => {
      const subject: Raw[] = [];
      if (b.user !== undefined) subject.push(html`account <strong>${b.user}</strong>${b.bucket ? html` (from ${b.bucket} networks)` : ''}`);
      if (b.source !== undefined) subject.push(html`source <span class="mono">${b.source}</span>`);
      const buttons: Raw[] = [];
      if (b.user !== undefined) buttons.push(unblockButton(v.csrf, 'user', b.user, `account ${b.user}`));
      if (b.source !== undefined) buttons.push(unblockButton(v.csrf, 'ip', sourceAddress(b.source), `source ${b.source}`));
      return html`<tr><td>${subject.map((s, i) => html`${i > 0 ? ', ' : ''}${s}`)}</td><td>${KIND_TEXT[b.kind]}</td><td>${duration(b.retryAfterSec)}</td><td>${buttons}</td></tr>`;
    })}</tbody></table>`;
  }
  return html`<section id="blocks" aria-labelledby="blocks-h"><h2 id="blocks-h">Blocked accounts and sources</h2>
<p class="note">Blocks lift by themselves; unblocking also forgets the failures counted so far.</p>${body}</section>`;
}

function sessionsSection(v: DashboardView): Raw {
  let body: Raw;
  if (!v.sessions.ok) body = html`<p class="error">${v.sessions.error}</p>`;
  else if (v.sessions.value.total === 0) body = html`<p>No sessions.</p>`;
  else {
    const { rows, total } = v.sessions.value;
    body = html`${
      total > rows.length ? html`<p class="note">Showing the ${rows.length} newest of ${total} sessions; <code>portcullis sessions list</code> shows them all.</p>` : ''
    }<table><thead><tr><th scope="col">User</th><th scope="col">Handle</th><th scope="col">Signed in</th><th scope="col">Last seen</th><th scope="col">From</th><th scope="col">Factors</th><th scope="col">State</th><th scope="col">Action</th></tr></thead>
<tbody>${rows.map(
      (s) => html`<tr><td>${s.user}</td><td><code>${s.handle}</code></td><td>${time(s.created)}</td><td>${time(s.lastSeen)}</td><td class="mono">${s.ip}</td><td>${s.amr.join(' + ')}</td><td>${s.pending === 'none' ? 'signed in' : `pending ${s.pending}`}</td>
<td><form method="post" action="/console/sessions/revoke">${csrfField(v.csrf)}<input type="hidden" name="handle" value="${s.handle}"><button type="submit" class="quiet">Revoke<span class="vh"> session ${s.handle} of ${s.user}</span></button></form>
<form method="post" action="/console/sessions/revoke">${csrfField(v.csrf)}<input type="hidden" name="user" value="${s.user}"><button type="submit" class="quiet">Revoke all<span class="vh"> sessions of ${s.user}</span></button></form></td></tr>`,
    )}</tbody></table>`;
  }
  return html`<section id="sessions" aria-labelledby="sessions-h"><h2 id="sessions-h">Sessions</h2>
<p class="note">Revoking ends the session at once and closes the connections it holds open.</p>${body}</section>`;
}

function allowlistsSection(v: DashboardView): Raw {
  const nets = v.networks.map((n, i) => {
    const id = `net-${i}`;
    return html`<h3 id="${id}-h">${n.name}</h3>
${
  n.cidrs.length === 0
    ? html`<p>No entries.</p>`
    : html`<table aria-labelledby="${id}-h"><thead><tr><th scope="col">Range</th><th scope="col">Action</th></tr></thead><tbody>${n.cidrs.map(
        (c) => html`<tr><td class="mono">${c}</td><td><form method="post" action="/console/allow">${csrfField(v.csrf)}<input type="hidden" name="op" value="remove"><input type="hidden" name="network" value="${n.name}"><input type="hidden" name="cidr" value="${c}"><button type="submit" class="quiet">Remove<span class="vh"> ${c} from ${n.name}</span></button></form></td></tr>`,
      )}</tbody></table>`
}
<form method="post" action="/console/allow" class="inline">${csrfField(v.csrf)}<input type="hidden" name="op" value="add"><input type="hidden" name="network" value="${n.name}">
<div class="field"><label for="${id}-add">Add to ${n.name}</label><input type="text" id="${id}-add" name="cidr" required spellcheck="false" autocomplete="off" aria-describedby="allow-help"></div>
<button type="submit">Add<span class="vh"> to ${n.name}</span></button></form>`;
  });
  return html`<section id="allowlists" aria-labelledby="allowlists-h"><h2 id="allowlists-h">Allowlists (networks)</h2>
<p class="note" id="allow-help">Addresses or CIDRs (a bare address is one host), several separated by spaces or commas. Changes are validated like <code>portcullis allow</code>, written to <code>${v.configFile}</code> (comments kept), and applied at once; nothing is written if the result would be invalid.</p>
${v.networks.length === 0 ? html`<p>No networks are defined.</p>` : nets}
<h3>New network</h3>
<form method="post" action="/console/allow" class="inline">${csrfField(v.csrf)}<input type="hidden" name="op" value="add">
<div class="field"><label for="new-network">Name</label><input type="text" id="new-network" name="network" required spellcheck="false" autocomplete="off" pattern="[a-z0-9][a-z0-9_\\-]*" maxlength="63"></div>
<div class="field"><label for="new-cidr">Ranges</label><input type="text" id="new-cidr" name="cidr" required spellcheck="false" autocomplete="off" aria-describedby="allow-help"></div>
<button type="submit">Create network</button></form></section>`;
}

export function dashboardPage(v: DashboardView): string {
  return layout(
    'portcullis admin console',
    html`${v.flash ? flashBox(v.flash) : ''}${lockdownSection(v)}${attemptsSection(v)}${attacksSection(v)}${blocksSection(v)}${sessionsSection(v)}${allowlistsSection(v)}`,
    { csrf: v.csrf },
  );
}
