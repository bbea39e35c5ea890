/**
 * Notifications as the people receiving them, and the users signing in, see them: a webhook that
 * fails twice still gets the alert exactly once; a slow or dead webhook never holds up a sign-in;
 * the payload carries the audit event and nothing else; e-mail goes through a real SMTP exchange
 * (a small SMTP sink written here with node:net, driven by nodemailer's SMTP client); an attack
 * that triggers thousands of alerts cannot grow memory without bound.
 */
import { strict as assert } from 'node:assert';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { createServer as createTcpServer, type AddressInfo, type Socket } from 'node:net';
import { performance } from 'node:perf_hooks';
import { after, describe, it } from 'node:test';
import { ManualClock } from '../../src/clock.js';
import { AuditLog } from '../../src/audit/audit-log.js';
import type { AuditEvent } from '../../src/audit/events.js';
import { silentLogger } from '../../src/audit/logger.js';
import { attachNotifier, Notifier, type NotifierDeps } from '../../src/audit/notify.js';
import type { NotifyConfig } from '../../src/config/types.js';

const ALL = new Set(['new_network_login', 'locked_out', 'weak_password']);

function event(over: Partial<AuditEvent> = {}): AuditEvent {
  return { ts: '2026-01-01T09:00:00.000Z', event: 'new_network_login', ip: '203.0.113.9', user: 'alice', app: 'mail', outcome: 'info', reason: '203.0.113.9', ...over };
}

interface Hook {
  url: string;
  requests: Array<{ headers: IncomingMessage['headers']; body: string; path: string }>;
  close(): Promise<void>;
}

const servers: Array<{ close(): Promise<void> }> = [];
after(async () => {
  for (const s of servers) await s.close();
});

/** A real HTTP webhook on loopback; `answer` decides each response (by 0-based request number). */
async function startHook(answer: (n: number, res: ServerResponse) => void): Promise<Hook> {
  const requests: Hook['requests'] = [];
  const server: Server = createServer((req, res) => {
    let body = '';
    req.setEncoding('utf8');
    req.on('data', (c: string) => (body += c));
    req.on('end', () => {
      requests.push({ headers: req.headers, body, path: req.url ?? '' });
      answer(requests.length - 1, res);
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  const hook = {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/hooks/T0K3N`,
    requests,
    close: async () => {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
  servers.push(hook);
  return hook;
}

function notifier(cfg: Partial<NotifyConfig>, extra: Partial<NotifierDeps> = {}): { n: Notifier; waits: number[]; config: { current: NotifyConfig } } {
  const waits: number[] = [];
  const config = { current: { webhook: null, smtp: null, events: ALL, ...cfg } as NotifyConfig };
  const n = new Notifier({
    config: () => config.current,
    logger: silentLogger(),
    clock: new ManualClock(),
    instance: 'gw1',
    // the backoff is asserted, not slept through
    wait: async (ms) => {
      waits.push(ms);
    },
    ...extra,
  });
  return { n, waits, config };
}

describe('webhook', () => {
  it('fails twice then succeeds: delivered exactly once, after waiting 1 s then 5 s', async () => {
    const hook = await startHook((i, res) => {
      res.writeHead(i < 2 ? 503 : 204);
      res.end();
    });
    const { n, waits } = notifier({ webhook: hook.url });
    n.handle(event());
    await n.whenIdle();
    assert.equal(hook.requests.length, 3);
    assert.deepEqual(waits, [1_000, 5_000]);
    const s = n.stats();
    assert.equal(s.delivered, 1);
    assert.equal(s.failed, 0);
    // the same payload and idempotency key every try, so a receiver can de-duplicate
    assert.equal(new Set(hook.requests.map((r) => r.body)).size, 1);
    assert.equal(new Set(hook.requests.map((r) => r.headers['idempotency-key'])).size, 1);
    const r = hook.requests[2]!;
    assert.equal(r.path, '/hooks/T0K3N');
    assert.equal(r.headers['content-type'], 'application/json');
    const body = JSON.parse(r.body) as Record<string, unknown>;
    assert.deepEqual(Object.keys(body).sort(), ['event', 'gateway', 'text']);
    assert.deepEqual(body.event, event());
    assert.equal(body.gateway, 'gw1');
    assert.equal(body.text, '"alice" signed in from a new network: 203.0.113.9 (203.0.113.9) on mail [gw1]');
    await n.close();
  });

  it('gives up after 4 tries (1 s, 5 s, 25 s apart) and says why', async () => {
    const hook = await startHook((_i, res) => {
      res.writeHead(500);
      res.end();
    });
    const { n, waits } = notifier({ webhook: hook.url });
    n.handle(event({ event: 'locked_out', reason: 'unfamiliar networks' }));
    await n.whenIdle();
    assert.equal(hook.requests.length, 4);
    assert.deepEqual(waits, [1_000, 5_000, 25_000]);
    assert.equal(n.stats().failed, 1);
    assert.match(n.stats().lastFailure!.message, /answered 500/);
    await n.close();
  });

  it('a refusal (404, or a redirect) is final: no retries', async () => {
    for (const status of [404, 302]) {
      const hook = await startHook((_i, res) => {
        res.writeHead(status, status === 302 ? { location: 'http://127.0.0.1:1/' } : {});
        res.end();
      });
      const { n, waits } = notifier({ webhook: hook.url });
      n.handle(event());
      await n.whenIdle();
      assert.equal(hook.requests.length, 1, `${status}: one try`);
      assert.deepEqual(waits, []);
      assert.equal(n.stats().failed, 1);
      await n.close();
    }
  });

  it('a slow webhook never delays the sign-in: handle returns before the request is even sent', async () => {
    let release: () => void = () => undefined;
    const hook = await startHook((_i, res) => {
      release = () => res.end();
    });
    const { n } = notifier({ webhook: hook.url }, { webhookTimeoutMs: 200, retryDelaysMs: [], concurrency: 100 });
    const t0 = performance.now();
    for (let i = 0; i < 100; i++) n.handle(event({ user: `user${i}` }));
    const spent = performance.now() - t0;
    assert.ok(spent < 50, `100 handle() calls took ${spent.toFixed(1)} ms`);
    assert.equal(hook.requests.length, 0, 'nothing was sent from inside handle()');
    await n.whenIdle();
    const s = n.stats();
    assert.equal(s.failed, 100, 'each try was cut off by the 5 s (here 200 ms) limit');
    assert.match(s.lastFailure!.message, /did not answer in time/);
    release();
    await n.close();
  });

  it('only the events listed in notify.events are sent', async () => {
    const hook = await startHook((_i, res) => res.end());
    const { n } = notifier({ webhook: hook.url, events: new Set(['locked_out']) });
    n.handle(event({ event: 'new_network_login' }));
    n.handle(event({ event: 'login_failed', outcome: 'failure' }));
    n.handle(event({ event: 'weak_password' }));
    n.handle(event({ event: 'locked_out' }));
    await n.whenIdle();
    assert.deepEqual(
      hook.requests.map((r) => (JSON.parse(r.body) as { event: AuditEvent }).event.event),
      ['locked_out'],
    );
    await n.close();
  });

  it('a retry goes to the webhook in force now (fixed by a reload), not the broken one', async () => {
    const broken = await startHook((_i, res) => {
      res.writeHead(502);
      res.end();
    });
    const fixed = await startHook((_i, res) => res.end());
    const { n, config } = notifier({ webhook: broken.url }, {
      wait: async () => {
        config.current = { ...config.current, webhook: fixed.url };
      },
    });
    n.handle(event());
    await n.whenIdle();
    assert.equal(broken.requests.length, 1);
    assert.equal(fixed.requests.length, 1);
    assert.equal(n.stats().delivered, 1);
    await n.close();
  });

  it('the queue is bounded: past the limit the oldest are dropped and counted', async () => {
    const bodies: string[] = [];
    let open: Array<() => void> = [];
    const fetchStub: typeof fetch = async (_url, init) => {
      bodies.push(String(init?.body));
      await new Promise<void>((r) => open.push(r));
      return new Response(null, { status: 204 });
    };
    const { n } = notifier({ webhook: 'http://127.0.0.1:9/hook' }, { fetch: fetchStub, maxQueue: 5, concurrency: 1 });
    for (let i = 0; i < 2000; i++) n.handle(event({ user: `u${i}` }));
    assert.equal(n.stats().queued, 5);
    assert.equal(n.stats().dropped, 1995);
    while (n.stats().queued + n.stats().inFlight > 0) {
      await new Promise((r) => setImmediate(r));
      const o = open;
      open = [];
      for (const f of o) f();
    }
    await n.whenIdle();
    assert.deepEqual(
      bodies.map((b) => (JSON.parse(b) as { event: AuditEvent }).event.user),
      ['u1995', 'u1996', 'u1997', 'u1998', 'u1999'],
    );
    await n.close();
  });
});

describe('attached to the audit trail', () => {
  it('a recorded event reaches the webhook; after close nothing more is sent', async () => {
    const hook = await startHook((_i, res) => res.end());
    const clock = new ManualClock(Date.UTC(2026, 2, 3, 4, 5, 6));
    const audit = new AuditLog({ file: null, clock });
    const rt = {
      audit,
      clock,
      logger: silentLogger(),
      config: { notify: { webhook: hook.url, smtp: null, events: ALL } } as never,
    };
    const n = attachNotifier(rt);
    audit.record({ event: 'weak_password', ip: '198.51.100.4', user: 'bob', app: 'mail', outcome: 'info', reason: 'common password' });
    audit.record({ event: 'login_succeeded', ip: '198.51.100.4', user: 'bob', app: 'mail', outcome: 'success' });
    await n.whenIdle();
    assert.equal(hook.requests.length, 1);
    const sent = JSON.parse(hook.requests[0]!.body) as { event: AuditEvent; text: string };
    assert.deepEqual(sent.event, { ts: '2026-03-03T04:05:06.000Z', event: 'weak_password', ip: '198.51.100.4', user: 'bob', app: 'mail', outcome: 'info', reason: 'common password' });
    await n.close();
    audit.record({ event: 'locked_out', ip: '198.51.100.4', user: 'bob', outcome: 'denied' });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual([n.stats().queued, n.stats().inFlight, n.stats().delivered], [0, 0, 1]);
    assert.equal(hook.requests.length, 1);
  });
});

// ---------------------------------------------------------------------------------------------
// E-mail: nodemailer's SMTP client against a minimal SMTP server

interface Mail {
  from: string;
  to: string[];
  data: string;
}

/** Speaks enough SMTP for a client to deliver; `replies` overrides answers to RCPT and DATA. */
async function startSmtpSink(replies: { rcpt?: string; data?: string[] } = {}): Promise<{ port: number; mails: Mail[]; transactions: number; close(): Promise<void> }> {
  const mails: Mail[] = [];
  const sockets = new Set<Socket>();
  const sink = { port: 0, mails, transactions: 0, close: async () => undefined as void };
  const dataReplies = [...(replies.data ?? [])];
  const server = createTcpServer((sock) => {
    sockets.add(sock);
    sock.on('close', () => sockets.delete(sock));
    sock.setEncoding('utf8');
    let buf = '';
    let inData = false;
    let cur: Mail = { from: '', to: [], data: '' };
    const reply = (s: string) => sock.write(`${s}\r\n`);
    reply('220 sink.test ESMTP ready');
    sock.on('data', (chunk: string) => {
      buf += chunk;
      for (;;) {
        if (inData) {
          const end = buf.indexOf('\r\n.\r\n');
          if (end < 0) return;
          cur.data = buf.slice(0, end);
          buf = buf.slice(end + 5);
          inData = false;
          sink.transactions++;
          const r = dataReplies.shift() ?? '250 2.0.0 queued';
          if (r.startsWith('250')) mails.push(cur);
          cur = { from: '', to: [], data: '' };
          reply(r);
          continue;
        }
        const i = buf.indexOf('\r\n');
        if (i < 0) return;
        const line = buf.slice(0, i);
        buf = buf.slice(i + 2);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === 'EHLO') sock.write('250-sink.test\r\n250 8BITMIME\r\n');
        else if (verb === 'HELO') reply('250 sink.test');
        else if (verb === 'MAIL') {
          cur = { from: /<([^>]*)>/.exec(line)?.[1] ?? '', to: [], data: '' };
          reply('250 2.1.0 ok');
        } else if (verb === 'RCPT') {
          const r = replies.rcpt ?? '250 2.1.5 ok';
          if (r.startsWith('250')) cur.to.push(/<([^>]*)>/.exec(line)?.[1] ?? '');
          reply(r);
        } else if (verb === 'DATA') {
          inData = true;
          reply('354 end with <CRLF>.<CRLF>');
        } else if (verb === 'RSET' || verb === 'NOOP') reply('250 2.0.0 ok');
        else if (verb === 'QUIT') {
          reply('221 2.0.0 bye');
          sock.end();
        } else reply('502 5.5.2 not implemented');
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  sink.port = (server.address() as AddressInfo).port;
  sink.close = async () => {
    for (const s of sockets) s.destroy();
    await new Promise<void>((r) => server.close(() => r()));
  };
  servers.push(sink);
  return sink;
}

/** Headers and body of a simple (quoted-printable or 7bit) message, decoded. */
function parseMail(data: string): { headers: string; body: string } {
  const sep = data.indexOf('\r\n\r\n');
  const qp = (t: string) => t.replace(/=([0-9A-F]{2})/g, (_m, h: string) => String.fromCharCode(parseInt(h, 16)));
  // RFC 2047 encoded words (=?UTF-8?Q?...?=), which nodemailer uses for long or quoted subjects
  const headers = data
    .slice(0, sep)
    .replace(/\r\n[ \t]+/g, ' ')
    .replace(/\?= =\?UTF-8\?Q\?/g, '')
    .replace(/=\?UTF-8\?Q\?(.*?)\?=/g, (_m, w: string) => qp(w.replace(/_/g, ' ')));
  const body = data
    .slice(sep + 4)
    .replace(/=\r\n/g, '');
  return { headers, body: qp(body) };
}

describe('e-mail', () => {
  it('sends one message to every recipient through SMTP, with the event and no secret', async () => {
    const sink = await startSmtpSink();
    const smtp = { url: `smtp://127.0.0.1:${sink.port}`, from: 'portcullis@example.org', to: ['soc@example.org', 'admin@example.org'] };
    const { n } = notifier({ smtp });
    n.handle(event({ event: 'locked_out', user: 'carol', ip: '192.0.2.66', outcome: 'denied', reason: 'unfamiliar networks' }));
    await n.whenIdle();
    assert.equal(n.stats().delivered, 1, JSON.stringify(n.stats().lastFailure));
    assert.equal(sink.mails.length, 1);
    const m = sink.mails[0]!;
    assert.equal(m.from, 'portcullis@example.org');
    assert.deepEqual(m.to, ['soc@example.org', 'admin@example.org']);
    const { headers, body } = parseMail(m.data);
    assert.match(headers, /^Subject: \[portcullis\] "carol" is locked out after repeated failed sign-ins from 192\.0\.2\.66 on mail \[gw1\]$/m);
    assert.match(headers, /^X-Portcullis-Event: locked_out$/m);
    assert.match(body, /User: +carol/);
    assert.match(body, /Address: +192\.0\.2\.66/);
    assert.doesNotMatch(m.data, /password=|secret|cookie/i);
    await n.close();
  });

  it('a temporary SMTP failure (451) is retried; a permanent one (550) is not', async () => {
    const flaky = await startSmtpSink({ data: ['451 4.3.0 try again later'] });
    const a = notifier({ smtp: { url: `smtp://127.0.0.1:${flaky.port}`, from: 'p@example.org', to: ['soc@example.org'] } });
    a.n.handle(event());
    await a.n.whenIdle();
    assert.equal(flaky.transactions, 2);
    assert.equal(flaky.mails.length, 1);
    assert.deepEqual(a.waits, [1_000]);
    await a.n.close();

    const refusing = await startSmtpSink({ rcpt: '550 5.1.1 no such mailbox' });
    const b = notifier({ smtp: { url: `smtp://127.0.0.1:${refusing.port}`, from: 'p@example.org', to: ['nobody@example.org'] } });
    b.n.handle(event());
    await b.n.whenIdle();
    assert.deepEqual(b.waits, []);
    assert.equal(b.n.stats().failed, 1);
    assert.match(b.n.stats().lastFailure!.message, /refused the message \(550\)/);
    await b.n.close();
  });

  it('webhook and e-mail are separate: one failing does not resend the other', async () => {
    const sink = await startSmtpSink();
    const hook = await startHook((i, res) => {
      res.writeHead(i === 0 ? 503 : 200);
      res.end();
    });
    const { n } = notifier({ webhook: hook.url, smtp: { url: `smtp://127.0.0.1:${sink.port}`, from: 'p@example.org', to: ['soc@example.org'] } });
    n.handle(event());
    await n.whenIdle();
    assert.equal(hook.requests.length, 2);
    assert.equal(sink.mails.length, 1);
    assert.equal(n.stats().delivered, 2);
    await n.close();
  });
});
