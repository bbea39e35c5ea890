/**
 * The access decision's vocabulary: what the gate is asked (GateRequest), what it answers
 * (GateResult), who a request is (Identity) and what is forwarded about them (IdentityHeaders).
 * Types only, so every room can speak it without importing the decision itself.
 */
import type { CompiledApp } from '../config/types.js';
import type { ErrorCode } from '../errors.js';
import type { Decision } from '../policy/decide.js';
import type { OpenSession } from '../session/sessions.js';
import type { UserRecord } from '../auth/users.js';
import type { Factor } from '../store/ports.js';

export interface GateRequest {
  method: string;
  /** Raw request-target (path and query) as received. */
  target: string;
  /** Host header value (may carry a port). */
  host: string | undefined;
  ip: string;
  proto: 'http' | 'https';
  /** Session cookie value, if any. */
  sessionId: string | undefined;
  /**
   * With `session.domain` set: the Domain of the cookie `sessionId` came in (null: a per-host
   * cookie); a session made for another scope is no session here. Undefined: not checked.
   */
  sessionScope?: string | null | undefined;
  authorization: string | undefined;
  /** The request id (http/request-id.ts): written in the audit events this request raises. */
  requestId?: string;
}

export interface Identity {
  user: UserRecord;
  amr: readonly Factor[];
  /** Present for cookie sessions; null for app-password (Basic) requests. */
  session: OpenSession | null;
}

export type GateResult =
  | { kind: 'proxy'; app: CompiledApp; rawTarget: string; identity: Identity | null; decision: Decision }
  | { kind: 'error'; code: ErrorCode; app: CompiledApp | null; reason: string; decision?: Decision }
  /** Not signed in: browsers go to the login page, other clients get 401. */
  | { kind: 'signin'; app: CompiledApp; basic: boolean; rd: string; decision?: Decision }
  /** Signed in but a step is pending (second factor, enrolment, password change). */
  | { kind: 'step'; app: CompiledApp; location: string; decision?: Decision };

/** What the app is told about the signed-in user (headers and the signed assertion). */
/**
 * What is forwarded about an identity: the header values (sanitised once per user record) and
 * the signed assertion. Frozen once made: the same object may serve many requests of a session
 * (access/identity.ts).
 */
export interface IdentityHeaders {
  readonly prepared: PreparedIdentity;
  /** The signed assertion; null for an app with `assertion: false`. */
  readonly assertion: string | null;
}

/** Identity header values ready to send: sanitised, groups joined, '' where there is no value. */
export interface PreparedIdentity {
  user: string;
  groups: string;
  email: string;
  name: string;
}
