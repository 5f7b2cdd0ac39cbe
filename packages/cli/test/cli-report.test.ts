/// <reference lib="dom" />
// The bench report's fixes: "steps to loss X" thresholds from the runs' own range, ties and
// within-noise differences not starred (and explained as noise), readable eval rows with integer
// counts, reference-line labels that do not overlap, and a page with no horizontal scroll at 1300 px
// (checked in headless Chromium when it is installed; skipped with the reason otherwise).
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type { BenchResults, RunResult } from '@lora/sdk';
import { describe, expect, it } from 'vitest';

import { noiseNotes, ownRangeThresholds } from '../dist/report/loss-stats.js';
import { lineChart } from '../dist/report/svg.js';
import { summaryTable } from '../dist/report/table.js';
import { writeReport } from '../dist/report/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const fixture = () => JSON.parse(readFileSync(join(here, 'fixtures', 'report', 'results.json'), 'utf8')) as BenchResults;
const column = (r: BenchResults, header: string) => {
  const t = summaryTable(r);
  const i = t.columns.findIndex((c) => c.header === header);
  expect(i, header).toBeGreaterThanOrEqual(0);
  return t.rows.map((row) => `${row[i].text}${row[i].best ? '*' : ''}`);
};

describe('steps to loss X', () => {
  it('takes thresholds that every run starts above and reaches, from the logged round means', () => {
    const r = fixture();
    const ts = ownRangeThresholds(r);
    expect(ts.length).toBe(2);
    for (const run of r.runs) {
      const means = run.logRounds.map((g) => g.meanLoss);
      for (const t of ts) {
        expect(means[0]).toBeGreaterThan(t); // not met at the first log
        expect(Math.min(...means)).toBeLessThanOrEqual(t); // met eventually: no "never"
      }
    }
    for (const t of ts) expect(column(r, `steps to ${t.toFixed(2)}`)).not.toContain('never');
  });
});

describe('best marks', () => {
  it('a tie for best is not starred; a unique best is', () => {
    const r = fixture();
    r.runs[0].tokensPerSec = 900;
    r.runs[1].tokensPerSec = 900;
    r.runs[2].tokensPerSec = 800;
    expect(column(r, 'tokens/s')).toEqual(['900', '900', '800']);
    r.runs[2].tokensPerSec = 950;
    expect(column(r, 'tokens/s')).toEqual(['900', '900', '950*']);
  });

  it('a final-loss difference within the step-to-step noise is not starred and is called noise', () => {
    const r = fixture();
    const noisy = (run: RunResult, final: number) => {
      run.finalLoss = final;
      run.steps = run.steps.map((s, i) => ({ ...s, loss: final + (i % 2 ? 0.2 : -0.2) }));
    };
    noisy(r.runs[1], 1.41);
    noisy(r.runs[2], 1.4);
    expect(column(r, 'final loss').join(' ')).not.toContain('*');
    const notes = noiseNotes(r);
    expect(notes.join('\n')).toMatch(/r=128 vs r=256: the final losses differ by 0\.010, less than the step-to-step noise .*not evidence of an effect/);
    expect(notes.join('\n')).not.toMatch(/r=8 vs r=128/); // 1.72 vs 1.41 is far outside ±0.2
  });
});

describe('eval rows', () => {
  it('have readable names and print counts as integers', () => {
    const r = fixture();
    for (const run of r.runs) run.eval = { ...run.eval, rouge1: 0.41, errors: 2, ttft_p50_ms: 12.345 };
    const t = summaryTable(r);
    const headers = t.columns.map((c) => c.header);
    expect(headers).toEqual(expect.arrayContaining(['eval BLEU', 'eval ROUGE-1 F', 'eval ROUGE-L F', 'eval failed generations', 'eval time to first token P50 ms']));
    expect(headers.some((h) => /eval (rouge1|bleu|errors)$/.test(h))).toBe(false);
    expect(column(r, 'eval failed generations')).toEqual(['2', '2', '2']);
  });
});

describe('reference lines', () => {
  it('labels of close thresholds do not overlap', () => {
    const svg = lineChart({
      id: 't', title: 't', xLabel: 'x', yLabel: 'y', legend: [],
      series: [{ name: 's', color: '#000', points: [{ x: 0, y: 3 }, { x: 10, y: 1 }] }],
      hlines: [{ y: 2, label: 'loss 2.00' }, { y: 1.98, label: 'loss 1.98' }, { y: 1.97, label: 'loss 1.97' }],
    });
    const ys = [...svg.matchAll(/<text class="hline-label"[^>]* y="([\d.]+)"/g)].map((m) => Number(m[1])).sort((a, b) => a - b);
    expect(ys.length).toBe(3);
    for (let i = 1; i < ys.length; i++) expect(ys[i] - ys[i - 1]).toBeGreaterThanOrEqual(13); // 11 px text + 2 px
  });
});

const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const skip = existsSync(CHROMIUM) ? '' : `${CHROMIUM} not found (scripts/setup-system.sh installs Debian's chromium)`;
if (skip) console.warn(`cli-report: layout check skipped: ${skip}`);

describe.skipIf(!!skip)('report.html at 1300 px in headless Chromium', () => {
  it('has no horizontal scroll, with six long-labelled runs', { timeout: 120_000 }, async () => {
    const r = fixture();
    const base = r.runs[2];
    r.sweep = 'quant';
    r.runs = ['f32', 'bf16', 'f16', 'int8', 'int4', 'nf4'].map((d) => ({ ...structuredClone(base), label: `r=256 ${d} base with a long label`, baseDtype: d }));
    const out = mkdtempSync(join(tmpdir(), 'lora-report-1300-'));
    const { html } = await writeReport(r, out);
    const { chromium } = await import('playwright-core');
    const browser = await chromium.launch({ executablePath: CHROMIUM, args: ['--no-sandbox', '--disable-gpu'] });
    try {
      const page = await browser.newPage({ viewport: { width: 1300, height: 900 } });
      await page.goto(pathToFileURL(html).href);
      const widths = await page.evaluate(() => ({
        doc: document.documentElement.scrollWidth,
        view: document.documentElement.clientWidth,
        scrollers: [...document.querySelectorAll('*')].filter((e) => e.scrollWidth > e.clientWidth + 1 && getComputedStyle(e).overflowX !== 'visible').map((e) => e.className),
      }));
      expect(widths.doc).toBeLessThanOrEqual(widths.view);
      expect(widths.scrollers).toEqual([]);
      await page.screenshot({ path: join(out, 'report-1300.png'), fullPage: true });
    } finally {
      await browser.close();
    }
  });
});
