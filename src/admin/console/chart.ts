/**
 * A bar chart as an inline `<svg>` element, built as a string: no script, no `style` attributes
 * (the console's CSP allows only its hashed stylesheet, which colours the chart through classes),
 * every piece of text escaped. The chart carries its own accessible name and a one-sentence
 * summary, and each bar a `<title>` (the browser's native tooltip) with its bucket and count.
 */
import { esc } from '../../http/html.js';
import type { Series } from './stats.js';

export interface BarChartInput {
  /** Unique on the page; `[a-z0-9-]+`. */
  id: string;
  /** Accessible name, e.g. `Failed attempts per minute, last hour`. */
  title: string;
  series: Series;
  /** Text for a bucket starting at `ms`, e.g. `14:05`. */
  label: (ms: number) => string;
  /** Label every n-th bucket on the x axis (and the last one). */
  labelEvery: number;
  /** What one bucket is, for the tooltips and summary, e.g. `minute`. */
  unit: string;
  width?: number;
  height?: number;
}

const ID_RE = /^[a-z0-9-]{1,40}$/;

/** 1, 2, 5, 10, 20, 50... : the smallest such value at least `n` (and at least 1). */
export function niceCeil(n: number): number {
  if (!(n > 1)) return 1;
  const p = 10 ** Math.floor(Math.log10(n));
  for (const m of [1, 2, 5, 10]) if (m * p >= n) return m * p;
  return 10 * p;
}

function num(n: number): string {
  return Number.isInteger(n) ? String(n) : n.toFixed(1);
}

function plural(n: number, word: string): string {
  return `${n} ${word}${n === 1 ? '' : 's'}`;
}

/** The `<svg>` element. */
export function barChart(input: BarChartInput): string {
  if (!ID_RE.test(input.id)) throw new RangeError('barChart: id must be 1 to 40 characters of a-z 0-9 -');
  const width = input.width ?? 720;
  const height = input.height ?? 170;
  const { counts, start, bucketMs } = input.series;
  const n = counts.length;
  const left = 40;
  const right = 8;
  const top = 10;
  const bottom = 26;
  const plotW = width - left - right;
  const plotH = height - top - bottom;
  const max = niceCeil(Math.max(0, ...counts));
  const total = counts.reduce((a, b) => a + b, 0);
  const slot = plotW / Math.max(1, n);
  const gap = slot > 4 ? Math.min(2, slot * 0.2) : 0;
  const y = (v: number) => top + plotH - (v / max) * plotH;

  const parts: string[] = [];
  // grid lines and y labels at 0, max, and half of it when that is a whole number
  for (const v of max % 2 === 0 ? [0, max / 2, max] : [0, max]) {
    const yy = num(y(v));
    parts.push(`<line class="grid" x1="${left}" x2="${width - right}" y1="${yy}" y2="${yy}"/>`);
    parts.push(`<text class="lbl" x="${left - 6}" y="${num(y(v) + 4)}" text-anchor="end">${esc(num(v))}</text>`);
  }
  counts.forEach((c, i) => {
    const from = start + i * bucketMs;
    const x = left + i * slot + gap / 2;
    const w = Math.max(0.5, slot - gap);
    const tip = `${input.label(from)}: ${plural(c, 'failure')}`;
    if (c > 0) {
      const yy = y(c);
      parts.push(`<rect class="bar" x="${num(x)}" y="${num(yy)}" width="${num(w)}" height="${num(top + plotH - yy)}"><title>${esc(tip)}</title></rect>`);
    }
    // every n-th bucket, and the latest one when it is far enough from the label before it;
    // the first and last are anchored inwards so they stay inside the picture
    const every = Math.max(1, input.labelEvery);
    const regular = i % every === 0;
    const last = i === n - 1 && (regular || i % every >= every / 2);
    if (regular || last) {
      const anchor = i === n - 1 && n > 1 ? 'end' : i === 0 ? 'start' : 'middle';
      const lx = anchor === 'end' ? x + w : anchor === 'start' ? x : x + w / 2;
      parts.push(`<text class="lbl" x="${num(lx)}" y="${height - 8}" text-anchor="${anchor}">${esc(input.label(from))}</text>`);
    }
  });
  parts.push(`<line class="axis" x1="${left}" x2="${width - right}" y1="${num(top + plotH)}" y2="${num(top + plotH)}"/>`);
  if (total === 0) {
    parts.push(`<text class="lbl empty" x="${num(left + plotW / 2)}" y="${num(top + plotH / 2)}" text-anchor="middle">No failed attempts in this window</text>`);
  }

  let summary: string;
  if (total === 0) summary = `No failed attempts in these ${plural(n, input.unit)}.`;
  else {
    const peak = Math.max(...counts);
    const at = counts.indexOf(peak);
    summary = `${plural(total, 'failed attempt')} in these ${plural(n, input.unit)}; the busiest ${input.unit} began ${input.label(start + at * bucketMs)} with ${peak}.`;
  }
  const t = `${input.id}-title`;
  const d = `${input.id}-desc`;
  return (
    `<svg class="chart" id="${input.id}" role="img" aria-labelledby="${t} ${d}" viewBox="0 0 ${width} ${height}" width="${width}" height="${height}" xmlns="http://www.w3.org/2000/svg">` +
    `<title id="${t}">${esc(input.title)}</title><desc id="${d}">${esc(summary)}</desc>` +
    parts.join('') +
    `</svg>`
  );
}
