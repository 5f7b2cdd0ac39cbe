import { describe, expect, it } from 'vitest';

import { environment, formatEnvironment, loadAddon } from '../lib/index.js';

describe('loader and environment report', () => {
  it('loads the built addon once and says which file it took', () => {
    const a = loadAddon();
    expect(a.path).toMatch(/lora_native\.node$/);
    expect(['env', 'source-build', 'prebuilt']).toContain(a.variant);
    expect(loadAddon()).toBe(a);
  });

  it('reports ref as always usable and every backend with a reason when not usable', () => {
    const r = environment();
    const names = r.backends.map((b) => b.name);
    expect(names).toEqual(expect.arrayContaining(['ref', 'cpu', 'emu', 'cuda']));
    expect(r.backends.find((b) => b.name === 'ref')!.usable).toBe(true);
    for (const b of r.backends) if (!b.usable) expect(b.reason).not.toBe('');
  });

  it('formats a paste-able block with the ISA features the kernels use', () => {
    const text = formatEnvironment(environment());
    expect(text).toMatch(/^lora environment/);
    for (const k of ['AVX-512F', 'BW', 'VL', 'BF16', 'VNNI', 'backends', 'cuda']) expect(text).toContain(k);
  });
});
