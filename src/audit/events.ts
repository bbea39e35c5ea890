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
] as const;

export type AuditEventName = (typeof AUDIT_EVENTS)[number];

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
}
