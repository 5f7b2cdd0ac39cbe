// `lora eval compare DIR…`: one table across experiments (lora eval outputs, lora bench results),
// the best value per column marked; Markdown on stdout, and with --html FILE a self-contained page.
import { mkdir, writeFile } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

import { compareTable, loadExperiments, type CompareTable } from '@lora/sdk';

import { parseFlags, type CommandSpec } from '../flags.js';
import { escapeXml } from '../report/svg.js';

export const COMPARE_SPEC: CommandSpec = {
  command: 'lora eval compare',
  synopsis: 'lora eval compare PATH... [--html FILE] [--json]',
  description: [
    'PATH: a lora eval --out folder (or its summary.json), a lora bench --out folder (or its results.json; each run is',
    'one row), or a lora train --out folder (train_results.json and trainer_log.jsonl: final metrics and loss curve).',
    'Prints one Markdown table with the runs\' config (data, split, n) beside their metrics, the best value per column',
    'marked * (ties are not marked), and a warning when the rows were measured on different data, splits or sizes.',
  ].join('\n'),
  flags: [
    { name: 'html', kind: 'string', metavar: 'FILE', help: 'also write the table as a self-contained HTML page' },
    { name: 'json', kind: 'boolean', help: 'print the experiments and table as JSON instead' },
  ],
  positionals: { name: 'at least one lora eval or lora bench output folder (or lora train --out folder)', min: 1, max: Infinity },
};

const LEGEND = '* best in its column (highest BLEU, ROUGE, METEOR and judge scores; lowest latency, errors and loss; n and token counts are not ranked).';

/** The comparison as a Markdown table (padded so that it also reads as plain text). */
export function formatCompareMarkdown(t: CompareTable): string {
  const headers = ['experiment', ...t.columns.map((c) => c.header)];
  const marked = t.columns.map((_, i) => t.rows.some((r) => r.cells[i].best));
  const body = t.rows.map((r) => [r.experiment.name.replace(/\|/g, '\\|'), ...r.cells.map((c, i) => (c.best ? `${c.text}*` : marked[i] ? `${c.text} ` : c.text))]);
  const widths = headers.map((h, i) => Math.max(h.length, 3, ...body.map((row) => row[i].length)));
  const pad = (s: string, i: number) => (i === 0 ? s.padEnd(widths[i]) : s.padStart(widths[i]));
  const lines = [
    `| ${headers.map(pad).join(' | ')} |`,
    `|${widths.map((w, i) => (i === 0 ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...body.map((row) => `| ${row.map(pad).join(' | ')} |`),
  ];
  if (!t.rows.length) lines.push('(no experiments)');
  if (marked.some(Boolean)) lines.push('', LEGEND);
  for (const n of t.notes) lines.push(`note: ${n}`);
  return `${lines.join('\n')}\n`;
}

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 28px 36px 48px; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1d1d1f; background: #f6f7f9; }
main { max-width: 1580px; margin: 0 auto; }
h1 { font-size: 26px; margin: 0 0 4px; }
.sub { color: #555; margin: 0 0 18px; }
.table-wrap { overflow-x: auto; background: #fff; border: 1px solid #dde1e6; border-radius: 8px; }
table { border-collapse: collapse; font-size: 13px; white-space: nowrap; width: 100%; }
th, td { padding: 6px 10px; border-bottom: 1px solid #eceef1; }
th { background: #f0f2f5; font-weight: 600; text-align: right; }
th.left, td.left { text-align: left; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; background: #e7f5ec; color: #0b5d2a; }
td.best::after { content: " *"; }
tbody tr:hover td { background: #f3f6fb; }
tr:last-child td { border-bottom: none; }
.legend-note { color: #555; font-size: 13px; margin: 6px 2px 0; }
ul.notes { color: #7a4b00; font-size: 13px; }
footer { margin-top: 30px; color: #777; font-size: 12px; }
`;

/** The comparison as a self-contained HTML page (inline CSS, no scripts, a CSP that forbids fetches). */
export function renderCompareHtml(t: CompareTable): string {
  const head = `<th class="left" scope="col">experiment</th>${t.columns
    .map((c) => `<th scope="col" title="${escapeXml(c.best ? `${c.best === 'max' ? 'higher' : 'lower'} is better` : 'not ranked')}">${escapeXml(c.header)}</th>`)
    .join('')}`;
  const body = t.rows.length
    ? t.rows
        .map(
          (r) =>
            `<tr><td class="left" title="${escapeXml(r.experiment.source)}">${escapeXml(r.experiment.name)}</td>${r.cells
              .map((c) => `<td${c.best ? ' class="best"' : ''}>${escapeXml(c.text)}</td>`)
              .join('')}</tr>`,
        )
        .join('\n')
    : `<tr><td class="left" colspan="${t.columns.length + 1}">no experiments</td></tr>`;
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>lora eval — comparison</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>lora eval — comparison</h1>
<p class="sub">${t.rows.length} experiment${t.rows.length === 1 ? '' : 's'}</p>
<div class="table-wrap"><table id="compare"><thead><tr>${head}</tr></thead><tbody>
${body}
</tbody></table></div>
<p class="legend-note">Marked <b>*</b>: ${escapeXml(LEGEND.slice(2))} "n/a": not recorded.</p>
${t.notes.length ? `<ul class="notes">${t.notes.map((n) => `<li>${escapeXml(n)}</li>`).join('')}</ul>` : ''}
<footer>Generated by lora eval compare. Self-contained: no scripts, fonts or network requests.</footer>
</main>
</body>
</html>
`;
}

export async function runCompare(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseFlags(COMPARE_SPEC, argv);
  const values = v as { html?: string; json?: boolean };
  const { experiments, notes } = await loadExperiments(positionals);
  const table = compareTable(experiments, notes);
  if (values.html) {
    const file = resolve(values.html);
    await mkdir(dirname(file), { recursive: true });
    await writeFile(file, renderCompareHtml(table));
  }
  if (values.json) {
    process.stdout.write(`${JSON.stringify({ experiments, columns: table.columns, rows: table.rows.map((r) => ({ name: r.experiment.name, cells: r.cells })), notes }, null, 2)}\n`);
  } else {
    process.stdout.write(formatCompareMarkdown(table));
    if (values.html) process.stdout.write(`\nWrote ${resolve(values.html)}\n`);
  }
  return 0;
}
