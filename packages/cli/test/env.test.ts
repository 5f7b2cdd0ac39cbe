import { execFileSync, spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');

describe('lora env', () => {
  // The README's quick start runs `npx lora …` right after `npm install` in a fresh clone: the
  // workspace's bin link must exist and run the built CLI (this test runs after that install).
  it('runs as `lora` through the workspace bin link that npm install made', () => {
    const bin = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', 'node_modules', '.bin', 'lora');
    const out = execFileSync(bin, ['env', '--json'], { encoding: 'utf8' });
    expect(JSON.parse(out).node).toBe(process.version);
  });

  it('prints a block with the CPU features and backends', () => {
    const out = execFileSync(process.execPath, [cli, 'env'], { encoding: 'utf8' });
    expect(out).toMatch(/^lora environment/);
    expect(out).toMatch(/isa +AVX-512F (yes|no)/);
    expect(out).toMatch(/ref +usable/);
  });

  it('prints JSON with --json', () => {
    const out = execFileSync(process.execPath, [cli, 'env', '--json'], { encoding: 'utf8' });
    const r = JSON.parse(out);
    expect(r.node).toBe(process.version);
    expect(r.backends.map((b: { name: string }) => b.name)).toContain('cuda');
  });

  it('rejects unknown flags and commands with a usage message, not a stack trace', () => {
    const bad = spawnSync(process.execPath, [cli, 'env', '--bogus'], { encoding: 'utf8' });
    expect(bad.status).toBe(2);
    expect(bad.stderr).toMatch(/usage: lora env/);
    expect(bad.stderr).not.toMatch(/at .*\.js:\d+/);
    const unknown = spawnSync(process.execPath, [cli, 'frobnicate'], { encoding: 'utf8' });
    expect(unknown.status).toBe(2);
    expect(unknown.stderr).toMatch(/unknown command 'frobnicate'/);
  });
});
