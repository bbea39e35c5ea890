/**
 * `webauthn:` (issue 13): the RP ID binds every origin, https only (http for localhost names),
 * `session.domain` fixes the RP ID, and a `passkey` rule needs the section.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadConfigText } from '../../src/config/index.js';

const APPS = `
apps:
  - name: mail
    hosts: ["mail.example.org"]
    upstream: "builtin:whoami"
    rules:
      - { paths: ["/ecp/**"], policy: passkey }
      - { policy: mfa }
`;

function load(text: string) {
  return loadConfigText(text, 'p.yaml', { checkFiles: false });
}
function messages(text: string): string[] {
  const r = load(text);
  assert.equal(r.ok, false, 'expected the config to be refused');
  return r.ok ? [] : r.issues.map((i) => `${i.line}:${i.col} ${i.path}: ${i.message}`);
}

test('a webauthn section compiles: RP ID, name, origins, passwordless off by default', () => {
  const r = load(`webauthn: { rp_id: Example.org, rp_name: "Example Mail", origins: ["https://mail.example.org", "https://owa.example.org:8443/"] }\n${APPS}`);
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.issues));
  assert.deepEqual(r.config.webauthn, { rpId: 'example.org', rpName: 'Example Mail', origins: ['https://mail.example.org', 'https://owa.example.org:8443'], passwordless: false });
  assert.deepEqual(r.config.apps[0]!.rules.map((x) => x.policy), ['passkey', 'mfa']);
});

test('a passkey rule without a webauthn section is refused at the rule', () => {
  const m = messages(APPS);
  assert.equal(m.length, 1);
  assert.match(m[0]!, /^7:\d+ apps\[0\]\.rules\[0\]\.policy: policy passkey needs the "webauthn" section/);
});

test('origins must be https (http only for localhost names) and under the RP ID', () => {
  const m = messages(`webauthn:
  rp_id: example.org
  origins: ["http://mail.example.org", "https://mail.example.net", "https://mail.example.org/owa", "http://mail.localhost:8080", "not a url"]
${APPS}`);
  assert.equal(m.length, 5, m.join('\n'));
  assert.match(m[0]!, /webauthn\.origins\[0\]: .*passkeys need https/);
  assert.match(m[1]!, /webauthn\.origins\[1\]: the origin's host "mail.example.net" is not example.org or under it/);
  assert.match(m[2]!, /webauthn\.origins\[2\]: .*scheme, host and port only/);
  assert.match(m[3]!, /webauthn\.origins\[3\]: the origin's host "mail.localhost" is not example.org/);
  assert.match(m[4]!, /webauthn\.origins\[4\]: "not a url" is not an origin/);
});

test('an IP address is no RP ID; rp_id is needed without session.domain', () => {
  assert.match(messages(`webauthn: { rp_id: "192.0.2.1", origins: ["https://mail.example.org"] }\n${APPS}`)[0]!, /not an RP ID/);
  assert.match(messages(`webauthn: { origins: ["https://mail.example.org"] }\n${APPS}`)[0]!, /webauthn needs rp_id/);
  assert.match(messages(`webauthn: { rp_id: example.org }\n${APPS}`)[0]!, /missing required key "origins"/);
});

test('with session.domain the RP ID is that domain (by default, or as written), never another', () => {
  const session = 'session: { domain: example.org, portal: "https://auth.example.org" }\n';
  const r = load(`${session}webauthn: { origins: ["https://auth.example.org", "https://mail.example.org"] }\n${APPS}`);
  assert.ok(r.ok, r.ok ? '' : JSON.stringify(r.issues));
  assert.equal(r.config.webauthn?.rpId, 'example.org');
  assert.match(messages(`${session}webauthn: { rp_id: mail.example.org, origins: ["https://mail.example.org"] }\n${APPS}`)[0]!, /with session.domain, the RP ID must be that domain \(example.org\)/);
});

test('enrol networks: the top-level enrol: is shared by TOTP and passkeys; totp.enrol stays an alias', () => {
  const nets = 'networks: { office: ["10.0.0.0/8"] }\nwebauthn: { rp_id: example.org, origins: ["https://mail.example.org"] }\n';
  const top = load(`${nets}enrol: { networks: [office] }\n${APPS}`);
  const old = load(`${nets}totp: { enrol: { networks: [office] } }\n${APPS}`);
  assert.ok(top.ok && old.ok);
  assert.ok(top.config.totp.enrolNetworks.contains('10.1.2.3') && old.config.totp.enrolNetworks.contains('10.1.2.3'));
  assert.match(messages(`${nets}enrol: { networks: [office] }\ntotp: { enrol: { networks: [office] } }\n${APPS}`)[0]!, /set either enrol or totp.enrol, not both/);
});

test('passwordless: true compiles (a passkey alone, where a passkey rule admits)', () => {
  const r = load(`webauthn: { rp_id: example.org, origins: ["https://mail.example.org"], passwordless: true }\n${APPS}`);
  assert.ok(r.ok);
  assert.equal(r.config.webauthn?.passwordless, true);
  assert.ok(load(`webauthn: { rp_id: example.org, origins: ["https://mail.example.org"], passwordless: false }\n${APPS}`).ok);
});
