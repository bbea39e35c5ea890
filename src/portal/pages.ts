import { html, page, raw, type Raw } from '../http/html.js';
import { PASSKEY_SCRIPT } from '../http/passkey-script.js';

const hidden = (name: string, value: string | null | undefined): Raw =>
  value ? html`<input type="hidden" name="${name}" value="${value}">` : raw('');

const error = (msg: string | null | undefined): Raw => (msg ? html`<p class="error" role="alert">${msg}</p>` : raw(''));

export function loginPage(o: { csrf: string; rd: string | null; error?: string | null; username?: string; passkey?: boolean }): string {
  // passwordless (issue 13): a passkey alone, offered where some `passkey` rule admits this network
  const pk = o.passkey ? html`<p class="note" id="passwordless">Or, without a password:</p>
${passkeyButton({ csrf: o.csrf, mode: 'passwordless', label: 'Sign in with a passkey', then: o.rd ?? '' })}` : raw('');
  return page(
    'Sign in',
    html`<h1>Sign in</h1>${error(o.error)}
<form method="post" action="/.portcullis/login">
${hidden('csrf', o.csrf)}${hidden('rd', o.rd)}
<label for="username">Username</label>
<input type="text" id="username" name="username" autocomplete="username" autocapitalize="none" spellcheck="false" required value="${o.username ?? ''}" autofocus>
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>${pk}`,
  );
}

/**
 * The second factor: the authenticator's code (digits: a numeric keypad on phones), and, apart,
 * a recovery code (letters and digits: a normal keyboard). Patterns are compiled by browsers with
 * the `v` flag, where a `-` in a class must be escaped.
 */
export function mfaPage(o: { csrf: string; error?: string | null; recovery?: boolean; passkey?: boolean }): string {
  const pk = o.passkey ? html`<p class="note"><a href="/.portcullis/passkey" id="use-passkey">Use a passkey instead</a></p>` : raw('');
  if (o.recovery) {
    return page(
      'Recovery code',
      html`<h1>Use a recovery code</h1>${error(o.error)}
<p class="note">Enter one of the recovery codes you saved when you set up your authenticator. Each works once.</p>
<form method="post" action="/.portcullis/mfa">
${hidden('csrf', o.csrf)}
<label for="code">Recovery code</label>
<input type="text" id="code" name="code" autocomplete="off" autocapitalize="none" spellcheck="false" pattern="[0-9a-zA-Z \\-]{8,24}" required autofocus>
<button type="submit">Verify</button>
</form>
<p class="note"><a href="/.portcullis/mfa" id="use-app">Use the authenticator app instead</a></p>`,
    );
  }
  return page(
    'Verification code',
    html`<h1>Verification code</h1>${error(o.error)}
<p class="note">Enter the code from your authenticator app.</p>
<form method="post" action="/.portcullis/mfa">
${hidden('csrf', o.csrf)}
<label for="code">Code</label>
<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,10}" required autofocus>
<button type="submit">Verify</button>
</form>
<p class="note"><a href="/.portcullis/mfa?recovery=1" id="use-recovery">Lost your device? Use a recovery code</a></p>${pk}`,
  );
}

export function enrolPage(o: { csrf: string; qrDataUrl: string; uri: string; secret: string; issuer: string; error?: string | null; extra?: Raw }): string {
  const grouped = o.secret.replace(/(.{4})/g, '$1 ').trim();
  return page(
    'Set up your authenticator',
    html`<h1>Set up your authenticator</h1>${error(o.error)}
<p class="note">Scan this code with an authenticator app (it will appear as “${o.issuer}”), then enter the code it shows.</p>
<img class="qr" src="${o.qrDataUrl}" width="200" height="200" alt="QR code for your authenticator app">
<p class="note">Cannot scan? Enter this key by hand: <span class="secret" id="secret">${grouped}</span></p>
<p class="note">Or open this link on the device: <a href="${o.uri}" id="otpauth-uri"><code>${o.uri}</code></a></p>
<form method="post" action="/.portcullis/enrol">
${hidden('csrf', o.csrf)}
<label for="code">Code from the app</label>
<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9 ]{6,10}" required>
<button type="submit">Confirm</button>
</form>${o.extra ?? raw('')}`,
  );
}

export function recoveryCodesPage(o: { codes: string[]; next: string; issuer?: string; user?: string }): string {
  const text = `Recovery codes${o.issuer ? ` for ${o.issuer}` : ''}${o.user ? ` (${o.user})` : ''}\nEach code works once.\n\n${o.codes.join('\n')}\n`;
  const href = `data:text/plain;charset=utf-8,${encodeURIComponent(text)}`;
  return page(
    'Recovery codes',
    html`<h1>Save your recovery codes</h1>
<p>Each code works once, if you lose your authenticator. They are shown only now: download them, print them or keep them in a password manager.</p>
<ul class="codes" id="recovery-codes">${o.codes.map((c) => html`<li>${c}</li>`)}</ul>
<p><a href="${href}" download="recovery-codes.txt" id="download">Download as a text file</a></p>
<p><a href="${o.next}" id="continue">Continue</a></p>`,
  );
}

/** The signed-in user's page. */
export function accountPage(o: {
  csrf: string;
  user: string;
  name?: string | null;
  email?: string | null;
  groups: readonly string[];
  totp: { enrolledAt: string; source: string } | null;
  recoveryLeft: number;
  canEnrol: boolean;
  message?: string | null;
  /** null: passkeys are not configured (no `webauthn:`). */
  passkeys?: ReadonlyArray<{ name: string; created: string; lastUsed: string | null }> | null;
  /** Whether this session could register a passkey from here (after proving its factors). */
  passkeyAdd?: boolean;
}): string {
  const totp = o.totp
    ? html`<p id="totp-state">Authenticator app: set up on ${o.totp.enrolledAt}${o.totp.source === 'provisioned' ? ' (by an administrator)' : ''}. Recovery codes left: <span id="recovery-left">${String(o.recoveryLeft)}</span>.</p>`
    : html`<p id="totp-state">Authenticator app: not set up.</p>`;
  const enrol = o.canEnrol
    ? html`<p><a href="/.portcullis/enrol" id="enrol-link">${o.totp ? 'Replace or remove your authenticator' : 'Set up an authenticator app'}</a></p>`
    : html`<p class="note" id="enrol-elsewhere">Authenticators can be set up or changed only from your organisation's network.</p>`;
  return page(
    'Your account',
    html`<h1>Your account</h1>${o.message ? html`<p class="note" role="status">${o.message}</p>` : raw('')}
<p>Signed in as <strong id="account-user">${o.user}</strong>${o.name ? html` (${o.name})` : raw('')}${o.email ? html`, ${o.email}` : raw('')}.</p>
${o.groups.length ? html`<p class="note">Groups: ${o.groups.join(', ')}</p>` : raw('')}
<h2>Second factor</h2>
${totp}
${enrol}
${o.passkeys ? html`<h2>Passkeys</h2>${o.passkeys.length ? html`<ul id="passkey-list">${o.passkeys.map((k) => html`<li>${k.name} <span class="note">(added ${k.created}, ${k.lastUsed ? `last used ${k.lastUsed}` : 'never used'})</span></li>`)}</ul>` : html`<p id="passkey-list">No passkeys.</p>`}
${o.passkeyAdd ? html`<p><a href="/.portcullis/passkey?manage=1" id="passkeys-link">${o.passkeys.length ? 'Add, rename or remove passkeys' : 'Add a passkey'}</a></p>` : html`<p class="note" id="passkeys-elsewhere">A first passkey can be added only from your organisation's network.</p>`}` : raw('')}
<h2>Password</h2>
<p><a href="/.portcullis/password" id="password-link">Change your password</a></p>
<h2>Sessions</h2>
<form method="post" action="/.portcullis/logout">${hidden('csrf', o.csrf)}<input type="hidden" name="everywhere" value="1"><button type="submit" id="logout-everywhere">Sign out everywhere</button></form>
<form method="post" action="/.portcullis/logout">${hidden('csrf', o.csrf)}<button type="submit" id="logout">Sign out</button></form>`,
  );
}

/** Re-enter the password before changing one's own authenticator. */
export function reauthPage(o: { csrf: string; error?: string | null; hasTotp: boolean }): string {
  return passwordAgainPage({
    ...o,
    title: 'Confirm your password',
    heading: o.hasTotp ? 'Change your authenticator' : 'Set up an authenticator',
    withCode: 'Enter your password and a code from your current authenticator (or a recovery code) to continue.',
    action: '/.portcullis/enrol',
  });
}

/** Right after a password sign-in from an enrolment network (`totp.enrol.prompt`). */
export function enrolOfferPage(o: { next: string }): string {
  return page(
    'Protect your account',
    html`<h1>Protect your account</h1>
<p>Set up an authenticator app now, and you can sign in from outside the office too.</p>
<p><a href="/.portcullis/enrol" id="enrol-now">Set up now</a></p>
<p class="note"><a href="${o.next}" id="enrol-skip">Not now</a></p>`,
  );
}

/** The remove form shown beside the QR code when replacing an existing authenticator. */
export function removeTotpForm(o: { csrf: string }): Raw {
  return html`<form method="post" action="/.portcullis/enrol">${hidden('csrf', o.csrf)}<input type="hidden" name="action" value="remove"><button type="submit" id="remove-totp">Remove my authenticator</button></form>`;
}

/** A refused form (CSRF): what happened and what to do. */
export function formExpiredPage(o: { loginUrl: string }): string {
  return page(
    'Form expired',
    html`<h1>This form has expired</h1>
<p>The page was open too long, was opened in another window, or came from another site. Nothing was changed.</p>
<p><a href="${o.loginUrl}" id="back-to-login">Go back to the sign-in page</a> and try again.</p>`,
  );
}

export function passwordPage(o: { csrf: string; error?: string | null; required: boolean; done?: boolean; next?: string }): string {
  if (o.done) {
    return page('Password changed', html`<h1>Password changed</h1><p>Your password has been changed.</p><p><a href="${o.next ?? '/'}">Continue</a></p>`);
  }
  return page(
    'Change password',
    html`<h1>Change your password</h1>${error(o.error)}
${o.required ? html`<p class="note">Your password does not meet the password guidance. Choose a new one to continue.</p>` : raw('')}
<p class="note">Use a long passphrase: several unrelated words are strong and easy to remember. Common or breached passwords are refused.</p>
<form method="post" action="/.portcullis/password">
${hidden('csrf', o.csrf)}
<label for="current">Current password</label>
<input type="password" id="current" name="current" autocomplete="current-password" required>
<label for="new">New password</label>
<input type="password" id="new" name="new" autocomplete="new-password" required minlength="8">
<label for="confirm">New password again</label>
<input type="password" id="confirm" name="confirm" autocomplete="new-password" required minlength="8">
<button type="submit">Change password</button>
</form>`,
  );
}

export function signedOutPage(o: { loginUrl: string }): string {
  return page('Signed out', html`<h1>Signed out</h1><p>You have been signed out.</p><p><a href="${o.loginUrl}">Sign in again</a></p>`);
}

export function logoutForm(o: { csrf: string }): Raw {
  return html`<form method="post" action="/.portcullis/logout">${hidden('csrf', o.csrf)}<button type="submit">Sign out</button></form>`;
}

export function messagePage(title: string, text: string): string {
  return page(title, html`<h1>${title}</h1><p>${text}</p>`);
}

// ---- passkeys (issue 13) ----

/**
 * The passkey button and its status line, with the portal's one script. `mode`: `authenticate`
 * (sign in, step up, or confirm before managing keys) or `register` (with a name field).
 */
export function passkeyButton(o: { csrf: string; mode: 'authenticate' | 'register' | 'passwordless'; label: string; then?: string }): Raw {
  const name =
    o.mode === 'register'
      ? html`<label for="pk-name">Name for this passkey</label>
<input type="text" id="pk-name" name="pk-name" maxlength="64" placeholder="e.g. Laptop, YubiKey" autocomplete="off">`
      : raw('');
  return html`${name}<button type="button" id="pk" data-mode="${o.mode}" data-csrf="${o.csrf}" data-then="${o.then ?? ''}">${o.label}</button>
<p class="error" id="pk-status" role="alert" aria-live="polite"></p>
<script>${raw(PASSKEY_SCRIPT)}</script>`;
}

/** Sign in (or step up) with a passkey. */
export function passkeySignInPage(o: { csrf: string; stepUp: boolean; hasTotp: boolean; error?: string | null }): string {
  return page(
    'Use your passkey',
    html`<h1>Use your passkey</h1>${error(o.error)}
<p class="note">${o.stepUp ? 'This page needs your passkey or security key.' : 'Confirm it is you with your passkey or security key.'}</p>
${passkeyButton({ csrf: o.csrf, mode: 'authenticate', label: 'Use passkey' })}
${o.hasTotp && !o.stepUp ? html`<p class="note"><a href="/.portcullis/mfa?code=1" id="use-code">Use a code from your authenticator app instead</a></p>` : raw('')}`,
  );
}

/** A `passkey` rule met by a user with no passkey yet. */
export function passkeyMissingPage(o: { canRegister: boolean }): string {
  return page(
    'Passkey required',
    html`<h1>Passkey required</h1>
<p>This page can be opened only after signing in with a passkey or security key, and your account has none yet.</p>
${o.canRegister ? html`<p><a href="/.portcullis/passkey?manage=1" id="register-link">Register a passkey now</a></p>` : html`<p class="note" id="register-elsewhere">A first passkey can be registered only from your organisation's network, or after confirming an existing second factor.</p>`}`,
  );
}

/** Before managing passkeys: the password again (and a code, when the user has an authenticator app). */
export function passkeyReauthPage(o: { csrf: string; hasTotp: boolean; error?: string | null }): string {
  return passwordAgainPage({
    ...o,
    title: 'Confirm it is you',
    heading: 'Manage passkeys',
    withCode: 'Enter your password and a code from your authenticator app (or a recovery code) to continue.',
    action: '/.portcullis/passkey',
  });
}

/** The password again, and a code when the user has an authenticator app, posted as `action=reauth`. */
function passwordAgainPage(o: { csrf: string; hasTotp: boolean; error?: string | null; title: string; heading: string; withCode: string; action: string }): string {
  return page(
    o.title,
    html`<h1>${o.heading}</h1>${error(o.error)}
<p class="note">${o.hasTotp ? o.withCode : 'Enter your password to continue.'}</p>
<form method="post" action="${o.action}">
${hidden('csrf', o.csrf)}<input type="hidden" name="action" value="reauth">
<label for="password">Password</label>
<input type="password" id="password" name="password" autocomplete="current-password" required autofocus>
${o.hasTotp ? html`<label for="code">Code</label>
<input type="text" id="code" name="code" autocomplete="one-time-code" autocapitalize="none" spellcheck="false" pattern="[0-9a-zA-Z \\-]{6,24}" required>` : raw('')}
<button type="submit">Continue</button>
</form>`,
  );
}

/** Before managing passkeys, for a user whose only factor is a passkey: that passkey. */
export function passkeyConfirmPage(o: { csrf: string; then?: 'manage' | 'enrol' }): string {
  const then = o.then ?? 'manage';
  return page(
    'Confirm it is you',
    html`<h1>${then === 'enrol' ? 'Add an authenticator app' : 'Manage passkeys'}</h1>
<p class="note">Confirm with one of your current passkeys to continue.</p>
${passkeyButton({ csrf: o.csrf, mode: 'authenticate', label: 'Use passkey', then })}`,
  );
}

/** The user's passkeys: register another, rename, remove. */
export function passkeyManagePage(o: {
  csrf: string;
  keys: ReadonlyArray<{ id: string; name: string; created: string; lastUsed: string | null }>;
  canAdd: boolean;
  message?: string | null;
  error?: string | null;
  next: string;
}): string {
  const list = o.keys.length
    ? html`<ul id="passkeys">${o.keys.map(
        (k) => html`<li data-id="${k.id}"><strong>${k.name}</strong> <span class="note">added ${k.created}, ${k.lastUsed ? `last used ${k.lastUsed}` : 'never used'}</span>
<form method="post" action="/.portcullis/passkey">${hidden('csrf', o.csrf)}<input type="hidden" name="action" value="rename">${hidden('id', k.id)}<label for="n-${k.id}">New name</label><input type="text" id="n-${k.id}" name="name" maxlength="64" required><button type="submit">Rename</button></form>
<form method="post" action="/.portcullis/passkey">${hidden('csrf', o.csrf)}<input type="hidden" name="action" value="remove">${hidden('id', k.id)}<button type="submit" class="remove-passkey">Remove</button></form></li>`,
      )}</ul>`
    : html`<p id="passkeys-none">No passkeys yet.</p>`;
  return page(
    'Passkeys',
    html`<h1>Passkeys</h1>${o.message ? html`<p class="note" role="status">${o.message}</p>` : raw('')}${error(o.error)}
${list}
${o.canAdd ? html`<h2>Add a passkey</h2><p class="note">Use this device's passkey (fingerprint, face, PIN) or a security key.</p>${passkeyButton({ csrf: o.csrf, mode: 'register', label: 'Add passkey' })}` : html`<p class="note" id="passkeys-full">You have the most passkeys allowed; remove one to add another.</p>`}
<p><a href="${o.next}" id="passkeys-done">Done</a></p>`,
  );
}

/** Beside the QR code: a passkey or security key as the second factor instead. */
export function passkeyInsteadLink(): Raw {
  return html`<p class="note"><a href="/.portcullis/passkey?manage=1" id="passkey-instead">Use a passkey or security key instead</a></p>`;
}
