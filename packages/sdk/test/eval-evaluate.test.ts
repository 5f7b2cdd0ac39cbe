// evaluateModel on a tiny generated OPT: every record is generated from the training template,
// scored with scorePredictions, timed and traced; failures and empty references are recorded,
// never dropped. Also the held-out split, the data reader's UTF-8 handling and the percentiles.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { beforeAll, describe, expect, it } from 'vitest';

import {
  alpacaPrompt,
  benchEvalMetrics,
  ensureTinyModel,
  evaluateModel,
  generationErrorNote,
  heldOutRecords,
  latencyStats,
  LoraError,
  OptForCausalLM,
  OptTokenizer,
  percentile,
  readEvalRecords,
  scorePredictions,
  splitTrainTest,
  traceRecord,
  writeEvalOutputs,
  type InstructionRecord,
} from '../src/index.js';

const dir = mkdtempSync(join(tmpdir(), 'lora-eval-evaluate-'));
const records: InstructionRecord[] = [
  { instruction: 'Add two numbers.', input: '', output: 'def add(a, b):\n    return a + b' },
  { instruction: 'Reverse a string.', input: 's = "abc"', output: 's[::-1]' },
  { instruction: 'Say hi.', input: '', output: '' }, // empty reference
  { instruction: `Explain ${'very '.repeat(60)}long things.`, input: '', output: 'too long for 256 positions' },
  { instruction: 'Print one.', input: '', output: 'print(1)' },
];
let modelDir = '';

beforeAll(async () => {
  const tiny = await ensureTinyModel(join(dir, 'model'), records, { hidden: 32, ffn: 64, layers: 2, heads: 4, embedDim: 16, merges: 0, maxPositions: 256, warmupRounds: 0 });
  modelDir = tiny.dir;
});

describe('evaluateModel', () => {
  it('generates from the training template, scores with scorePredictions and records every example', async () => {
    const tok = await OptTokenizer.fromPretrained(modelDir);
    using model = await OptForCausalLM.fromPretrained(modelDir, { device: 'cpu' });
    const progress: number[] = [];
    const r = await evaluateModel(model, tok, records, { maxNewTokens: 6, metrics: ['bleu', 'rouge', 'meteor'], score: { meteor: { synonyms: false } }, name: 'tiny', config: { model: modelDir } }, (p) => {
      if (p.type === 'generated') progress.push(p.index);
    });
    expect(progress).toEqual([0, 1, 2, 3, 4]);
    expect(r.examples).toHaveLength(records.length);

    // Example 0: the same tokens as a direct greedy generate on the same prompt.
    const ids = tok.encode(alpacaPrompt(records[0]), { addSpecialTokens: true });
    const direct = await model.generate(ids, { maxNewTokens: 6, seed: 0 });
    const e0 = r.examples[0];
    expect(e0.prompt).toBe(alpacaPrompt(records[0]));
    expect(e0.output).toBe(tok.decode(direct.tokens, { skipSpecialTokens: true }));
    expect(e0.reference).toBe(records[0].output);
    expect(e0.tokensIn).toBe(ids.length);
    expect(e0.tokensOut).toBe(direct.tokens.length);
    expect(e0.timeToFirstTokenMs).toBeGreaterThan(0);
    expect(e0.totalMs).toBeGreaterThanOrEqual(e0.timeToFirstTokenMs!);
    expect(Date.parse(e0.endTime)).toBeGreaterThanOrEqual(Date.parse(e0.startTime));
    expect(e0.id).toMatch(/^[0-9a-f-]{36}$/);

    // Scores are exactly scorePredictions' on the same pairs.
    const want = scorePredictions(r.examples.map((e) => ({ prediction: e.output, references: [e.reference] })), { metrics: ['bleu', 'rouge', 'meteor'], meteor: { synonyms: false } });
    for (const [i, e] of r.examples.entries()) {
      expect(e.scores.bleu).toBe(want.examples[i].sentenceBleu);
      expect(e.scores.rouge1).toBe(want.examples[i].rouge!.rouge1.f);
      expect(e.scores.rougeL).toBe(want.examples[i].rouge!.rougeL.f);
      expect(e.scores.meteor).toBe(want.examples[i].meteor);
    }
    expect(r.summary.metrics.bleu).toBe(want.corpus.bleu!.score);
    expect(r.summary.metrics.rouge1).toBe(want.corpus.rouge!.rouge1.f);
    expect(r.summary.metrics.meteor).toBe(want.corpus.meteor);

    // Empty reference: scored 0 with a note. Over-long prompt: the error is recorded, scored 0, kept.
    const e2 = r.examples[2];
    expect(e2.scores).toMatchObject({ bleu: 0, rouge1: 0, meteor: 0 });
    expect(e2.notes?.join(' ')).toMatch(/empty reference/);
    const e3 = r.examples[3];
    expect(e3.error).toMatch(/exceeds the model's 256 positions/);
    expect(e3.output).toBe('');
    expect(e3.tokensOut).toBe(0);
    expect(e3.scores).toMatchObject({ bleu: 0, rouge1: 0, meteor: 0 });
    expect(e3.notes?.[0]).toMatch(/generation failed/);

    // Summary: counts, token totals and latency over the examples that generated.
    const s = r.summary;
    expect(s.schema).toBe('lora-eval/1');
    expect(s.name).toBe('tiny');
    expect(s.count).toBe(5);
    expect(s.errors).toBe(1);
    expect(s.emptyReferences).toBe(1);
    expect(s.tokens.in).toBe(r.examples.reduce((a, e) => a + e.tokensIn, 0));
    expect(s.tokens.out).toBe(r.examples.reduce((a, e) => a + e.tokensOut, 0));
    expect(s.tokens.total).toBe(s.tokens.in + s.tokens.out);
    const totals = r.examples.filter((e) => !e.error).map((e) => e.totalMs!);
    expect(s.latency.totalMs.p50).toBe(percentile(totals, 50));
    expect(s.latency.totalMs.p95).toBe(percentile(totals, 95));
    expect(s.latency.timeToFirstTokenMs.p50).toBeGreaterThan(0);
    expect(s.config).toMatchObject({ model: modelDir, maxNewTokens: 6, temperature: 0 });

    // Traces: one LangSmith-style run per example, and summary.json.
    const t3 = traceRecord(e3, s);
    expect(t3).toMatchObject({ id: e3.id, run_type: 'llm', name: 'tiny/generate', outputs: null, prompt_tokens: e3.tokensIn, completion_tokens: 0 });
    expect(t3.error).toMatch(/exceeds/);
    const out = await writeEvalOutputs(r, join(dir, 'out'));
    const lines = readFileSync(out.traces, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(lines).toHaveLength(5);
    expect(lines.map((l) => l.extra.metadata.index)).toEqual([0, 1, 2, 3, 4]);
    expect(lines[0]).toMatchObject({ inputs: { prompt: e0.prompt }, outputs: { output: e0.output }, reference_outputs: { output: e0.reference }, total_tokens: e0.tokensIn + e0.tokensOut });
    expect(lines[0].timings.time_to_first_token_ms).toBe(e0.timeToFirstTokenMs);
    const summary = JSON.parse(readFileSync(out.summary, 'utf8'));
    expect(summary.metrics).toEqual(s.metrics);
    expect(summary.latency.totalMs.p95).toBeCloseTo(s.latency.totalMs.p95, 9);

    const bench = benchEvalMetrics(s);
    expect(Object.keys(bench).sort()).toEqual(['bleu', 'errors', 'latency_p50_ms', 'meteor', 'rouge1', 'rouge2', 'rougeL', 'ttft_p50_ms']);
  });
});

describe('evaluateModel with a stand-in model', () => {
  it('scores an empty generation 0 with a note and records a thrown non-Error as the example error', async () => {
    const tok = await OptTokenizer.fromPretrained(modelDir);
    let call = 0;
    // Generation ends at once with eos (a special token: the decoded output is empty), then throws a string.
    const fake = {
      generate: () => {
        call++;
        if (call === 2) throw 'device lost';
        return { tokens: [tok.eosTokenId], stoppedBy: 'stop-token', timeToFirstTokenMs: 2, totalMs: 2 };
      },
    } as unknown as OptForCausalLM;
    const r = await evaluateModel(fake, tok, records.slice(0, 2), { metrics: ['rouge'] });
    expect(r.examples[0]).toMatchObject({ output: '', tokensOut: 1, stoppedBy: 'stop-token', scores: { rouge1: 0, rougeL: 0 } });
    expect(r.examples[0].notes).toEqual(['empty prediction: scored 0']);
    expect(r.examples[1].error).toBe('device lost');
    expect(r.summary).toMatchObject({ count: 2, errors: 1, emptyOutputs: 2, metrics: { rouge1: 0 } });
    expect(r.summary.latency.totalMs).toEqual({ mean: 2, p50: 2, p95: 2, max: 2 });
    expect(generationErrorNote(r)).toBe('1 of 2 generations failed and scored 0 (first error: device lost)');
    expect(benchEvalMetrics(r.summary).errors).toBe(1);
  });

  it('warns in the summary (and summary.json) when outputs are empty or logits went non-finite, instead of a silent 0', async () => {
    const tok = await OptTokenizer.fromPretrained(modelDir);
    const word = tok.encode(' return', { addSpecialTokens: false });
    let call = 0;
    const fake = {
      generate: async () => {
        call++;
        if (call === 1) throw new LoraError('E_NON_FINITE', 'generate: the logits of step 1 are not finite (NaN or Inf)');
        if (call === 2) return { tokens: [tok.eosTokenId], stoppedBy: 'stop-token', timeToFirstTokenMs: 1, totalMs: 1 };
        return { tokens: word, stoppedBy: 'max-new-tokens', timeToFirstTokenMs: 1, totalMs: 1 };
      },
    } as unknown as OptForCausalLM;
    const r = await evaluateModel(fake, tok, [records[0], records[1], records[4]], { metrics: ['bleu', 'rouge'] });
    expect(r.examples[0]).toMatchObject({ errorCode: 'E_NON_FINITE', output: '' });
    expect(r.summary.warnings).toEqual([
      '1 of 3 generations stopped on non-finite (NaN/Inf) logits: the model or adapter is broken, and those examples\' scores of 0 measure nothing',
      '1 of 3 outputs is empty (the model stopped at once), scored 0 on every metric',
    ]);
    const out = await writeEvalOutputs(r, join(dir, 'warned'));
    expect(JSON.parse(readFileSync(out.summary, 'utf8')).warnings).toEqual(r.summary.warnings);

    // An all-NaN adapter's run: every output empty, BLEU 0.00 - now said to measure nothing.
    const silent = { generate: async () => ({ tokens: [tok.eosTokenId], stoppedBy: 'stop-token', timeToFirstTokenMs: 1, totalMs: 1 }) } as unknown as OptForCausalLM;
    const all = await evaluateModel(silent, tok, records.slice(0, 4).filter((x) => x.output), { metrics: ['bleu'] });
    expect(all.summary.metrics.bleu).toBe(0);
    expect(all.summary.warnings).toEqual([expect.stringMatching(/^every output is empty \(3 of 3\): BLEU\/ROUGE\/METEOR of 0 say nothing/)]);

    // A healthy run has no warnings.
    const fine = { generate: async () => ({ tokens: word, stoppedBy: 'max-new-tokens', timeToFirstTokenMs: 1, totalMs: 1 }) } as unknown as OptForCausalLM;
    expect((await evaluateModel(fine, tok, [records[0]], { metrics: ['bleu'] })).summary.warnings).toEqual([]);
  });
});

describe('percentiles', () => {
  it('interpolate linearly between order statistics, as numpy.percentile does', () => {
    expect(percentile([3, 1, 2, 4], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 95)).toBeCloseTo(9.55, 12);
    expect(percentile([7], 95)).toBe(7);
    expect(percentile([], 50)).toBeNaN();
    expect(latencyStats([10, 20, 30, 40])).toEqual({ mean: 25, p50: 25, p95: 38.5, max: 40 });
  });
});

describe('held-out records and data files', () => {
  it('evaluates exactly what training with the same split and seed left out', () => {
    const many = Array.from({ length: 30 }, (_, i) => ({ instruction: `task ${i}`, input: '', output: `out ${i}` }));
    const { train, test } = splitTrainTest(many, 0.6, 7);
    const held = heldOutRecords(many, 0.6, 7);
    expect(held).toEqual(test);
    expect(held.some((r) => train.includes(r))).toBe(false);
    expect(heldOutRecords(many, 0.6, 7, 3)).toEqual(test.slice(0, 3));
    expect(heldOutRecords(many, 0, 7)).toEqual(many);
  });

  it('names the line of bytes that are not UTF-8, or replaces them with a warning', async () => {
    const good = JSON.stringify({ instruction: 'a', input: '', output: 'b' });
    const bad = Buffer.concat([Buffer.from('{"instruction": "caf'), Buffer.from([0xe9, 0xff]), Buffer.from('", "output": "x"}')]);
    const p = join(dir, 'bad.jsonl');
    writeFileSync(p, Buffer.concat([Buffer.from(`${good}\n${good}\n`), bad, Buffer.from('\n')]));
    await expect(readEvalRecords(p)).rejects.toThrow(/not valid UTF-8 on line 3 .*--replace-invalid-utf8/);
    const r = await readEvalRecords(p, { invalidUtf8: 'replace' });
    expect(r.records).toHaveLength(3);
    expect(r.records[2].instruction).toContain('\uFFFD');
    expect(r.warnings[0]).toMatch(/line 3; replaced with U\+FFFD/);
    await expect(readEvalRecords(join(dir, 'missing.jsonl'))).rejects.toThrow(/no such file/);
    await expect(readEvalRecords(join(dir, 'data.csv'))).rejects.toThrow(/cannot tell the format/);
  });
});
