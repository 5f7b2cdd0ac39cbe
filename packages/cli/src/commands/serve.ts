// `lora serve`: the SDK's OpenAI-compatible server (vLLM's endpoints and shapes) for a base model
// and any number of LoRA adapters, with continuous batching. The model is loaded and stepped in a
// worker thread (the SDK's createServer with a model source), so HTTP, streaming and cancels never
// wait for a model step. SIGTERM/SIGINT drain: no new requests, the running ones finish, then the
// worker frees the model and the process exits; a second signal cancels what is left.
import { AutoTokenizer, createServer, loadChatTemplate, resolveModelDir, TOKENIZER_FILES, type BaseDType, type DeviceOption } from '@lora/sdk';

import { UsageError, type Command } from '../command.js';
import { bool, list, num, parseFlags, str, type CommandSpec } from '../flags.js';
import { deviceFlag, dtypeFlag, modelFlag } from './common-flags.js';

const SERVE_SPEC: CommandSpec = {
  command: 'lora serve',
  synopsis: 'lora serve --model DIR|ID [--adapter NAME=DIR[,NAME=DIR...]] [--host 127.0.0.1] [--port 8000] [--api-key KEY] [options]',
  description: 'An OpenAI-compatible server as vLLM serves one: GET /v1/models, POST /v1/completions and /v1/chat/completions\n' +
    '(streaming or not), POST /v1/load_lora_adapter and /v1/unload_lora_adapter, GET /health and GET /metrics (Prometheus).\n' +
    'A request\'s "model" names the base (--served-model-name) or an adapter. Concurrent requests share one running decode batch.',
  flags: [
    modelFlag(),
    { name: 'adapter', kind: 'list', metavar: 'NAME=DIR,...', help: 'LoRA adapters to serve, each under its name (vLLM\'s --lora-modules)', aliases: ['lora-modules'] },
    { name: 'served-model-name', kind: 'string', metavar: 'NAME', help: 'the base model\'s name in requests and /v1/models (default: --model as given)' },
    dtypeFlag(),
    deviceFlag(),
    { name: 'host', kind: 'string', default: '127.0.0.1', help: 'address to listen on (0.0.0.0 exposes the server to the network)' },
    { name: 'port', kind: 'int', min: 0, max: 65535, default: 8000, help: 'TCP port (0 picks a free one; the address is printed)' },
    { name: 'api-key', kind: 'string', metavar: 'KEY', help: 'require Authorization: Bearer KEY on /v1 (default: $LORA_API_KEY, else none)' },
    { name: 'max-batch', kind: 'int', min: 1, default: 16, help: 'rows in the running decode batch' },
    { name: 'max-queue', kind: 'int', min: 0, default: 64, help: 'requests waiting beyond the batch; more get 429 with Retry-After' },
    { name: 'prefill-chunk', kind: 'int', min: 1, default: 64, help: 'prompt tokens per prefill step (how long a new request can stall the others)' },
    { name: 'kv-cache-mb', kind: 'int', min: 1, default: 1024, help: 'memory budget for all running requests\' KV caches, MiB' },
    { name: 'max-tokens-cap', kind: 'int', min: 1, default: 2048, help: 'largest max_tokens a request may ask for' },
    { name: 'no-runtime-adapters', kind: 'boolean', help: 'refuse /v1/load_lora_adapter and /v1/unload_lora_adapter' },
  ],
  notes: [
    'Example:',
    '  lora serve --model ./opt-350m --adapter code=./runs/r8,chat=./runs/r16 --port 8000',
    '  curl localhost:8000/v1/completions -H "content-type: application/json" -d \'{"model": "code", "prompt": "def add(", "max_tokens": 32, "temperature": 0}\'',
  ],
};

function parseAdapters(items: readonly string[]): [string, string][] {
  return items.map((item) => {
    const eq = item.indexOf('=');
    if (eq <= 0 || eq === item.length - 1) throw new UsageError(`--adapter takes NAME=DIR, got '${item}'`);
    return [item.slice(0, eq), item.slice(eq + 1)];
  });
}

export const serveCommand: Command = {
  name: 'serve',
  summary: 'Serve a model and its LoRA adapters over an OpenAI-compatible HTTP API (continuous batching)',
  spec: SERVE_SPEC,
  async run(argv) {
    const p = parseFlags(SERVE_SPEC, argv);
    const modelId = str(p, 'model');
    if (!modelId) throw new UsageError('--model is required');
    const adapters = parseAdapters(list(p, 'adapter') ?? []);
    const tokenizer = await AutoTokenizer.fromPretrained(modelId); // tokenizer.json (Llama, Qwen), else OPT's vocab.json + merges.txt
    const chatTemplate = await loadChatTemplate(await resolveModelDir(modelId, { files: TOKENIZER_FILES }));
    const server = createServer({ model: modelId, device: str(p, 'device') as DeviceOption, dtype: str(p, 'dtype') as BaseDType }, {
      tokenizer, chatTemplate, modelName: str(p, 'served-model-name') ?? modelId,
      apiKey: str(p, 'api-key') ?? (process.env.LORA_API_KEY || undefined),
      maxTokensCap: num(p, 'max-tokens-cap'),
      runtimeAdapters: !bool(p, 'no-runtime-adapters'),
      scheduler: { maxBatch: num(p, 'max-batch'), maxQueue: num(p, 'max-queue'), prefillChunk: num(p, 'prefill-chunk'), kvBudgetBytes: num(p, 'kv-cache-mb')! * 2 ** 20 },
    });
    try {
      await server.ready(); // the worker's loading error (a LoraError with its code) surfaces here
      for (const [name, dir] of adapters) await server.adapters.load(name, dir);
      const addr = await server.listen(num(p, 'port'), str(p, 'host'));
      const host = addr.family === 'IPv6' ? `[${addr.address}]` : addr.address;
      process.stderr.write(`lora serve: listening on http://${host}:${addr.port}/v1 (model '${server.modelName}'${adapters.length ? `, adapters ${adapters.map(([n]) => n).join(', ')}` : ''}; chat: ${chatTemplate.kind})\n`);
    } catch (e) {
      await server.close().catch(() => {});
      throw e;
    }
    await new Promise<void>((resolve) => {
      let signals = 0;
      const onSignal = (sig: NodeJS.Signals) => {
        if (++signals > 1) {
          process.stderr.write(`lora serve: ${sig} again: cancelling ${server.scheduler.inFlight} request(s)\n`);
          server.scheduler.cancelAll();
          return;
        }
        process.stderr.write(`lora serve: ${sig}: draining ${server.scheduler.inFlight} request(s), then exiting\n`);
        void server.close().then(resolve, resolve);
      };
      process.on('SIGTERM', onSignal);
      process.on('SIGINT', onSignal);
    });
    process.stderr.write('lora serve: stopped\n');
    return 0;
  },
};
