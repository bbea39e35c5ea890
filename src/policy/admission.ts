/**
 * Sign-in admission: whether a client may try a password (or finish a sign-in) at all.
 *
 * SPEC: "Whether a client may sign in at all depends on its network alone (some `password`,
 * `mfa` or `passkey` rule could admit it), never on anything the client chooses such as `rd`."
 * An adversarial review got a login form, a password oracle and a session from a network every
 * rule denies by pointing `rd` at a bypass path; this decision therefore reads only the client's
 * address and the compiled rules (and, once known, the user's groups and completed factors):
 * no path, no method, no query, no user name typed into a form.
 *
 * The rules are walked in order, as decide() walks them for a request from this address whose
 * path and method are unknown:
 * - a rule whose network condition excludes the address can never apply: skipped;
 * - a rule that asks for a sign-in (`password`, `mfa`, `passkey`) admits: true;
 * - a `deny` or `bypass` rule that matches every request from this address (no path, method or
 *   group condition) hides every rule after it: false;
 * - anything else (a conditional deny or bypass) may or may not apply: the walk goes on.
 * `bypass` admits nobody to sign-in: a public path is no reason to accept passwords.
 */
import type { CompiledApp, CompiledConfig, CompiledRule } from '../config/types.js';
import type { Factor } from '../store/ports.js';

export interface AdmissionQuery {
  ip: string;
  /** The signed-in user's groups, once known: group rules then apply or not. */
  groups?: readonly string[] | undefined;
  /**
   * Factors completed. When given, a sign-in rule admits only if they satisfy its policy
   * (`password`: any; `mfa`: a second factor): a session that can open nothing from here is
   * not a complete sign-in, and its network is not recorded as familiar.
   */
  factors?: readonly Factor[] | undefined;
}

/** Paths every pattern that means "everything" must match (`/**`, `^/`, `^.*`, ...). */
const PROBE_PATHS = ['/', '/a', '/a/b/c', '/A/b.c/d-e_f', '/.x', '/ü/%', `/${'z'.repeat(300)}`, '/index.html', '/api/v1/x?y'];
const ALL_METHODS = ['GET', 'HEAD', 'POST', 'PUT', 'PATCH', 'DELETE', 'OPTIONS'];
const everything = new WeakMap<CompiledRule, boolean>();

/**
 * Whether a rule matches every request from an address its networks admit, whatever the path and
 * method: no path or method condition, or one that matches everything (`paths: ["/**"]` or
 * `^/`, every method listed). Such a `deny` or `bypass` hides every rule after it.
 */
function unconditional(rule: CompiledRule, groupsKnown: boolean): boolean {
  if (rule.groups !== null && !groupsKnown) return false;
  let all = everything.get(rule);
  if (all === undefined) {
    const pathsAll = rule.paths === null || rule.paths.some((m) => PROBE_PATHS.every((p) => m.test(p)));
    const methodsAll = rule.methods === null || ALL_METHODS.every((m) => rule.methods!.has(m));
    all = pathsAll && methodsAll;
    everything.set(rule, all);
  }
  return all;
}

/** The rule that admits this client to sign in, or null when none can. */
export function admittingRule(app: CompiledApp, q: AdmissionQuery): CompiledRule | null {
  const groupsKnown = q.groups !== undefined;
  for (const rule of app.rules) {
    if (rule.networks && !rule.networks.contains(q.ip)) continue;
    if (rule.groups && groupsKnown && !rule.groups.some((g) => q.groups!.includes(g))) continue;
    if (rule.policy === 'password' || rule.policy === 'mfa' || rule.policy === 'passkey') {
      if (!q.factors) return rule;
      if (factorsMeet(rule.policy, q.factors)) return rule;
      // an mfa rule the factors do not meet yet: a step-up could meet it, but it does not make
      // this sign-in complete; keep looking for one they do meet
      continue;
    }
    if (unconditional(rule, groupsKnown)) return null;
  }
  return null;
}

/**
 * Whether completed factors meet a sign-in policy: `password` any sign-in; `mfa` a second factor
 * (a TOTP code or a passkey); `passkey` a passkey (`hwk`) and nothing else. The one test the gate,
 * admission and the portal share.
 */
export function factorsMeet(policy: 'password' | 'mfa' | 'passkey', factors: readonly Factor[]): boolean {
  if (policy === 'password') return factors.length > 0;
  if (policy === 'passkey') return factors.includes('hwk');
  return factors.includes('otp') || factors.includes('hwk');
}

/** Whether some sign-in rule of `app` could admit this client (see the file comment). */
export function signInAdmits(app: CompiledApp, q: AdmissionQuery): boolean {
  return admittingRule(app, q) !== null;
}

/** Whether lockdown keeps this address out (on, and the address is not in `lockdown.networks`). */
export function lockdownRefuses(lockdown: { on: boolean }, cfg: Pick<CompiledConfig, 'lockdown'>, ip: string): boolean {
  return lockdown.on && !cfg.lockdown.networks.contains(ip);
}

/**
 * Whether some `passkey` rule could admit this client (passwordless sign-in, issue 13): the rules
 * walked as for {@link admittingRule}, from the address alone (and the groups once known), but
 * only a `passkey` rule admits; any earlier rule that matches every request from here (a
 * `password` or `mfa` rule as much as a `deny` or `bypass`) hides the rules after it, since no
 * request from here could ever reach them.
 */
export function passkeyRuleAdmits(app: CompiledApp, q: { ip: string; groups?: readonly string[] | undefined }): boolean {
  const groupsKnown = q.groups !== undefined;
  for (const rule of app.rules) {
    if (rule.networks && !rule.networks.contains(q.ip)) continue;
    if (rule.groups && groupsKnown && !rule.groups.some((g) => q.groups!.includes(g))) continue;
    if (rule.policy === 'passkey') return true;
    if (unconditional(rule, groupsKnown)) return false;
  }
  return false;
}
