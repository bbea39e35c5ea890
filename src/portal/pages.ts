import { html, page, raw, type Raw } from './html.js';

const hidden = (name: string, value: string | null | undefined): Raw =>
  value ? html`<input type="hidden" name="${name}" value="${value}">` : raw('');

const error = (msg: string | null | undefined): Raw => (msg ? html`<p class="error" role="alert">${msg}</p>` : raw(''));

export function loginPage(o: { csrf: string; rd: string | null; error?: string | null; username?: string }): string {
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
</form>`,
  );
}

export function mfaPage(o: { csrf: string; error?: string | null }): string {
  return page(
    'Verification code',
    html`<h1>Verification code</h1>${error(o.error)}
<p class="note">Enter the code from your authenticator app, or one of your recovery codes.</p>
<form method="post" action="/.portcullis/mfa">
${hidden('csrf', o.csrf)}
<label for="code">Code</label>
<input type="text" id="code" name="code" inputmode="numeric" autocomplete="one-time-code" pattern="[0-9a-zA-Z -]{6,16}" required autofocus>
<button type="submit">Verify</button>
</form>`,
  );
}

export function enrolPage(o: { csrf: string; qrDataUrl: string; uri: string; secret: string; issuer: string; error?: string | null }): string {
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
</form>`,
  );
}

export function recoveryCodesPage(o: { codes: string[]; next: string }): string {
  return page(
    'Recovery codes',
    html`<h1>Save your recovery codes</h1>
<p>Each code works once, if you lose your authenticator. They are shown only now: print them or keep them in a password manager.</p>
<ul class="codes" id="recovery-codes">${o.codes.map((c) => html`<li>${c}</li>`)}</ul>
<p><a href="${o.next}" id="continue">Continue</a></p>`,
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
