/**
 * Editing the named networks of the configuration file in place (`portcullis allow add|remove`).
 *
 * The file is the admin's: its comments, blank lines, quoting and alignment are theirs. So an edit
 * is a splice of the original text, not a re-serialisation: the yaml Document API (node ranges)
 * locates the network's list, a new entry is written in the style of its neighbours (flow
 * `[...]` or block `- ...`, same quotes, same indentation), and nothing else in the file moves.
 * Every splice is then proved: the edited text is parsed again and its data must equal the
 * original data with exactly the intended change. A layout the splicer does not handle (rare:
 * `networks:` with no value, a list written as an alias...) falls back to the Document API's own
 * serialisation, which keeps comments but may reflow the file; the result says so.
 *
 * Nothing is written unless the WHOLE edited configuration passes the same validator the gateway
 * runs (`loadConfigText`), so a running gateway never sees a file it would refuse.
 *
 * Refused with a clear message, nothing written:
 * - a CIDR that is not strictly valid (host bits set, stray spaces, bad prefix), or a /0 range
 *   (an allowlist that admits everyone is written by hand, deliberately);
 * - removing a CIDR the network does not hold;
 * - emptying a network that a rule, `totp.enrol` or `lockdown` relies on: the validator would
 *   refuse it anyway, and a rule over an empty network would silently match nothing.
 *
 * `editConfigFile` adds the file handling: an exclusive lock file (`<config>.lock`, broken when
 * older than 30 s) so two admins cannot lose each other's edit, the file re-read under the lock,
 * a compare-before-rename against hand edits made meanwhile, and an atomic write (temporary file,
 * fsync, rename, directory fsync). The running gateway sees the rename through its directory
 * watcher and reloads.
 */
import { readFile, realpath } from 'node:fs/promises';
import { isDeepStrictEqual } from 'node:util';
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument, Scalar, YAMLMap, type Document, type Pair, type YAMLSeq } from 'yaml';
import { PortcullisError } from '../errors.js';
import { CidrSet, parseCidr, type Cidr } from '../net/cidr.js';
import { writeFileAtomic } from '../util/atomic-write.js';
import { withLock } from '../util/file-lock.js';
import { formatIssues, loadConfigText } from './load.js';
import type { ConfigIssue } from './types.js';

export interface NetworkEdit {
  kind: 'add' | 'remove';
  /** The network's name under `networks:`. */
  network: string;
  /** CIDRs (or bare addresses, meaning a single host) as the admin typed them. */
  cidrs: readonly string[];
}

export interface EditOk {
  ok: true;
  /** The new file content (equal to the input when nothing changed). */
  text: string;
  /** Canonical CIDRs added or removed. */
  changed: string[];
  /** Canonical CIDRs that needed no change (`add` of an entry already present). */
  unchanged: string[];
  /** `add` created the network. */
  created: boolean;
  /** Things worth telling the admin (an added range already covered by a wider one...). */
  notes: string[];
  /** The file's layout could not be kept exactly (comments are kept; spacing may differ). */
  reformatted: boolean;
}

export interface EditRefused {
  ok: false;
  /** One paragraph for the terminal. */
  message: string;
  /** The validator's issues, when the refusal comes from validation (else empty). */
  issues: ConfigIssue[];
}

export type EditResult = EditOk | EditRefused;

export interface EditOptions {
  /** Directory relative paths resolve against, for validation (default: `process.cwd()`). */
  cwd?: string;
}

export interface NetworkInfo {
  name: string;
  /** Entries as written in the file. */
  cidrs: string[];
  /** What relies on the network, e.g. `apps[0].rules[1] (app "mail", line 40)`, `lockdown.networks`. */
  usedBy: string[];
}

export type ListResult = { ok: true; networks: NetworkInfo[] } | EditRefused;

const NETWORK_NAME = /^[a-z0-9][a-z0-9_-]*$/;
const MAX_NAME_LENGTH = 63;
/** The loader's reading of YAML: 1.2 core schema, no merge keys. */
const PARSE_OPTIONS = { schema: 'core', merge: false, uniqueKeys: false, strict: true, intAsBigInt: false, logLevel: 'error' } as const;

// ---------------------------------------------------------------------------------------------
// The pure core

/** Apply `op` to configuration text; validates the whole result. Never throws. */
export function editNetworks(text: string, file: string, op: NetworkEdit, opts: EditOptions = {}): EditResult {
  const nameErr = checkNetworkName(op.network);
  if (nameErr) return refuse(nameErr);
  if (op.cidrs.length === 0) return refuse(`name at least one CIDR to ${op.kind}`);

  const parsed: Cidr[] = [];
  const bad: string[] = [];
  for (const c of op.cidrs) {
    const p = parseCidr(c);
    if (!p.ok) bad.push(p.error);
    else if (p.cidr.prefix === 0 && op.kind === 'add') {
      bad.push(`"${c}" covers every ${p.cidr.family === 4 ? 'IPv4' : 'IPv6'} address; an allowlist that admits everyone must be written in the file by hand`);
    } else if (!parsed.some((x) => x.text === p.cidr.text)) parsed.push(p.cidr);
  }
  if (bad.length > 0) return refuse(`nothing changed: ${bad.join('; ')}`);

  const validate = (t: string) => loadConfigText(t, file, { cwd: opts.cwd ?? process.cwd(), checkFiles: false });
  const lc = new LineCounter();
  const doc = parseDocument(text, { ...PARSE_OPTIONS, lineCounter: lc });
  if (doc.errors.length > 0) {
    const before = validate(text);
    return refuse('the configuration cannot be parsed; fix it first (portcullis check-config)', before.ok ? [] : before.issues);
  }
  let data: Record<string, unknown>;
  try {
    const js: unknown = doc.toJS({ maxAliasCount: 1000 });
    if (!isRecord(js)) return refuse('the configuration is not a mapping of keys to values; fix it first (portcullis check-config)');
    data = js;
  } catch (e) {
    return refuse(`the configuration cannot be read: ${(e as Error).message}`);
  }
  const where = locate(doc, op.network);
  if (where.problem) return refuse(where.problem);

  const existing = where.items.map((raw) => ({ raw, canon: canonical(raw) }));
  const plan: Plan = { network: op.network, add: [], removeRaw: [] };
  const changed: string[] = [];
  const unchanged: string[] = [];
  const notes: string[] = [];
  let created = false;

  if (op.kind === 'add') {
    created = !where.exists;
    if (created && networkReferences(doc, lc, data, op.network).length === 0) {
      notes.push(`network "${op.network}" is new and nothing uses it yet: name it in a rule's networks for it to admit anyone`);
    }
    for (const c of parsed) {
      if (existing.some((e) => e.canon === c.text)) {
        unchanged.push(c.text);
        continue;
      }
      const wider = existing.find((e) => e.canon !== null && covers(e.canon, c));
      if (wider) notes.push(`${c.text} is already covered by ${wider.raw}`);
      plan.add.push(c.text);
      changed.push(c.text);
    }
  } else {
    if (!where.exists) {
      const known = Object.keys(isRecord(data.networks) ? data.networks : {});
      return refuse(`there is no network "${op.network}" (${known.length ? `defined: ${known.join(', ')}` : 'no networks are defined'})`);
    }
    // every entry equal to a given CIDR goes (`10.0.0.0/8` written twice, or as ::ffff:10.0.0.0/104)
    const missing: string[] = [];
    const removeIdx = new Set<number>();
    for (const c of parsed) {
      const hits = existing.flatMap((e, i) => (e.canon === c.text ? [i] : []));
      if (hits.length === 0) missing.push(c.text);
      else {
        for (const i of hits) removeIdx.add(i);
        changed.push(c.text);
      }
    }
    plan.removeRaw = existing.filter((_, i) => removeIdx.has(i)).map((e) => e.raw);
    const remaining = existing.filter((_, i) => !removeIdx.has(i));
    for (const c of parsed) {
      const wider = remaining.find((e) => e.canon !== null && covers(e.canon, c));
      if (wider && changed.includes(c.text)) notes.push(`${c.text} is still admitted: ${wider.raw} in the same network covers it`);
    }
    if (missing.length > 0) {
      const has = existing.map((e) => e.raw);
      return refuse(
        `nothing changed: network "${op.network}" does not contain ${missing.join(', ')} (it has: ${has.length ? has.join(', ') : 'no entries'})`,
      );
    }
    if (remaining.length === 0) {
      const users = networkReferences(doc, lc, data, op.network);
      if (users.length > 0) {
        return refuse(
          `refusing to remove the last ${existing.length === 1 ? 'entry' : 'entries'} of network "${op.network}": ` +
            `${users.join('; ')} ${users.length === 1 ? 'relies' : 'rely'} on it, and a condition over an empty network would match nothing. ` +
            `Add the network's new range first, or remove "${op.network}" from ${users.length === 1 ? 'that reference' : 'those references'} by hand.`,
        );
      }
    }
  }

  if (changed.length === 0) return { ok: true, text, changed, unchanged, created: false, notes, reformatted: false };

  const kept = [...existing.map((e) => e.raw)];
  for (const r of plan.removeRaw) kept.splice(kept.indexOf(r), 1);
  const expectedList = [...kept, ...plan.add];
  const expected = { ...data, networks: { ...(isRecord(data.networks) ? data.networks : {}), [op.network]: expectedList } };
  let out = splice(text, plan);
  let reformatted = false;
  if (out === null || !matches(out, expected)) {
    out = rewrite(text, plan);
    reformatted = true;
    if (out === null || !matches(out, expected)) return refuse('internal error: the edit could not be made safely; nothing was written');
  }

  const after = validate(out);
  if (!after.ok) {
    const before = validate(text);
    const why = before.ok
      ? 'the edited configuration would be invalid; nothing was written'
      : 'the configuration has issues that must be fixed first (portcullis check-config); nothing was written';
    return refuse(why, after.issues);
  }
  return { ok: true, text: out, changed, unchanged, created, notes, reformatted };
}

/** Every network with its entries and what relies on it, in file order. */
export function listNetworks(text: string, file: string): ListResult {
  const lc = new LineCounter();
  const doc = parseDocument(text, { ...PARSE_OPTIONS, lineCounter: lc });
  if (doc.errors.length > 0) {
    const r = loadConfigText(text, file, { checkFiles: false });
    return refuse('the configuration cannot be parsed (portcullis check-config)', r.ok ? [] : r.issues);
  }
  let data: unknown;
  try {
    data = doc.toJS({ maxAliasCount: 1000 });
  } catch (e) {
    return refuse(`the configuration cannot be read: ${(e as Error).message}`);
  }
  if (!isRecord(data)) return refuse('the configuration is not a mapping of keys to values');
  const nets = isRecord(data.networks) ? data.networks : {};
  const networks: NetworkInfo[] = Object.entries(nets).map(([name, v]) => ({
    name,
    cidrs: Array.isArray(v) ? v.map((x) => String(x)) : [],
    usedBy: networkReferences(doc, lc, data as Record<string, unknown>, name),
  }));
  return { ok: true, networks };
}

/** Why `name` cannot be a network name, or null. */
export function checkNetworkName(name: string): string | null {
  if (NETWORK_NAME.test(name) && name.length <= MAX_NAME_LENGTH) return null;
  return `"${name}" is not a valid network name: lower-case letters, digits, "-" and "_", starting with a letter or digit, at most ${MAX_NAME_LENGTH} characters`;
}

function refuse(message: string, issues: ConfigIssue[] = []): EditRefused {
  return { ok: false, message, issues };
}

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function canonical(raw: string): string | null {
  const p = parseCidr(raw);
  return p.ok ? p.cidr.text : null;
}

/** Whether the range written `outer` (canonical) contains all of `inner`. */
function covers(outer: string, inner: Cidr): boolean {
  const o = parseCidr(outer);
  if (!o.ok || o.cidr.family !== inner.family || o.cidr.prefix > inner.prefix) return false;
  return new CidrSet([o.cidr]).contains(inner.network);
}

interface Where {
  /** The network exists under `networks:`. */
  exists: boolean;
  /** Its entries as written (strings). */
  items: string[];
  problem?: string;
}

function locate(doc: Document, name: string): Where {
  const root = doc.contents;
  if (!isMap(root)) return { exists: false, items: [], problem: 'the configuration is not a mapping of keys to values; fix it first (portcullis check-config)' };
  const nets = root.get('networks', true);
  if (nets === undefined || (isScalar(nets) && nets.value === null)) return { exists: false, items: [] };
  if (isAlias(nets)) return { exists: false, items: [], problem: '`networks` is written as an alias (*name); edit the anchored mapping by hand' };
  if (!isMap(nets)) return { exists: false, items: [], problem: '`networks` is not a mapping of network names to lists; fix it first (portcullis check-config)' };
  const pair = findPair(nets, name);
  if (!pair) return { exists: false, items: [] };
  const v = pair.value;
  if (isAlias(v)) return { exists: true, items: [], problem: `networks.${name} is written as an alias (*name); edit the anchored list by hand` };
  if (!isSeq(v)) return { exists: true, items: [], problem: `networks.${name} is not a list of CIDRs; fix it first (portcullis check-config)` };
  const items: string[] = [];
  for (const [i, it] of v.items.entries()) {
    if (!isScalar(it) || typeof it.value !== 'string') {
      return { exists: true, items: [], problem: `networks.${name}[${i}] is not a CIDR written as text; fix it first (portcullis check-config)` };
    }
    items.push(it.value);
  }
  return { exists: true, items };
}

function findPair(map: YAMLMap, key: string): Pair | undefined {
  return map.items.find((p) => isScalar(p.key) && p.key.value !== null && String(p.key.value) === key) as Pair | undefined;
}

/**
 * What relies on network `name`: rules, `totp.enrol.networks`, `lockdown.networks`. Read from the
 * data (aliases resolved) with line numbers from the document.
 */
function networkReferences(doc: Document, lc: LineCounter, data: Record<string, unknown>, name: string): string[] {
  const out: string[] = [];
  const lists = (v: unknown): boolean => Array.isArray(v) && v.some((x) => x === name);
  const line = (path: (string | number)[]): string => {
    const node = doc.getIn(path, true) as { range?: [number, number, number] } | undefined;
    return node?.range ? `line ${lc.linePos(node.range[0]).line}` : '';
  };
  if (Array.isArray(data.apps)) {
    data.apps.forEach((app, i) => {
      if (!isRecord(app) || !Array.isArray(app.rules)) return;
      app.rules.forEach((rule, j) => {
        if (isRecord(rule) && lists(rule.networks)) {
          const appName = typeof app.name === 'string' ? `app "${app.name}", ` : '';
          out.push(`apps[${i}].rules[${j}] (${appName}${line(['apps', i, 'rules', j])})`);
        }
      });
    });
  }
  const totp = isRecord(data.totp) ? data.totp : null;
  if (totp && isRecord(totp.enrol) && lists(totp.enrol.networks)) out.push(`totp.enrol.networks (${line(['totp', 'enrol', 'networks'])})`);
  if (isRecord(data.lockdown) && lists(data.lockdown.networks)) out.push(`lockdown.networks (${line(['lockdown', 'networks'])})`);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Text splicing: the file's own layout, proved afterwards by `matches`

interface Plan {
  network: string;
  /** Canonical CIDRs to append. */
  add: string[];
  /** Entries (as written) to remove, one occurrence each. */
  removeRaw: string[];
}

type Range = [number, number, number];

function matches(text: string, expected: unknown): boolean {
  const d = parseDocument(text, PARSE_OPTIONS);
  if (d.errors.length > 0 || d.warnings.length > 0) return false;
  try {
    return isDeepStrictEqual(d.toJS({ maxAliasCount: 1000 }), expected);
  } catch {
    return false;
  }
}

function splice(text: string, plan: Plan): string | null {
  const eol = text.includes('\r\n') ? '\r\n' : '\n';
  let t = text;
  for (const raw of plan.removeRaw) {
    const next = spliceRemove(t, plan.network, raw);
    if (next === null) return null;
    t = next;
  }
  if (plan.add.length > 0) return spliceAdd(t, plan.network, plan.add, eol);
  return t;
}

interface Located {
  root: YAMLMap;
  networksPair: Pair | undefined;
}

function parseForSplice(text: string): Located | null {
  const doc = parseDocument(text, PARSE_OPTIONS);
  if (doc.errors.length > 0 || !isMap(doc.contents)) return null;
  const root = doc.contents;
  return { root, networksPair: findPair(root, 'networks') };
}

function networkPair(loc: Located, name: string): Pair | undefined {
  const nets = loc.networksPair?.value;
  return isMap(nets) ? findPair(nets, name) : undefined;
}

function rangeOf(node: unknown): Range | null {
  const r = (node as { range?: Range | null } | null)?.range;
  return Array.isArray(r) && r.length === 3 ? r : null;
}

function lineStart(text: string, pos: number): number {
  return text.lastIndexOf('\n', pos - 1) + 1;
}

/** The start of the line after the one `pos` is on (or `pos` when it already starts a line). */
function nextLine(text: string, pos: number): number {
  if (pos > 0 && text[pos - 1] === '\n') return pos;
  const i = text.indexOf('\n', pos);
  return i < 0 ? text.length : i + 1;
}

function insertLines(text: string, at: number, lines: string[], eol: string): string {
  const lead = at === text.length && text.length > 0 && !text.endsWith('\n') ? eol : '';
  return text.slice(0, at) + lead + lines.map((l) => l + eol).join('') + text.slice(at);
}

/** How a new entry is written next to `neighbour` (same quoting; double quotes by default). */
function formatEntry(value: string, neighbour: unknown): string {
  const type = isScalar(neighbour) ? neighbour.type : undefined;
  if (type === Scalar.QUOTE_SINGLE) return `'${value}'`;
  if (type === Scalar.PLAIN && /^[0-9a-fA-F][0-9a-fA-F.:/]*$/.test(value)) return value;
  return JSON.stringify(value);
}

/** A key as written for a new network: plain unless YAML would read it as something else. */
function formatKey(name: string): string {
  const d = parseDocument(name, PARSE_OPTIONS);
  return isScalar(d.contents) && d.contents.value === name ? name : JSON.stringify(name);
}

function spliceAdd(text: string, name: string, values: string[], eol: string): string | null {
  const loc = parseForSplice(text);
  if (!loc) return null;
  const pair = networkPair(loc, name);
  if (pair) return isSeq(pair.value) ? insertIntoSeq(text, pair.value, values, eol) : null;
  const flowList = `[${values.map((v) => JSON.stringify(v)).join(', ')}]`;
  const entry = `${formatKey(name)}: ${flowList}`;
  const nets = loc.networksPair?.value;
  if (isMap(nets)) return insertPair(text, nets, entry, eol);
  if (loc.networksPair) {
    // `networks:` with nothing after it (a comment at most): the entry goes on the next line
    const kr = rangeOf(loc.networksPair.key);
    const v = loc.networksPair.value;
    if (!kr || !(isScalar(v) && v.value === null && !v.source)) return null;
    const colon = text.indexOf(':', kr[1]);
    const eolAt = text.indexOf('\n', colon);
    const rest = text.slice(colon + 1, eolAt < 0 ? text.length : eolAt);
    const indent = text.slice(lineStart(text, kr[0]), kr[0]);
    if (colon < 0 || !/^[ \t]*(#.*)?\r?$/.test(rest) || !/^[ \t]*$/.test(indent)) return null;
    return insertLines(text, nextLine(text, colon), [`${indent}  ${entry}`], eol);
  }
  return insertNetworksSection(text, loc.root, entry, eol);
}

function insertIntoSeq(text: string, seq: YAMLSeq, values: string[], eol: string): string | null {
  const r = rangeOf(seq);
  if (!r) return null;
  const last = seq.items[seq.items.length - 1];
  const written = values.map((v) => formatEntry(v, last));
  if (seq.flow) {
    const open = r[0];
    const close = r[1] - 1;
    if (text[open] !== '[' || text[close] !== ']') return null;
    if (!last) return text.slice(0, open + 1) + written.join(', ') + text.slice(open + 1);
    const lr = rangeOf(last);
    if (!lr) return null;
    const lastEnd = lr[1];
    const closeOnOwnLine = text.slice(lastEnd, close).includes('\n');
    const prefix = text.slice(lineStart(text, lr[0]), lr[0]);
    if (closeOnOwnLine && /^[ \t]*$/.test(prefix)) {
      // one entry a line: a new line per entry, with the same indentation and comma habit
      const lineEnd = text.indexOf('\n', lastEnd);
      const rest = text.slice(lastEnd, lineEnd);
      const trailingComma = /^[ \t]*,/.test(rest);
      const lines = written.map((w, i) => `${prefix}${w}${trailingComma || i < written.length - 1 ? ',' : ''}`);
      const withLines = insertLines(text, lineEnd + 1, lines, eol);
      return trailingComma ? withLines : withLines.slice(0, lastEnd) + ',' + withLines.slice(lastEnd);
    }
    return text.slice(0, lastEnd) + written.map((w) => `, ${w}`).join('') + text.slice(lastEnd);
  }
  const lr = rangeOf(last);
  if (!lr) return null;
  const prefix = text.slice(lineStart(text, lr[0]), lr[0]);
  if (!/^[ \t]*-[ \t]+$/.test(prefix)) return null;
  return insertLines(text, nextLine(text, lr[1]), written.map((w) => `${prefix}${w}`), eol);
}

function insertPair(text: string, map: YAMLMap, entry: string, eol: string): string | null {
  const r = rangeOf(map);
  if (!r) return null;
  const last = map.items[map.items.length - 1];
  if (map.flow) {
    const open = r[0];
    if (text[open] !== '{' || text[r[1] - 1] !== '}') return null;
    if (!last) return text.slice(0, open + 1) + entry + text.slice(open + 1);
    const end = rangeOf(last.value)?.[1] ?? rangeOf(last.key)?.[1];
    if (end === undefined) return null;
    return `${text.slice(0, end)}, ${entry}${text.slice(end)}`;
  }
  if (!last) return null;
  const kr = rangeOf(last.key);
  if (!kr) return null;
  const prefix = text.slice(lineStart(text, kr[0]), kr[0]);
  if (!/^[ \t]*$/.test(prefix)) return null;
  const end = rangeOf(last.value)?.[1] ?? kr[1];
  return insertLines(text, nextLine(text, end), [`${prefix}${entry}`], eol);
}

/** A new top-level `networks:` section, before `apps:` and the comment block right above it. */
function insertNetworksSection(text: string, root: YAMLMap, entry: string, eol: string): string | null {
  if (root.flow) return null;
  const first = rangeOf(root.items[0]?.key);
  if (!first) return null;
  const indent = text.slice(lineStart(text, first[0]), first[0]);
  if (!/^[ \t]*$/.test(indent)) return null;
  const section = [`${indent}networks:`, `${indent}  ${entry}`];
  const apps = rangeOf(findPair(root, 'apps')?.key);
  if (!apps) return insertLines(text, text.length, section, eol);
  let at = lineStart(text, apps[0]);
  for (;;) {
    if (at === 0) break;
    const prev = lineStart(text, at - 1);
    if (!/^[ \t]*#/.test(text.slice(prev, at))) break;
    at = prev;
  }
  return insertLines(text, at, [...section, ''], eol);
}

function spliceRemove(text: string, name: string, raw: string): string | null {
  const loc = parseForSplice(text);
  const pair = loc ? networkPair(loc, name) : undefined;
  const seq = pair?.value;
  if (!pair || !isSeq(seq)) return null;
  const i = seq.items.findIndex((it) => isScalar(it) && it.value === raw);
  const item = seq.items[i];
  const ir = rangeOf(item);
  const sr = rangeOf(seq);
  if (i < 0 || !ir || !sr) return null;
  const n = seq.items.length;
  const ls = lineStart(text, ir[0]);
  const lineEndIdx = text.indexOf('\n', ir[1]);
  const lineEnd = lineEndIdx < 0 ? text.length : lineEndIdx + 1;
  const before = text.slice(ls, ir[0]);
  const after = text.slice(ir[1], lineEndIdx < 0 ? text.length : lineEndIdx);

  if (!seq.flow) {
    if (!/^[ \t]*-[ \t]+$/.test(before) || !/^[ \t]*(#.*)?\r?$/.test(after)) return null;
    const without = text.slice(0, ls) + text.slice(lineEnd);
    if (n > 1) return without;
    // the last entry of a block list: the key now holds an empty flow list
    const kr = rangeOf(pair.key);
    if (!kr) return null;
    const colon = without.indexOf(':', kr[1]);
    if (colon < 0 || colon >= ls) return null;
    return `${without.slice(0, colon + 1)} []${without.slice(colon + 1)}`;
  }

  // flow list: drop the whole line when the entry has one to itself
  if (/^[ \t]*$/.test(before) && /^[ \t]*,?[ \t]*(#.*)?\r?$/.test(after) && ls > sr[0] && lineEnd < sr[1]) {
    return text.slice(0, ls) + text.slice(lineEnd);
  }
  if (n === 1) {
    const comma = /^[ \t]*,/.exec(text.slice(ir[1]));
    return text.slice(0, ir[0]) + text.slice(ir[1] + (comma ? comma[0].length : 0));
  }
  if (i < n - 1) {
    const next = rangeOf(seq.items[i + 1]);
    return next ? text.slice(0, ir[0]) + text.slice(next[0]) : null;
  }
  const prev = rangeOf(seq.items[i - 1]);
  return prev ? text.slice(0, prev[1]) + text.slice(ir[1]) : null;
}

/** The Document API's way: comments kept, layout re-rendered. For layouts `splice` leaves alone. */
function rewrite(text: string, plan: Plan): string | null {
  const doc = parseDocument(text, PARSE_OPTIONS) as unknown as Document;
  if (doc.errors.length > 0 || !isMap(doc.contents)) return null;
  const root = doc.contents as YAMLMap<unknown, unknown>;
  const current: unknown = root.get('networks', true);
  let nets: YAMLMap<unknown, unknown>;
  if (isMap(current)) nets = current as YAMLMap<unknown, unknown>;
  else {
    if (current !== undefined && !(isScalar(current) && current.value === null)) return null;
    nets = new YAMLMap();
    root.set(doc.createNode('networks'), nets);
  }
  let seq: unknown = nets.get(plan.network, true);
  if (seq === undefined) {
    const s = doc.createNode([]) as YAMLSeq<unknown>;
    s.flow = true;
    nets.set(doc.createNode(plan.network), s);
    seq = s;
  }
  if (!isSeq(seq)) return null;
  const toRemove = [...plan.removeRaw];
  seq.items = seq.items.filter((it) => {
    const k = isScalar(it) ? toRemove.indexOf(it.value as string) : -1;
    if (k < 0) return true;
    toRemove.splice(k, 1);
    return false;
  });
  for (const v of plan.add) {
    const s = new Scalar(v);
    s.type = Scalar.QUOTE_DOUBLE;
    seq.items.push(s);
  }
  if (seq.items.length === 0) seq.flow = true;
  return doc.toString({ lineWidth: 0 });
}

// ---------------------------------------------------------------------------------------------
// The file: lock, re-read, validate, compare, write atomically

export interface FileEditResultOk extends EditOk {
  /** False when nothing needed changing. */
  written: boolean;
}
export type FileEditResult = FileEditResultOk | EditRefused;

export interface FileEditOptions extends EditOptions {
  /** How long to wait for another editor's lock (default 10 s). */
  lockWaitMs?: number;
}

const LOCK_WAIT_MS = 10_000;
const MAX_ATTEMPTS = 3;

/** Read, edit and (if anything changed) atomically rewrite the configuration file under its lock. */
export async function editConfigFile(file: string, op: NetworkEdit, opts: FileEditOptions = {}): Promise<FileEditResult> {
  // Lock and write next to the real file, so a symlinked config is edited where it lives.
  const target = await realpath(file).catch(() => file);
  return withLock(target, opts.lockWaitMs ?? LOCK_WAIT_MS, async () => {
    for (let attempt = 0; attempt < MAX_ATTEMPTS; attempt++) {
      const text = await readText(target);
      const r = editNetworks(text, file, op, opts);
      if (!r.ok) return r;
      if (r.text === text) return { ...r, written: false };
      // Someone may have saved the file by hand (editors take no lock) since it was read.
      if ((await readText(target)) !== text) continue;
      await writeFileAtomic(target, r.text);
      return { ...r, written: true };
    }
    throw new PortcullisError('PC_BUSY', `${file} kept changing while it was being edited; try again`);
  });
}

async function readText(file: string): Promise<string> {
  const buf = await readFile(file);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(buf);
  } catch {
    throw new PortcullisError('PC_CONFIG_INVALID', `${file} is not valid UTF-8 text`);
  }
}

/** For messages: the issues as `check-config` prints them. */
export function describeRefusal(r: EditRefused): string {
  return r.issues.length > 0 ? `${r.message}:\n${formatIssues(r.issues)}` : r.message;
}
