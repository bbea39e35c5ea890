/**
 * The one catalogue of error codes. Callers switch on `code`, never on the message.
 * Every code has a fixed HTTP status used when the error reaches a client.
 */
export const ERRORS = {
  PC_CONFIG_INVALID: { status: 500, message: 'configuration is invalid' },
  PC_BAD_REQUEST: { status: 400, message: 'bad request' },
  PC_PATH_UNSAFE: { status: 400, message: 'the request path cannot be normalised safely' },
  PC_HOST_UNKNOWN: { status: 421, message: 'no application is served on this host' },
  PC_METHOD_REFUSED: { status: 405, message: 'this method is not allowed' },
  PC_NETWORK_DENIED: { status: 403, message: 'access from this network is not allowed' },
  PC_ACCESS_DENIED: { status: 403, message: 'access denied' },
  PC_SESSION_GONE: { status: 401, message: 'your session has ended; sign in again' },
  PC_LOCKDOWN: { status: 403, message: 'remote access is temporarily disabled' },
  PC_ENROL_DENIED: { status: 403, message: 'a new authenticator cannot be enrolled from this network' },
  PC_THROTTLED: { status: 429, message: 'too many attempts; try again later' },
  PC_BUSY: { status: 503, message: 'the service is busy; try again shortly' },
  PC_STORE_UNAVAILABLE: { status: 503, message: 'the service is temporarily unavailable' },
  PC_UPSTREAM_UNREACHABLE: { status: 502, message: 'the application is not reachable' },
  PC_UPSTREAM_TIMEOUT: { status: 504, message: 'the application did not answer in time' },
  PC_ADMIN_UNAUTHORIZED: { status: 401, message: 'admin token required' },
  PC_NOT_FOUND: { status: 404, message: 'not found' },
  PC_USER_EXISTS: { status: 409, message: 'user already exists' },
  PC_USER_UNKNOWN: { status: 404, message: 'no such user' },
  PC_INTERNAL: { status: 500, message: 'internal error' },
  PC_WEAK_PASSWORD: { status: 400, message: 'the password does not meet the password policy' },
  PC_DIRECTORY_UNAVAILABLE: { status: 503, message: 'the service is temporarily unavailable' },
} as const;

export type ErrorCode = keyof typeof ERRORS;

export class PortcullisError extends Error {
  readonly code: ErrorCode;
  readonly status: number;
  override readonly cause?: unknown;
  constructor(code: ErrorCode, message?: string, options?: { cause?: unknown }) {
    super(message ?? ERRORS[code].message);
    this.name = 'PortcullisError';
    this.code = code;
    this.status = ERRORS[code].status;
    if (options && 'cause' in options) this.cause = options.cause;
  }
}

export function isPortcullisError(e: unknown, code?: ErrorCode): e is PortcullisError {
  return e instanceof PortcullisError && (code === undefined || e.code === code);
}
