import { pino, type Logger as PinoLogger, type LoggerOptions } from 'pino';

export type Logger = PinoLogger;

/**
 * Paths redacted from every structured log line. Passwords, codes, cookies, tokens and session
 * ids must never reach a log, whatever object a caller passes.
 */
export const REDACT_PATHS = [
  'password',
  'code',
  'secret',
  'token',
  'cookie',
  'authorization',
  'sessionId',
  '*.password',
  '*.code',
  '*.secret',
  '*.token',
  '*.sessionId',
  'req.headers.cookie',
  'req.headers.authorization',
  'req.headers["proxy-authorization"]',
  'req.headers["x-portcullis-assertion"]',
  'res.headers["set-cookie"]',
  'headers.cookie',
  'headers.authorization',
  'body',
  'req.body',
];

export function createLogger(opts: { level?: string; destination?: NodeJS.WritableStream } = {}): Logger {
  const options: LoggerOptions = {
    level: opts.level ?? process.env.PORTCULLIS_LOG_LEVEL ?? 'info',
    base: { svc: 'portcullis' },
    redact: { paths: REDACT_PATHS, censor: '[redacted]' },
    timestamp: pino.stdTimeFunctions.isoTime,
  };
  return opts.destination ? pino(options, opts.destination as never) : pino(options);
}

/** A logger that drops everything (tests). */
export function silentLogger(): Logger {
  return pino({ level: 'silent' });
}
