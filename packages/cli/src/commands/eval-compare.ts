// `lora eval compare DIR…`: one table across experiments (lora eval outputs, lora bench results),
// the best value per column marked; Markdown on stdout, and with --html FILE a self-contained page.
// --seed-table gives the seed study's eight columns instead (report/seed-table.ts).
import { mkdir } from 'node:fs/promises';
import { dirname, resolve } from 'node:path';

import { compareTable, loadExperiments, writeFileAtomic, type CompareTable, type Experiment } from '@lora/sdk';

import { parseFlags, type CommandSpec } from '../flags.js';
import { formatSeedMarkdown, renderSeedTableHtml, seedTable, type SeedTable } from '../report/seed-table.js';
import { escapeXml, lineChart, runColor } from '../report/svg.js';
import { CONFIG_HEADERS, configCells, configOfExperiment, configWarnings, isTrainFolder, loadTrainRun, type RunConfig, type TrainRun } from './compare-runs.js';

export const COMPARE_SPEC: CommandSpec = {
  command: 'lora eval compare',
  synopsis: 'lora eval compare PATH... [--seed-table] [--html FILE] [--markdown FILE] [--json]',
  description: [
    'PATH: a lora eval --out folder (or its summary.json), a lora bench --out folder (or its results.json; each run is',
    'one row), or a lora train --out folder (train_results.json and trainer_log.jsonl: final metrics and loss curve).',
    'Prints one Markdown table with the runs\' config (data, split, n) beside their metrics, the best value per column',
    'marked * (ties are not marked), and a warning when the rows were measured on different data, splits or sizes.',
    'With --seed-table: the seed study\'s table instead, Experiment | BLEU | Correctness | Helpfulness | METEOR | ROUGE |',
    'tokens | P50 latency (s) (judge columns "—" for a run without a judge); the HTML page shows it above the full table.',
  ].join('\n'),
  flags: [
    { name: 'seed-table', kind: 'boolean', help: 'print the seed study\'s eight-column table (BLEU … P50 latency) instead of every metric' },
    { name: 'html', kind: 'string', metavar: 'FILE', help: 'also write the table as a self-contained HTML page' },
    { name: 'markdown', kind: 'string', metavar: 'FILE', help: 'also write the printed Markdown table to FILE' },
    { name: 'json', kind: 'boolean', help: 'print the experiments and table as JSON instead' },
  ],
  positionals: { name: 'at least one lora eval or lora bench output folder (or lora train --out folder)', min: 1, max: Infinity },
};

const LEGEND = '* best in its column (highest BLEU, ROUGE, METEOR, judge scores and throughput; lowest latency, errors and loss; n, token counts and config are not ranked; a tie for best is not marked).';

/** The runs' config beside the metrics, and what differs between them. */
export interface CompareContext {
  configs: RunConfig[];
  warnings: string[];
  /** Train folders' loss curves (for the HTML page). */
  curves?: Array<{ experiment: Experiment; name: string; curve: TrainRun['curve']; evalCurve: TrainRun['evalCurve'] }>;
}

/** Readable headers for the metrics HF's Trainer writes (train_results.json, eval_results.json). */
const TRAIN_HEADERS: Record<string, string> = {
  train_loss: 'train loss (mean)', train_runtime: 'train runtime s', train_samples_per_second: 'train samples/s',
  train_tokens_per_second: 'train tokens/s', train_steps_per_second: 'train steps/s', eval_loss: 'eval loss', perplexity: 'eval perplexity',
  eval_runtime: 'eval runtime s', eval_samples: 'eval samples', loss: 'eval loss', train_samples: 'train samples', total_flos: 'total FLOs', last_logged_loss: 'last logged loss',
};
const HIGHER_IS_BETTER = /per_second|throughput/;
const UNRANKED = /^(eval_samples|train_samples|total_flos|epoch)$/;

/** Train-metric headers and directions; a tie for best marks no cell (nothing stands out). */
export function refineTable(t: CompareTable): CompareTable {
  const columns = t.columns.map((c) => ({
    ...c,
    header: TRAIN_HEADERS[c.key] ?? c.header,
    best: UNRANKED.test(c.key) ? null : HIGHER_IS_BETTER.test(c.key) ? ('max' as const) : c.best,
    decimals: /samples$|flos$/.test(c.key) ? 0 : /runtime|per_second/.test(c.key) ? 2 : c.decimals,
  }));
  const rows = t.rows.map((r) => ({ ...r, cells: r.cells.map((cell) => ({ ...cell })) }));
  columns.forEach((c, i) => {
    const vals = rows.map((r) => r.cells[i].value).filter((v): v is number => v !== null);
    if (c.decimals !== t.columns[i].decimals) {
      for (const r of rows) {
        const v = r.cells[i].value;
        if (v !== null) r.cells[i].text = v.toLocaleString('en-US', { minimumFractionDigits: c.decimals, maximumFractionDigits: c.decimals });
      }
    }
    for (const r of rows) r.cells[i].best = false;
    if (!c.best || vals.length < 2) return;
    const best = c.best === 'min' ? Math.min(...vals) : Math.max(...vals);
    const at = rows.filter((r) => r.cells[i].value === best);
    if (at.length === 1) at[0].cells[i].best = true;
  });
  return { ...t, columns, rows };
}

/** The comparison as a Markdown table (padded so that it also reads as plain text). */
export function formatCompareMarkdown(t: CompareTable, ctx?: CompareContext): string {
  const cfg = ctx ? CONFIG_HEADERS : [];
  const headers = ['experiment', ...cfg, ...t.columns.map((c) => c.header)];
  const marked = t.columns.map((_, i) => t.rows.some((r) => r.cells[i].best));
  const body = t.rows.map((r, ri) => [
    r.experiment.name.replace(/\|/g, '\\|'),
    ...(ctx ? configCells(ctx.configs[ri]).map((c) => c.replace(/\|/g, '\\|')) : []),
    ...r.cells.map((c, i) => (c.best ? `${c.text}*` : marked[i] ? `${c.text} ` : c.text)),
  ]);
  const widths = headers.map((h, i) => Math.max(h.length, 3, ...body.map((row) => row[i].length)));
  const pad = (s: string, i: number) => (i <= cfg.length ? s.padEnd(widths[i]) : s.padStart(widths[i]));
  const lines = [
    `| ${headers.map(pad).join(' | ')} |`,
    `|${widths.map((w, i) => (i <= cfg.length ? `:${'-'.repeat(w + 1)}` : `${'-'.repeat(w + 1)}:`)).join('|')}|`,
    ...body.map((row) => `| ${row.map(pad).join(' | ')} |`),
  ];
  if (!t.rows.length) lines.push('(no experiments)');
  if (marked.some(Boolean)) lines.push('', LEGEND);
  for (const w of ctx?.warnings ?? []) lines.push(`warning: ${w}`);
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
/* Headers wrap and numbers do not, so that about twenty metric columns fit 1300 px; more scroll inside .table-wrap. */
table { border-collapse: collapse; font-size: 13px; width: 100%; }
th { white-space: normal; overflow-wrap: break-word; vertical-align: bottom; }
td { white-space: nowrap; }
th, td { padding: 6px 10px; border-bottom: 1px solid #eceef1; }
th { background: #f0f2f5; font-weight: 600; text-align: right; }
th.left, td.left { text-align: left; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; background: #e7f5ec; color: #0b5d2a; }
td.best::after { content: " *"; }
td.missing { color: #999; }
h2 { font-size: 19px; margin: 26px 0 8px; }
tbody tr:hover td { background: #f3f6fb; }
tr:last-child td { border-bottom: none; }
.legend-note { color: #555; font-size: 13px; margin: 6px 2px 0; }
ul.notes { color: #7a4b00; font-size: 13px; }
ul.warnings { color: #9b1c1c; font-size: 14px; font-weight: 600; }
td.cfg, th.cfg { color: #555; background: #fafbfc; }
.chart svg { max-width: 100%; height: auto; }
footer { margin-top: 30px; color: #777; font-size: 12px; }
`;

/** The comparison as a self-contained HTML page (inline CSS, no scripts, a CSP that forbids fetches). */
export function renderCompareHtml(t: CompareTable, ctx?: CompareContext, seed?: SeedTable): string {
  const cfgHead = ctx ? CONFIG_HEADERS.map((h) => `<th class="left cfg" scope="col" title="not ranked">${h}</th>`).join('') : '';
  const head = `<th class="left" scope="col">experiment</th>${cfgHead}${t.columns
    .map((c) => `<th scope="col" title="${escapeXml(c.best ? `${c.best === 'max' ? 'higher' : 'lower'} is better` : 'not ranked')}">${escapeXml(c.header)}</th>`)
    .join('')}`;
  const body = t.rows.length
    ? t.rows
        .map(
          (r, ri) =>
            `<tr><td class="left" title="${escapeXml(r.experiment.source)}">${escapeXml(r.experiment.name)}</td>${
              ctx ? configCells(ctx.configs[ri]).map((c) => `<td class="left cfg">${escapeXml(c)}</td>`).join('') : ''
            }${r.cells
              .map((c) => `<td${c.best ? ' class="best"' : ''}>${escapeXml(c.text)}</td>`)
              .join('')}</tr>`,
        )
        .join('\n')
    : `<tr><td class="left" colspan="${t.columns.length + 1 + (ctx ? CONFIG_HEADERS.length : 0)}">no experiments</td></tr>`;
  const curves = (ctx?.curves ?? []).filter((c) => c.curve.length > 0);
  const chart = curves.length
    ? lineChart({
        id: 'train-loss', title: 'Training loss per step (train folders)', xLabel: 'step', yLabel: 'loss',
        series: curves.flatMap((c, i) => [
          { name: c.name, color: runColor(i), points: c.curve.map((p) => ({ x: p.step, y: p.loss })), legendKey: c.name },
          ...(c.evalCurve.length ? [{ name: `${c.name} eval`, color: runColor(i), points: c.evalCurve.map((p) => ({ x: p.step, y: p.loss })), style: 'dashed' as const, markers: true, legendKey: c.name }] : []),
        ]),
        legend: curves.map((c, i) => ({ name: c.name, color: runColor(i) })),
        styleKey: curves.some((c) => c.evalCurve.length) ? [{ label: 'train loss', style: 'solid' }, { label: 'eval loss', style: 'dashed' }] : undefined,
      })
    : '';
  return `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>lora eval — comparison</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>lora eval — comparison</h1>
<p class="sub">${t.rows.length} experiment${t.rows.length === 1 ? '' : 's'}</p>
${seed ? `${renderSeedTableHtml(seed)}\n<h2>All metrics</h2>` : ''}
<div class="table-wrap"><table id="compare"><thead><tr>${head}</tr></thead><tbody>
${body}
</tbody></table></div>
<p class="legend-note">Marked <b>*</b>: ${escapeXml(LEGEND.slice(2))} "n/a": not recorded.</p>
${ctx?.warnings.length ? `<ul class="warnings">${ctx.warnings.map((w) => `<li>warning: ${escapeXml(w)}</li>`).join('')}</ul>` : ''}
${chart ? `<div class="chart">${chart}</div>` : ''}
${t.notes.length ? `<ul class="notes">${t.notes.map((n) => `<li>${escapeXml(n)}</li>`).join('')}</ul>` : ''}
<footer>Generated by lora eval compare. Self-contained: no scripts, fonts or network requests.</footer>
</main>
</body>
</html>
`;
}

export async function runCompare(argv: string[]): Promise<number> {
  const { values: v, positionals } = parseFlags(COMPARE_SPEC, argv);
  const values = v as { html?: string; markdown?: string; json?: boolean; 'seed-table'?: boolean };
  const experiments: Experiment[] = [];
  const configs: RunConfig[] = [];
  const kinds: string[] = [];
  const notes: string[] = [];
  const curves: NonNullable<CompareContext['curves']> = [];
  for (const p of positionals) {
    if (isTrainFolder(p)) {
      const run = loadTrainRun(p, notes);
      experiments.push(run.experiment);
      configs.push(run.config);
      kinds.push('train');
      curves.push({ experiment: run.experiment, name: run.experiment.name, curve: run.curve, evalCurve: run.evalCurve });
      continue;
    }
    const loaded = await loadExperiments([p]);
    notes.push(...loaded.notes);
    for (const e of loaded.experiments) {
      experiments.push(e);
      configs.push(configOfExperiment(e));
      kinds.push(e.kind);
    }
  }
  // Same name twice across paths (two folders called "out"): add the path so that rows can be told apart.
  const seen = new Map<string, number>();
  for (const e of experiments) seen.set(e.name, (seen.get(e.name) ?? 0) + 1);
  for (const e of experiments) if ((seen.get(e.name) ?? 0) > 1) e.name = `${e.name} (${e.source})`;
  for (const c of curves) c.name = c.experiment.name;
  const table = refineTable(compareTable(experiments, notes));
  const warnings = configWarnings(experiments.map((e, i) => ({ name: e.name, kind: kinds[i], config: configs[i] })));
  const ctx: CompareContext = { configs, warnings, curves };
  for (const w of warnings) process.stderr.write(`lora eval compare: warning: ${w}\n`);
  const seed = values['seed-table'] ? seedTable(experiments) : undefined;
  const markdown = seed ? formatSeedMarkdown(seed) : formatCompareMarkdown(table, ctx);
  // Atomic, so a reader (a CI artifact, a README include) never sees half a table.
  const save = async (path: string, text: string) => {
    const file = resolve(path);
    await mkdir(dirname(file), { recursive: true });
    await writeFileAtomic(file, [new TextEncoder().encode(text)]);
  };
  if (values.html) await save(values.html, renderCompareHtml(table, ctx, seed));
  if (values.markdown) await save(values.markdown, markdown);
  if (values.json) {
    const seedJson = seed && { columns: seed.columns.map(({ header, means, best, decimals }) => ({ header, means, best, decimals })), rows: seed.rows, notes: seed.notes };
    process.stdout.write(`${JSON.stringify({ experiments, columns: table.columns, rows: table.rows.map((r, i) => ({ name: r.experiment.name, config: configs[i], cells: r.cells })), warnings, notes, ...(seedJson ? { seed: seedJson } : {}) }, null, 2)}\n`);
  } else {
    process.stdout.write(markdown);
    for (const f of [values.html, values.markdown]) if (f) process.stdout.write(`\nWrote ${resolve(f)}\n`);
  }
  return 0;
}
