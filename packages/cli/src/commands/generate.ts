// `lora generate`: KV-cached decoding from a model (and optional adapter), for a raw prompt or an
// instruction in the training template.
import { alpacaPrompt, AutoModelForCausalLM, AutoTokenizer, type BaseDType, type DeviceOption } from '@lora/sdk';

import { UsageError, type Command } from '../command.js';
import { parseFlags, type CommandSpec } from '../flags.js';
import { deviceFlag, dtypeFlag, modelFlag } from './common-flags.js';

const GENERATE_SPEC: CommandSpec = {
  command: 'lora generate',
  synopsis: 'lora generate --model DIR|ID [--adapter DIR] (--prompt TEXT | --instruction TEXT [--input TEXT]) [options]',
  description: 'KV-cached decoding: greedy by default, sampling with --temperature > 0. --instruction wraps the text in the\n' +
    'training template (Alpaca), as lora train saw it; --prompt is used as it is.',
  flags: [
    modelFlag(),
    { name: 'adapter', kind: 'string', metavar: 'DIR', help: 'PEFT adapter folder (lora train --out)' },
    { name: 'prompt', kind: 'string', metavar: 'TEXT', help: 'raw prompt' },
    { name: 'instruction', kind: 'string', metavar: 'TEXT', help: 'instruction, put into the training template' },
    { name: 'input', kind: 'string', metavar: 'TEXT', help: 'the instruction\'s input field' },
    { name: 'max-new-tokens', kind: 'int', min: 1, default: 64, help: 'tokens to generate at most', aliases: ['max_new_tokens'] },
    { name: 'temperature', kind: 'number', min: 0, default: 0, help: '0 = greedy' },
    { name: 'top-p', kind: 'number', min: 0, max: 1, minExclusive: true, default: 1, help: 'nucleus sampling mass', aliases: ['top_p'] },
    { name: 'top-k', kind: 'int', min: 0, default: 0, help: 'sample from the k most likely tokens (0 = all)', aliases: ['top_k'] },
    { name: 'seed', kind: 'int', min: 0, default: 0, help: 'sampling seed' },
    dtypeFlag(),
    deviceFlag(),
    { name: 'json', kind: 'boolean', help: 'print one JSON object with the output, token counts and timings' },
  ],
  exclusive: [['prompt', 'instruction'], ['prompt', 'input']],
};

export const generateCommand: Command = {
  name: 'generate',
  summary: 'Generate text with a model and optional LoRA adapter (KV-cached decoding)',
  spec: GENERATE_SPEC,
  async run(argv) {
    const { values: v } = parseFlags(GENERATE_SPEC, argv);
    const values = v as {
      model?: string; adapter?: string; prompt?: string; instruction?: string; input?: string; 'max-new-tokens': number;
      temperature: number; 'top-p': number; 'top-k': number; seed: number; dtype: BaseDType; device: DeviceOption; json?: boolean;
    };
    if (!values.model) throw new UsageError('--model is required');
    if ((values.prompt === undefined) === (values.instruction === undefined)) throw new UsageError('give exactly one of --prompt or --instruction');
    const text = values.prompt ?? alpacaPrompt({ instruction: values.instruction!, input: values.input ?? '' });
    // The folder decides: tokenizer.json (Llama, Qwen) or OPT's vocab.json + merges.txt; config.json's model_type picks the family.
    const tok = await AutoTokenizer.fromPretrained(values.model);
    const model = await AutoModelForCausalLM.fromPretrained(values.model, { device: values.device, dtype: values.dtype });
    try {
      if (values.adapter) await model.loadAdapter(values.adapter);
      const ids = tok.encode(text);
      const r = await model.generate(ids, {
        maxNewTokens: values['max-new-tokens'], temperature: values.temperature,
        topP: values['top-p'], topK: values['top-k'], seed: values.seed,
      });
      const output = tok.decode(r.tokens, { skipSpecialTokens: true });
      if (values.json) {
        process.stdout.write(`${JSON.stringify({ prompt: text, output, tokensIn: ids.length, tokensOut: r.tokens.length, stoppedBy: r.stoppedBy, timeToFirstTokenMs: r.timeToFirstTokenMs, totalMs: r.totalMs })}\n`);
      } else {
        process.stdout.write(`${output}\n`);
        process.stderr.write(`[${ids.length} tokens in, ${r.tokens.length} out, first token ${r.timeToFirstTokenMs.toFixed(1)} ms, total ${r.totalMs.toFixed(1)} ms, stopped by ${r.stoppedBy}]\n`);
      }
      return 0;
    } finally {
      model.dispose();
    }
  },
};
