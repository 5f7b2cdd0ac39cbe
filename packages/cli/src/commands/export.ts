// `lora export`: a model (and optional LoRA adapter) as a merged Hugging Face folder or as GGUF
// files for llama.cpp / Ollama (+ a Modelfile). The work is the SDK's exportModel.
import { exportModel, GGML_TYPE_NAMES, type ExportFormat, type GgmlTypeName } from '@lora/sdk';

import { UsageError, type Command } from '../command.js';
import { parseFlags, type CommandSpec } from '../flags.js';
import { jsonFlag } from './common-flags.js';

const EXPORT_SPEC: CommandSpec = {
  command: 'lora export',
  synopsis: 'lora export --model DIR|ID [--adapter DIR] --format hf|gguf [--dtype f32|f16|bf16|q8_0|q4_0] [--adapter-only] --out PATH',
  description: 'hf: a merged model folder (safetensors, sharded above --max-shard-mb, config, generation config, tokenizer files).\n' +
    'gguf: model.gguf for llama.cpp and Ollama (llama, qwen2, qwen3), with the adapter merged, or with --adapter-only\n' +
    'the unmerged base plus adapter.gguf (llama.cpp --lora); a Modelfile beside them. OPT has no GGUF runtime: use --format hf.',
  flags: [
    { name: 'model', kind: 'string', metavar: 'DIR|ID', help: 'base model folder or hub id' },
    { name: 'adapter', kind: 'string', metavar: 'DIR', help: 'PEFT LoRA adapter folder to merge (or convert, with --adapter-only)' },
    { name: 'format', kind: 'enum', choices: ['hf', 'gguf'], help: 'output format' },
    {
      name: 'dtype', kind: 'enum', choices: GGML_TYPE_NAMES, choiceAliases: { fp32: 'f32', float32: 'f32', fp16: 'f16', float16: 'f16', bfloat16: 'bf16', q8: 'q8_0', q4: 'q4_0' },
      defaultText: 'f16 for gguf, f32 for hf', help: 'tensor type of the written weights (q8_0/q4_0: gguf only)',
    },
    { name: 'adapter-only', kind: 'boolean', help: 'gguf: write the base and the adapter as separate files instead of merging' },
    { name: 'base-dtype', kind: 'enum', choices: ['int8', 'int4', 'nf4'], help: 'hf: load the base quantized (as QLoRA trained on it), merge into its dequantized weights and report the logits error that costs' },
    { name: 'max-shard-mb', kind: 'int', min: 1, default: 2048, help: 'hf: largest safetensors shard in MiB' },
    { name: 'out', kind: 'string', metavar: 'PATH', help: 'destination folder (refused if it exists, unless --force)' },
    { name: 'force', kind: 'boolean', help: 'replace an existing --out' },
    jsonFlag('print the written files as JSON'),
  ],
};

export const exportCommand: Command = {
  name: 'export',
  summary: 'Export a merged model (hf) or GGUF model/adapter files for llama.cpp and Ollama',
  spec: EXPORT_SPEC,
  async run(argv) {
    const { values: v } = parseFlags(EXPORT_SPEC, argv);
    const values = v as {
      model?: string; adapter?: string; format?: string; dtype?: string; 'adapter-only'?: boolean; 'base-dtype'?: string;
      'max-shard-mb': number; out?: string; force?: boolean; json?: boolean;
    };
    if (!values.model || !values.format || !values.out) throw new UsageError('--model, --format and --out are required');
    if (values['adapter-only'] && !values.adapter) throw new UsageError('--adapter-only needs --adapter');
    const started = Date.now();
    const r = await exportModel({
      model: values.model, adapter: values.adapter, format: values.format as ExportFormat, dtype: values.dtype as GgmlTypeName | undefined,
      adapterOnly: values['adapter-only'], baseDtype: values['base-dtype'] as 'int8' | 'int4' | 'nf4' | undefined,
      maxShardBytes: values['max-shard-mb'] * 1024 * 1024, out: values.out, force: values.force,
    });
    if (values.json) {
      process.stdout.write(`${JSON.stringify(r, null, 2)}\n`);
      return 0;
    }
    process.stdout.write(`wrote ${r.out} in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
    const size = (b: number) => (b >= 1024 * 1024 ? `${(b / 1024 / 1024).toFixed(1)} MiB` : `${(b / 1024).toFixed(1)} KiB`);
    for (const f of r.files) process.stdout.write(`  ${f.name}${f.bytes ? `  ${size(f.bytes)}` : ''}\n`);
    if (r.quantization) {
      const q = r.quantization;
      process.stdout.write(`merged into the dequantized ${q.baseDtype} base: logits differ from the f32 base + adapter by max ${q.maxAbsLogitError.toExponential(2)}, rel. RMS ${q.relRmsLogitError.toExponential(2)} (${q.probeTokens} probe tokens)\n`);
    }
    return 0;
  },
};
