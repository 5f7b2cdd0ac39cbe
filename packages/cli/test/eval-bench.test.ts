// `lora bench --eval N` puts held-out metrics into every rank's RunResult.eval (and so into the table
// and report), and `lora eval compare` turns that results.json plus a `lora eval` output into one
// table (Markdown and HTML) with the best value per column marked. Tiny model, 3 steps per rank.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { beforeAll, describe, expect, it } from 'vitest';

import { ensureTinyModel, type BenchResults, type InstructionRecord } from '@lora/sdk';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'lora-eval-bench-'));
const records: InstructionRecord[] = Array.from({ length: 16 }, (_, i) => ({ instruction: `Double ${i}.`, input: '', output: `${2 * i}` }));
const data = join(dir, 'data.jsonl');
let model = '';

function lora(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env }, timeout: 120_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

beforeAll(async () => {
  writeFileSync(data, records.map((r) => JSON.stringify(r)).join('\n'));
  model = (await ensureTinyModel(join(dir, 'model'), records, { hidden: 32, ffn: 64, layers: 2, heads: 4, embedDim: 16, merges: 0, maxPositions: 256, warmupRounds: 0 })).dir;
});

describe('lora bench --eval', () => {
  it('evaluates every rank on N held-out records and the table and compare show it', () => {
    const out = join(dir, 'sweep');
    const r = lora('bench', '--model', model, '--data', data, '--ranks', '2,4,8', '--steps', '3', '--batch', '2', '--seq', '64', '--lr', '0.01', '--eval', '3', '--device', 'cpu', '--out', out);
    expect(r.stderr).toMatch(/r=2: evaluating on 3 held-out records/);
    expect(r.status).toBe(0);
    const results = JSON.parse(readFileSync(join(out, 'results.json'), 'utf8')) as BenchResults;
    expect(results.runs.map((x) => x.label)).toEqual(['r=2', 'r=4', 'r=8']);
    for (const run of results.runs) {
      expect(Object.keys(run.eval ?? {}).sort()).toEqual(['bleu', 'errors', 'latency_p50_ms', 'meteor', 'rouge1', 'rouge2', 'rougeL', 'ttft_p50_ms']);
      for (const v of Object.values(run.eval!)) expect(Number.isFinite(v)).toBe(true);
    }
    expect(r.stdout).toContain('eval ROUGE-1 F');
    expect(readFileSync(join(out, 'report.html'), 'utf8')).toContain('eval METEOR');

    const eo = join(dir, 'eval-base');
    expect(lora('eval', '--model', model, '--data', data, '--limit', '3', '--max-new-tokens', '8', '--out', eo, '--name', 'base').status).toBe(0);
    const html = join(dir, 'compare.html');
    const c = lora('eval', 'compare', out, eo, '--html', html);
    expect(c.stderr).toBe('');
    expect(c.status).toBe(0);
    const lines = c.stdout.split('\n');
    expect(lines[0]).toMatch(/^\| experiment +\| data +\| split +\| seed +\| +n \| +BLEU \| +ROUGE-1 \| +ROUGE-2 \| +ROUGE-L \|.*METEOR \|.*TTFT P50 ms \|.*latency P50 ms \|/);
    for (const name of ['sweep/r=2', 'sweep/r=4', 'sweep/r=8', 'base']) expect(c.stdout).toMatch(new RegExp(`^\\| ${name.replace(/[=/]/g, '\\$&')} +\\|`, 'm'));
    // The lowest P50 latency is marked, and the legend explains the mark.
    expect(lines.slice(2, 6).some((l) => /\d\*/.test(l))).toBe(true);
    expect(c.stdout).toContain('* best in its column');
    const page = readFileSync(html, 'utf8');
    expect(page).toMatch(/^<!DOCTYPE html>/);
    expect(page).toContain("Content-Security-Policy\" content=\"default-src 'none'");
    expect(page).toMatch(/<td class="best">[^<]+<\/td>/);
    expect(page).not.toMatch(/<script|https?:\/\/(?!www\.w3)/);
    expect(page.match(/<tr><td class="left"/g)).toHaveLength(4);

    const j = JSON.parse(lora('eval', 'compare', out, eo, '--json').stdout);
    expect(j.rows.map((x: { name: string }) => x.name)).toEqual(['sweep/r=2', 'sweep/r=4', 'sweep/r=8', 'base']);
    expect(j.experiments[3]).toMatchObject({ kind: 'eval', count: 3 });
  });

  it('compare names a missing path and asks for at least one', () => {
    let r = lora('eval', 'compare');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/give at least one lora eval or lora bench output folder/);
    r = lora('eval', 'compare', join(dir, 'nope'));
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/nope: no such file or folder \[E_EVAL_INPUT\]/);
  });

  it('rejects --eval that is not a whole number', () => {
    const r = lora('bench', '--model', model, '--data', data, '--eval', 'x');
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--eval must be an integer/);
  });
});
