// What users install: @lora/cli with its `lora` bin, a README per package (what it is, install, a
// minimal example, docs), and an SDK whose public index leaves its parsers' internals out.
import { existsSync, mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import * as sdk from '@lora/sdk';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const json = (p: string) => JSON.parse(readFileSync(join(repo, p), 'utf8'));

describe('packaging', () => {
  it('publishes the CLI as @lora/cli with the lora command', () => {
    const pkg = json('packages/cli/package.json');
    expect(pkg.name).toBe('@lora/cli');
    expect(pkg.bin).toEqual({ lora: './bin/lora.js' });
    expect(json('package-lock.json').packages['packages/cli'].name).toBe('@lora/cli');
  });

  it.each(['core-native', 'sdk', 'cli'])('packages/%s has a README with install, an example and docs', (name) => {
    const file = join(repo, 'packages', name, 'README.md');
    expect(existsSync(file)).toBe(true);
    const text = readFileSync(file, 'utf8');
    expect(text).toMatch(/^# @lora\//);
    expect(text).toMatch(/^## Install$/m);
    expect(text).toMatch(/^## A minimal example$/m);
    expect(text).toMatch(/^## Documentation$/m);
    expect(text).toMatch(/```(ts|sh)\n/);
  });

  it('keeps parser internals out of the SDK\'s public index and exports the shared defaults', () => {
    for (const name of ['PyDict', 'ZipArchive', 'PorterStemmer', 'unpickle', 'TorchCheckpoint', 'treebankTokenize', 'tokenize13a', 'meteorAlign', 'WordNet']) {
      expect(name in sdk, name).toBe(false);
    }
    for (const name of ['OptForCausalLM', 'Trainer', 'TRAINING_DEFAULTS', 'scorePredictions', 'LoraError', 'SafetensorsFile']) expect(name in sdk, name).toBe(true);
  });

  it('the SDK Trainer and lora train share one default learning rate (TRAINING_DEFAULTS.lr)', async () => {
    const records = Array.from({ length: 8 }, (_, i) => ({ instruction: `Say ${i}.`, input: '', output: `${i}` }));
    const { dir } = await sdk.ensureTinyModel(join(mkdtempSync(join(tmpdir(), 'lora-defaults-')), 'model'), records, { hidden: 32, ffn: 64, layers: 1, heads: 2, embedDim: 16, merges: 0, maxPositions: 128, warmupRounds: 0 });
    const tok = await sdk.OptTokenizer.fromPretrained(dir);
    const model = await sdk.OptForCausalLM.fromPretrained(dir, { device: 'cpu' });
    try {
      model.addLora({ r: 2, alpha: 8 });
      const lrs: number[] = [];
      const examples = records.map((r) => sdk.tokenizeRecord(tok, r, { maxLength: 32 }));
      await new sdk.Trainer(model, { examples, batchSize: 4, seq: 32, maxSteps: 1, schedule: 'constant', onEvent: (e) => e.type === 'step' && lrs.push(e.lr) }).train();
      expect(lrs).toEqual([sdk.TRAINING_DEFAULTS.lr]);
      expect(sdk.TRAINING_DEFAULTS.lr).toBe(2e-4);
    } finally {
      model.dispose();
    }
  }, 60_000);

  it('has a typedoc config with the package README as landing page and one entry per API section', () => {
    const cfg = json('packages/sdk/typedoc.json');
    expect(cfg.readme).toBe('README.md');
    expect(cfg.entryPoints.length).toBeGreaterThan(3);
    for (const e of cfg.entryPoints) expect(existsSync(join(repo, 'packages', 'sdk', e)), e).toBe(true);
  });
});
