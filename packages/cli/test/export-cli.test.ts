// `lora export` as a user runs it: a merged hf export of the committed OPT fixture passes
// `lora check` against PyTorch's base + adapter answer, and bad requests exit non-zero with the
// reason (OPT to GGUF points at --format hf; an existing --out needs --force; a GGUF-only dtype).
import { spawnSync } from 'node:child_process';
import { mkdtempSync, readdirSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { afterAll, describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'dist', 'main.js');
const fx = join(here, '..', '..', 'sdk', 'test', 'fixtures', 'opt-tiny-preln');
const dir = mkdtempSync(join(tmpdir(), 'export-cli-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

const lora = (...args: string[]) => spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });

describe('lora export', () => {
  it('writes a merged hf folder that passes lora check against PyTorch base + adapter', () => {
    const out = join(dir, 'merged');
    const r = lora('export', '--model', join(fx, 'model'), '--adapter', join(fx, 'adapter'), '--format', 'hf', '--out', out, '--json');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(JSON.parse(r.stdout).files.map((f: { name: string }) => f.name)).toEqual(['model.safetensors', 'config.json', 'generation_config.json']);
    const c = lora('check', '--model', out, '--expect', join(fx, 'expect.safetensors'), '--json');
    const report = JSON.parse(c.stdout);
    expect(report.results.find((x: { name: string }) => x.name === 'logits')).toMatchObject({ ok: true });
    expect(c.status).toBe(0);
  });

  it('refuses OPT to GGUF, an existing --out and a GGUF-only dtype for hf, with the reason', () => {
    const gguf = lora('export', '--model', join(fx, 'model'), '--format', 'gguf', '--out', join(dir, 'g'));
    expect(gguf.status).not.toBe(0);
    expect(gguf.stderr).toMatch(/OPT cannot be exported to GGUF.*--format hf.*\[E_CONFIG\]/s);
    const exists = lora('export', '--model', join(fx, 'model'), '--format', 'hf', '--out', join(fx, 'adapter'));
    expect(exists.status).not.toBe(0);
    expect(exists.stderr).toMatch(/already exists; pass --force/);
    const dtype = lora('export', '--model', join(fx, 'model'), '--format', 'hf', '--dtype', 'q4_0', '--out', join(dir, 'q'));
    expect(dtype.status).not.toBe(0);
    expect(dtype.stderr).toMatch(/\[E_DTYPE\]/);
    const bad = lora('export', '--model', join(fx, 'model'), '--format', 'gguf', '--dtype', 'q5_0', '--out', join(dir, 'q'));
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/q5_0/);
    expect(readdirSync(dir).sort()).toEqual(['merged']);
  });
});
