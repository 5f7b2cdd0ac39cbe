/// <reference lib="dom" />
// `lora eval compare --seed-table`: the seed study's table (Experiment | BLEU | Correctness |
// Helpfulness | METEOR | ROUGE | tokens | P50 latency (s)) over three lora eval outputs, two of them
// judged. The summary.json files are written here in the shape evaluate.ts writes (schema lora-eval/1),
// with numbers chosen so that every column's best is known: a unique best is starred, a tie is not,
// a run without a judge shows "—". The HTML page is opened in headless Chromium at 1300 px
// (like report-browser.test.ts) and must not scroll sideways.
import { spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

import { seedTable } from '../src/report/seed-table.js';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const dir = mkdtempSync(join(tmpdir(), 'lora-seed-table-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

interface Run {
  name: string;
  bleu: number;
  meteor: number;
  rougeL: number;
  tokensIn: number;
  tokensOut: number;
  p50ms: number;
  judge?: { correctness: number; helpfulness: number };
}

const stats = (p50: number) => ({ mean: p50 * 1.1, p50, p95: p50 * 1.9, max: p50 * 2.2 });

/** OUT/summary.json as writeEvalOutputs writes it (evaluate.ts EvalSummary). */
function evalFolder(r: Run): string {
  const d = join(dir, r.name.replace(/[^a-z0-9]+/gi, '-'));
  mkdirSync(d, { recursive: true });
  const metrics: Record<string, number> = { bleu: r.bleu, rouge1: r.rougeL + 0.05, rouge2: r.rougeL - 0.1, rougeL: r.rougeL, rougeLsum: r.rougeL, meteor: r.meteor };
  if (r.judge) Object.assign(metrics, { judge_correctness: r.judge.correctness, judge_helpfulness: r.judge.helpfulness });
  const summary = {
    schema: 'lora-eval/1', name: r.name, createdAt: '2026-12-05T09:00:00.000Z',
    config: { model: '/models/smollm2', data: '/data/code_alpaca.json', split: 0.1, maxNewTokens: 64, temperature: 0, topP: 1, topK: 0, seed: 42, metrics: ['bleu', 'rouge', 'meteor'] },
    count: 20, errors: 0, emptyOutputs: 0, emptyReferences: 0, metrics,
    corpus: { bleu: { score: r.bleu } },
    latency: { timeToFirstTokenMs: stats(r.p50ms / 20), totalMs: stats(r.p50ms) },
    tokens: { in: r.tokensIn, out: r.tokensOut, total: r.tokensIn + r.tokensOut },
    outputTokensPerSec: 40,
    ...(r.judge ? { judge: { model: 'judge-7b', url: 'http://127.0.0.1:8001/v1', rubrics: ['correctness', 'helpfulness'], judged: 20, errors: 0 } } : {}),
    warnings: [], wallSec: 30,
  };
  writeFileSync(join(d, 'summary.json'), `${JSON.stringify(summary, null, 2)}\n`);
  writeFileSync(join(d, 'traces.jsonl'), '');
  return d;
}

const lora = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
const cells = (line: string) => line.split('|').slice(1, -1).map((c) => c.trim());

// Best per column: BLEU r16, Correctness r16, Helpfulness tie (r8 = r16, not starred), METEOR r16,
// ROUGE r8, tokens r16 (720), P50 latency base (1.23 s).
const base = evalFolder({ name: 'base (no adapter)', bleu: 12.345, meteor: 0.3012, rougeL: 0.4101, tokensIn: 300, tokensOut: 500, p50ms: 1234.5 });
const r8 = evalFolder({ name: 'code r=8 via lora serve', bleu: 20.1, meteor: 0.45, rougeL: 0.5202, tokensIn: 300, tokensOut: 640, p50ms: 1500, judge: { correctness: 0.7, helpfulness: 0.85 } });
const r16 = evalFolder({ name: 'code r=16 via lora serve', bleu: 25.75, meteor: 0.48, rougeL: 0.51, tokensIn: 300, tokensOut: 420, p50ms: 1800, judge: { correctness: 0.8, helpfulness: 0.85 } });

describe('lora eval compare --seed-table', () => {
  const html = join(dir, 'compare.html');
  const md = join(dir, 'table.md');

  it('prints the seed columns, values, best markers and "—" for the unjudged run', () => {
    const r = lora('eval', 'compare', base, r8, r16, '--seed-table', '--markdown', md, '--html', html);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    const lines = r.stdout.split('\n');
    expect(cells(lines[0])).toEqual(['Experiment', 'BLEU', 'Correctness', 'Helpfulness', 'METEOR', 'ROUGE', 'tokens', 'P50 latency (s)']);
    expect(lines[1]).toMatch(/^\|:-+\|(-+:\|){7}$/);
    expect(cells(lines[2])).toEqual(['base (no adapter)', '12.35', '—', '—', '0.3012', '0.4101', '800', '1.23*']);
    expect(cells(lines[3])).toEqual(['code r=8 via lora serve', '20.10', '0.700', '0.850', '0.4500', '0.5202*', '940', '1.50']);
    expect(cells(lines[4])).toEqual(['code r=16 via lora serve', '25.75*', '0.800*', '0.850', '0.4800*', '0.5100', '720*', '1.80']);
    expect(r.stdout).toContain('* best in its column');
    expect(r.stdout).toMatch(/note: base \(no adapter\): no judge/);
    // The same table went to --markdown FILE.
    expect(readFileSync(md, 'utf8')).toBe(r.stdout.slice(0, r.stdout.indexOf('\nWrote ')));
  });

  it('keeps the full table as the default view, and adds the seed rows to --json', () => {
    const r = lora('eval', 'compare', base, r8, r16);
    expect(r.status).toBe(0);
    expect(r.stdout.split('\n')[0]).toMatch(/^\| experiment +\| data +\| split +\| seed +\| +n \| +BLEU \| +ROUGE-1 \|/);
    const j = JSON.parse(lora('eval', 'compare', base, r8, r16, '--seed-table', '--json').stdout);
    expect(j.seed.rows.map((x: { cells: Array<{ best: boolean }> }) => x.cells.filter((c) => c.best).length)).toEqual([1, 1, 4]);
    expect(j.seed.rows[0].cells[1]).toEqual({ value: null, text: '—', best: false });
  });

  it('tells a judge that scored nothing from no judge, and marks nothing with a single value', () => {
    const t = seedTable([
      { name: 'a', source: 'a/summary.json', kind: 'eval', metrics: { bleu: 10 }, judge: { model: 'j', judged: 0, errors: 40, unreachable: 'connection refused' } },
      { name: 'b', source: 'b/summary.json', kind: 'eval', metrics: { bleu: 10, judge_correctness: 0.5 }, judge: { model: 'j', judged: 20, errors: 0 } },
    ]);
    expect(t.notes).toEqual(['a: the judge (j) scored no example: connection refused']);
    expect(t.rows.flatMap((r) => r.cells.filter((c) => c.best))).toEqual([]); // BLEU tie, one Correctness value
    expect(t.rows[0].cells.map((c) => c.text)).toEqual(['10.00', '—', '—', '—', '—', '—', '—']);
  });

  it.skipIf(!existsSync(CHROMIUM))('renders in headless Chromium at 1300 px without sideways scrolling', { timeout: 60_000 }, async () => {
    const { chromium } = await import('playwright-core');
    const profile = mkdtempSync(join(tmpdir(), 'lora-chromium-profile-'));
    const url = pathToFileURL(html).href;
    const context = await chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM, headless: true, viewport: { width: 1300, height: 900 }, deviceScaleFactor: 1,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (m) => m.type() === 'error' && problems.push(`console error: ${m.text()}`));
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('request', (q) => q.url() !== url && problems.push(`unexpected request: ${q.url()}`));
      await page.goto(url, { waitUntil: 'load' });
      const seen = await page.evaluate(() => {
        const t = document.querySelector('#seed')!;
        const wrap = t.parentElement!;
        return {
          headers: [...t.querySelectorAll('thead th')].map((th) => th.textContent),
          rows: [...t.querySelectorAll('tbody tr')].map((tr) => [...tr.querySelectorAll('td')].map((td) => td.textContent)),
          best: [...t.querySelectorAll('td.best')].map((td) => getComputedStyle(td, '::after').content),
          missing: t.querySelectorAll('td.missing').length,
          fullTable: document.querySelectorAll('#compare tbody tr').length,
          pageOverflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
          // The seed table is 8 columns: it must fit its box, not merely scroll inside it.
          tableOverflow: wrap.scrollWidth - wrap.clientWidth,
        };
      });
      expect(seen.headers).toEqual(['Experiment', 'BLEU', 'Correctness', 'Helpfulness', 'METEOR', 'ROUGE', 'tokens', 'P50 latency (s)']);
      expect(seen.rows[0]).toEqual(['base (no adapter)', '12.35', '—', '—', '0.3012', '0.4101', '800', '1.23']);
      expect(seen.rows[2]).toEqual(['code r=16 via lora serve', '25.75', '0.800', '0.850', '0.4800', '0.5100', '720', '1.80']);
      expect(seen.best).toEqual(Array(6).fill('" *"'));
      expect(seen.missing).toBe(2);
      expect(seen.fullTable).toBe(3);
      expect(seen.pageOverflow).toBeLessThanOrEqual(0);
      expect(seen.tableOverflow).toBeLessThanOrEqual(0);
      const png = join(dir, 'compare.png');
      await page.screenshot({ path: png, fullPage: true });
      expect(statSync(png).size).toBeGreaterThan(10_000);
      expect(problems).toEqual([]);
    } finally {
      await context.close();
      rmSync(profile, { recursive: true, force: true });
    }
  });
});
