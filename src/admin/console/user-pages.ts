/**
 * The console's user pages, server-rendered like the dashboard (pages.ts): the list of users with
 * their factors, and one user's page with its actions. Pure functions from view data to HTML;
 * every value from the users file or the store (display names, passkey names, app password
 * labels) goes through the `html` template, which escapes it.
 */
import type { BlockInfo } from '../../auth/throttle.js';
import { html, type Raw } from '../../http/html.js';
import type { AppPasswordView, PasskeyAdminView, SessionView } from '../operations.js';
import type { Flash } from './console-sessions.js';
import { csrfField, duration, flashBox, KIND_TEXT, layout, time, type Part } from './pages.js';

/** What the console shows of one user: the users file's entry and every factor the store holds. */
export interface UserFactors {
  name: string;
  displayName: string | null;
  email: string | null;
  groups: readonly string[];
  disabled: boolean;
  totp: { source: 'enrolled' | 'provisioned'; since: string } | null;
  passkeys: PasskeyAdminView[];
  recoveryCodes: number;
  appPasswords: AppPasswordView[];
  familiarNetworks: number;
  sessions: number;
}

export interface UsersListView {
  csrf: string;
  flash: Flash | null;
  /** 1-based. */
  page: number;
  pages: number;
  perPage: number;
  total: number;
  /** The users of this page, by name; an error when the store cannot be read. */
  rows: Part<UserFactors[]>;
}

export interface UserDetailView {
  csrf: string;
  flash: Flash | null;
  user: Part<UserFactors>;
  /** The entry from the users file (shown even when the store is down). */
  entry: Pick<UserFactors, 'name' | 'displayName' | 'email' | 'groups' | 'disabled'>;
  sessions: Part<SessionView[]>;
  blocks: Part<BlockInfo[]>;
}

export function userHref(name: string): string {
  return `/console/user?user=${encodeURIComponent(name)}`;
}

function totpText(t: UserFactors['totp']): Raw {
  return t ? html`${t.source} since ${time(t.since)}` : html`none`;
}

function passkeysText(p: PasskeyAdminView[]): Raw {
  if (p.length === 0) return html`none`;
  return html`${p.length}: ${p.map(
    (k, i) => html`${i > 0 ? ', ' : ''}<span class="pk">${k.name}</span> (${k.lastUsed ? html`last used ${time(k.lastUsed)}` : 'never used'})`,
  )}`;
}

function appPasswordsText(a: AppPasswordView[]): Raw {
  if (a.length === 0) return html`none`;
  return html`${a.length}: ${a.map(
    (p, i) => html`${i > 0 ? ', ' : ''}<span class="ap">${p.label}</span> (${p.lastUsed ? html`last used ${time(p.lastUsed)}` : 'never used'})`,
  )}`;
}

function pager(v: UsersListView): Raw {
  if (v.pages <= 1) return html``;
  const link = (p: number, text: string) => html`<a href="/console/users?page=${String(p)}">${text}</a>`;
  return html`<nav aria-label="Pages" class="inline">${v.page > 1 ? link(v.page - 1, 'Previous page') : ''} <span>Page ${v.page} of ${v.pages}</span> ${
    v.page < v.pages ? link(v.page + 1, 'Next page') : ''
  }</nav>`;
}

export function usersListPage(v: UsersListView): string {
  let body: Raw;
  if (!v.rows.ok) body = html`<p class="error">${v.rows.error}</p>`;
  else if (v.total === 0) body = html`<p>The users file has no users.</p>`;
  else {
    const first = (v.page - 1) * v.perPage + 1;
    body = html`<p class="note">Users ${first} to ${first + v.rows.value.length - 1} of ${v.total}, by name, ${v.perPage} a page.</p>${pager(v)}
<table><thead><tr><th scope="col">User</th><th scope="col">Display name</th><th scope="col">Groups</th><th scope="col">State</th><th scope="col">TOTP</th><th scope="col">Passkeys</th><th scope="col">Recovery codes left</th><th scope="col">App passwords</th><th scope="col">Familiar networks</th><th scope="col">Active sessions</th></tr></thead>
<tbody>${v.rows.value.map(
      (u) => html`<tr><td><a href="${userHref(u.name)}">${u.name}</a></td><td>${u.displayName ?? ''}</td><td>${u.groups.join(', ')}</td><td>${u.disabled ? 'disabled' : 'active'}</td><td>${totpText(u.totp)}</td><td>${passkeysText(u.passkeys)}</td><td>${u.recoveryCodes}</td><td>${appPasswordsText(u.appPasswords)}</td><td>${u.familiarNetworks}</td><td>${u.sessions}</td></tr>`,
    )}</tbody></table>${pager(v)}`;
  }
  return layout(
    'Users · portcullis admin',
    html`${v.flash ? flashBox(v.flash) : ''}<section id="users" aria-labelledby="users-h"><h2 id="users-h">Users</h2>
<p class="note">Everyone in the users file and the factors the gateway holds for them. Open a user to revoke their sessions, lift their blocks, reset their TOTP or remove a passkey.</p>${body}</section>`,
    { csrf: v.csrf },
  );
}

function userField(csrf: string, name: string): Raw {
  return html`${csrfField(csrf)}<input type="hidden" name="user" value="${name}">`;
}

function factorsSection(v: UserDetailView): Raw {
  const name = v.entry.name;
  if (!v.user.ok) return html`<section id="factors" aria-labelledby="factors-h"><h2 id="factors-h">Factors</h2><p class="error">${v.user.error}</p></section>`;
  const u = v.user.value;
  const totpForm = u.totp || u.recoveryCodes > 0
    ? html`<form method="post" action="/console/user/totp-reset" class="inline">${userField(v.csrf, name)}
<div class="field check"><input type="checkbox" id="totp-confirm" name="confirm" value="yes" required>
<label for="totp-confirm">Forget the TOTP device and recovery codes of ${name} and end their sessions; they enrol again at their next sign-in.</label></div>
<button type="submit" class="danger">Reset TOTP<span class="vh"> of ${name}</span></button></form>`
    : '';
  const passkeys =
    u.passkeys.length === 0
      ? html`<p>No passkeys.</p>`
      : html`<table aria-labelledby="passkeys-h"><thead><tr><th scope="col">Name</th><th scope="col">Registered</th><th scope="col">Last used</th><th scope="col">Transports</th><th scope="col">Action</th></tr></thead><tbody>${u.passkeys.map(
          (k) => html`<tr><td>${k.name}</td><td>${time(k.created)}</td><td>${k.lastUsed ? time(k.lastUsed) : 'never'}</td><td>${k.transports.join(', ')}</td>
<td><form method="post" action="/console/user/passkey-remove">${userField(v.csrf, name)}<input type="hidden" name="id" value="${k.id}"><button type="submit" class="quiet">Remove<span class="vh"> passkey ${k.name} of ${name}</span></button></form></td></tr>`,
        )}</tbody></table>`;
  const apps =
    u.appPasswords.length === 0
      ? html`<p>No app passwords.</p>`
      : html`<table aria-labelledby="apps-h"><thead><tr><th scope="col">Label</th><th scope="col">Issued</th><th scope="col">Last used</th></tr></thead><tbody>${u.appPasswords.map(
          (p) => html`<tr><td>${p.label}</td><td>${time(p.created)}</td><td>${p.lastUsed ? time(p.lastUsed) : 'never'}</td></tr>`,
        )}</tbody></table><p class="note"><code>portcullis app-password</code> issues and revokes them.</p>`;
  return html`<section id="factors" aria-labelledby="factors-h"><h2 id="factors-h">Factors</h2>
<table><tbody>
<tr><th scope="row">TOTP</th><td>${totpText(u.totp)}</td></tr>
<tr><th scope="row">Recovery codes left</th><td>${u.recoveryCodes}</td></tr>
<tr><th scope="row">Passkeys</th><td>${u.passkeys.length}</td></tr>
<tr><th scope="row">App passwords</th><td>${u.appPasswords.length}</td></tr>
<tr><th scope="row">Familiar networks</th><td>${u.familiarNetworks}</td></tr>
<tr><th scope="row">Active sessions</th><td>${u.sessions}</td></tr>
</tbody></table>
${totpForm}
<h3 id="passkeys-h">Passkeys</h3>${passkeys}
<h3 id="apps-h">App passwords</h3>${apps}</section>`;
}

function sessionsSection(v: UserDetailView): Raw {
  const name = v.entry.name;
  let body: Raw;
  if (!v.sessions.ok) body = html`<p class="error">${v.sessions.error}</p>`;
  else if (v.sessions.value.length === 0) body = html`<p>No sessions.</p>`;
  else {
    body = html`<table><thead><tr><th scope="col">Handle</th><th scope="col">Signed in</th><th scope="col">Last seen</th><th scope="col">From</th><th scope="col">Factors</th><th scope="col">State</th></tr></thead>
<tbody>${v.sessions.value.map(
      (s) => html`<tr><td><code>${s.handle}</code></td><td>${time(s.created)}</td><td>${time(s.lastSeen)}</td><td class="mono">${s.ip}</td><td>${s.amr.join(' + ')}</td><td>${s.pending === 'none' ? 'signed in' : `pending ${s.pending}`}</td></tr>`,
    )}</tbody></table>
<form method="post" action="/console/user/revoke">${userField(v.csrf, name)}<button type="submit" class="danger">Revoke all sessions<span class="vh"> of ${name}</span></button></form>`;
  }
  return html`<section id="sessions" aria-labelledby="sessions-h"><h2 id="sessions-h">Sessions</h2>
<p class="note">Revoking ends the sessions at once and closes the connections the user holds open.</p>${body}</section>`;
}

function blocksSection(v: UserDetailView): Raw {
  const name = v.entry.name;
  let body: Raw;
  if (!v.blocks.ok) body = html`<p class="error">${v.blocks.error}</p>`;
  else if (v.blocks.value.length === 0) body = html`<p>Nothing is blocked on this account.</p>`;
  else
    body = html`<ul>${v.blocks.value.map(
      (b) => html`<li>${KIND_TEXT[b.kind]}${b.bucket ? html` (from ${b.bucket} networks)` : ''}; lifts in ${duration(b.retryAfterSec)}</li>`,
    )}</ul>`;
  return html`<section id="blocks" aria-labelledby="blocks-h"><h2 id="blocks-h">Blocks</h2>${body}
<form method="post" action="/console/user/unblock">${userField(v.csrf, name)}<button type="submit" class="quiet">Unblock<span class="vh"> account ${name}</span></button></form>
<p class="note">Unblocking lifts the blocks on the account and forgets the failures counted so far.</p></section>`;
}

export function userDetailPage(v: UserDetailView): string {
  const e = v.entry;
  return layout(
    `${e.name} · Users · portcullis admin`,
    html`${v.flash ? flashBox(v.flash) : ''}<p><a href="/console/users">All users</a></p>
<section id="user" aria-labelledby="user-h"><h2 id="user-h">User ${e.name}</h2>
<table><tbody>
<tr><th scope="row">Display name</th><td>${e.displayName ?? ''}</td></tr>
<tr><th scope="row">E-mail</th><td>${e.email ?? ''}</td></tr>
<tr><th scope="row">Groups</th><td>${e.groups.join(', ')}</td></tr>
<tr><th scope="row">State</th><td>${e.disabled ? 'disabled' : 'active'}</td></tr>
</tbody></table></section>
${factorsSection(v)}${sessionsSection(v)}${blocksSection(v)}`,
    { csrf: v.csrf },
  );
}
