import type { CompiledApp, CompiledRule, PathMatcher, PolicyName } from '../config/types.js';

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

/**
 * One rule condition: whether the rule has it, whether it holds for a request, and why not (for
 * `portcullis explain`). A new condition is one entry of {@link CONDITIONS} (plus its key in the
 * config schema and compiler, and its field on `CompiledRule`).
 */
interface Condition {
  readonly name: 'methods' | 'paths' | 'networks' | 'groups';
  /**
   * Whether it holds for the request; a rule without this condition holds (absent conditions
   * match everything). Groups unknown (no subject yet) count as holding.
   */
  readonly holds: (rule: CompiledRule, input: DecisionInput) => boolean;
  /** Why it does not hold, for explain. */
  readonly describe: (rule: CompiledRule, input: DecisionInput) => string;
  /**
   * Checked last by `decide`: the path is the client's own text and the dearest test, so only a
   * request that passes everything else pays for it. Method, network and groups are a set lookup
   * or a few integer compares and are not the client's to shape.
   */
  readonly dear?: true;
}

/** The rule conditions, in the order explain describes them (as written: methods, paths, networks, groups). */
const CONDITIONS: readonly Condition[] = [
  {
    name: 'methods',
    holds: (r, i) => r.methods === null || r.methods.has(i.method),
    describe: (r, i) => `method ${i.method} not in [${[...r.methods!].join(', ')}]`,
  },
  {
    name: 'paths',
    holds: (r, i) => r.paths === null || pathMatches(r.paths, i.path),
    describe: (r, i) => `path ${i.path} matches none of [${r.paths!.map((p) => p.source).join(', ')}]`,
    dear: true,
  },
  {
    name: 'networks',
    holds: (r, i) => r.networks === null || r.networks.contains(i.ip),
    describe: (r, i) => `${i.ip} is not in [${r.networkNames!.join(', ')}]`,
  },
  {
    name: 'groups',
    holds: (r, i) => r.groups === null || !i.subject || r.groups.some((g) => i.subject!.groups.includes(g)),
    describe: (r, i) => `user ${i.subject?.name} is in none of [${r.groups!.join(', ')}]`,
  },
];

/** The order `decide` checks them in: the cheap conditions first (same verdict as explain's order). */
const CHECK_ORDER: readonly Condition[] = [...CONDITIONS.filter((c) => !c.dear), ...CONDITIONS.filter((c) => c.dear)];
/** Every condition but the network, for "would another network have been let in?". */
const BUT_NETWORK: readonly Condition[] = CHECK_ORDER.filter((c) => c.name !== 'networks');

/** Which condition of `rule` fails for `input` (explain's order), or null if it matches. */
function firstMiss(rule: CompiledRule, input: DecisionInput): Condition | null {
  for (const c of CONDITIONS) if (!c.holds(rule, input)) return c;
  return null;
}

/** Whether every one of `conds` holds for `input`. */
function allHold(conds: readonly Condition[], rule: CompiledRule, input: DecisionInput): boolean {
  for (let i = 0; i < conds.length; i++) {
    if (!conds[i]!.holds(rule, input)) return false;
  }
  return true;
}

function matches(rule: CompiledRule, input: DecisionInput): boolean {
  return allHold(CHECK_ORDER, rule, input);
}

function pathMatches(paths: readonly PathMatcher[], path: string): boolean {
  for (let i = 0; i < paths.length; i++) if (paths[i]!.test(path)) return true;
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
    if (!r.networks.contains(input.ip) && allHold(BUT_NETWORK, r, input)) return true;
  }
  return false;
}


/** Explanation of every rule in order, for `portcullis explain`. */
export function explain(app: CompiledApp, input: DecisionInput): { decision: Decision; trace: string[] } {
  const trace: string[] = [];
  const decision = decide(app, input);
  for (const rule of app.rules) {
    const miss = firstMiss(rule, input);
    const where = `${rule.pos.file}:${rule.pos.line}`;
    if (miss) {
      trace.push(`  ${rule.label} (${where}): skipped, ${miss.describe(rule, input)}`);
      continue;
    }
    trace.push(`  ${rule.label} (${where}): MATCH`);
    break;
  }
  if (!decision.rule) trace.push('  (end of rules): default deny');
  return { decision, trace };
}
