// The seed study's comparison table (LangSmith-style): one row per eval run, the same eight columns in
// the same order, the best value per column marked. Built from the experiments `lora eval compare`
// loads; rendered as Markdown (stdout or a file) and as an HTML fragment for the compare page.
import type { Experiment } from '@lora/sdk';

import { escapeXml } from './svg.js';

export interface SeedColumn {
  header: string;
  /** What the column holds, for the HTML title and the legend. */
  means: string;
  best: 'max' | 'min';
  decimals: number;
  value: (e: Experiment) => number | null;
}

export interface SeedCell {
  value: number | null;
  /** Formatted value, or "—" where the run did not record it (e.g. no judge). */
  text: string;
  best: boolean;
}

export interface SeedTable {
  columns: SeedColumn[];
  rows: Array<{ name: string; source: string; cells: SeedCell[] }>;
  /** Why cells are blank (a run without a judge, a judge that scored nothing). */
  notes: string[];
}

export const MISSING = '—';

const num = (v: number | undefined): number | null => (typeof v === 'number' && Number.isFinite(v) ? v : null);

/** The seed's columns. ROUGE is ROUGE-L F (longest common subsequence, the seed's single ROUGE figure). */
export const SEED_COLUMNS: SeedColumn[] = [
  { header: 'BLEU', means: 'corpus BLEU, 0..100', best: 'max', decimals: 2, value: (e) => num(e.metrics.bleu) },
  { header: 'Correctness', means: 'judge correctness rubric, mean score 0..1', best: 'max', decimals: 3, value: (e) => num(e.metrics.judge_correctness) },
  { header: 'Helpfulness', means: 'judge helpfulness rubric, mean score 0..1', best: 'max', decimals: 3, value: (e) => num(e.metrics.judge_helpfulness) },
  { header: 'METEOR', means: 'mean METEOR', best: 'max', decimals: 4, value: (e) => num(e.metrics.meteor) },
  { header: 'ROUGE', means: 'mean ROUGE-L F', best: 'max', decimals: 4, value: (e) => num(e.metrics.rougeL) },
  {
    header: 'tokens', means: 'prompt + completion tokens over the run', best: 'min', decimals: 0,
    value: (e) => {
      const i = num(e.metrics.tokens_in);
      const o = num(e.metrics.tokens_out);
      return i === null || o === null ? null : i + o;
    },
  },
  {
    header: 'P50 latency (s)', means: 'median time per example to the last token, seconds', best: 'min', decimals: 2,
    value: (e) => {
      const ms = num(e.metrics.latency_p50_ms);
      return ms === null ? null : ms / 1000;
    },
  },
];

function fmt(v: number, decimals: number): string {
  return v.toLocaleString('en-US', { minimumFractionDigits: decimals, maximumFractionDigits: decimals });
}

/** Best per column over the runs that have a value; a tie for best, or a single value, marks nothing. */
export function seedTable(experiments: readonly Experiment[]): SeedTable {
  const values = experiments.map((e) => SEED_COLUMNS.map((c) => c.value(e)));
  const bestOf = SEED_COLUMNS.map((c, ci) => {
    const vals = values.map((row) => row[ci]).filter((v): v is number => v !== null);
    if (vals.length < 2) return null;
    const b = c.best === 'min' ? Math.min(...vals) : Math.max(...vals);
    return vals.filter((v) => v === b).length === 1 ? b : null;
  });
  const rows = experiments.map((e, ri) => ({
    name: e.name,
    source: e.source,
    cells: SEED_COLUMNS.map((c, ci) => {
      const v = values[ri][ci];
      return { value: v, text: v === null ? MISSING : fmt(v, c.decimals), best: v !== null && v === bestOf[ci] };
    }),
  }));
  const notes: string[] = [];
  for (const e of experiments) {
    if (e.kind !== 'eval') notes.push(`${e.name}: a lora bench run (no tokens or latency recorded)`);
    else if (!e.judge) notes.push(`${e.name}: no judge (run lora eval with --judge-url and --judge-model for Correctness and Helpfulness)`);
    else if (e.metrics.judge_correctness === undefined && e.metrics.judge_helpfulness === undefined)
      notes.push(`${e.name}: the judge (${e.judge.model}) scored no example${e.judge.unreachable ? `: ${e.judge.unreachable}` : ` (${e.judge.errors} errors)`}`);
  }
  return { columns: SEED_COLUMNS, rows, notes };
}

export const SEED_LEGEND =
  '* best in its column (highest BLEU, Correctness, Helpfulness, METEOR and ROUGE; fewest tokens; lowest P50 latency; a tie is not marked). ' +
  `ROUGE is ROUGE-L F; Correctness and Helpfulness are the LLM judge's mean rubric scores (0..1); ${MISSING}: not recorded.`;

/** The seed table as Markdown, padded so that it also reads as plain text. */
export function formatSeedMarkdown(t: SeedTable): string {
  const headers = ['Experiment', ...t.columns.map((c) => c.header)];
  const marked = t.columns.map((_, i) => t.rows.some((r) => r.cells[i].best));
  const body = t.rows.map((r) => [r.name.replace(/\|/g, '\\|'), ...r.cells.map((c, i) => (c.best ? `${c.text}*` : marked[i] ? `${c.text} ` : c.text))]);
  const widths = headers.map((h, i) => Math.max(h.length, 3, ...body.map((row) => row[i].length)));
  const pad = (s: string, i: number) => (i === 0 ? s.padEnd(widths[i]) : s.padStart(widths[i]));
  const lines = [
    `| ${headers.map(pad).join(' | ')} |`,
    `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...body.map((row) => `| ${row.map(pad).join(' | ')} |`),
  ];
  if (!t.rows.length) lines.push('(no experiments)');
  lines.push('', SEED_LEGEND);
  for (const n of t.notes) lines.push(`note: ${n}`);
  return `${lines.join('\n')}\n`;
}

/** The seed table as an HTML <table id="seed"> (styled by the compare page's CSS: td.best). */
export function renderSeedTableHtml(t: SeedTable): string {
  const head = `<th class="left" scope="col">Experiment</th>${t.columns
    .map((c) => `<th scope="col" title="${escapeXml(`${c.means}; ${c.best === 'max' ? 'higher' : 'lower'} is better`)}">${escapeXml(c.header)}</th>`)
    .join('')}`;
  const body = t.rows.length
    ? t.rows
        .map((r) => `<tr><td class="left" title="${escapeXml(r.source)}">${escapeXml(r.name)}</td>${r.cells
          .map((c) => `<td${c.best ? ' class="best"' : c.value === null ? ' class="missing"' : ''}>${escapeXml(c.text)}</td>`)
          .join('')}</tr>`)
        .join('\n')
    : `<tr><td class="left" colspan="${t.columns.length + 1}">no experiments</td></tr>`;
  return `<div class="table-wrap"><table id="seed"><thead><tr>${head}</tr></thead><tbody>
${body}
</tbody></table></div>
<p class="legend-note">Marked <b>*</b>: ${escapeXml(SEED_LEGEND.slice(2))}</p>
${t.notes.length ? `<ul class="notes">${t.notes.map((n) => `<li>${escapeXml(n)}</li>`).join('')}</ul>` : ''}`;
}
