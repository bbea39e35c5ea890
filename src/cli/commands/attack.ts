/**
 * `portcullis attack status|off [--json]` on the running gateway, through its admin API.
 *
 * The attack posture starts by itself when failed sign-ins across the gateway run above
 * `attack.threshold` a minute (or `attack.factor` x the day's baseline): sign-ins from networks
 * unfamiliar to the account then need a second factor. `status` shows it; `off` ends the current
 * episode (it starts again after one cooldown if the rate is still high).
 */
import { allowFlags, UsageError, type Command } from '../args.js';
import { cliActor, shortTime, withAdmin } from '../admin-client.js';

interface AttackView {
  configured: boolean;
  mode: 'threshold' | 'factor' | null;
  active: boolean;
  since: string | null;
  endsAt: string | null;
  failuresThisMinute: number;
  failuresLastMinute: number;
  threshold: number | null;
  baselinePerMinute: number | null;
  cooldownSeconds: number | null;
  quietUntil: string | null;
  last: { since: string; endedAt: string; by: string | null } | null;
  sprayedPasswords: number;
  changed?: boolean;
}

export const run: Command = async (args, io) => {
  allowFlags(args, ['json']);
  const [sub, ...rest] = args.positionals;
  if (rest.length > 0) throw new UsageError(`unexpected argument "${rest[0]}"`);
  if (sub !== 'off' && sub !== 'status') {
    throw new UsageError(sub === undefined ? 'expected status or off' : `unknown sub-command "${sub}" (expected status or off)`);
  }
  return withAdmin(args, io, 'attack', async (c) => {
    const v = sub === 'status' ? await c.get<AttackView>('/api/attack') : await c.post<AttackView>('/api/attack', { off: true, by: cliActor(io.env) });
    if (args.flags.get('json') === 'true') {
      io.stdout.write(`${JSON.stringify(v, null, 2)}\n`);
      return 0;
    }
    io.stdout.write(describe(v, sub));
    return 0;
  });
};

function num(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(2);
}

function describe(v: AttackView, sub: 'status' | 'off'): string {
  if (!v.configured) return 'attack posture: not configured (no `attack` section in the configuration)\n';
  const rate = `failed sign-ins: ${v.failuresThisMinute} this minute, ${v.failuresLastMinute} last minute; threshold ${v.threshold === null ? '-' : num(v.threshold)} a minute${
    v.mode === 'factor' && v.baselinePerMinute !== null ? ` (baseline ${num(v.baselinePerMinute)} a minute)` : ''
  }`;
  const sprayed = `passwords marked sprayed: ${v.sprayedPasswords}`;
  const lines: string[] = [];
  if (sub === 'off') {
    lines.push(v.changed ? 'attack posture ended: sign-ins from unfamiliar networks need only what the rules ask for again' : 'attack posture was not on');
    if (v.quietUntil) lines.push(`it will not start again before ${shortTime(v.quietUntil)}; after that it starts if the rate is still high`);
  } else if (v.active) {
    lines.push(`attack posture: ON since ${v.since ? shortTime(v.since) : '-'}; sign-ins from networks unfamiliar to the account need a second factor`);
    if (v.endsAt) lines.push(`ends at ${shortTime(v.endsAt)} if the rate stays at or below the threshold (portcullis attack off ends it now)`);
  } else {
    lines.push('attack posture: off');
    if (v.quietUntil) lines.push(`ended by an admin; it will not start again before ${shortTime(v.quietUntil)}`);
    if (v.last) lines.push(`last episode: ${shortTime(v.last.since)} to ${shortTime(v.last.endedAt)}${v.last.by ? ` (ended by ${v.last.by})` : ''}`);
  }
  lines.push(rate, sprayed);
  return `${lines.join('\n')}\n`;
}
