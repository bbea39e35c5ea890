/**
 * Start a real gateway (config file, users file, data dir in a temp folder) on 127.0.0.1:0 for
 * end-to-end tests. Cheap argon2, no file watching unless asked, a silent logger.
 */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { request } from 'undici';
import { Gateway, type GatewayOptions } from '../../src/main.js';
import { PasswordHasher, TEST_PARAMS } from '../../src/auth/password.js';
import { silentLogger } from '../../src/audit/logger.js';
import { tmpDir, type TmpDir } from './tmp.js';

export interface TestUser {
  name: string;
  password: string;
  groups?: string[];
  email?: string;
  disabled?: boolean;
}

export async function usersYaml(users: TestUser[]): Promise<string> {
  const h = new PasswordHasher(TEST_PARAMS);
  let out = 'users:\n';
  for (const u of users) {
    out += `  ${u.name}:\n    password: ${JSON.stringify(await h.hash(u.password))}\n`;
    if (u.email) out += `    email: ${u.email}\n`;
    out += `    groups: [${(u.groups ?? []).join(', ')}]\n`;
    if (u.disabled) out += `    disabled: true\n`;
  }
  return out;
}

export interface TestGateway {
  gw: Gateway;
  dir: TmpDir;
  configFile: string;
  usersFile: string;
  port: number;
  /** `http://127.0.0.1:PORT` */
  url: string;
  close(): Promise<void>;
}

/**
 * `config` is YAML without `users_file`, `data_dir`, `audit` and `admin` (they are added, pointing
 * into the temp dir); `listen` defaults to 127.0.0.1:0.
 */
export async function startTestGateway(
  config: string,
  opts: { users?: TestUser[]; watch?: boolean } & Partial<GatewayOptions> = {},
): Promise<TestGateway> {
  const dir = await tmpDir('pc-gw');
  const usersFile = join(dir.dir, 'users.yaml');
  const configFile = join(dir.dir, 'portcullis.yaml');
  await writeFile(usersFile, await usersYaml(opts.users ?? [{ name: 'alice', password: 'correct horse battery staple', groups: ['staff'] }]), { mode: 0o600 });
  const full = [
    /^\s*listen:/m.test(config) ? '' : 'listen: "127.0.0.1:0"',
    `users_file: ${JSON.stringify(usersFile)}`,
    `data_dir: ${JSON.stringify(join(dir.dir, 'data'))}`,
    `audit: { file: ${JSON.stringify(join(dir.dir, 'data', 'audit.jsonl'))} }`,
    /^\s*admin:/m.test(config) ? '' : `admin: { listen: "127.0.0.1:0", token_file: ${JSON.stringify(join(dir.dir, 'data', 'admin.token'))} }`,
    config,
  ].join('\n');
  await writeFile(configFile, full);
  const gw = await Gateway.start({
    configFile,
    port: 0,
    host: '127.0.0.1',
    logger: silentLogger(),
    argon2: TEST_PARAMS,
    watch: opts.watch ?? false,
    announce: () => undefined,
    ...opts,
  });
  return {
    gw,
    dir,
    configFile,
    usersFile,
    port: gw.port,
    url: `http://127.0.0.1:${gw.port}`,
    async close() {
      await gw.close();
      await dir.cleanup();
    },
  };
}

/** A plain GET/any request over a fresh connection; never follows redirects. */
export async function call(
  url: string,
  opts: { method?: string; headers?: Record<string, string>; body?: string } = {},
): Promise<{ status: number; headers: Record<string, string | string[] | undefined>; text: string }> {
  const r = await request(url, {
    method: (opts.method ?? 'GET') as 'GET',
    headers: opts.headers ?? {},
    ...(opts.body !== undefined ? { body: opts.body } : {}),
  });
  return { status: r.statusCode, headers: r.headers, text: await r.body.text() };
}
