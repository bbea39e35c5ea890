import type { CompiledApp, CompiledRule, PolicyName } from '../config/types.js';

/** Who is asking, as far as the gateway knows. `null` before sign-in. */
export interface Subject {
  name: string;
  groups: readonly string[];
}

export interface DecisionInput {
  method: string;
  /** Normalised, decoded path (see net/path.ts). */
  path: string;
  /** Client address, already resolved and normalised. */
  ip: string;
  subject: Subject | null;
}

export interface Decision {
  policy: PolicyName;
  /** The rule that decided, or null when nothing matched (default deny). */
  rule: CompiledRule | null;
  /** One line for logs and `portcullis explain`. */
  reason: string;
  /**
   * True when an anonymous request reached a rule with a `groups` condition: the outcome is only
   * known after sign-in, so the request must sign in first (such a rule never bypasses).
   */
  needsSubject: boolean;
  /** For denials: whether a non-deny rule would have matched from another network (network_denied vs access_denied). */
  networkDenied: boolean;
}

type Miss = 'paths' | 'methods' | 'networks' | 'groups';

/**
 * Which condition of `rule` fails for `input`, or null if it matches (groups unknown count as a
 * match here). The order is the one `explain` describes (the first failing condition as written:
 * methods, paths, networks, groups); `decide` uses {@link matches}, which agrees on the verdict.
 */
function firstMiss(rule: CompiledRule, input: DecisionInput): Miss | null {
  if (rule.methods && !rule.methods.has(input.method)) return 'methods';
  if (rule.paths && !pathMatches(rule, input)) return 'paths';
  if (rule.networks && !rule.networks.contains(input.ip)) return 'networks';
  if (rule.groups && input.subject && !rule.groups.some((g) => input.subject!.groups.includes(g))) return 'groups';
  return null;
}

/**
 * Whether `rule` matches `input` (groups unknown count as a match): `firstMiss(...) === null`, with
 * the cheap conditions first. Method, network and groups are a set lookup or a few integer
 * compares and are not the client's to shape; the path is the client's own text and the dearest
 * test, so it comes last and only a request that passes everything else pays for it.
 */
function matches(rule: CompiledRule, input: DecisionInput): boolean {
  if (rule.methods && !rule.methods.has(input.method)) return false;
  if (rule.networks && !rule.networks.contains(input.ip)) return false;
  if (rule.groups && input.subject && !rule.groups.some((g) => input.subject!.groups.includes(g))) return false;
  return !rule.paths || pathMatches(rule, input);
}

function pathMatches(rule: CompiledRule, input: DecisionInput): boolean {
  const paths = rule.paths!;
  for (let i = 0; i < paths.length; i++) if (paths[i]!.test(input.path)) return true;
  return false;
}

/**
 * First match wins; no match means deny. Rules were compiled at load; this allocates only the
 * result object on the hot path.
 */
export function decide(app: CompiledApp, input: DecisionInput): Decision {
  const rules = app.rules;
  for (let i = 0; i < rules.length; i++) {
    const rule = rules[i]!;
    if (!matches(rule, input)) continue;
    if (rule.groups && !input.subject) {
      return {
        policy: 'password',
        rule,
        reason: `${rule.label}: groups are known only after sign-in`,
        needsSubject: true,
        networkDenied: false,
      };
    }
    return {
      policy: rule.policy,
      rule,
      reason: `${rule.label} matched`,
      needsSubject: false,
      networkDenied: rule.policy === 'deny' && wouldMatchElsewhere(rules, i, input),
    };
  }
  return {
    policy: 'deny',
    rule: null,
    reason: 'no rule matched (default deny)',
    needsSubject: false,
    networkDenied: wouldMatchElsewhere(rules, rules.length, input),
  };
}

/** Whether some rule before `upTo` that grants access fails only on its network condition. */
function wouldMatchElsewhere(rules: readonly CompiledRule[], upTo: number, input: DecisionInput): boolean {
  for (let i = 0; i < upTo; i++) {
    const r = rules[i]!;
    if (r.policy === 'deny' || !r.networks) continue;
    if (!r.networks.contains(input.ip) && otherConditionsMatch(r, input)) return true;
  }
  return false;
}

function otherConditionsMatch(rule: CompiledRule, input: DecisionInput): boolean {
  if (rule.methods && !rule.methods.has(input.method)) return false;
  if (rule.groups && input.subject && !rule.groups.some((g) => input.subject!.groups.includes(g))) return false;
  return !rule.paths || pathMatches(rule, input);
}

/** Explanation of every rule in order, for `portcullis explain`. */
export function explain(app: CompiledApp, input: DecisionInput): { decision: Decision; trace: string[] } {
  const trace: string[] = [];
  const decision = decide(app, input);
  for (const rule of app.rules) {
    const miss = firstMiss(rule, input);
    const where = `${rule.pos.file}:${rule.pos.line}`;
    if (miss) {
      trace.push(`  ${rule.label} (${where}): skipped, ${describeMiss(miss, rule, input)}`);
      continue;
    }
    trace.push(`  ${rule.label} (${where}): MATCH`);
    break;
  }
  if (!decision.rule) trace.push('  (end of rules): default deny');
  return { decision, trace };
}

function describeMiss(miss: Miss, rule: CompiledRule, input: DecisionInput): string {
  switch (miss) {
    case 'methods':
      return `method ${input.method} not in [${[...rule.methods!].join(', ')}]`;
    case 'paths':
      return `path ${input.path} matches none of [${rule.paths!.map((p) => p.source).join(', ')}]`;
    case 'networks':
      return `${input.ip} is not in [${rule.networkNames!.join(', ')}]`;
    case 'groups':
      return `user ${input.subject?.name} is in none of [${rule.groups!.join(', ')}]`;
  }
}
