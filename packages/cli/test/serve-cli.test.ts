// `lora serve` through the built CLI on 127.0.0.1 (the model in the server's worker thread):
// `lora eval --target-url` against it scores like `lora eval --model` with the same adapter and
// records, a model the worker cannot load exits 1 with its coded error, and SIGTERM drains (the
// in-flight stream completes, then the process exits 0).
import { spawn, type ChildProcess } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

import { afterAll, beforeAll, describe, expect, it } from 'vitest';

import { ensureTinyModel, LORA_TARGETS, OptForCausalLM, syntheticCodeInstructions } from '@lora/sdk';

import { cli, lora } from './run-lora.js';

const dir = mkdtempSync(join(tmpdir(), 'lora-serve-cli-'));
const data = join(dir, 'data.jsonl');
let model = '';
let adapter = '';
let server: ChildProcess;
let serverErr = '';
let url = '';

beforeAll(async () => {
  const records = syntheticCodeInstructions(8, 5);
  writeFileSync(data, records.map((r) => JSON.stringify(r)).join('\n'));
  model = (await ensureTinyModel(join(dir, 'model'), records, { hidden: 64, ffn: 128, layers: 2, heads: 4, embedDim: 32, merges: 200, maxPositions: 256, warmupRounds: 0 })).dir;
  {
    using m = await OptForCausalLM.fromPretrained(model, { device: 'cpu' });
    m.addLora({ r: 4, alpha: 64, targetModules: [...LORA_TARGETS], initLoraWeights: false, seed: 5 });
    adapter = join(dir, 'adapter');
    await m.saveAdapter(adapter);
  }
  server = spawn(process.execPath, [cli, 'serve', '--model', model, '--adapter', `code=${adapter}`, '--served-model-name', 'tiny', '--port', '0', '--device', 'cpu']);
  url = await new Promise<string>((resolve, reject) => {
    server.stderr!.on('data', (d) => {
      serverErr += d;
      const m = /listening on (http:\/\/127\.0\.0\.1:\d+\/v1)/.exec(serverErr);
      if (m) resolve(m[1]);
    });
    server.on('exit', (code) => reject(new Error(`lora serve exited ${code}: ${serverErr}`)));
  });
}, 60_000);

afterAll(() => {
  if (server && server.exitCode === null) server.kill('SIGKILL');
  rmSync(dir, { recursive: true, force: true });
});

describe('lora serve (CLI)', () => {
  it('lora eval --target-url scores the served adapter like lora eval --model --adapter', async () => {
    const common = ['--data', data, '--split', '0', '--limit', '4', '--max-new-tokens', '12', '--metrics', 'bleu,rouge', '--json'];
    const [served, local] = await Promise.all([
      lora(['eval', '--target-url', url, '--target-model', 'code', '--name', 'served', '--out', join(dir, 'served'), ...common]),
      lora(['eval', '--model', model, '--adapter', adapter, '--device', 'cpu', '--name', 'local', '--out', join(dir, 'local'), ...common]),
    ]);
    expect(served.status, served.stderr).toBe(0);
    expect(local.status, local.stderr).toBe(0);
    const a = JSON.parse(readFileSync(join(dir, 'served', 'summary.json'), 'utf8'));
    const b = JSON.parse(readFileSync(join(dir, 'local', 'summary.json'), 'utf8'));
    expect(a.count).toBe(4);
    expect(a.errors).toBe(0);
    expect(a.metrics).toEqual(b.metrics);
    expect(a.tokens).toEqual(b.tokens);
    expect(a.config).toMatchObject({ model: 'code', targetUrl: `${url}/completions`, targetApi: 'completions' });
    const table = await lora(['eval', 'compare', join(dir, 'served'), join(dir, 'local')]);
    expect(table.status, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/served/);
    expect(table.stdout).toMatch(/local/);
    const bad = await lora(['eval', '--target-url', url, '--data', data]);
    expect(bad.status).not.toBe(0);
    expect(bad.stderr).toMatch(/--target-url and --target-model go together/);
  });

  it('a model the worker cannot load exits 1 with its LoraError code', async () => {
    const bad = join(dir, 'bad-model');
    mkdirSync(bad);
    for (const f of readdirSync(model)) if (f !== 'config.json' && !f.endsWith('.safetensors')) copyFileSync(join(model, f), join(bad, f));
    writeFileSync(join(bad, 'config.json'), JSON.stringify({ model_type: 'bert' }));
    const r = await lora(['serve', '--model', bad, '--port', '0', '--device', 'cpu']);
    expect(r.status, r.stderr).toBe(1);
    expect(r.stderr).toMatch(/model_type "bert" is not supported.*\[E_CONFIG\]/);
  });

  it('SIGTERM lets the running stream finish, then exits 0', async () => {
    const res = await fetch(`${url}/completions`, {
      method: 'POST', headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ model: 'code', prompt: 'def add(a, b):', max_tokens: 200, ignore_eos: true, temperature: 0, stream: true, stream_options: { include_usage: true } }),
    });
    expect(res.status).toBe(200);
    // At the headers, sent as the request is submitted: the worker has 200 steps to go, so the
    // signal lands mid-generation even on a slow host (after the first chunk it once came too late).
    const exited = new Promise<number | null>((r) => server.on('close', (code) => r(code))); // after its stderr is read
    server.kill('SIGTERM');
    const reader = res.body!.getReader();
    let text = '';
    for (;;) {
      const { done, value } = await reader.read();
      if (done) break;
      text += new TextDecoder().decode(value);
    }
    expect(text).toMatch(/"finish_reason":"length"/);
    expect(text).toMatch(/"completion_tokens":200/);
    expect(text).toMatch(/"usage":\{"prompt_tokens":\d+,"completion_tokens":\d+/);
    expect(text.trimEnd().endsWith('data: [DONE]')).toBe(true);
    expect(await exited).toBe(0);
    expect(serverErr).toMatch(/SIGTERM: draining 1 request/);
    expect(serverErr).toMatch(/lora serve: stopped/);
  });
});
