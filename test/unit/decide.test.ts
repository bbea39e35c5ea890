/**
 * The heart of access control, as pure functions over a compiled config: `decide` (which rule
 * answers a request, and whether a denial is about the network) with `explain`'s trace, and
 * `admittingRule` / `signInAdmits` (may a client at this address try a password at all?).
 * No sockets, no stores: a YAML text compiled in memory.
 */
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfigText } from '../../src/config/index.js';
import type { CompiledApp, CompiledConfig } from '../../src/config/types.js';
import { decide, explain, type DecisionInput, type Subject } from '../../src/policy/decide.js';
import { admittingRule, lockdownRefuses, signInAdmits } from '../../src/policy/admission.js';

const OFFICE = '192.0.2.10';
const VPN = '198.51.100.20';
const HOME = '203.0.113.5';
const LAB = '10.1.2.3';

/** A config with networks office, vpn and lab and one app `mail` with `rules` (YAML flow items). */
function compile(rules: string[], extra = ''): CompiledConfig {
  const text = [
    'listen: "127.0.0.1:0"',
    'admin: { listen: "127.0.0.1:0", token_file: "/nonexistent/admin.token" }',
    'data_dir: "/nonexistent/data"',
    'users_file: "/nonexistent/users.yaml"',
    'audit: { file: null }',
    'networks: { office: ["192.0.2.0/24"], vpn: ["198.51.100.0/24", "2001:db8::/32"] }',
    'lockdown: { networks: [office] }',
    extra,
    'apps:',
    '  - name: mail',
    '    hosts: ["mail.test"]',
    '    upstream: "http://127.0.0.1:9"',
    '    rules:',
    ...rules.map((r) => `      - ${r}`),
  ].join('\n');
  const r = loadConfigText(text, '/etc/portcullis/portcullis.yaml', { checkFiles: false });
  if (!r.ok) throw new Error(JSON.stringify(r.issues, null, 2));
  return r.config;
}

function appOf(rules: string[]): CompiledApp {
  return compile(rules).apps[0]!;
}

function req(path: string, ip: string, o: { method?: string; subject?: Subject | null } = {}): DecisionInput {
  return { method: o.method ?? 'GET', path, ip, subject: o.subject ?? null };
}

const alice: Subject = { name: 'alice', groups: ['staff'] };
const root: Subject = { name: 'root', groups: ['admins', 'staff'] };

describe('decide: first match wins', () => {
  const app = appOf([
    '{ paths: ["/public/**"], policy: bypass }',
    '{ paths: ["/public/secret"], policy: deny }',
    '{ networks: [office], policy: password }',
    '{ policy: mfa }',
  ]);

  it('a request matching two rules gets the earlier one', () => {
    const d = decide(app, req('/public/secret', HOME));
    assert.equal(d.policy, 'bypass');
    assert.equal(d.rule?.index, 0);
    assert.match(d.reason, /apps\[0\]\.rules\[0\].* matched$/);
  });

  it('a later rule answers what the earlier ones do not match', () => {
    assert.equal(decide(app, req('/inbox', OFFICE)).policy, 'password');
    assert.equal(decide(app, req('/inbox', OFFICE)).rule?.index, 2);
    assert.equal(decide(app, req('/inbox', HOME)).policy, 'mfa');
    assert.equal(decide(app, req('/inbox', HOME)).rule?.index, 3);
  });

  it('decisions carry no flags when a rule matches plainly', () => {
    const d = decide(app, req('/inbox', HOME));
    assert.equal(d.needsSubject, false);
    assert.equal(d.networkDenied, false);
  });
});

describe('decide: default deny', () => {
  const app = appOf(['{ paths: ["/open/**"], policy: bypass }']);

  it('nothing matching means deny, with no rule and a reason that says so', () => {
    const d = decide(app, req('/closed', HOME));
    assert.equal(d.policy, 'deny');
    assert.equal(d.rule, null);
    assert.equal(d.reason, 'no rule matched (default deny)');
    assert.equal(d.networkDenied, false);
  });

  it('a request the only rule does not cover is denied even from a network a rule names', () => {
    const app = appOf(['{ paths: ["/open/**"], networks: [office], policy: password }']);
    const d = decide(app, req('/closed', OFFICE));
    assert.equal(d.policy, 'deny');
    assert.equal(d.rule, null);
    assert.equal(d.networkDenied, false);
  });
});

describe('decide: each condition', () => {
  it('paths: a glob `*` stays within a segment, `**` crosses them and covers the bare prefix', () => {
    const app = appOf(['{ paths: ["/static/*.css"], policy: bypass }', '{ paths: ["/admin/**"], policy: mfa }']);
    assert.equal(decide(app, req('/static/site.css', HOME)).policy, 'bypass');
    assert.equal(decide(app, req('/static/x/site.css', HOME)).policy, 'deny');
    assert.equal(decide(app, req('/admin', HOME)).policy, 'mfa');
    assert.equal(decide(app, req('/admin/', HOME)).policy, 'mfa');
    assert.equal(decide(app, req('/admin/users/1', HOME)).policy, 'mfa');
    assert.equal(decide(app, req('/administrator', HOME)).policy, 'deny');
  });

  it('paths: matching is case-sensitive by default', () => {
    const app = appOf(['{ paths: ["/admin/**"], policy: deny }', '{ policy: bypass }']);
    assert.equal(decide(app, req('/admin/x', HOME)).policy, 'deny');
    assert.equal(decide(app, req('/ADMIN/x', HOME)).policy, 'bypass');
  });

  it('paths: a ^regex is anchored only as written', () => {
    const app = appOf(['{ paths: ["^/api/v[0-9]+/"], policy: bypass }', '{ paths: ["^/exact$"], policy: password }']);
    assert.equal(decide(app, req('/api/v2/users', HOME)).policy, 'bypass');
    assert.equal(decide(app, req('/api/vx/users', HOME)).policy, 'deny');
    assert.equal(decide(app, req('/x/api/v2/users', HOME)).policy, 'deny');
    assert.equal(decide(app, req('/exact', HOME)).policy, 'password');
    assert.equal(decide(app, req('/exact/more', HOME)).policy, 'deny');
  });

  it('paths: any one of several patterns is enough', () => {
    const app = appOf(['{ paths: ["/a/**", "^/b"], policy: bypass }']);
    assert.equal(decide(app, req('/a/1', HOME)).policy, 'bypass');
    assert.equal(decide(app, req('/bee', HOME)).policy, 'bypass');
    assert.equal(decide(app, req('/c', HOME)).policy, 'deny');
  });

  it('methods: only the methods listed match', () => {
    const app = appOf(['{ methods: [GET, HEAD], policy: bypass }', '{ policy: password }']);
    assert.equal(decide(app, req('/x', HOME, { method: 'GET' })).policy, 'bypass');
    assert.equal(decide(app, req('/x', HOME, { method: 'HEAD' })).policy, 'bypass');
    assert.equal(decide(app, req('/x', HOME, { method: 'POST' })).policy, 'password');
    assert.equal(decide(app, req('/x', HOME, { method: 'DELETE' })).policy, 'password');
  });

  it('networks: named networks and literal CIDRs, IPv4 and IPv6', () => {
    const app = appOf(['{ networks: [office, "10.0.0.0/8"], policy: password }', '{ networks: [vpn], policy: mfa }']);
    assert.equal(decide(app, req('/', OFFICE)).policy, 'password');
    assert.equal(decide(app, req('/', LAB)).policy, 'password');
    assert.equal(decide(app, req('/', VPN)).policy, 'mfa');
    assert.equal(decide(app, req('/', '2001:db8::1')).policy, 'mfa');
    assert.equal(decide(app, req('/', '2001:db9::1')).policy, 'deny');
    assert.equal(decide(app, req('/', HOME)).policy, 'deny');
  });

  it('groups: a signed-in user in any listed group matches; one in none goes on to the next rule', () => {
    const app = appOf(['{ paths: ["/admin/**"], groups: [admins, ops], policy: mfa }', '{ paths: ["/admin/**"], policy: deny }', '{ policy: password }']);
    const d = decide(app, req('/admin/x', HOME, { subject: root }));
    assert.equal(d.policy, 'mfa');
    assert.equal(d.needsSubject, false);
    assert.equal(decide(app, req('/admin/x', HOME, { subject: alice })).policy, 'deny');
    assert.equal(decide(app, req('/inbox', HOME, { subject: alice })).policy, 'password');
  });

  it('all conditions of a rule must hold together', () => {
    const app = appOf(['{ paths: ["/dav/**"], methods: [PROPFIND], networks: [office], policy: bypass }']);
    assert.equal(decide(app, req('/dav/x', OFFICE, { method: 'PROPFIND' })).policy, 'bypass');
    assert.equal(decide(app, req('/dav/x', OFFICE, { method: 'GET' })).policy, 'deny');
    assert.equal(decide(app, req('/dav/x', HOME, { method: 'PROPFIND' })).policy, 'deny');
    assert.equal(decide(app, req('/web/x', OFFICE, { method: 'PROPFIND' })).policy, 'deny');
  });
});

describe('decide: groups are known only after sign-in', () => {
  it('an anonymous request reaching a groups rule must sign in first, whatever the rule policy', () => {
    for (const policy of ['deny', 'password', 'mfa']) {
      const app = appOf([`{ groups: [admins], policy: ${policy} }`, '{ policy: bypass }']);
      const d = decide(app, req('/x', HOME));
      assert.equal(d.policy, 'password', `groups rule with policy ${policy}`);
      assert.equal(d.needsSubject, true);
      assert.equal(d.rule?.index, 0);
      assert.match(d.reason, /groups are known only after sign-in/);
    }
  });

  it('a groups rule cannot bypass: such a rule is refused at load', () => {
    assert.throws(() => appOf(['{ groups: [admins], policy: bypass }']), /cannot bypass/);
  });

  it('a groups rule holds up an anonymous request even before a public rule, but only on the paths it covers', () => {
    const app = appOf(['{ paths: ["/x/**"], groups: [contractors], policy: deny }', '{ policy: bypass }']);
    assert.notEqual(decide(app, req('/x/1', HOME)).policy, 'bypass');
    assert.equal(decide(app, req('/x/1', HOME)).needsSubject, true);
    assert.equal(decide(app, req('/y', HOME)).policy, 'bypass');
    assert.equal(decide(app, req('/y', HOME)).needsSubject, false);
  });

  it('once the user is known the same request gets the rule that applies to them', () => {
    const app = appOf(['{ groups: [contractors], policy: deny }', '{ policy: mfa }']);
    assert.equal(decide(app, req('/x', HOME, { subject: { name: 'carl', groups: ['contractors'] } })).policy, 'deny');
    assert.equal(decide(app, req('/x', HOME, { subject: alice })).policy, 'mfa');
  });

  it('a user with no groups at all is in none of them', () => {
    const app = appOf(['{ groups: [admins], policy: password }']);
    const d = decide(app, req('/x', HOME, { subject: { name: 'nobody', groups: [] } }));
    assert.equal(d.policy, 'deny');
    assert.equal(d.rule, null);
  });
});

describe('decide: network_denied versus access_denied', () => {
  it('the default deny is about the network when an earlier rule would have admitted from another network', () => {
    const app = appOf(['{ networks: [office], policy: password }']);
    const d = decide(app, req('/', HOME));
    assert.equal(d.policy, 'deny');
    assert.equal(d.networkDenied, true);
  });

  it('an explicit deny is about the network when an earlier access rule failed only on its network', () => {
    const app = appOf(['{ paths: ["/ecp/**"], networks: [office], policy: mfa }', '{ paths: ["/ecp/**"], policy: deny }', '{ policy: password }']);
    const d = decide(app, req('/ecp/x', HOME));
    assert.equal(d.policy, 'deny');
    assert.equal(d.rule?.index, 1);
    assert.equal(d.networkDenied, true);
  });

  it('not when the earlier rule also fails on its path or method', () => {
    const app = appOf(['{ paths: ["/ecp/**"], networks: [office], policy: mfa }', '{ methods: [POST], networks: [vpn], policy: password }', '{ policy: deny }']);
    assert.equal(decide(app, req('/owa', HOME)).networkDenied, false);
    assert.equal(decide(app, req('/owa', HOME, { method: 'GET' })).networkDenied, false);
    assert.equal(decide(app, req('/owa', HOME, { method: 'POST' })).networkDenied, true);
  });

  it('not for a deny rule that has no network condition to blame, nor for rules after the deny', () => {
    const app = appOf(['{ paths: ["/blocked/**"], policy: deny }', '{ networks: [office], policy: password }']);
    assert.equal(decide(app, req('/blocked/x', HOME)).networkDenied, false);
    // earlier deny rules with networks never count as "would have admitted"
    const app2 = appOf(['{ networks: [office], policy: deny }', '{ policy: deny }']);
    assert.equal(decide(app2, req('/', HOME)).networkDenied, false);
  });

  it('an earlier bypass rule from another network counts too', () => {
    const app = appOf(['{ paths: ["/status"], networks: [office], policy: bypass }']);
    assert.equal(decide(app, req('/status', HOME)).networkDenied, true);
    assert.equal(decide(app, req('/other', HOME)).networkDenied, false);
  });

  it('a signed-in user outside the group of an earlier rule is not told it is their network', () => {
    const app = appOf(['{ groups: [admins], networks: [office], policy: password }']);
    assert.equal(decide(app, req('/', HOME, { subject: alice })).networkDenied, false);
    assert.equal(decide(app, req('/', HOME, { subject: root })).networkDenied, true);
  });
});

describe('explain: the trace', () => {
  const app = appOf([
    '{ methods: [POST], policy: bypass }',
    '{ paths: ["/admin/**"], policy: mfa }',
    '{ networks: [office], policy: password }',
    '{ groups: [admins], policy: password }',
    '{ policy: deny }',
  ]);

  it('lists every rule tried, with its file:line and why it was skipped, up to the match', () => {
    const { decision, trace } = explain(app, req('/inbox', HOME, { subject: alice }));
    assert.equal(decision.policy, 'deny');
    assert.equal(decision.rule?.index, 4);
    assert.equal(trace.length, 5);
    assert.match(trace[0]!, /^ {2}apps\[0\]\.rules\[0\].* \(\/etc\/portcullis\/portcullis\.yaml:\d+\): skipped, method GET not in \[POST\]$/);
    assert.match(trace[1]!, /skipped, path \/inbox matches none of \[\/admin\/\*\*\]$/);
    assert.match(trace[2]!, /skipped, 203\.0\.113\.5 is not in \[office\]$/);
    assert.match(trace[3]!, /skipped, user alice is in none of \[admins\]$/);
    assert.match(trace[4]!, /: MATCH$/);
  });

  it('the file lines are those of the rules in the YAML', () => {
    const { trace } = explain(app, req('/inbox', HOME, { subject: alice }));
    const lines = trace.map((t) => Number(/:(\d+)\)/.exec(t)![1]));
    for (let i = 1; i < lines.length; i++) assert.equal(lines[i], lines[i - 1]! + 1);
  });

  it('stops at the first match and agrees with decide', () => {
    const input = req('/admin/x', HOME, { subject: alice });
    const { decision, trace } = explain(app, input);
    assert.deepEqual(decision, decide(app, input));
    assert.equal(trace.length, 2);
    assert.match(trace[1]!, /MATCH/);
  });

  it('ends with the default deny when nothing matched', () => {
    const app2 = appOf(['{ networks: [office], policy: password }']);
    const { decision, trace } = explain(app2, req('/', HOME));
    assert.equal(decision.rule, null);
    assert.equal(trace.length, 2);
    assert.equal(trace[1], '  (end of rules): default deny');
  });

  it('an anonymous request matches a groups rule in the trace (its groups are not known yet)', () => {
    const { decision, trace } = explain(app, req('/inbox', HOME));
    assert.equal(decision.needsSubject, true);
    assert.match(trace[3]!, /MATCH$/);
  });
});

describe('admission: may this network sign in at all?', () => {
  it('a password or mfa rule admits exactly the networks it names', () => {
    const app = appOf(['{ networks: [office], policy: password }', '{ networks: [vpn], policy: mfa }', '{ policy: deny }']);
    assert.equal(signInAdmits(app, { ip: OFFICE }), true);
    assert.equal(signInAdmits(app, { ip: VPN }), true);
    assert.equal(signInAdmits(app, { ip: HOME }), false);
    assert.equal(admittingRule(app, { ip: VPN })?.index, 1);
  });

  it('a sign-in rule without a network condition admits everyone, even behind path or method conditions', () => {
    assert.equal(signInAdmits(appOf(['{ policy: password }']), { ip: HOME }), true);
    assert.equal(signInAdmits(appOf(['{ paths: ["/only/this"], methods: [POST], policy: mfa }']), { ip: HOME }), true);
  });

  it('bypass admits nobody: a public path is no reason to accept passwords', () => {
    assert.equal(signInAdmits(appOf(['{ policy: bypass }']), { ip: HOME }), false);
    assert.equal(signInAdmits(appOf(['{ paths: ["/public/**"], policy: bypass }']), { ip: HOME }), false);
    assert.equal(signInAdmits(appOf(['{ networks: [office], policy: bypass }', '{ policy: deny }']), { ip: OFFICE }), false);
  });

  it('no rules, or only deny rules, admit nobody', () => {
    assert.equal(signInAdmits(appOf(['{ policy: deny }']), { ip: OFFICE }), false);
    assert.equal(signInAdmits(appOf(['{ networks: [office], policy: deny }']), { ip: OFFICE }), false);
  });

  it('an unconditional deny hides every rule after it, for the networks it covers', () => {
    const app = appOf(['{ networks: [vpn], policy: deny }', '{ policy: password }']);
    assert.equal(signInAdmits(app, { ip: VPN }), false);
    assert.equal(signInAdmits(app, { ip: HOME }), true);
    assert.equal(signInAdmits(appOf(['{ policy: deny }', '{ policy: password }']), { ip: OFFICE }), false);
  });

  it('an unconditional bypass hides every rule after it too', () => {
    const app = appOf(['{ networks: [office], policy: bypass }', '{ policy: password }']);
    assert.equal(signInAdmits(app, { ip: OFFICE }), false);
    assert.equal(signInAdmits(app, { ip: HOME }), true);
  });

  it('a conditional deny or bypass (a path or a method) may not apply: the walk goes on', () => {
    assert.equal(signInAdmits(appOf(['{ paths: ["/admin/**"], policy: deny }', '{ policy: password }']), { ip: HOME }), true);
    assert.equal(signInAdmits(appOf(['{ methods: [POST], policy: deny }', '{ policy: password }']), { ip: HOME }), true);
    assert.equal(signInAdmits(appOf(['{ paths: ["/public/**"], policy: bypass }', '{ policy: mfa }']), { ip: HOME }), true);
  });

  it('patterns that match every path, and a list of every method, are unconditional', () => {
    for (const p of ['"/**"', '"^/"', '"^.*"', '"^/.*"']) {
      assert.equal(signInAdmits(appOf([`{ paths: [${p}], policy: deny }`, '{ policy: password }']), { ip: HOME }), false, `paths: [${p}]`);
    }
    assert.equal(signInAdmits(appOf(['{ paths: ["/a", "/**"], policy: deny }', '{ policy: password }']), { ip: HOME }), false);
    const every = '[GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS]';
    assert.equal(signInAdmits(appOf([`{ methods: ${every}, policy: deny }`, '{ policy: password }']), { ip: HOME }), false);
    assert.equal(signInAdmits(appOf([`{ methods: ${every}, paths: ["/**"], policy: bypass }`, '{ policy: password }']), { ip: HOME }), false);
    // one method short of all is conditional
    assert.equal(signInAdmits(appOf(['{ methods: [GET, HEAD, POST, PUT, PATCH, DELETE], policy: deny }', '{ policy: password }']), { ip: HOME }), true);
    // a pattern that looks broad but misses some paths is conditional
    assert.equal(signInAdmits(appOf(['{ paths: ["/*"], policy: deny }', '{ policy: password }']), { ip: HOME }), true);
  });

  it('groups: unknown groups keep a groups rule conditional; known groups decide', () => {
    const denyAdmins = appOf(['{ groups: [contractors], policy: deny }', '{ policy: password }']);
    assert.equal(signInAdmits(denyAdmins, { ip: HOME }), true);
    assert.equal(signInAdmits(denyAdmins, { ip: HOME, groups: ['contractors'] }), false);
    assert.equal(signInAdmits(denyAdmins, { ip: HOME, groups: ['staff'] }), true);

    const onlyAdmins = appOf(['{ groups: [admins], policy: password }']);
    assert.equal(signInAdmits(onlyAdmins, { ip: HOME }), true);
    assert.equal(signInAdmits(onlyAdmins, { ip: HOME, groups: ['admins'] }), true);
    assert.equal(signInAdmits(onlyAdmins, { ip: HOME, groups: ['staff'] }), false);
  });

  it('factors: a password rule is met by a password; an mfa rule only with a second factor', () => {
    const app = appOf(['{ networks: [office], policy: password }', '{ networks: [vpn], policy: mfa }']);
    assert.equal(signInAdmits(app, { ip: OFFICE, factors: ['pwd'] }), true);
    assert.equal(signInAdmits(app, { ip: VPN, factors: ['pwd'] }), false);
    assert.equal(signInAdmits(app, { ip: VPN, factors: ['pwd', 'otp'] }), true);
    // without factors the question is only whether a sign-in could start
    assert.equal(signInAdmits(app, { ip: VPN }), true);
  });

  it('factors: an unmet mfa rule does not stop a later password rule from counting', () => {
    const app = appOf(['{ paths: ["/admin/**"], policy: mfa }', '{ policy: password }']);
    assert.equal(admittingRule(app, { ip: HOME, factors: ['pwd'] })?.index, 1);
    assert.equal(admittingRule(app, { ip: HOME, factors: ['pwd', 'otp'] })?.index, 0);
  });

  it('admission reads the network alone: the same rules give the same answer for any path the client names', () => {
    // there is no path in the query at all; a bypass path elsewhere in the rules changes nothing
    const app = appOf(['{ paths: ["/public/**"], policy: bypass }', '{ networks: [office], policy: password }', '{ policy: deny }']);
    assert.equal(signInAdmits(app, { ip: HOME }), false);
    assert.equal(signInAdmits(app, { ip: OFFICE }), true);
  });
});

describe('lockdownRefuses', () => {
  const cfg = compile(['{ policy: password }']);
  it('refuses everyone outside lockdown.networks while lockdown is on, nobody while it is off', () => {
    assert.equal(lockdownRefuses({ on: true }, cfg, HOME), true);
    assert.equal(lockdownRefuses({ on: true }, cfg, OFFICE), false);
    assert.equal(lockdownRefuses({ on: false }, cfg, HOME), false);
  });
});
