// `lora generate`: KV-cached decoding from a model (and optional adapter), for a raw prompt or an
// instruction in the training template.
import { parseArgs } from 'node:util';

import { alpacaPrompt, OptForCausalLM, OptTokenizer, type BaseDType, type DeviceOption } from '@lora/sdk';

import { UsageError, type Command } from '../command.js';

export const generateCommand: Command = {
  name: 'generate',
  summary: 'Generate text with a model and optional LoRA adapter (KV-cached decoding)',
  usage: `lora generate --model DIR|ID [--adapter DIR] (--prompt TEXT | --instruction TEXT [--input TEXT])
  [--max-new-tokens 64] [--temperature 0] [--top-p 1] [--top-k 0] [--seed 0] [--dtype f32|bf16|...] [--device auto|cpu] [--json]`,
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        model: { type: 'string' }, adapter: { type: 'string' }, prompt: { type: 'string' }, instruction: { type: 'string' },
        input: { type: 'string' }, 'max-new-tokens': { type: 'string' }, temperature: { type: 'string' }, 'top-p': { type: 'string' },
        'top-k': { type: 'string' }, seed: { type: 'string' }, dtype: { type: 'string' }, device: { type: 'string' }, json: { type: 'boolean' },
      },
    });
    if (!values.model) throw new UsageError('--model is required');
    if ((values.prompt === undefined) === (values.instruction === undefined)) throw new UsageError('give exactly one of --prompt or --instruction');
    const num = (s: string | undefined, d: number, name: string) => {
      if (s === undefined) return d;
      const v = Number(s);
      if (!Number.isFinite(v)) throw new UsageError(`--${name} must be a number, got '${s}'`);
      return v;
    };
    const text = values.prompt ?? alpacaPrompt({ instruction: values.instruction!, input: values.input ?? '' });
    const tok = await OptTokenizer.fromPretrained(values.model);
    const model = await OptForCausalLM.fromPretrained(values.model, { device: (values.device ?? 'auto') as DeviceOption, dtype: (values.dtype ?? 'f32') as BaseDType });
    try {
      if (values.adapter) await model.loadAdapter(values.adapter);
      const ids = tok.encode(text);
      const r = await model.generate(ids, {
        maxNewTokens: num(values['max-new-tokens'], 64, 'max-new-tokens'), temperature: num(values.temperature, 0, 'temperature'),
        topP: num(values['top-p'], 1, 'top-p'), topK: num(values['top-k'], 0, 'top-k'), seed: num(values.seed, 0, 'seed'),
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
