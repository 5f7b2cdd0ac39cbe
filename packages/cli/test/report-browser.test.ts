/// <reference lib="dom" />
/// <reference lib="dom.iterable" />
// The bench report is a web page, so it is tested as one: writeReport's report.html is opened in
// headless Chromium (Debian's /usr/bin/chromium, installed by scripts/setup-system.sh) through
// playwright-core. The test fails on any console error, page error or network request, checks that
// every chart drew something, and saves report.png beside the report.
// Set REPORT_TEST_OUT=<dir> to keep the report and screenshot there; otherwise a temp dir is used.
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import type { BenchResults } from '@lora/sdk';
import { afterAll, describe, expect, it } from 'vitest';

import { writeReport } from '../src/report/index.js';

const here = dirname(fileURLToPath(import.meta.url));
const CHROMIUM = process.env.CHROMIUM_PATH ?? '/usr/bin/chromium';
const ARGS = [
  '--headless',
  '--no-sandbox',
  '--disable-gpu',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

type Playwright = typeof import('playwright-core');
let playwright: Playwright | null = null;
let skipReason = '';
if (!existsSync(CHROMIUM)) {
  skipReason = `${CHROMIUM} not found (run 'bash scripts/setup-system.sh' as root to install Debian's chromium, or set CHROMIUM_PATH)`;
} else {
  try {
    playwright = await import('playwright-core');
  } catch (e) {
    skipReason = `playwright-core is not installed (${(e as Error).message.split('\n')[0]})`;
  }
}
if (skipReason) console.warn(`report-browser: skipped: ${skipReason}`);

interface ChartDrawn {
  id: string;
  paths: number;
  bars: number;
  markers: number;
  width: number;
  height: number;
}

describe.skipIf(!!skipReason)('report.html in headless Chromium', () => {
  const keep = process.env.REPORT_TEST_OUT;
  const root = keep ? resolve(keep) : mkdtempSync(join(tmpdir(), 'lora-report-browser-'));
  const profile = mkdtempSync(join(tmpdir(), 'lora-chromium-profile-'));
  afterAll(() => {
    rmSync(profile, { recursive: true, force: true });
    if (!keep) rmSync(root, { recursive: true, force: true });
  });

  it('loads without errors or requests, draws every chart, and is screenshotted', { timeout: 180_000 }, async () => {
    const results = JSON.parse(readFileSync(join(here, 'fixtures', 'report', 'results.json'), 'utf8')) as BenchResults;
    mkdirSync(root, { recursive: true });
    const written = await writeReport(results, root);
    const url = pathToFileURL(written.html).href;

    const context = await playwright!.chromium.launchPersistentContext(profile, {
      executablePath: CHROMIUM,
      headless: true,
      args: ARGS,
      viewport: { width: 1600, height: 1000 },
      deviceScaleFactor: 1,
    });
    try {
      const page = await context.newPage();
      const problems: string[] = [];
      page.on('console', (m) => {
        if (m.type() === 'error') problems.push(`console error: ${m.text()}`);
      });
      page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
      page.on('requestfailed', (r) => problems.push(`request failed: ${r.url()} ${r.failure()?.errorText ?? ''}`));
      page.on('request', (r) => {
        if (r.url() !== url) problems.push(`unexpected request: ${r.url()}`);
      });

      const resp = await page.goto(url, { waitUntil: 'load' });
      expect(resp === null || resp.ok()).toBe(true);
      expect(await page.title()).toBe('lora bench — LoRA rank sweep');

      const charts: ChartDrawn[] = await page.evaluate(() =>
        [...document.querySelectorAll<SVGSVGElement>('svg.chart')].map((svg) => {
          const paths = [...svg.querySelectorAll<SVGPathElement>('path.series')].filter((p) => {
            const d = p.getAttribute('d') ?? '';
            return d.trim().length > 0 && p.getTotalLength() > 0;
          }).length;
          const bars = [...svg.querySelectorAll<SVGRectElement>('rect.bar')].filter((r) => {
            const b = r.getBBox();
            return b.width > 0 && b.height > 0;
          }).length;
          const markers = svg.querySelectorAll('circle.marker').length;
          const box = svg.getBoundingClientRect();
          return { id: svg.id, paths, bars, markers, width: box.width, height: box.height };
        }),
      );
      expect(charts.map((c) => c.id)).toEqual(['chart-loss', 'chart-memory', 'chart-runtime', 'chart-final-loss', 'chart-tokens-per-sec']);
      for (const c of charts) {
        expect(c.paths + c.bars, `${c.id} drew nothing`).toBeGreaterThan(0);
        expect(c.width, c.id).toBeGreaterThan(300);
        expect(c.height, c.id).toBeGreaterThan(200);
      }
      const byId = Object.fromEntries(charts.map((c) => [c.id, c]));
      expect(byId['chart-loss'].paths).toBe(6); // per-step + round means for 3 runs
      expect(byId['chart-memory'].paths).toBe(4); // r=128 has no samples
      for (const id of ['chart-runtime', 'chart-final-loss', 'chart-tokens-per-sec']) expect(byId[id].bars).toBe(3);

      const table = await page.evaluate(() => {
        const t = document.querySelector('#summary');
        return {
          rows: t ? t.querySelectorAll('tbody tr').length : 0,
          runs: t ? [...t.querySelectorAll('thead th')].map((th) => th.textContent) : [],
          best: t ? t.querySelectorAll('td.best').length : 0,
          conclusions: document.querySelectorAll('#conclusions li').length,
          // Nothing may stick out of the page sideways (the table scrolls inside its own box).
          overflow: document.documentElement.scrollWidth - document.documentElement.clientWidth,
        };
      });
      expect(table.runs).toEqual(['metric', 'r=8', 'r=128', 'r=256']);
      expect(table.rows).toBeGreaterThan(15);
      expect(table.best).toBeGreaterThan(5);
      expect(table.conclusions).toBe(results.conclusions.length);
      expect(table.overflow).toBeLessThanOrEqual(0);

      const png = join(dirname(written.html), 'report.png');
      await page.screenshot({ path: png, fullPage: true });
      expect(statSync(png).size).toBeGreaterThan(20_000);
      console.log(`report-browser: screenshot ${png}`);
      expect(problems).toEqual([]);
    } finally {
      await context.close();
    }
  });
});
