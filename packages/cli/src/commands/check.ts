// `lora check`: compare a model + adapter against a stored answer (e.g. PyTorch's), per tensor.
import { parseArgs } from 'node:util';

import { runCheck, type BaseDType, type DeviceOption } from '@lora/sdk';

import { UsageError, type Command } from '../command.js';

export const checkCommand: Command = {
  name: 'check',
  summary: 'Compare logits, loss and LoRA grads with a reference file (PyTorch parity)',
  usage: 'lora check --model DIR --adapter DIR --expect FILE.safetensors [--device cpu|ref|emu|cuda] [--dtype f32|bf16] [--tolerance X] [--json]',
  async run(argv) {
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        model: { type: 'string' }, adapter: { type: 'string' }, expect: { type: 'string' }, device: { type: 'string' },
        dtype: { type: 'string' }, tolerance: { type: 'string' }, json: { type: 'boolean' },
      },
    });
    if (!values.model || !values.expect) throw new UsageError('--model and --expect are required');
    const tolerance = values.tolerance === undefined ? undefined : Number(values.tolerance);
    if (tolerance !== undefined && !(tolerance > 0)) throw new UsageError(`--tolerance must be a positive number`);
    const report = await runCheck({
      model: values.model, adapter: values.adapter, expect: values.expect,
      device: (values.device ?? 'cpu') as DeviceOption, dtype: (values.dtype ?? 'f32') as BaseDType, tolerance,
    });
    if (values.json) {
      process.stdout.write(`${JSON.stringify(report, null, 2)}\n`);
    } else {
      const width = Math.max(...report.results.map((r) => r.name.length), 6);
      process.stdout.write(`lora check on ${report.device}, ${report.dtype}\n`);
      process.stdout.write(`${'tensor'.padEnd(width)}  ${'max abs'.padStart(10)}  ${'rel'.padStart(10)}  ${'tol'.padStart(8)}\n`);
      for (const r of report.results) {
        process.stdout.write(`${r.name.padEnd(width)}  ${r.maxAbs.toExponential(2).padStart(10)}  ${r.rel.toExponential(2).padStart(10)}  ${r.tol.toExponential(0).padStart(8)}  ${r.ok ? 'ok' : 'FAIL'}\n`);
      }
      for (const s of report.skipped) process.stdout.write(`${s.padEnd(width)}  skipped (not a logit, loss or known adapter grad)\n`);
      const bad = report.results.filter((r) => !r.ok).length;
      process.stdout.write(`${report.results.length - bad} passed, ${bad} failed\n`);
    }
    return report.ok ? 0 : 1;
  },
};
