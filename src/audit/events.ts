/** Audit event names, as SPEC lists them. */
export const AUDIT_EVENTS = [
  'login_succeeded',
  'login_failed',
  'mfa_succeeded',
  'mfa_failed',
  'totp_replayed',
  'locked_out',
  'ip_blocked',
  'network_denied',
  'access_denied',
  'session_started',
  'session_ended',
  'session_revoked',
  'totp_enrolled',
  'weak_password',
  'new_network_login',
  'lockdown_changed',
  'config_reloaded',
  'config_rejected',
  'totp_removed',
  'totp_reset',
  'passkey_enrolled',
  'passkey_removed',
  'passkey_failed',
  'password_sprayed',
  'unblocked',
  'app_password_created',
  'app_password_revoked',
  'csrf_refused',
  'attack_started',
  'attack_ended',
  'password_refused_correct',
] as const;

export type AuditEventName = (typeof AUDIT_EVENTS)[number];

/** The events a notification can be sent for (the values `notify.events` accepts; all by default). */
export const NOTIFY_EVENTS = [
  'new_network_login',
  'locked_out',
  'weak_password',
  'password_refused_correct',
  'totp_enrolled',
  'totp_removed',
  'password_sprayed',
  'attack_started',
  'attack_ended',
] as const satisfies readonly AuditEventName[];

export type Outcome = 'success' | 'failure' | 'denied' | 'info';

/** One line of the audit log. Never carries passwords, codes, secrets, session ids or cookies. */
export interface AuditEvent {
  ts: string;
  event: AuditEventName;
  ip: string;
  user?: string;
  app?: string;
  outcome: Outcome;
  reason?: string;
  /** The request that raised the event, where there was one (see http/request-id.ts). */
  request_id?: string;
}
