/**
 * The portal and authz routes through `buildApp(rt).inject()`, as fastify's own suite tests
 * itself: no sockets, a ManualClock, memory stores, and a client address chosen per request.
 * `InjectClient` keeps cookies like a browser and speaks the portal's forms.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { FastifyInstance } from 'fastify';
import { ManualClock, cryptoRandom } from '../../src/clock.js';
import { loadConfigText } from '../../src/config/index.js';
import { createRuntime, type RuntimeImpl } from '../../src/bootstrap.js';
import { silentLogger } from '../../src/audit/logger.js';
import { TEST_PARAMS } from '../../src/auth/password.js';
import { createMemoryStores } from '../../src/store/memory.js';
import { FileStateStore } from '../../src/store/file-state.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { buildApp } from '../../src/http/app.js';
import type { Stores } from '../../src/store/ports.js';
import { tmpDir, type TmpDir } from './tmp.js';
import { usersYaml, type TestUser } from './gateway.js';
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
  const dir = await tmpDir('pc-portal');
  const usersFile = join(dir.dir, 'users.yaml');
  await writeFile(usersFile, await usersYaml(opts.users), { mode: 0o600 });
  const file = join(dir.dir, 'portcullis.yaml');
  const text = [
    'listen: "127.0.0.1:0"',
    `admin: { listen: "127.0.0.1:0", token_file: ${JSON.stringify(join(dir.dir, 'data', 'admin.token'))} }`,
    `data_dir: ${JSON.stringify(join(dir.dir, 'data'))}`,
    `users_file: ${JSON.stringify(usersFile)}`,
    'audit: { file: null }',
    config,
  ].join('\n');
  await writeFile(file, text);
  const loaded = loadConfigText(text, file);
  if (!loaded.ok) throw new Error(JSON.stringify(loaded.issues));
  const clock = new ManualClock();
  const state = await FileStateStore.open(join(dir.dir, 'data'));
  const mem = createMemoryStores({ clock, state });
  const stores = opts.wrapStores ? opts.wrapStores(mem) : mem;
  const rt = await createRuntime(loaded.config, { clock, random: cryptoRandom, logger: silentLogger(), argon2: TEST_PARAMS, stores });
  const events: AuditEvent[] = [];
  rt.audit.on((e) => events.push(e));
  const app = await buildApp(rt);
  return {
    rt,
    app,
    clock,
    dir,
    usersFile,
    events,
    client: (host, ip) => new InjectClient(app, host, ip),
    async close() {
      await app.close();
      await rt.audit.close();
      await rt.stores.close();
      await dir.cleanup();
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
