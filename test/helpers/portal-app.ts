/**
 * The portal and authz routes through `buildApp(rt).inject()`, as fastify's own suite tests
 * itself: no sockets, a ManualClock, memory stores, and a client address chosen per request.
 * `InjectClient` keeps cookies like a browser and speaks the portal's forms.
 */
import type { FastifyInstance } from 'fastify';
import type { AuditEvent } from '../../src/audit/events.js';
import { buildApp } from '../../src/http/app.js';
import type { ManualClock } from '../../src/clock.js';
import type { RuntimeImpl } from '../../src/bootstrap.js';
import type { TmpDir } from './tmp.js';
import type { TestUser } from './gateway.js';
import { startCoreRuntime } from './core-runtime.js';
import type { Stores } from '../../src/store/ports.js';
import { formBody, hiddenField } from './portal.js';

export interface PortalApp {
  rt: RuntimeImpl;
  app: FastifyInstance;
  clock: ManualClock;
  dir: TmpDir;
  usersFile: string;
  events: AuditEvent[];
  client(host: string, ip: string): InjectClient;
  close(): Promise<void>;
}

/**
 * `config`: YAML without users_file, data_dir, audit and admin. `wrapStores` may replace store
 * operations (to simulate an outage).
 */
export async function startPortalApp(config: string, opts: { users: TestUser[]; wrapStores?: (s: Stores) => Stores }): Promise<PortalApp> {
  const core = await startCoreRuntime(config, { ...opts, tmpPrefix: 'pc-portal' });
  const app = await buildApp(core.rt);
  return {
    rt: core.rt,
    app,
    clock: core.clock,
    dir: core.dir,
    usersFile: core.usersFile,
    events: core.events,
    client: (host, ip) => new InjectClient(app, host, ip),
    async close() {
      await app.close();
      await core.close();
    },
  };
}

export interface InjectResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
  location: string | undefined;
}

/** A browser at one address: a cookie jar, the portal's forms and their CSRF tokens. */
export class InjectClient {
  readonly jar = new Map<string, string>();

  constructor(
    readonly app: FastifyInstance,
    readonly host: string,
    public ip: string,
    readonly extraHeaders: Record<string, string> = {},
  ) {}

  async request(method: 'GET' | 'POST', url: string, o: { form?: Record<string, string>; headers?: Record<string, string> } = {}): Promise<InjectResponse> {
    const headers: Record<string, string> = { host: this.host, ...this.extraHeaders, ...(o.headers ?? {}) };
    const cookie = [...this.jar].map(([k, v]) => `${k}=${v}`).join('; ');
    if (cookie) headers['cookie'] = cookie;
    if (o.form) headers['content-type'] = 'application/x-www-form-urlencoded';
    const r = await this.app.inject({ method, url, headers, remoteAddress: this.ip, ...(o.form ? { payload: formBody(o.form) } : {}) });
    const set = r.headers['set-cookie'];
    for (const line of set === undefined ? [] : Array.isArray(set) ? set : [set]) {
      const [pair = '', ...attrs] = line.split(';');
      const eq = pair.indexOf('=');
      const name = pair.slice(0, eq).trim();
      const value = pair.slice(eq + 1).trim();
      const gone = value === '' || attrs.some((a) => /^\s*max-age=0\s*$/i.test(a)) || attrs.some((a) => /^\s*expires=thu, 01 jan 1970/i.test(a));
      if (gone) this.jar.delete(name);
      else this.jar.set(name, value);
    }
    const location = r.headers.location;
    return { status: r.statusCode, headers: r.headers as InjectResponse['headers'], body: r.body, location: typeof location === 'string' ? location : undefined };
  }

  get(url: string, headers?: Record<string, string>): Promise<InjectResponse> {
    return this.request('GET', url, { headers: headers ?? {} });
  }

  post(url: string, form: Record<string, string>, headers?: Record<string, string>): Promise<InjectResponse> {
    return this.request('POST', url, { form, headers: headers ?? {} });
  }

  /** GET the login form, POST it with its CSRF token; the POST's response (or the GET's if refused). */
  async login(username: string, password: string, rd?: string): Promise<InjectResponse> {
    const page = await this.get(`/.portcullis/login${rd === undefined ? '' : `?rd=${encodeURIComponent(rd)}`}`);
    if (page.status !== 200) return page;
    const csrf = hiddenField(page.body, 'csrf')!;
    const fields: Record<string, string> = { csrf, username, password };
    const rdField = hiddenField(page.body, 'rd');
    if (rdField !== null) fields['rd'] = rdField;
    return this.post('/.portcullis/login', fields);
  }

  /** GET a step page and POST `fields` with its CSRF token; the GET's response if it has no form. */
  async submit(path: string, fields: Record<string, string>): Promise<InjectResponse> {
    const page = await this.get(path);
    const csrf = hiddenField(page.body, 'csrf');
    if (!csrf) return page;
    return this.post(path, { csrf, ...fields });
  }

  cookie(name: string): string | undefined {
    return this.jar.get(name);
  }
}
