// `lora eval --model … --data …` end to end through the built CLI (dist/main.js) on a tiny generated
// OPT: traces.jsonl + summary.json, --json, an adapter, bad input (non-UTF-8 data, nothing held out,
// bad flags), and the LLM judge against a local server started here (good, malformed, unreachable).
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ensureTinyModel, OptForCausalLM, type InstructionRecord } from '@lora/sdk';

// Async spawn (run-lora.ts): the judge server below runs in this process and must keep answering meanwhile.
import { lora } from './run-lora.js';

const dir = mkdtempSync(join(tmpdir(), 'lora-eval-run-'));
const records: InstructionRecord[] = Array.from({ length: 12 }, (_, i) => ({
  instruction: `Print the number ${i}.`,
  input: i % 3 === 0 ? `n = ${i}` : '',
  output: i === 5 ? '' : `print(${i})`,
}));
const data = join(dir, 'data.jsonl');
let model = '';
let adapter = '';

let server: Server;
let judgeUrl = '';
let judgeRequests = 0;
const authSeen = new Set<string>();

beforeAll(async () => {
  writeFileSync(data, records.map((r) => JSON.stringify(r)).join('\n'));
  model = (await ensureTinyModel(join(dir, 'model'), records, { hidden: 32, ffn: 64, layers: 2, heads: 4, embedDim: 16, merges: 0, maxPositions: 256, warmupRounds: 0 })).dir;
  // An adapter with random A and B, so that it changes what the model generates.
  using m = await OptForCausalLM.fromPretrained(model, { device: 'cpu' });
  m.addLora({ r: 4, alpha: 64, targetModules: ['q_proj', 'v_proj'], initLoraWeights: false, seed: 3 });
  adapter = join(dir, 'adapter');
  await m.saveAdapter(adapter);

  // The judge: malformed JSON for the instruction mentioning 7 (or every request to model 'always-bad'), a score otherwise.
  server = createServer((req, res) => {
    judgeRequests++;
    if (judgeRequests > 200) {
      res.writeHead(503);
      res.end();
      return;
    }
    authSeen.add(String(req.headers.authorization));
    let body = '';
    req.on('data', (c) => (body += c));
    req.on('end', () => {
      const req1 = JSON.parse(body) as { model: string; messages: Array<{ content: string }> };
      const msg = req1.messages[1].content;
      const bad = req1.model === 'always-bad' || /number 7\./.test(msg);
      const content = bad ? 'I think it is good' : JSON.stringify({ score: 0.5, reason: 'plausible' });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ choices: [{ message: { role: 'assistant', content } }] }));
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  judgeUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1`;
});

afterAll(async () => {
  server.closeAllConnections();
  await new Promise<void>((r) => server.close(() => r()));
});

describe('lora eval', () => {
  it('evaluates the held-out records and writes traces.jsonl and summary.json', async () => {
    const out = join(dir, 'base');
    const r = await lora(['eval', '--model', model, '--data', data, '--split', '0.5', '--max-new-tokens', '8', '--no-synonyms', '--out', out, '--device', 'cpu']);
    expect(r.stderr).toMatch(/6 held-out records of 12 \(split 0\.5, seed 42\)/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^lora eval: 6 examples/);
    for (const k of ['BLEU (corpus)', 'ROUGE-1 F', 'ROUGE-L F', 'METEOR', 'time to first token  P50', 'generation latency   P50', 'tokens ']) expect(r.stdout).toContain(k);
    const traces = readFileSync(join(out, 'traces.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(traces).toHaveLength(6);
    for (const t of traces) {
      expect(t).toMatchObject({ run_type: 'llm', name: 'lora-eval/generate', error: null });
      expect(t.inputs.prompt).toMatch(/### Instruction:\nPrint the number \d+\.\n\n(### Input:\nn = \d+\n\n)?### Response:\n$/);
      expect(t.reference_outputs.output).toBe(records.find((x) => t.inputs.instruction === x.instruction)!.output);
      expect(t.completion_tokens).toBeGreaterThan(0);
      expect(t.timings.total_ms).toBeGreaterThan(0);
      expect(Object.keys(t.scores)).toEqual(['bleu', 'rouge1', 'rouge2', 'rougeL', 'rougeLsum', 'meteor']);
    }
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(s).toMatchObject({ schema: 'lora-eval/1', count: 6, errors: 0, config: { model, adapter: null, split: 0.5, seed: 42, maxNewTokens: 8, heldOut: 6, records: 12 } });
    expect(s.tokens.total).toBe(traces.reduce((a, t) => a + t.total_tokens, 0));
    expect(s.latency.totalMs.p95).toBeGreaterThanOrEqual(s.latency.totalMs.p50);
    expect(Object.keys(s.metrics)).toEqual(['bleu', 'rouge1', 'rouge2', 'rougeL', 'rougeLsum', 'meteor']);
  });

  it('loads an adapter, limits the records and prints the summary as JSON', async () => {
    const out = join(dir, 'tuned');
    const r = await lora(['eval', '--model', model, '--adapter', adapter, '--data', data, '--limit', '3', '--max-new-tokens', '8', '--metrics', 'bleu,rouge', '--out', out, '--json', '--name', 'tuned']);
    expect(r.status).toBe(0);
    const j = JSON.parse(r.stdout);
    expect(j.summary).toMatchObject({ name: 'tuned', count: 3, config: { adapter, limit: 3 } });
    expect(Object.keys(j.summary.metrics)).toEqual(['bleu', 'rouge1', 'rouge2', 'rougeL', 'rougeLsum']);
    expect(j.traces).toBe(join(out, 'traces.jsonl'));
    const base = readFileSync(join(dir, 'base', 'traces.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).outputs.output);
    const tuned = readFileSync(join(out, 'traces.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l).outputs.output);
    expect(tuned).not.toEqual(base.slice(0, 3));
  });

  it('records judge scores, keeps a malformed verdict as an error, and never prints the key', async () => {
    const out = join(dir, 'judged');
    const r = await lora(
      ['eval', '--model', model, '--data', data, '--split', '0', '--max-new-tokens', '4', '--metrics', 'rouge', '--out', out, '--judge-url', judgeUrl, '--judge-model', 'tiny-judge', '--judge-concurrency', '2'],
      { LORA_JUDGE_API_KEY: 'sk-cli-secret' },
    );
    expect(r.status).toBe(0);
    expect(r.stdout + r.stderr).not.toContain('sk-cli-secret');
    expect(authSeen.has('Bearer sk-cli-secret')).toBe(true);
    expect(r.stdout).toMatch(/judge correctness +0\.500/);
    expect(r.stdout).toMatch(/judge: 2 verdicts without a score .*\n {2}e\.g\. judge reply is not JSON: "I think it is good"/);
    const traces = readFileSync(join(out, 'traces.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(traces).toHaveLength(12);
    const seven = traces.find((t) => t.inputs.instruction === 'Print the number 7.');
    expect(seven.judge.correctness.error).toMatch(/not JSON/);
    expect(seven.scores.judge_correctness).toBeUndefined();
    const other = traces.find((t) => t.inputs.instruction === 'Print the number 1.');
    expect(other.scores).toMatchObject({ judge_correctness: 0.5, judge_helpfulness: 0.5 });
    const s = JSON.parse(readFileSync(join(out, 'summary.json'), 'utf8'));
    expect(s.judge).toMatchObject({ model: 'tiny-judge', judged: 11, errors: 2, rubrics: ['correctness', 'helpfulness'] });
    expect(s.metrics.judge_correctness).toBe(0.5);
    expect(JSON.stringify(s)).not.toContain('sk-cli-secret');
  });

  it('exits 1 when the judge gives no usable verdict at all, with every example still written', async () => {
    const out = join(dir, 'all-bad');
    const r = await lora(['eval', '--model', model, '--data', data, '--limit', '2', '--max-new-tokens', '4', '--metrics', 'bleu', '--out', out, '--judge-url', judgeUrl, '--judge-model', 'always-bad']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/the judge gave no usable verdict for any example \(first error: judge reply is not JSON: "I think it is good"\).*\[E_JUDGE_RESPONSE\]/);
    const traces = readFileSync(join(out, 'traces.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(traces).toHaveLength(2);
    for (const t of traces) expect(t.judge.helpfulness.error).toMatch(/not JSON/);
  });

  it('exits 1 with a clear message when the judge is unreachable, after writing the generation scores', async () => {
    const closed = createServer();
    await new Promise<void>((r) => closed.listen(0, '127.0.0.1', r));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((r) => closed.close(() => r()));
    const out = join(dir, 'unreachable');
    const r = await lora(['eval', '--model', model, '--data', data, '--limit', '2', '--max-new-tokens', '4', '--metrics', 'bleu', '--out', out, '--judge-url', `http://127.0.0.1:${port}`, '--judge-model', 'm', '--judge-retries', '1']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(new RegExp(`the judge at http://127\\.0\\.0\\.1:${port} could not be reached \\(.*ECONNREFUSED.*\\).*\\[E_JUDGE_UNREACHABLE\\]`));
    const traces = readFileSync(join(out, 'traces.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(traces).toHaveLength(2);
    for (const t of traces) expect(t.judge.correctness.error).toMatch(/judge unreachable/);
  });

  it('names bad input instead of crashing', async () => {
    const bad = join(dir, 'bad.jsonl');
    writeFileSync(bad, Buffer.concat([Buffer.from(`${JSON.stringify(records[0])}\n{"instruction": "x\xff", "output": "y"}\n`, 'latin1')]));
    let r = await lora(['eval', '--model', model, '--data', bad]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/bad\.jsonl: bytes that are not valid UTF-8 on line 2 \(re-encode the file as UTF-8, or pass --replace-invalid-utf8.*\[E_EVAL_INPUT\]/);
    r = await lora(['eval', '--model', model, '--data', bad, '--replace-invalid-utf8', '--split', '0', '--max-new-tokens', '2', '--metrics', 'bleu', '--out', join(dir, 'replaced')]);
    expect(r.status).toBe(0);
    expect(r.stderr).toMatch(/warning: .*line 2; replaced with U\+FFFD/);
    expect(r.stdout).toMatch(/^lora eval: 2 examples/);

    const long = join(dir, 'long.jsonl');
    writeFileSync(long, [0, 1].map((i) => JSON.stringify({ instruction: `${i} ${'much too long '.repeat(30)}`, input: '', output: 'x' })).join('\n'));
    r = await lora(['eval', '--model', model, '--data', long, '--split', '0', '--metrics', 'bleu', '--out', join(dir, 'long')]);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/every generation failed: 2 of 2 generations failed and scored 0 \(first error: generate: prompt of \d+ tokens exceeds the model's 256 positions\).*\[E_EVAL_GENERATE\]/);
    expect(readFileSync(join(dir, 'long', 'traces.jsonl'), 'utf8').trim().split('\n')).toHaveLength(2);

    r = await lora(['eval', '--model', model, '--data', data, '--split', '1']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--split 1 trains on every record and leaves none held out/);
    const one = join(dir, 'one.jsonl');
    writeFileSync(one, JSON.stringify(records[0]));
    r = await lora(['eval', '--model', model, '--data', one, '--split', '0.5']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--split 0\.5 of 1 record leaves none held out/);
    r = await lora(['eval', '--data', data]);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/--model DIR\|ID is required/);
    r = await lora(['eval', '--model', model, '--data', data, '--metrics', 'bleu,cider']);
    expect(r.stderr).toMatch(/unknown metric 'cider'/);
    r = await lora(['eval', '--model', model, '--data', data, '--judge-url', 'ftp://x', '--judge-model', 'm']);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/--judge-url must be http:\/\/ or https:\/\/.*\[E_JUDGE_CONFIG\]/);
    r = await lora(['eval', '--model', model, '--data', data, '--judge-url', judgeUrl]);
    expect(r.stderr).toMatch(/--judge-url and --judge-model go together/);
    r = await lora(['eval', 'nonsense']);
    expect(r.stderr).toMatch(/unknown subcommand 'nonsense' \(available: score, compare\)/);
  });
});
