/**
 * A minimal browser for the sign-in portal over real sockets: it sends exactly the bytes a form
 * post or a navigation would (through `rawHttp`, so from a chosen loopback source address), keeps
 * a cookie jar, and reads hidden fields out of the server-rendered pages. No redirect following:
 * tests look at every status and Location themselves.
 *
 *   const c = new PortalClient(gw.port, 'mail.test', { localAddress: '127.0.0.1' });
 *   const r = await c.login('alice', 'pw', '/inbox');     // GET the form, POST it
 *   assert.equal(r.status, 303);
 */
import { rawHttp, type RawResponse } from './raw-http.js';

export interface PortalResponse extends RawResponse {
  /** Every Set-Cookie line, in order (rawHttp's header map keeps only the last). */
  setCookies: string[];
}

export interface PortalClientOptions {
  /** Source address of every connection (127.0.0.x picks the client's network). */
  localAddress?: string;
  /** Header lines added to every request (e.g. `X-Forwarded-For: ...` through a trusted proxy). */
  headers?: string[];
}

/** Every `Set-Cookie` header line of a raw response head. */
export function setCookieLines(head: string): string[] {
  return head
    .split('\r\n')
    .slice(1)
    .filter((l) => /^set-cookie:/i.test(l))
    .map((l) => l.slice(l.indexOf(':') + 1).trim());
}

/** `name`, `value` and the attributes (lower-case names) of one Set-Cookie line. */
export function parseSetCookie(line: string): { name: string; value: string; attrs: Map<string, string> } {
  const [pair, ...rest] = line.split(';');
  const eq = pair!.indexOf('=');
  const attrs = new Map<string, string>();
  for (const a of rest) {
    const i = a.indexOf('=');
    attrs.set((i < 0 ? a : a.slice(0, i)).trim().toLowerCase(), i < 0 ? '' : a.slice(i + 1).trim());
  }
  return { name: pair!.slice(0, eq).trim(), value: pair!.slice(eq + 1).trim(), attrs };
}

/** Undo the page escaper's numeric character references (`&#61;` -> `=`) and the named basics. */
export function decodeEntities(s: string): string {
  return s
    .replace(/&#(\d+);/g, (_m, n: string) => String.fromCharCode(Number(n)))
    .replace(/&quot;/g, '"')
    .replace(/&lt;/g, '<')
    .replace(/&gt;/g, '>')
    .replace(/&amp;/g, '&');
}

/** The value of `<input type="hidden" name="NAME" value="...">` in a page, or null. */
export function hiddenField(body: string, name: string): string | null {
  const m = new RegExp(`<input type="hidden" name="${name}" value="([^"]*)">`).exec(body);
  return m ? decodeEntities(m[1]!) : null;
}

/** `application/x-www-form-urlencoded` text for a form. */
export function formBody(fields: Record<string, string>): string {
  return new URLSearchParams(fields).toString();
}

export class PortalClient {
  /** Cookie name to value, as a browser would send them back. */
  readonly jar = new Map<string, string>();

  constructor(
    readonly port: number,
    readonly host: string,
    readonly opts: PortalClientOptions = {},
  ) {}

  /** One request; cookies from the jar are sent (unless `cookies: false`) and Set-Cookie is applied. */
  async request(
    method: string,
    target: string,
    o: { body?: string; contentType?: string; headers?: string[]; cookies?: boolean; cookieHeader?: string } = {},
  ): Promise<PortalResponse> {
    const lines = [`${method} ${target} HTTP/1.1`, `Host: ${this.host}`, 'Connection: close', ...(this.opts.headers ?? []), ...(o.headers ?? [])];
    const cookie = o.cookieHeader ?? (o.cookies === false ? '' : [...this.jar].map(([k, v]) => `${k}=${v}`).join('; '));
    if (cookie) lines.push(`Cookie: ${cookie}`);
    if (o.body !== undefined) {
      lines.push(`Content-Type: ${o.contentType ?? 'application/x-www-form-urlencoded'}`, `Content-Length: ${Buffer.byteLength(o.body)}`);
    }
    const raw = `${lines.join('\r\n')}\r\n\r\n${o.body ?? ''}`;
    const r = await rawHttp(this.port, raw, this.opts.localAddress ? { localAddress: this.opts.localAddress } : {});
    const setCookies = setCookieLines(r.head);
    for (const line of setCookies) {
      const c = parseSetCookie(line);
      const expires = c.attrs.get('expires');
      const gone = c.attrs.get('max-age') === '0' || (expires !== undefined && Date.parse(expires) <= Date.now()) || c.value === '';
      if (gone) this.jar.delete(c.name);
      else this.jar.set(c.name, c.value);
    }
    return { ...r, setCookies };
  }

  get(target: string, o: { headers?: string[]; cookies?: boolean } = {}): Promise<PortalResponse> {
    return this.request('GET', target, o);
  }

  /** A browser navigation (Accept: text/html), which the gateway answers with redirects to sign in. */
  navigate(target: string, o: { headers?: string[] } = {}): Promise<PortalResponse> {
    return this.request('GET', target, { headers: ['Accept: text/html,application/xhtml+xml', ...(o.headers ?? [])] });
  }

  post(target: string, fields: Record<string, string>, o: { headers?: string[]; cookies?: boolean } = {}): Promise<PortalResponse> {
    return this.request('POST', target, { body: formBody(fields), ...o });
  }

  /** GET the login form (with `rd`), then POST it with its CSRF token. Returns the POST's response. */
  async login(username: string, password: string, rd?: string, o: { headers?: string[] } = {}): Promise<PortalResponse> {
    const page = await this.get(`/.portcullis/login${rd === undefined ? '' : `?rd=${encodeURIComponent(rd)}`}`, o);
    if (page.status !== 200) return page;
    const csrf = hiddenField(page.body, 'csrf');
    if (!csrf) throw new Error(`no CSRF token on the login page:\n${page.body}`);
    const fields: Record<string, string> = { csrf, username, password };
    const rdField = hiddenField(page.body, 'rd');
    if (rdField !== null) fields['rd'] = rdField;
    return this.post('/.portcullis/login', fields, o);
  }

  /** GET a step page (mfa, enrol, password, logout) and POST `fields` with the session's CSRF token. */
  async submit(path: string, fields: Record<string, string>, o: { headers?: string[] } = {}): Promise<PortalResponse> {
    const page = await this.get(path, o);
    const csrf = hiddenField(page.body, 'csrf');
    if (!csrf) throw new Error(`no CSRF token on ${path} (status ${page.status}):\n${page.body}`);
    return this.post(path, { csrf, ...fields }, o);
  }

  /** Sign out through the logout page's form. */
  logout(o: { headers?: string[] } = {}): Promise<PortalResponse> {
    return this.submit('/.portcullis/logout', {}, o);
  }

  cookie(name: string): string | undefined {
    return this.jar.get(name);
  }
}
