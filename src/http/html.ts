/**
 * Server-rendered pages: no front-end framework, a strict CSP; no script but the passkey pages'
 * one hashed script (passkey-script.ts). Every dynamic
 * value goes through `esc`.
 */
export function esc(s: string): string {
  return s.replace(/[&<>"'`=]/g, (c) => `&#${c.charCodeAt(0)};`);
}

/** Tagged template that escapes interpolations unless they are `raw()` values. */
export class Raw {
  constructor(readonly html: string) {}
}
export const raw = (s: string): Raw => new Raw(s);
export function html(strings: TemplateStringsArray, ...values: unknown[]): Raw {
  let out = strings[0]!;
  for (let i = 0; i < values.length; i++) {
    const v = values[i];
    if (v instanceof Raw) out += v.html;
    else if (Array.isArray(v)) out += v.map((x) => (x instanceof Raw ? x.html : esc(String(x)))).join('');
    else if (v !== null && v !== undefined && v !== false) out += esc(String(v));
    out += strings[i + 1]!;
  }
  return new Raw(out);
}

/** Strict policy: styles only from this page's own stylesheet (a hash), images inline (QR code). */
export const STYLE = `
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;background:#f4f5f7;color:#1d2330;margin:0}
main{max-width:26rem;margin:8vh auto;background:#fff;border-radius:8px;padding:2rem;box-shadow:0 1px 4px rgba(0,0,0,.12)}
h1{font-size:1.35rem;margin:0 0 1rem}
h2{font-size:1.05rem;margin:1.4rem 0 .4rem}
label{display:block;font-weight:600;margin:.9rem 0 .3rem}
input[type=text],input[type=password]{width:100%;box-sizing:border-box;padding:.6rem;font-size:1rem;border:1px solid #9aa3b2;border-radius:4px}
input:focus{outline:3px solid #7aa7ff;outline-offset:1px}
button{margin-top:1.2rem;padding:.6rem 1.2rem;font-size:1rem;border:0;border-radius:4px;background:#2456d3;color:#fff;cursor:pointer}
.error{background:#fdecea;color:#8a1c12;padding:.6rem .8rem;border-radius:4px}
.note{color:#4a5365;font-size:.92rem}
code,.secret{font-family:ui-monospace,Menlo,Consolas,monospace;word-break:break-all}
ul.codes{columns:2;font-family:ui-monospace,Menlo,Consolas,monospace}
img.qr{display:block;margin:1rem auto;image-rendering:pixelated}
footer{margin-top:1.5rem;font-size:.8rem;color:#6b7385}
`;

import { createHash } from 'node:crypto';
import { PASSKEY_SCRIPT_HASH } from './passkey-script.js';
const STYLE_HASH = createHash('sha256').update(STYLE).digest('base64');

export const CSP = [
  "default-src 'none'",
  `style-src 'sha256-${STYLE_HASH}'`,
  "img-src data:",
  "form-action 'self'",
  "frame-ancestors 'none'",
  "base-uri 'none'",
].join('; ');

/**
 * What a page running the passkey script (src/http/passkey-script.ts) adds to its CSP: that one
 * script by its hash, and fetches to this origin only. Every other page stays script-free.
 */
export function withPasskeyScript(csp: string): string {
  return `${csp}; script-src 'sha256-${PASSKEY_SCRIPT_HASH}'; connect-src 'self'`;
}

/** Security headers for every portal page. */
export const PAGE_HEADERS: Record<string, string> = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': CSP,
  'x-frame-options': 'DENY',
  'x-content-type-options': 'nosniff',
  // Not `no-referrer`: under it browsers send `Origin: null` with the portal's own form posts,
  // which the CSRF check (rightly) refuses. `same-origin` keeps the Origin of same-origin posts
  // and still sends no Referer (which may carry `rd`) to any other site.
  'referrer-policy': 'same-origin',
  'cache-control': 'no-store',
  'cross-origin-opener-policy': 'same-origin',
};

export function page(title: string, body: Raw): string {
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<meta name="robots" content="noindex"><title>${esc(title)}</title><style>${STYLE}</style></head>
<body><main>${body.html}<footer>Protected by portcullis</footer></main></body></html>`;
}

const ERROR_TEXT: Record<number, { title: string; text: string }> = {
  400: { title: 'Bad request', text: 'The request could not be understood.' },
  401: { title: 'Sign-in required', text: 'You need to sign in to reach this application.' },
  403: { title: 'Access denied', text: 'You are not allowed to reach this application.' },
  404: { title: 'Not found', text: 'There is nothing here.' },
  405: { title: 'Method not allowed', text: 'This request method is not allowed.' },
  421: { title: 'Unknown site', text: 'No application is served under this name.' },
  429: { title: 'Too many attempts', text: 'Too many attempts. Wait a while, then try again.' },
  502: { title: 'Application unreachable', text: 'The application is not reachable right now. Try again in a moment.' },
  503: { title: 'Temporarily unavailable', text: 'The service is busy or temporarily unavailable. Try again shortly.' },
  504: { title: 'Application timed out', text: 'The application did not answer in time. Try again in a moment.' },
};

export function errorPage(status: number, message?: string): string {
  const t = ERROR_TEXT[status] ?? { title: 'Error', text: 'Something went wrong.' };
  return page(t.title, html`<h1>${t.title}</h1><p>${message ?? t.text}</p>`);
}
