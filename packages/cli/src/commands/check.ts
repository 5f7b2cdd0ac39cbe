// `lora check`: compare a model + adapter against a stored answer (e.g. PyTorch's), per tensor.
import { runCheck, type BaseDType, type DeviceOption } from '@lora/sdk';

import { UsageError, type Command } from '../command.js';
import { parseFlags, type CommandSpec } from '../flags.js';
import { jsonFlag } from './common-flags.js';

const CHECK_SPEC: CommandSpec = {
  command: 'lora check',
  synopsis: 'lora check --model DIR --expect FILE.safetensors [--adapter DIR] [options]',
  description: 'Runs one batch through the model (and adapter) and compares logits, loss and LoRA gradients with a stored answer\n' +
    '(e.g. PyTorch\'s, made by scripts/fixtures/make_{opt,llama}_fixtures.py), one line per tensor.',
  flags: [
    { name: 'model', kind: 'string', metavar: 'DIR', help: 'model folder' },
    { name: 'adapter', kind: 'string', metavar: 'DIR', help: 'PEFT adapter folder' },
    { name: 'expect', kind: 'string', metavar: 'FILE', help: 'safetensors file with the batch and the expected tensors' },
    { name: 'device', kind: 'enum', choices: ['cpu', 'ref', 'emu', 'cuda'], default: 'cpu', help: 'backend: cpu (fast kernels), ref (scalar reference), emu (CUDA kernels emulated on the CPU), cuda' },
    { name: 'dtype', kind: 'enum', choices: ['f32', 'bf16'], choiceAliases: { fp32: 'f32', float32: 'f32', bfloat16: 'bf16' }, default: 'f32', help: 'compute precision of the base' },
    { name: 'tolerance', kind: 'number', min: 0, minExclusive: true, defaultText: 'per tensor, printed in the tol column', help: 'one relative tolerance for every tensor' },
    jsonFlag('print the report as JSON'),
  ],
};

export const checkCommand: Command = {
  name: 'check',
  summary: 'Compare logits, loss and LoRA grads with a reference file (PyTorch parity)',
  spec: CHECK_SPEC,
  async run(argv) {
    const { values: v } = parseFlags(CHECK_SPEC, argv);
    const values = v as { model?: string; adapter?: string; expect?: string; device: string; dtype: string; tolerance?: number; json?: boolean };
    if (!values.model || !values.expect) throw new UsageError('--model and --expect are required');
    const tolerance = values.tolerance;
    const report = await runCheck({
      model: values.model, adapter: values.adapter, expect: values.expect,
      device: values.device as DeviceOption, dtype: values.dtype as BaseDType, tolerance,
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
