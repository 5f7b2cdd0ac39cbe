// Unit tests of the bench report: SVG charts, the summary table and the files writeReport leaves,
// on a hand-made rank sweep (fixtures/report/results.json, made by make-results.mjs there).
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { BenchResults } from '@lora/sdk';
import { afterAll, describe, expect, it } from 'vitest';

import { decimate, formatSummaryTable, MAX_POINTS, renderReport, summaryTable, writeReport } from '../src/report/index.js';
import { formatTick, niceTicks } from '../src/report/svg.js';

const here = dirname(fileURLToPath(import.meta.url));
const fixture = join(here, 'fixtures', 'report', 'results.json');
const load = (): BenchResults => JSON.parse(readFileSync(fixture, 'utf8')) as BenchResults;

/** A NaN/Infinity/undefined that leaked into an attribute, a coordinate or a label. */
const BAD = /="[^"]*(NaN|Infinity|undefined)|>(NaN|-?Infinity|undefined)[ <]/;

const CHARTS = ['loss', 'memory', 'runtime', 'final-loss', 'tokens-per-sec'];

/** Coordinates in a path's d attribute. */
function pathPoints(d: string): number {
  return (d.match(/[ML]-?[\d.]+ -?[\d.]+/g) ?? []).length;
}
function paths(svg: string): { series: string; d: string }[] {
  return [...svg.matchAll(/<path class="series" data-series="([^"]*)" d="([^"]*)"/g)].map((m) => ({ series: m[1], d: m[2] }));
}
function bars(svg: string): { series: string; width: number; height: number }[] {
  return [...svg.matchAll(/<rect class="bar" data-series="([^"]*)" x="[^"]*" y="[^"]*" width="([^"]*)" height="([^"]*)"/g)].map((m) => ({
    series: m[1],
    width: Number(m[2]),
    height: Number(m[3]),
  }));
}
function chart(r: ReturnType<typeof renderReport>, name: string): string {
  const c = r.charts.find((x) => x.name === name);
  if (!c) throw new Error(`no chart ${name}`);
  return c.svg;
}
/** A stripped-down well-formedness check: every opened element is closed in order. */
function balanced(xml: string): boolean {
  const stack: string[] = [];
  for (const m of xml.matchAll(/<(\/?)([a-zA-Z][\w:-]*)[^>]*?(\/?)>/g)) {
    if (m[3] === '/') continue;
    if (m[1] === '/') {
      if (stack.pop() !== m[2]) return false;
    } else stack.push(m[2]);
  }
  return stack.length === 0;
}

describe('renderReport on the fixture (3 ranks, a NaN loss and an empty memory series in r=128)', () => {
  const results = load();
  const out = renderReport(results);

  it('fixture has the defects it claims', () => {
    const r128 = results.runs[1];
    expect(r128.label).toBe('r=128');
    expect(r128.steps.some((s) => s.loss === null)).toBe(true); // NaN written by JSON.stringify
    expect(r128.memory.samples).toEqual([]);
  });

  it('makes the five charts, each a balanced standalone SVG with axes, ticks and labels', () => {
    expect(out.charts.map((c) => c.name)).toEqual(CHARTS);
    for (const c of out.charts) {
      expect(c.svg.startsWith('<svg xmlns="http://www.w3.org/2000/svg"')).toBe(true);
      expect(balanced(c.svg), c.name).toBe(true);
      expect(c.svg).toMatch(/class="axis"/);
      expect((c.svg.match(/class="tick"/g) ?? []).length).toBeGreaterThanOrEqual(3);
      expect(c.svg).toMatch(/class="axis-label"/);
      expect(BAD.test(c.svg), c.name).toBe(false);
    }
  });

  it('loss chart: one colour per run, per-step and logging-round lines, legend, thresholds, a note for the NaN step', () => {
    const svg = chart(out, 'loss');
    const ps = paths(svg);
    expect(ps.map((p) => p.series)).toEqual([
      'r=8 per step',
      'r=8 logging-round mean',
      'r=128 per step',
      'r=128 logging-round mean',
      'r=256 per step',
      'r=256 logging-round mean',
    ]);
    // 250 steps each; the NaN step splits r=128's line in two subpaths and is not drawn.
    expect(pathPoints(ps[0].d)).toBe(250);
    expect(pathPoints(ps[2].d)).toBe(249);
    expect((ps[2].d.match(/M/g) ?? []).length).toBe(2);
    expect(pathPoints(ps[1].d)).toBe(10);
    const colours = ['#0072B2', '#E69F00', '#009E73'];
    for (const c of colours) expect(svg).toContain(`stroke="${c}"`);
    expect(svg).toMatch(/<g class="legend">.*r=8.*r=128.*r=256.*<\/g>/s);
    expect(svg).toContain('loss 1.80'); // thresholds from the runs' own range (report/loss-stats.ts)
    expect(svg).toContain('loss 1.90');
    expect(svg).toContain('r=128: 1 step with a non-finite loss (NaN/Infinity) not drawn.');
    expect((svg.match(/class="marker"/g) ?? []).length).toBe(30);
    expect(svg).toContain('>step<');
    expect(svg).toContain('>loss<');
  });

  it('memory chart: RSS and device lines for the runs with samples, a note for the empty one', () => {
    const svg = chart(out, 'memory');
    expect(paths(svg).map((p) => p.series)).toEqual(['r=8 RSS', 'r=8 device allocated', 'r=256 RSS', 'r=256 device allocated']);
    expect(svg).toContain('r=128: no memory samples recorded.');
    expect(svg).toContain('>r=128 (no data)<');
    expect(svg).toContain('stroke-dasharray="7 4"');
    // y axis in MB: RSS about 1.9 GB and the L4's ~4.5 GB allocated are both inside the ticks.
    const ticks = [...svg.matchAll(/x="[\d.]+" y="[\d.]+" dy="0.32em" text-anchor="end" fill="#333">([^<]+)</g)].map((m) => Number(m[1].replace(/k$/, 'e3')));
    expect(Math.min(...ticks)).toBeLessThanOrEqual(1900);
    expect(Math.max(...ticks)).toBeGreaterThanOrEqual(4400);
  });

  it('bar charts: one positive bar per run with its value printed', () => {
    for (const name of ['runtime', 'final-loss', 'tokens-per-sec']) {
      const bs = bars(chart(out, name));
      expect(bs.map((b) => b.series), name).toEqual(['r=8', 'r=128', 'r=256']);
      for (const b of bs) {
        expect(b.width).toBeGreaterThan(0);
        expect(b.height).toBeGreaterThan(0);
      }
    }
    const fl = bars(chart(out, 'final-loss'));
    // Heights are proportional to the values from a zero baseline: 1.72 > 1.43 > 1.33.
    expect(fl[0].height).toBeGreaterThan(fl[1].height);
    expect(fl[1].height).toBeGreaterThan(fl[2].height);
    expect(fl[0].height / fl[2].height).toBeCloseTo(1.72 / 1.33, 1);
    expect(chart(out, 'runtime')).toMatch(/>761\.\d s</);
    expect(chart(out, 'final-loss')).toContain('>1.720<');
  });

  it('HTML page: self-contained, with what ran, the table, conclusions and every chart inline', () => {
    const { html } = out;
    expect(html.startsWith('<!DOCTYPE html>')).toBe(true);
    expect(html).not.toMatch(/<script|<link rel="stylesheet"|@import|@font-face|https?:\/\/(?!www\.w3\.org\/2000\/svg)/);
    expect(html).toContain("default-src 'none'");
    expect(html).toContain('OPT-350m (331 M parameters');
    expect(html).toContain('CodeAlpaca-20k code instructions');
    expect(html).toContain('NVIDIA L4');
    expect(html).toContain('LoRA ranks 8, 128, 256');
    expect(html).toContain('<table id="summary">');
    // Page table: a row per metric, a column per run, best cells marked.
    expect(html).toMatch(/<thead><tr><th class="left" scope="col">metric<\/th><th scope="col">r=8<\/th><th scope="col">r=128<\/th><th scope="col">r=256<\/th><\/tr><\/thead>/);
    expect(html).toMatch(/final loss<span class="why">[^<]*<\/span><\/th><td>1\.7200<\/td><td>1\.4300<\/td><td class="best">1\.3300<\/td><\/tr>/);
    for (const c of results.conclusions) expect(html).toContain(c.replace(/'/g, '&#39;'));
    for (const name of CHARTS) expect(html).toContain(`id="chart-${name}"`);
    // Clip-path ids are unique across the page's inline SVGs.
    const ids = [...html.matchAll(/ id="([^"]+)"/g)].map((m) => m[1]);
    expect(new Set(ids).size).toBe(ids.length);
    expect(html).toContain('eval BLEU');
    expect(html).toContain('GPU mem access %');
  });
});

describe('formatSummaryTable', () => {
  const results = load();
  const text = formatSummaryTable(results);
  const lines = text.trimEnd().split('\n');
  const header = lines[0].split('|').map((s) => s.trim());
  const row = (i: number) => lines[2 + i].split('|').map((s) => s.trim());
  const col = (name: string) => {
    const i = header.indexOf(name);
    if (i < 0) throw new Error(`no column ${name} in ${header.join(',')}`);
    return [0, 1, 2].map((r) => row(r)[i]);
  };

  it('is a Markdown table with a row per run and aligned columns', () => {
    expect(lines[1]).toMatch(/^\|(:?-+:?\|)+$/);
    expect(new Set(lines.slice(0, 5).map((l) => l.length)).size).toBe(1);
    expect(col('run')).toEqual(['r=8', 'r=128', 'r=256']);
    expect(col('rank')).toEqual(['8', '128', '256']);
    expect(col('alpha')).toEqual(['32', '512', '1,024']);
    expect(col('trainable params')[0]).toBe('1,179,648 (0.3549%)'.replace('0.3549', col('trainable params')[0].match(/\(([\d.]+)%/)![1]));
    expect(col('trainable params')[0]).toMatch(/^1,179,648 \(0\.\d+%\)$/);
  });

  it('marks the best value per column with *', () => {
    expect(col('final loss')).toEqual(['1.7200', '1.4300', '1.3300*']);
    expect(col('runtime s')[0]).toMatch(/^761\.\d\*$/);
    expect(col('tokens/s')[0]).toMatch(/\*$/);
    expect(col('MFU %')[0]).toMatch(/\*$/);
    // Steps to a threshold from the runs' own range (each run reaches it): the fewest steps win; a tie marks nothing.
    expect(col('steps to 1.90')).toEqual(['125', '75', '50*']);
    expect(col('steps to 1.80')).toEqual(['150', '75', '75']);
    // r=128 has no memory samples: n/a, and the best is among the others.
    expect(col('RSS mean MB')[1]).toBe('n/a');
    expect(col('RSS mean MB')[0]).toMatch(/^1,90\d\.\d\*$/);
    expect(col('RSS max MB')[0]).not.toMatch(/\*/);
    expect(col('dev alloc % mean')).toEqual([expect.stringMatching(/\*$/), 'n/a', expect.stringMatching(/^\d+\.\d$/)]);
    expect(col('eval BLEU')[2]).toMatch(/\*$/);
    expect(col('eval loss')[2]).toMatch(/\*$/);
    expect(col('GPU mem access %').join('')).not.toContain('*');
    expect(text).toContain('* best in its column');
  });

  it('keeps the digits aligned next to the marks', () => {
    const i = header.indexOf('final loss');
    const cells = [0, 1, 2].map((r) => lines[2 + r].split('|')[i]);
    const dots = cells.map((c) => c.indexOf('.'));
    expect(new Set(dots).size).toBe(1);
  });

  it('wraps into stacked tables, each led by the run column, when given a width', () => {
    const narrow = formatSummaryTable(results, { maxWidth: 100 });
    const ls = narrow.split('\n');
    const tables = narrow.split('\n\n').filter((t) => t.startsWith('|'));
    expect(tables.length).toBeGreaterThan(2);
    for (const t of tables) {
      expect(t.split('\n')[0]).toMatch(/^\| run +\|/);
      for (const l of t.trimEnd().split('\n')) expect(l.length).toBeLessThanOrEqual(100);
    }
    const headers = (t: string) =>
      t
        .split('\n')
        .filter((l) => /^\| run /.test(l))
        .flatMap((l) => l.split('|').map((x) => x.trim()).filter((x) => x && x !== 'run'));
    expect(headers(narrow)).toEqual(header.filter((x) => x && x !== 'run'));
    expect(ls.at(-2)).toContain('* best in its column');
  });

  it('has one row and no marks for a single run; says so for none', () => {
    const one = { ...results, runs: [results.runs[0]] };
    const t = formatSummaryTable(one);
    expect(t.trimEnd().split('\n')).toHaveLength(3);
    expect(t).not.toMatch(/\d\*/);
    expect(formatSummaryTable({ ...results, runs: [] })).toContain('(no runs)');
  });

  it('adds quant columns and base dtype for a quant sweep', () => {
    const q: BenchResults = {
      ...results,
      sweep: 'quant',
      runs: ['bf16', 'int8', 'nf4'].map((d, i) => ({
        ...results.runs[0],
        label: d,
        baseDtype: d,
        quant: { baseBytes: [662, 331, 186][i] * 2 ** 20, reconstructionNmse: [1e-6, 4e-5, 6e-3][i], reconstructionMaxAbs: [0.001, 0.01, 0.08][i] },
      })),
    };
    const t = summaryTable(q);
    const keys = t.columns.map((c) => c.key);
    expect(keys).toContain('base');
    expect(keys).toEqual(expect.arrayContaining(['quantBytes', 'quantNmse', 'quantMaxAbs']));
    const bytes = t.columns.findIndex((c) => c.key === 'quantBytes');
    expect(t.rows.map((r) => r[bytes])).toEqual([
      { text: '662.0', best: false },
      { text: '331.0', best: false },
      { text: '186.0', best: true },
    ]);
    const r = renderReport(q);
    expect(r.charts.map((c) => c.name)).toEqual([...CHARTS, 'quant-base-memory', 'quant-error']);
    expect(r.html).toContain('quantization sweep');
    expect(r.html).toContain('base formats bf16, int8, nf4');
  });
});

describe('charts on awkward data', () => {
  const base = load();

  it('NaN, Infinity and empty series: draws what is valid, notes the rest, never prints NaN', () => {
    const r = structuredClone(base);
    r.runs[0].steps[3].loss = Number.NaN;
    r.runs[0].steps[4].loss = Number.POSITIVE_INFINITY;
    r.runs[0].finalLoss = Number.NaN;
    r.runs[2].runtimeSec = Number.POSITIVE_INFINITY;
    r.runs[2].steps = [];
    r.runs[2].logRounds = [];
    const out = renderReport(r);
    for (const c of out.charts) {
      expect(BAD.test(c.svg), c.name).toBe(false);
      expect(balanced(c.svg), c.name).toBe(true);
    }
    const loss = chart(out, 'loss');
    expect(loss).toContain('r=8: 2 steps with a non-finite loss');
    expect(loss).toContain('r=256: no loss recorded.');
    expect(paths(loss).map((p) => p.series)).not.toContain('r=256 per step');
    const fl = chart(out, 'final-loss');
    expect(bars(fl).map((b) => b.series)).toEqual(['r=128', 'r=256']);
    expect(fl).toContain('>n/a<');
    expect(fl).toContain('r=8: the final loss is missing (NaN), no bar drawn.');
    expect(chart(out, 'runtime')).toContain('r=256: the runtime is infinite, no bar drawn.');
    expect(out.html).toContain('r=8: the final loss is missing (NaN), no bar drawn.');
    expect(out.html).toContain('3 notes under the plot');
    expect(formatSummaryTable(r)).toMatch(/\| +n\/a \|/);
  });

  it('everything missing: axes and "no data" instead of a crash', () => {
    const r = structuredClone(base);
    for (const run of r.runs) {
      run.steps = [];
      run.logRounds = [];
      run.memory.samples = [];
    }
    const out = renderReport(r);
    expect(chart(out, 'loss')).toContain('no data to plot');
    expect(chart(out, 'memory')).toContain('no data to plot');
    const none = renderReport({ ...base, runs: [], conclusions: [] });
    expect(none.charts).toHaveLength(5);
    expect(none.html).toContain('no runs');
  });

  it('one run, one step: a visible dot, not an empty path', () => {
    const r = structuredClone(base);
    r.runs = [r.runs[0]];
    r.runs[0].steps = [r.runs[0].steps[0]];
    r.runs[0].logRounds = [];
    const loss = chart(renderReport(r), 'loss');
    expect(paths(loss)).toHaveLength(1);
    expect(loss).toMatch(/class="marker"/);
  });

  it('many runs get distinct colours', () => {
    const r = structuredClone(base);
    r.runs = Array.from({ length: 12 }, (_, i) => ({ ...base.runs[i % 3], label: `run${i}` }));
    const bs = renderReport(r).charts.find((c) => c.name === 'runtime')!.svg;
    const fills = [...bs.matchAll(/class="bar"[^>]*fill="([^"]+)"/g)].map((m) => m[1]);
    expect(new Set(fills).size).toBe(12);
  });

  it('big step counts are decimated to at most MAX_POINTS per series, keeping spikes and gaps', () => {
    const n = 150_000;
    const pts = Array.from({ length: n }, (_, i) => ({ x: i, y: 2 + Math.sin(i / 500) * 0.3 }));
    pts[77_777].y = 9; // a spike
    pts[100_001].y = Number.NaN; // a gap
    const d = decimate(pts);
    expect(d.length).toBeLessThanOrEqual(MAX_POINTS);
    expect(d[0]).toBe(pts[0]);
    expect(d[d.length - 1]).toBe(pts[n - 1]);
    expect(d.some((p) => p.y === 9)).toBe(true);
    expect(d.some((p) => Number.isNaN(p.y))).toBe(true);
    for (let i = 1; i < d.length; i++) expect(d[i].x).toBeGreaterThan(d[i - 1].x);

    const r = structuredClone(base);
    r.runs = [r.runs[0]];
    r.runs[0].steps = pts.map((p) => ({ step: p.x + 1, loss: p.y, lr: 1e-4, gradNorm: 1, tokensPerSec: 1000, elapsedMs: p.x * 10 }));
    r.runs[0].memory.samples = Array.from({ length: 50_000 }, (_, i) => ({ tMs: i * 100, rssBytes: 2e9 + i, deviceAllocatedBytes: 1e9, deviceReservedBytes: 1e9 }));
    const out = renderReport(r);
    for (const p of paths(chart(out, 'loss'))) expect(pathPoints(p.d)).toBeLessThanOrEqual(MAX_POINTS);
    for (const p of paths(chart(out, 'memory'))) expect(pathPoints(p.d)).toBeLessThanOrEqual(MAX_POINTS);
    expect(chart(out, 'loss')).toMatch(/>150k</);
    expect(out.html.length).toBeLessThan(1_000_000);
  });

  it('ticks are round numbers with sensible labels', () => {
    expect(niceTicks(1.33, 2.75).ticks).toEqual([1, 1.5, 2, 2.5, 3]);
    expect(niceTicks(1.33, 2.75, 10).ticks).toEqual([1.2, 1.4, 1.6, 1.8, 2, 2.2, 2.4, 2.6, 2.8].map((v) => expect.closeTo(v, 9)));
    expect(niceTicks(0, 907).step).toBe(200);
    expect(niceTicks(5, 5).ticks.length).toBeGreaterThan(1);
    expect(formatTick(0.25, 0.25)).toBe('0.25');
    expect(formatTick(1.4, 0.2)).toBe('1.4');
    expect(formatTick(150_000, 25_000)).toBe('150k');
    expect(formatTick(2_500_000, 500_000)).toBe('2.5M');
  });
});

describe('writeReport', () => {
  const dir = mkdtempSync(join(tmpdir(), 'lora-report-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it('writes report.html and charts/<name>.svg with no temp files left', async () => {
    const results = load();
    const w = await writeReport(results, join(dir, 'out'));
    expect(w.html).toBe(join(dir, 'out', 'report.html'));
    expect(readdirSync(join(dir, 'out')).sort()).toEqual(['charts', 'report.html']);
    expect(readdirSync(join(dir, 'out', 'charts')).sort()).toEqual(CHARTS.map((c) => `${c}.svg`).sort());
    const svg = readFileSync(join(dir, 'out', 'charts', 'loss.svg'), 'utf8');
    expect(svg.startsWith('<?xml version="1.0" encoding="UTF-8"?>\n<svg xmlns=')).toBe(true);
    expect(readFileSync(w.html, 'utf8')).toBe(renderReport(results).html);
    // Writing again replaces the files in place.
    await writeReport({ ...results, conclusions: ['second write'] }, join(dir, 'out'));
    expect(readFileSync(w.html, 'utf8')).toContain('second write');
    expect(readdirSync(join(dir, 'out', 'charts'))).toHaveLength(5);
  });
});
