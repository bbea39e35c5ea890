/**
 * Password guidance (SPEC `password_policy`), applied when a password is set and at the moment
 * it is used (the UK Parliament passwords met the technical controls but not the guidance).
 *
 * - `too_short`: fewer than `min_length` Unicode code points (after NFC normalisation, so a
 *   decomposed accent does not count twice).
 * - `common` (with `blocklist: common`): the password, case-insensitively, is on the
 *   @zxcvbn-ts/language-common list of common and breached passwords, or zxcvbn reads the whole
 *   of it as one such password in disguise (l33t substitutions, reversal, capitals: `P@ssw0rd`).
 * - `contains_user`: it contains the user name or the e-mail address or its local part
 *   (case-insensitive; names shorter than 3 characters are not checked, as in Windows).
 * - `weak`: zxcvbn's score, with the user name and e-mail as user inputs, is below
 *   `min_strength`.
 *
 * Cost. zxcvbn's l33t matcher re-runs the dictionary scan for every substitution variant, so its
 * cost grows fast with length and with l33t-like characters: with its defaults a 64-character
 * string of `4@$1!0|…` takes about half a second of CPU, a way to stall the event loop. So
 * zxcvbn sees at most the first 64 code points (a longer password is scored on its start, which
 * can understate it but not overstate it by much) and tries at most 3 substitutions per variant
 * (enough for `P@ssw0rd`, `1l0v3y0u`); the worst case is then tens of milliseconds, the order
 * of one argon2id verification, but synchronous. Callers should assess only passwords already
 * verified or submitted by a signed-in user, never an anonymous guess, and call
 * `warmPasswordGuidance()` at start-up so the first sign-in does not pay for building the
 * dictionaries.
 */
import { zxcvbn, zxcvbnOptions, type MatchExtended } from '@zxcvbn-ts/core';
import * as zxcvbnCommon from '@zxcvbn-ts/language-common';
import * as zxcvbnEn from '@zxcvbn-ts/language-en';
import type { PasswordPolicy } from '../config/types.js';

export type GuidanceReason = 'too_short' | 'common' | 'weak' | 'contains_user';
export type Score = 0 | 1 | 2 | 3 | 4;

export interface Assessment {
  ok: boolean;
  /** Every rule the password breaks, in a fixed order: too_short, common, contains_user, weak. */
  reasons: GuidanceReason[];
  score: Score;
}

/** Code points zxcvbn is shown. */
export const ZXCVBN_MAX_CODE_POINTS = 64;
/** Substitutions zxcvbn's l33t matcher tries per variant (its default, 100, is a CPU sink). */
const L33T_MAX_SUBSTITUTIONS = 3;
/** Names shorter than this are not looked for inside passwords. */
const MIN_NAME_LENGTH = 3;

let initialised = false;
let commonPasswords: ReadonlySet<string> | null = null;

function init(): void {
  if (initialised) return;
  zxcvbnOptions.setOptions({
    dictionary: { ...zxcvbnCommon.dictionary, ...zxcvbnEn.dictionary },
    graphs: zxcvbnCommon.adjacencyGraphs,
    translations: zxcvbnEn.translations,
    l33tMaxSubstitutions: L33T_MAX_SUBSTITUTIONS,
  });
  initialised = true;
}

function common(): ReadonlySet<string> {
  commonPasswords ??= new Set(zxcvbnCommon.dictionary.passwords.map((p) => fold(String(p))));
  return commonPasswords;
}

/** Builds the zxcvbn dictionaries and the blocklist now rather than on the first assessment. */
export function warmPasswordGuidance(): void {
  init();
  common();
}

function fold(s: string): string {
  return s.normalize('NFKC').toLowerCase();
}

export class PasswordGuidance {
  constructor(private readonly policy: PasswordPolicy) {}

  assess(pw: string, ctx: { user: string; email?: string | null }): Assessment {
    init();
    const p = this.policy;
    const { length, head } = codePointsOf(pw.normalize('NFC'), ZXCVBN_MAX_CODE_POINTS);
    const reasons: GuidanceReason[] = [];

    if (length < p.minLength) reasons.push('too_short');

    const folded = fold(pw);
    const names = userNames(ctx);
    // always pass an array: zxcvbn keeps the last call's user inputs otherwise
    const result = zxcvbn(head, names);
    const score = result.score as Score;
    const whole = length <= ZXCVBN_MAX_CODE_POINTS;

    if (p.blocklist === 'common' && (common().has(folded) || (whole && isDisguisedCommon(result.sequence, head)))) {
      reasons.push('common');
    }
    if (names.some((n) => folded.includes(n))) reasons.push('contains_user');
    if (score < p.minStrength) reasons.push('weak');

    return { ok: reasons.length === 0, reasons, score };
  }
}

/** The number of code points in `s`, and its first `max` of them. */
function codePointsOf(s: string, max: number): { length: number; head: string } {
  let length = 0;
  let end = 0;
  for (const ch of s) {
    if (length < max) end += ch.length;
    length++;
  }
  return { length, head: s.slice(0, end) };
}

/** The user's names to keep out of the password, folded, at least MIN_NAME_LENGTH long. */
function userNames(ctx: { user: string; email?: string | null }): string[] {
  const out = new Set<string>();
  const add = (s: string | undefined | null) => {
    if (!s) return;
    const f = fold(s.trim());
    if (Array.from(f).length >= MIN_NAME_LENGTH) out.add(f);
  };
  add(ctx.user);
  if (ctx.email) {
    add(ctx.email);
    const at = ctx.email.lastIndexOf('@');
    if (at > 0) add(ctx.email.slice(0, at));
  }
  return [...out];
}

/** zxcvbn matched the whole password as one entry of the common-password list. */
function isDisguisedCommon(sequence: readonly MatchExtended[], pw: string): boolean {
  if (sequence.length !== 1) return false;
  const m = sequence[0]!;
  return (
    m.pattern === 'dictionary' && 'dictionaryName' in m && m.dictionaryName === 'passwords' && m.i === 0 && m.j === pw.length - 1
  );
}
