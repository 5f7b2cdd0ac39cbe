// renderReport: results.json -> a self-contained HTML page (inline CSS and SVG, no scripts, no
// fonts, no network: a Content-Security-Policy forbids any fetch) plus the same charts as SVG files.
import type { BenchResults, RunResult } from '@lora/sdk';

import { barChart, escapeXml, isFiniteNumber, lineChart, num, runColor, type LineSeries, type Point } from './svg.js';
import { noiseNotes } from './loss-stats.js';
import { fmt, MiB, summaryTable, thresholdKeys } from './table.js';

export interface Chart {
  /** File stem: charts/<name>.svg. */
  name: string;
  title: string;
  svg: string;
  /** What the chart left out (non-finite values, empty series), also printed inside the SVG. */
  notes: string[];
}

export interface RenderedReport {
  html: string;
  charts: { name: string; svg: string }[];
}

function runs(results: BenchResults): RunResult[] {
  return Array.isArray(results.runs) ? results.runs : [];
}

function label(r: RunResult, i: number): string {
  const l = typeof r.label === 'string' && r.label.trim() ? r.label : `run ${i + 1}`;
  return l;
}

function countBad(points: Point[]): number {
  return points.filter((p) => !Number.isFinite(p.x) || !Number.isFinite(p.y)).length;
}

function plural(n: number, one: string, many = `${one}s`): string {
  return `${n.toLocaleString('en-US')} ${n === 1 ? one : many}`;
}

/** One legend entry per run; a run with nothing drawn says so. */
function legendFor(rs: RunResult[], series: LineSeries[]): { name: string; color: string }[] {
  return rs.map((r, i) => {
    const name = label(r, i);
    const drawn = series.some((s) => s.legendKey === name && s.points.some((p) => Number.isFinite(p.x) && Number.isFinite(p.y)));
    return { name: drawn ? name : `${name} (no data)`, color: runColor(i) };
  });
}

function lossChart(results: BenchResults): Chart {
  const series: LineSeries[] = [];
  const notes: string[] = [];
  const rs = runs(results);
  rs.forEach((r, i) => {
    const name = label(r, i);
    const color = runColor(i);
    const steps: Point[] = (r.steps ?? []).map((s) => ({ x: num(s.step), y: num(s.loss) }));
    const rounds: Point[] = (r.logRounds ?? []).map((g) => ({ x: num(g.step), y: num(g.meanLoss) }));
    series.push({ name: `${name} per step`, color, points: steps, style: 'faint', legendKey: name });
    series.push({ name: `${name} logging-round mean`, color, points: rounds, style: 'solid', markers: rounds.length <= 60, legendKey: name });
    if (!steps.length && !rounds.length) notes.push(`${name}: no loss recorded.`);
    else {
      const bs = countBad(steps);
      const br = countBad(rounds);
      if (bs) notes.push(`${name}: ${plural(bs, 'step')} with a non-finite loss (NaN/Infinity) not drawn.`);
      if (br) notes.push(`${name}: ${plural(br, 'logging round')} with a non-finite mean not drawn.`);
    }
  });
  const every = num(results.config?.loggingSteps);
  const roundLabel = Number.isFinite(every) && every > 0 ? `mean of each ${plural(every, 'step')}` : 'logging-round mean';
  const svg = lineChart({
    id: 'loss',
    title: 'Training loss',
    xLabel: 'step',
    yLabel: 'loss',
    series,
    legend: legendFor(rs, series),
    styleKey: [
      { label: 'loss per step', style: 'faint' },
      { label: roundLabel, style: 'solid' },
    ],
    hlines: thresholdKeys(results)
      .map((k) => ({ y: num(k), label: `loss ${k}` }))
      .filter((h) => Number.isFinite(h.y)),
    notes,
  });
  return { name: 'loss', title: 'Training loss', svg, notes };
}

function memoryChart(results: BenchResults): Chart {
  const series: LineSeries[] = [];
  const notes: string[] = [];
  const rs = runs(results);
  rs.forEach((r, i) => {
    const name = label(r, i);
    const color = runColor(i);
    const samples = r.memory?.samples ?? [];
    if (!samples.length) {
      notes.push(`${name}: no memory samples recorded.`);
      return;
    }
    const rss: Point[] = samples.map((s) => ({ x: num(s.tMs) / 1000, y: num(s.rssBytes) / MiB }));
    const dev: Point[] = samples.map((s) => ({ x: num(s.tMs) / 1000, y: num(s.deviceAllocatedBytes) / MiB }));
    series.push({ name: `${name} RSS`, color, points: rss, style: 'solid', legendKey: name });
    series.push({ name: `${name} device allocated`, color, points: dev, style: 'dashed', legendKey: name });
    const b1 = countBad(rss);
    const b2 = countBad(dev);
    if (b1) notes.push(`${name}: ${plural(b1, 'sample')} with a missing RSS not drawn.`);
    if (b2) notes.push(`${name}: ${plural(b2, 'sample')} with missing device-allocated bytes not drawn.`);
  });
  const device = results.machine?.deviceName ?? results.machine?.device ?? 'device';
  const svg = lineChart({
    id: 'memory',
    title: 'Memory over time',
    xLabel: 'time since the run started (s)',
    yLabel: 'MB (2^20 bytes)',
    series,
    legend: legendFor(rs, series),
    styleKey: [
      { label: 'process RSS', style: 'solid' },
      { label: `allocated on ${String(device).slice(0, 14)}`, style: 'dashed' },
    ],
    notes,
  });
  return { name: 'memory', title: 'Memory over time', svg, notes };
}

function bars(
  results: BenchResults,
  name: string,
  title: string,
  yLabel: string,
  get: (r: RunResult) => unknown,
  format: (v: number) => string,
  what: string,
): Chart {
  const rs = runs(results);
  const notes: string[] = [];
  const data = rs.map((r, i) => {
    const value = num(get(r));
    if (!Number.isFinite(value)) notes.push(`${label(r, i)}: ${what} is ${Number.isNaN(value) ? 'missing (NaN)' : 'infinite'}, no bar drawn.`);
    return { name: label(r, i), color: runColor(i), value };
  });
  return { name, title, svg: barChart({ id: name, title, yLabel, bars: data, format, notes }), notes };
}

/** Every chart of the report, in page order. Quant sweeps add base-memory and error charts. */
export function renderCharts(results: BenchResults): Chart[] {
  const charts = [
    lossChart(results),
    memoryChart(results),
    bars(results, 'runtime', 'Runtime', 'seconds', (r) => r.runtimeSec, (v) => `${fmt(v, 1)} s`, 'the runtime'),
    bars(results, 'final-loss', 'Final training loss', 'loss', (r) => r.finalLoss, (v) => fmt(v, 3), 'the final loss'),
    bars(results, 'tokens-per-sec', 'Training throughput', 'tokens / s', (r) => r.tokensPerSec, (v) => fmt(v, Math.abs(v) >= 100 ? 0 : 1), 'tokens/s'),
  ];
  if (runs(results).some((r) => r.quant)) {
    charts.push(
      bars(results, 'quant-base-memory', 'Base weight memory', 'MB (2^20 bytes)', (r) => (r.quant ? num(r.quant.baseBytes) / MiB : Number.NaN), (v) => fmt(v, 1), 'the base size'),
      bars(results, 'quant-error', 'Base weight reconstruction error', 'NMSE', (r) => r.quant?.reconstructionNmse ?? Number.NaN, (v) => (v !== 0 && Math.abs(v) < 1e-3 ? v.toExponential(2) : fmt(v, 4)), 'the error'),
    );
  }
  return charts;
}

const CSS = `
:root { color-scheme: light; }
* { box-sizing: border-box; }
body { margin: 0; padding: 28px 36px 48px; font: 15px/1.5 system-ui, -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif; color: #1d1d1f; background: #f6f7f9; }
main { max-width: 1580px; margin: 0 auto; }
h1 { font-size: 26px; margin: 0 0 4px; }
h2 { font-size: 19px; margin: 30px 0 10px; }
.sub { color: #555; margin: 0 0 18px; }
.card { background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 16px 20px; }
dl.what { display: grid; grid-template-columns: max-content 1fr; gap: 4px 18px; margin: 0; }
dl.what dt { font-weight: 600; color: #444; }
dl.what dd { margin: 0; }
.table-wrap { overflow-x: auto; background: #fff; border: 1px solid #dde1e6; border-radius: 8px; }
/* Fits 1300 px with six runs: run labels and long cells wrap at spaces, numbers never break, and the
   metric column gives way first; a wider sweep scrolls inside .table-wrap, never the page. */
table { border-collapse: collapse; font-size: 13px; width: 100%; }
thead th { white-space: normal; overflow-wrap: break-word; vertical-align: bottom; }
td { white-space: normal; }
td { min-width: 120px; }
th, td { padding: 6px 10px; border-bottom: 1px solid #eceef1; }
th { background: #f0f2f5; font-weight: 600; text-align: right; }
th.metric { background: #fafbfc; font-weight: 600; }
th.metric { min-width: 170px; }
th.metric .why { display: block; font-weight: 400; color: #666; font-size: 12px; white-space: normal; max-width: 640px; }
tbody tr:hover td, tbody tr:hover th { background: #f3f6fb; }
th.left, td.left { text-align: left; }
td { text-align: right; font-variant-numeric: tabular-nums; }
td.best { font-weight: 700; background: #e7f5ec; color: #0b5d2a; }
td.best::after { content: "\\00a0*"; }
tr:last-child td { border-bottom: none; }
.legend-note { color: #555; font-size: 13px; margin: 6px 2px 0; }
ul.conclusions { margin: 0; padding-left: 22px; }
ul.conclusions li { margin: 4px 0; }
.charts { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(680px, 100%), 1fr)); gap: 18px; }
figure { margin: 0; background: #fff; border: 1px solid #dde1e6; border-radius: 8px; padding: 8px; }
figure svg { display: block; width: 100%; height: auto; }
figcaption { font-size: 13px; color: #555; padding: 4px 8px 2px; }
footer { margin-top: 30px; color: #777; font-size: 12px; }
`;

function what(results: BenchResults): string {
  const c = results.config ?? ({} as BenchResults['config']);
  const m = results.machine ?? ({} as BenchResults['machine']);
  const ranks = Array.isArray(c.ranks) ? c.ranks.join(', ') : '';
  const rows: [string, string][] = [
    ['Model', `${c.modelDescription ?? ''}${c.model ? ` (${c.model})` : ''}`],
    ['Data', `${c.dataDescription ?? ''}${c.data ? ` (${c.data})` : ''}${isFiniteNumber(c.split) ? `, ${fmt(c.split * 100, 0)} % used for training` : ''}`],
    [
      'Training',
      [
        results.sweep === 'quant' ? `base formats ${runs(results).map((r) => r.baseDtype).join(', ')}` : `LoRA ranks ${ranks}`,
        isFiniteNumber(c.alphaMult) ? `alpha = ${c.alphaMult}·r` : '',
        isFiniteNumber(c.dropout) ? `dropout ${c.dropout}` : '',
        Array.isArray(c.targets) ? `targets ${c.targets.join(', ')}` : '',
        isFiniteNumber(c.steps) ? `${fmt(c.steps, 0)} steps` : '',
        isFiniteNumber(c.batch) && isFiniteNumber(c.seq) ? `batch ${c.batch} × ${c.seq} tokens` : '',
        isFiniteNumber(c.lr) ? `lr ${c.lr !== 0 && Math.abs(c.lr) < 1e-3 ? c.lr.toExponential() : c.lr}` : '',
        c.dtype ? `compute ${c.dtype}` : '',
        isFiniteNumber(c.seed) ? `seed ${c.seed}` : '',
        isFiniteNumber(c.loggingSteps) ? `logging every ${c.loggingSteps} steps` : '',
      ]
        .filter(Boolean)
        .join('; '),
    ],
    [
      'Machine',
      [
        m.cpu ? `${m.cpu}${isFiniteNumber(m.cores) ? ` (${m.cores} cores)` : ''}` : '',
        m.device ? `device ${m.device}${m.deviceName ? ` (${m.deviceName})` : ''}` : '',
        m.backend ? `backend ${m.backend}` : '',
        isFiniteNumber(m.peakGflops) ? `measured peak ${fmt(m.peakGflops, 0)} GFLOP/s` : '',
        m.node ? `Node ${m.node}` : '',
      ]
        .filter(Boolean)
        .join('; '),
    ],
    ['When', String(results.createdAt ?? '')],
  ];
  return `<dl class="what">${rows.map(([k, v]) => `<dt>${escapeXml(k)}</dt><dd>${escapeXml(v || 'not recorded')}</dd>`).join('')}</dl>`;
}

/**
 * The summary table for the page: one row per metric and one column per run, so that a sweep's
 * runs sit side by side and the table fits a screen (the terminal table has one row per run).
 */
function tableHtml(results: BenchResults): string {
  const { columns, rows } = summaryTable(results);
  const runsHead = columns[0];
  const metricCols = columns.map((c, i) => ({ c, i })).filter(({ c }) => c !== runsHead);
  const head = `<th class="left" scope="col">metric</th>${rows.map((row) => `<th scope="col">${escapeXml(row[0].text)}</th>`).join('')}`;
  const body = rows.length
    ? metricCols
        .map(
          ({ c, i }) =>
            `<tr><th class="left metric" scope="row" title="${escapeXml(c.title)}">${escapeXml(c.header)}<span class="why">${escapeXml(c.title)}</span></th>${rows
              .map((row) => `<td${row[i].best ? ' class="best"' : ''}>${escapeXml(row[i].text)}</td>`)
              .join('')}</tr>`,
        )
        .join('\n')
    : '<tr><td class="left">no runs</td></tr>';
  return `<div class="table-wrap"><table id="summary"><thead><tr>${head}</tr></thead><tbody>\n${body}\n</tbody></table></div>
<p class="legend-note">Marked <b>*</b>: best in its row (lowest runtime, loss, steps to a loss and memory; highest tokens/s, MFU and GPU utilisation; eval metrics as their description says). MB = 2^20 bytes. "never": the loss did not reach that threshold; "n/a": not recorded or not a finite number.</p>`;
}

/** The report page and its charts. Never throws on odd numbers: it draws what is valid and says what is not. */
export function renderReport(results: BenchResults): RenderedReport {
  const charts = renderCharts(results);
  const sweep = results.sweep === 'quant' ? 'quantization sweep' : 'LoRA rank sweep';
  const title = `lora bench — ${sweep}`;
  const subtitle = `${runs(results).length} run${runs(results).length === 1 ? '' : 's'}: ${runs(results)
    .map((r, i) => label(r, i))
    .join(', ')}`;
  const conclusions = [...(Array.isArray(results.conclusions) ? results.conclusions : []), ...noiseNotes(results)];
  const html = `<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<link rel="icon" href="data:,">
<title>${escapeXml(title)}</title>
<style>${CSS}</style>
</head>
<body>
<main>
<h1>${escapeXml(title)}</h1>
<p class="sub">${escapeXml(subtitle)}</p>
<section class="card" id="what-ran">
${what(results)}
</section>
<h2>Summary</h2>
${tableHtml(results)}
<h2>Conclusions</h2>
<section class="card" id="conclusions">
${conclusions.length ? `<ul class="conclusions">${conclusions.map((c) => `<li>${escapeXml(String(c))}</li>`).join('')}</ul>` : '<p>No conclusions were computed for this run.</p>'}
</section>
<h2>Charts</h2>
<section class="charts">
${charts
  .map(
    (c) =>
      `<figure id="fig-${escapeXml(c.name)}">${c.svg}<figcaption>${escapeXml(c.title)}${
        c.notes.length ? ` (${c.notes.length} note${c.notes.length === 1 ? '' : 's'} under the plot on what was not drawn)` : ''
      } — also saved as charts/${escapeXml(c.name)}.svg</figcaption></figure>`,
  )
  .join('\n')}
</section>
<footer>Generated by lora from results.json (schema ${escapeXml(String(results.schema ?? ''))}). This page is self-contained: no scripts, fonts or network requests.</footer>
</main>
</body>
</html>
`;
  return { html, charts: charts.map((c) => ({ name: c.name, svg: c.svg })) };
}
