// `lora check` as a user runs it, on the committed PyTorch fixtures.
import { spawnSync } from 'node:child_process';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const here = dirname(fileURLToPath(import.meta.url));
const cli = join(here, '..', 'dist', 'main.js');
const fixture = (name: string) => join(here, '..', '..', 'sdk', 'test', 'fixtures', name);

function check(name: string, ...extra: string[]) {
  const d = fixture(name);
  return spawnSync(process.execPath, [cli, 'check', '--model', join(d, 'model'), '--adapter', join(d, 'adapter'), '--expect', join(d, 'expect.safetensors'), ...extra], { encoding: 'utf8' });
}

describe('lora check', () => {
  it.each(['opt-tiny-preln', 'opt-tiny-postln'])('passes on %s and prints one line per tensor', (name) => {
    const r = check(name);
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^lora check on (cpu|ref), f32/);
    expect(r.stdout).toMatch(/^logits +\S+ +\S+ +1e-4 +ok$/m);
    expect(r.stdout).toMatch(/lora_B\.weight/);
    expect(r.stdout).toMatch(/^\d+ passed, 0 failed$/m);
  });

  it('exits non-zero when a tensor is out of tolerance, and reports JSON', () => {
    const r = check('opt-tiny-preln', '--tolerance', '1e-12', '--json');
    expect(r.status).toBe(1);
    const report = JSON.parse(r.stdout);
    expect(report.ok).toBe(false);
    expect(report.results.some((x: { ok: boolean }) => !x.ok)).toBe(true);
  });

  it('says what is wrong with a missing model folder', () => {
    const r = spawnSync(process.execPath, [cli, 'check', '--model', '/nonexistent/model', '--expect', '/nonexistent/e.safetensors'], { encoding: 'utf8' });
    expect(r.status).not.toBe(0);
    expect(r.stderr).toMatch(/nonexistent/);
    expect(r.stderr).not.toMatch(/^\s+at /m);
  });
});
