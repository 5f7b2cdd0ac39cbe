// writeReport: DIR/report.html and DIR/charts/<name>.svg, each written atomically (a temp file in
// the same folder, then rename), so a reader never sees a half-written report.
import { randomBytes } from 'node:crypto';
import { mkdir, rename, rm, writeFile } from 'node:fs/promises';
import { join } from 'node:path';

import type { BenchResults } from '@lora/sdk';

import { renderReport } from './html.js';

export interface WrittenReport {
  /** Absolute or dir-relative path of report.html, as joined from `dir`. */
  html: string;
  /** Paths of the chart files, in report order. */
  charts: string[];
}

async function writeAtomic(path: string, text: string): Promise<void> {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}.tmp`;
  try {
    await writeFile(tmp, text, 'utf8');
    await rename(tmp, path);
  } catch (e) {
    await rm(tmp, { force: true }).catch(() => {});
    throw e;
  }
}

/** Renders the report and writes it under `dir` (created if missing). Charts first, the page last. */
export async function writeReport(results: BenchResults, dir: string): Promise<WrittenReport> {
  const { html, charts } = renderReport(results);
  const chartDir = join(dir, 'charts');
  await mkdir(chartDir, { recursive: true });
  const paths: string[] = [];
  for (const c of charts) {
    const p = join(chartDir, `${c.name}.svg`);
    await writeAtomic(p, `<?xml version="1.0" encoding="UTF-8"?>\n${c.svg}\n`);
    paths.push(p);
  }
  const htmlPath = join(dir, 'report.html');
  await writeAtomic(htmlPath, html);
  return { html: htmlPath, charts: paths };
}
