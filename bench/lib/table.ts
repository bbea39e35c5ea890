/** The one table the bench prints, and the rows it is made of. */

export type Verdict = 'PASS' | 'MISS' | 'INFO' | 'SKIP' | 'ERROR';

export interface Row {
  id: string;
  what: string;
  measured: string;
  target: string;
  result: Verdict;
  notes?: string[];
}

export function verdict(ok: boolean): Verdict {
  return ok ? 'PASS' : 'MISS';
}

export function fmt(n: number, digits = 2): string {
  return n.toLocaleString('en-GB', { minimumFractionDigits: digits, maximumFractionDigits: digits });
}

export function int(n: number): string {
  return Math.round(n).toLocaleString('en-GB');
}

function wrap(text: string, width: number): string[] {
  const out: string[] = [];
  let line = '';
  for (const word of text.split(' ')) {
    if (line && line.length + 1 + word.length > width) {
      out.push(line);
      line = word;
    } else line = line ? `${line} ${word}` : word;
  }
  if (line) out.push(line);
  return out;
}

export function renderTable(rows: readonly Row[]): string {
  const head: Row = { id: '#', what: 'measurement', measured: 'measured', target: 'target', result: 'INFO' };
  const wId = Math.max(...[head, ...rows].map((r) => r.id.length));
  const wWhat = Math.min(58, Math.max(...[head, ...rows].map((r) => r.what.length)));
  const wMeasured = Math.min(44, Math.max(...[head, ...rows].map((r) => r.measured.length)));
  const wTarget = Math.max(...[head, ...rows].map((r) => r.target.length));
  const line = (r: Row, res: string) => {
    const what = wrap(r.what, wWhat);
    const measured = wrap(r.measured, wMeasured);
    const n = Math.max(what.length, measured.length);
    const out: string[] = [];
    for (let i = 0; i < n; i++) {
      out.push(
        [
          (i === 0 ? r.id : '').padEnd(wId),
          (what[i] ?? '').padEnd(wWhat),
          (measured[i] ?? '').padEnd(wMeasured),
          (i === 0 ? r.target : '').padEnd(wTarget),
          i === 0 ? res : '',
        ].join('  ').trimEnd(),
      );
    }
    return out.join('\n');
  };
  const sep = '-'.repeat(wId + wWhat + wMeasured + wTarget + 8 + 6);
  const out = [line(head, 'result'), sep];
  for (const r of rows) {
    out.push(line(r, r.result));
    for (const n of r.notes ?? []) {
      wrap(n, sep.length - wId - 6).forEach((l, i) => out.push(`${' '.repeat(wId + 2)}${i === 0 ? '· ' : '  '}${l}`));
    }
  }
  return out.join('\n');
}
