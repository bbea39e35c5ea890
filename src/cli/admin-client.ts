/**
 * How CLI commands reach a running gateway: the admin listener and token file named by the config
 * (`admin.listen`, `admin.token_file`), over HTTP with undici. A listener bound to every address
 * (`0.0.0.0`, `::`) is reached on loopback.
 *
 * Failures become `AdminClientError` with a message fit for a terminal: the gateway is not running,
 * the token file is missing or unreadable, the API refused the request (its message), or it
 * answered something that is not the admin API.
 */
import { userInfo } from 'node:os';
import { Agent, request } from 'undici';
import { formatIssues, loadConfigFile } from '../config/index.js';
import { readTokenFile } from '../admin/token.js';
import type { CliIO, ParsedArgs } from './args.js';

export class AdminClientError extends Error {
  override readonly name = 'AdminClientError';
  constructor(
    message: string,
    /** The API's error code, when it answered with one. */
    readonly code: string | null = null,
    readonly status: number | null = null,
  ) {
    super(message);
  }
}

export interface AdminTarget {
  /** `http://127.0.0.1:9090` */
  url: string;
  tokenFile: string;
}

const TIMEOUT_MS = 30_000;
const MAX_RESPONSE = 4 * 1024 * 1024;

/** The admin listener and token file of the gateway configured in `configFile`. */
export async function adminTarget(configFile: string): Promise<AdminTarget> {
  const loaded = await loadConfigFile(configFile);
  if (!loaded.ok) throw new AdminClientError(`the configuration is invalid:\n${formatIssues(loaded.issues)}`);
  const { listen, tokenFile } = loaded.config.admin;
  if (listen.port === 0) {
    throw new AdminClientError(`admin.listen in ${configFile} has port 0 (any free port, chosen at start), so the CLI cannot find the listener; give it a fixed port`);
  }
  let host = listen.host;
  if (host === '0.0.0.0') host = '127.0.0.1';
  else if (host === '::') host = '::1';
  return { url: `http://${host.includes(':') ? `[${host}]` : host}:${listen.port}`, tokenFile };
}

export class AdminClient {
  private readonly dispatcher = new Agent({ connectTimeout: 5_000, headersTimeout: TIMEOUT_MS, bodyTimeout: TIMEOUT_MS, connections: 1 });

  constructor(
    readonly target: AdminTarget,
    private readonly token: string,
  ) {}

  /** Reads the token file named by the config; clear messages when it cannot. */
  static async connect(configFile: string): Promise<AdminClient> {
    const target = await adminTarget(configFile);
    let token: string;
    try {
      token = await readTokenFile(target.tokenFile);
    } catch (e) {
      const code = (e as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        throw new AdminClientError(`no admin token at ${target.tokenFile}: the gateway creates it when it starts; is the gateway running with this config?`);
      }
      if (code === 'EACCES' || code === 'EPERM') {
        throw new AdminClientError(`cannot read the admin token ${target.tokenFile}: run this command as the user the gateway runs as`);
      }
      throw new AdminClientError((e as Error).message);
    }
    return new AdminClient(target, token);
  }

  get<T>(path: string, query: Record<string, string | undefined> = {}): Promise<T> {
    return this.call<T>('GET', path, undefined, query);
  }

  post<T>(path: string, body: unknown = {}): Promise<T> {
    return this.call<T>('POST', path, body);
  }

  delete<T>(path: string, body: unknown): Promise<T> {
    return this.call<T>('DELETE', path, body);
  }

  async close(): Promise<void> {
    await this.dispatcher.close();
  }

  private async call<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body: unknown, query: Record<string, string | undefined> = {}): Promise<T> {
    const u = new URL(path, this.target.url);
    for (const [k, v] of Object.entries(query)) if (v !== undefined) u.searchParams.set(k, v);
    let res: Awaited<ReturnType<typeof request>>;
    try {
      res = await request(u, {
        method,
        dispatcher: this.dispatcher,
        headers: {
          authorization: `Bearer ${this.token}`,
          accept: 'application/json',
          ...(body !== undefined ? { 'content-type': 'application/json' } : {}),
        },
        ...(body !== undefined ? { body: JSON.stringify(body) } : {}),
      });
    } catch (e) {
      throw connectionError(e, this.target.url);
    }
    const text = await readLimited(res.body);
    let json: unknown;
    try {
      json = JSON.parse(text);
    } catch {
      throw new AdminClientError(`${this.target.url} answered ${res.statusCode} with something that is not the portcullis admin API`, null, res.statusCode);
    }
    if (res.statusCode >= 200 && res.statusCode < 300) return json as T;
    const err = (json as { error?: { code?: unknown; message?: unknown } }).error;
    const code = typeof err?.code === 'string' ? err.code : null;
    let message = typeof err?.message === 'string' ? err.message : `the admin API answered ${res.statusCode}`;
    if (code === 'PC_ADMIN_UNAUTHORIZED') message = `the gateway refused the admin token in ${this.target.tokenFile} (${message}); is this the config the running gateway uses?`;
    if (code === 'PC_THROTTLED') {
      const ra = res.headers['retry-after'];
      message = `${message}${typeof ra === 'string' ? ` (retry in ${ra} s)` : ''}`;
    }
    throw new AdminClientError(message, code, res.statusCode);
  }
}

async function readLimited(body: AsyncIterable<Buffer | Uint8Array>): Promise<string> {
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const c of body) {
    n += c.length;
    if (n > MAX_RESPONSE) throw new AdminClientError('the admin API answer is too large');
    chunks.push(Buffer.from(c));
  }
  return Buffer.concat(chunks).toString('utf8');
}

function connectionError(e: unknown, url: string): AdminClientError {
  const err = e as NodeJS.ErrnoException & { cause?: NodeJS.ErrnoException };
  const code = err.code ?? err.cause?.code;
  if (code === 'ECONNREFUSED') return new AdminClientError(`is the gateway running? admin listener at ${url} refused the connection`);
  if (code === 'UND_ERR_CONNECT_TIMEOUT' || code === 'ETIMEDOUT') return new AdminClientError(`is the gateway running? admin listener at ${url} did not answer`);
  if (code === 'UND_ERR_HEADERS_TIMEOUT' || code === 'UND_ERR_BODY_TIMEOUT') return new AdminClientError(`the gateway at ${url} did not answer in time`);
  return new AdminClientError(`cannot reach the admin listener at ${url}: ${err.message}`);
}

/**
 * Run `fn` with a client for the gateway named by `--config`; API and connection errors are
 * printed to stderr and give exit status 1. Usage errors propagate (the dispatcher prints them).
 */
export async function withAdmin(args: ParsedArgs, io: CliIO, command: string, fn: (c: AdminClient) => Promise<number>): Promise<number> {
  let client: AdminClient | null = null;
  try {
    client = await AdminClient.connect(args.config);
    return await fn(client);
  } catch (e) {
    if (e instanceof AdminClientError) {
      io.stderr.write(`portcullis ${command}: ${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    await client?.close();
  }
}

/** Who is acting, for the audit trail (`cli:alice`). */
export function cliActor(env: NodeJS.ProcessEnv): string {
  let name = env.SUDO_USER || env.USER || env.LOGNAME || '';
  if (!name) {
    try {
      name = userInfo().username;
    } catch {
      name = '';
    }
  }
  const safe = name.replace(/[^A-Za-z0-9._@+-]/g, '').slice(0, 60);
  return safe ? `cli:${safe}` : 'cli';
}

/** `2026-01-01T10:00:00.000Z` -> `2026-01-01 10:00:00Z`; `-` for null. */
export function shortTime(isoTime: string | null | undefined): string {
  if (!isoTime) return '-';
  return isoTime.replace('T', ' ').replace(/\.\d{3}Z$/, 'Z');
}

/** A plain text table: header row, then rows; columns padded, the last one not. */
export function table(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const all = [header, ...rows];
  const widths = header.map((_, c) => Math.max(...all.map((r) => (r[c] ?? '').length)));
  return all.map((r) => r.map((cell, c) => (c === r.length - 1 ? cell : cell.padEnd(widths[c]!))).join('  ')).join('\n') + '\n';
}
