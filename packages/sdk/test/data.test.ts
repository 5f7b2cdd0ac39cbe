import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { existsSync } from 'node:fs';

import { parquetWriteBuffer } from 'hyparquet-writer';
import { describe, expect, it } from 'vitest';

import {
  alpacaPrompt,
  buildByteLevelTokenizer,
  IGNORE_INDEX,
  makeBatches,
  readRecords,
  splitTrainTest,
  syntheticCodeInstructions,
  tokenizeRecord,
} from '../src/index.js';

const shared = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..', '..', 'shared', 'data');
const tmp = mkdtempSync(join(tmpdir(), 'lora-data-'));
const tok = buildByteLevelTokenizer();

describe('instruction records', () => {
  it('reads CodeAlpaca 2k (JSON) with all 2,017 records', async (ctx) => {
    const path = join(shared, 'codealpaca', 'code_alpaca_2k.json');
    if (!existsSync(path)) ctx.skip();
    const recs = await readRecords(path);
    expect(recs.length).toBe(2017);
    expect(recs.filter((r) => r.input !== '').length).toBe(1006);
  });

  it('reads JSONL and Parquet, and names the bad row', async () => {
    const jl = join(tmp, 'a.jsonl');
    writeFileSync(jl, '{"instruction":"i1","input":"","output":"o1"}\n\n{"instruction":"i2","output":"o2"}\n');
    expect(await readRecords(jl)).toEqual([
      { instruction: 'i1', input: '', output: 'o1' },
      { instruction: 'i2', input: '', output: 'o2' },
    ]);
    writeFileSync(jl, '{"instruction":"i1","input":"","output":"o1"}\n{"instruction": 3, "output":"x"}\n');
    await expect(readRecords(jl)).rejects.toThrow(/line 2: 'instruction' must be a string/);
    writeFileSync(jl, '{"instruction":"i1"\n');
    await expect(readRecords(jl)).rejects.toThrow(/line 1: not valid JSON/);
    const pq = join(tmp, 'a.parquet');
    const buf = parquetWriteBuffer({
      columnData: [
        { name: 'instruction', data: ['Add.', 'Sub.'], type: 'STRING' },
        { name: 'input', data: ['1 2', ''], type: 'STRING' },
        { name: 'output', data: ['3', '0'], type: 'STRING' },
      ],
    });
    writeFileSync(pq, new Uint8Array(buf));
    expect(await readRecords(pq)).toEqual([
      { instruction: 'Add.', input: '1 2', output: '3' },
      { instruction: 'Sub.', input: '', output: '0' },
    ]);
    writeFileSync(join(tmp, 'bad.parquet'), 'not parquet at all');
    await expect(readRecords(join(tmp, 'bad.parquet'))).rejects.toThrow(/not a readable Parquet file/);
    await expect(readRecords(join(tmp, 'missing.json'))).rejects.toThrow(/no such file/);
    writeFileSync(join(tmp, 'bin.json'), Buffer.from([0x5b, 0xff, 0xfe, 0x5d]));
    await expect(readRecords(join(tmp, 'bin.json'))).rejects.toThrow(/not valid UTF-8/);
  });
});

describe('prompt template and splits', () => {
  it('uses the Alpaca template with and without input', () => {
    expect(alpacaPrompt({ instruction: 'Do X.', input: '' })).toBe(
      'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\nDo X.\n\n### Response:\n',
    );
    expect(alpacaPrompt({ instruction: 'Do $&.', input: 'y' })).toContain('### Instruction:\nDo $&.\n\n### Input:\ny\n\n### Response:\n');
  });

  it('splits deterministically by seed', () => {
    const xs = Array.from({ length: 100 }, (_, i) => i);
    const a = splitTrainTest(xs, 0.5, 42);
    const b = splitTrainTest(xs, 0.5, 42);
    expect(a).toEqual(b);
    expect(a.train.length).toBe(50);
    expect([...a.train, ...a.test].sort((x, y) => x - y)).toEqual(xs);
    expect(splitTrainTest(xs, 0.5, 43).train).not.toEqual(a.train);
  });
});

describe('tokenized batches', () => {
  const recs = syntheticCodeInstructions(40, 1);

  it('labels prompt tokens -100 only with responseOnly, and ends with eos', () => {
    const full = tokenizeRecord(tok, recs[0], { maxLength: 1024 });
    const resp = tokenizeRecord(tok, recs[0], { maxLength: 1024, responseOnly: true });
    expect(full.inputIds).toEqual(resp.inputIds);
    expect(full.inputIds[0]).toBe(tok.bosTokenId);
    expect(full.inputIds.at(-1)).toBe(tok.eosTokenId);
    expect(full.labels).toEqual(full.inputIds);
    const promptLen = tok.encode(alpacaPrompt(recs[0])).length;
    expect(resp.labels.slice(0, promptLen).every((l) => l === IGNORE_INDEX)).toBe(true);
    expect(resp.labels.slice(promptLen)).toEqual(resp.inputIds.slice(promptLen));
    expect(tokenizeRecord(tok, recs[0], { maxLength: 16 }).inputIds.length).toBe(16);
  });

  it('pads with pad id and mask 0, packs into full rows, and is reproducible', () => {
    const ex = recs.map((r) => tokenizeRecord(tok, r, { maxLength: 300 }));
    const padded = makeBatches(ex, { batchSize: 4, seq: 300, padId: tok.padTokenId, seed: 3 });
    expect(padded.length).toBe(10);
    for (const b of padded) {
      for (let i = 0; i < b.batch * b.seq; i++) {
        if (b.attentionMask[i] === 0) {
          expect(b.inputIds[i]).toBe(tok.padTokenId);
          expect(b.labels[i]).toBe(IGNORE_INDEX);
        }
      }
    }
    expect(makeBatches(ex, { batchSize: 4, seq: 300, padId: 1, seed: 3 })).toEqual(padded);
    const packed = makeBatches(ex, { batchSize: 2, seq: 64, padId: 1, packing: true });
    expect(packed.every((b) => b.seq === 64 && b.attentionMask.every((m) => m === 1))).toBe(true);
    const fixed = makeBatches(ex, { batchSize: 4, seq: 320, padId: 1, padding: 'max_length' });
    expect(fixed.every((b) => b.seq === 320)).toBe(true);
  });

  it('generates the same synthetic records for the same seed, with computed answers', () => {
    expect(syntheticCodeInstructions(20, 7)).toEqual(syntheticCodeInstructions(20, 7));
    const sorts = syntheticCodeInstructions(300, 7).filter((r) => r.instruction.startsWith('Sort'));
    expect(sorts.length).toBeGreaterThan(5);
    for (const r of sorts) {
      const xs = JSON.parse(r.input) as number[];
      expect(JSON.parse(r.output)).toEqual([...xs].sort((a, b) => a - b));
    }
  });
});
