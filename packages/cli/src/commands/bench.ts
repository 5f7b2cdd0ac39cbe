// `lora bench`: the LoRA rank sweep (default) or the base-format sweep, with a live progress line
// per run, the summary table, results.json and an HTML report; `lora bench kernels` runs the
// kernel benchmarks.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { parseArgs } from 'node:util';

import { native } from '@lora/core-native';
import { runSweep, type BaseDType, type DeviceOption, type LoraTarget, type SweepEvent } from '@lora/sdk';

import { UsageError, type Command } from '../command.js';
import { formatSummaryTable, writeReport } from '../report/index.js';
import { Progress } from '../progress.js';

const USAGE = `lora bench [options]            the LoRA rank sweep (embedded tiny model + data unless --model/--data)
lora bench kernels [options]    kernel benchmarks (see bench/kernels)

  --model DIR|ID        Hugging Face model folder or hub id (default: embedded tiny OPT, opt-350m layout)
  --data FILE|ID        CodeAlpaca-style JSON/JSONL/Parquet or hub dataset id (default: embedded synthetic data)
  --preset seed         the seed experiment: facebook/opt-350m, sahil2801/CodeAlpaca-20k, split 0.5, r 8/128/256
  --sweep rank|quant    rank sweep, or the same training with the base in f32/bf16/f16/int8/int4/nf4
  --ranks 8,128,256     --alpha-mult 4   --dropout 0.1   --targets q_proj,k_proj,v_proj
  --steps N | --epochs N   --batch N   --seq N   --lr X   --split 0.5   --seed N
  --dtype f32|bf16|f16|int8|int4|nf4   base weight format (rank sweep)
  --device auto|cpu|cuda   --gpu (= --device cuda)
  --eval N              after each run, evaluate its adapter on N held-out records (BLEU/ROUGE/METEOR, latency)
  --out DIR             results.json, report.html, charts/ (default bench/results/run-<time>)
  --json                print results.json instead of the table`;

const SEED_PRESET = { model: 'facebook/opt-350m', data: 'sahil2801/CodeAlpaca-20k', split: 0.5, ranks: [8, 128, 256], alphaMult: 4, dropout: 0.1, seq: 256, batch: 4, epochs: 1 };

const list = (s: string | undefined) => (s === undefined ? undefined : s.split(',').map((x) => x.trim()).filter(Boolean));
function num(s: string | undefined, name: string, integer = false): number | undefined {
  if (s === undefined) return undefined;
  const v = Number(s);
  if (!Number.isFinite(v) || (integer && !Number.isInteger(v))) throw new UsageError(`--${name} must be ${integer ? 'an integer' : 'a number'}, got '${s}'`);
  return v;
}

export const benchCommand: Command = {
  name: 'bench',
  summary: 'Run the LoRA rank sweep (or quant sweep, or kernel benchmarks) and write a report',
  usage: USAGE,
  async run(argv) {
    if (argv[0] === 'kernels') {
      const { runKernelBenchCli } = await import('./bench-kernels.js');
      return runKernelBenchCli(argv.slice(1));
    }
    const { values } = parseArgs({
      args: argv,
      strict: true,
      options: {
        model: { type: 'string' }, data: { type: 'string' }, preset: { type: 'string' }, sweep: { type: 'string' },
        ranks: { type: 'string' }, 'alpha-mult': { type: 'string' }, dropout: { type: 'string' }, targets: { type: 'string' },
        steps: { type: 'string' }, epochs: { type: 'string' }, batch: { type: 'string' }, seq: { type: 'string' },
        lr: { type: 'string' }, split: { type: 'string' }, seed: { type: 'string' }, dtype: { type: 'string' },
        device: { type: 'string' }, gpu: { type: 'boolean' }, out: { type: 'string' }, json: { type: 'boolean' },
        eval: { type: 'string' },
      },
    });
    if (values.preset && values.preset !== 'seed') throw new UsageError(`unknown preset '${values.preset}' (known: seed)`);
    const preset = values.preset === 'seed' ? SEED_PRESET : undefined;
    const device = (values.gpu ? 'cuda' : (values.device ?? 'auto')) as DeviceOption;
    if (!['auto', 'cpu', 'cuda', 'ref', 'emu'].includes(device)) throw new UsageError(`--device must be auto, cpu or cuda, got '${device}'`);
    if (device === 'cuda') {
      const cuda = native().backends().find((b) => b.name === 'cuda');
      if (!cuda?.usable) {
        process.stderr.write(`lora bench: --gpu needs a CUDA GPU, and ${cuda?.reason ?? 'the CUDA backend is not in this build'}.\n` +
          `Run without --gpu to use the CPU, or see \`npx lora env\`.\n`);
        return 1;
      }
    }
    const sweep = values.sweep ?? 'rank';
    if (sweep !== 'rank' && sweep !== 'quant') throw new UsageError(`--sweep must be rank or quant, got '${sweep}'`);
    const dtype = values.dtype as BaseDType | undefined;
    if (dtype && !['f32', 'bf16', 'f16', 'int8', 'int4', 'nf4'].includes(dtype)) throw new UsageError(`--dtype must be one of f32, bf16, f16, int8, int4, nf4`);
    const out = resolve(values.out ?? join('bench', 'results', `run-${new Date().toISOString().replace(/[:.]/g, '-')}`));
    const progress = new Progress(process.stderr);
    const onEvent = (e: SweepEvent) => {
      if (e.type === 'setup') progress.line(e.message);
      else if (e.type === 'run-start') progress.start(e.label, e.totalSteps, `run ${e.index + 1}/${e.total}`);
      else if (e.type === 'train' && e.event.type === 'step') progress.update(e.event.step, e.event.loss, e.event.lr, e.event.tokensPerSec);
      else if (e.type === 'train' && e.event.type === 'nan') progress.line(`! ${e.event.message}`);
      else if (e.type === 'run-done') progress.finish(`${e.result.label}: final loss ${e.result.finalLoss.toFixed(3)}, ${e.result.runtimeSec.toFixed(1)} s, ${e.result.tokensPerSec.toFixed(0)} tokens/s`);
    };
    const ac = new AbortController();
    const onSigint = () => ac.abort();
    process.once('SIGINT', onSigint);
    try {
      const results = await runSweep({
        model: values.model ?? preset?.model,
        data: values.data ?? preset?.data,
        sweep,
        split: num(values.split, 'split') ?? preset?.split,
        ranks: list(values.ranks)?.map((r) => num(r, 'ranks', true)!) ?? preset?.ranks,
        alphaMult: num(values['alpha-mult'], 'alpha-mult') ?? preset?.alphaMult,
        dropout: num(values.dropout, 'dropout') ?? preset?.dropout,
        targets: list(values.targets) as LoraTarget[] | undefined,
        steps: num(values.steps, 'steps', true),
        epochs: num(values.epochs, 'epochs', true) ?? (values.steps ? undefined : preset?.epochs),
        batch: num(values.batch, 'batch', true) ?? preset?.batch,
        seq: num(values.seq, 'seq', true) ?? preset?.seq,
        lr: num(values.lr, 'lr'),
        seed: num(values.seed, 'seed', true),
        eval: num(values.eval, 'eval', true),
        dtype,
        device,
        signal: ac.signal,
        onEvent,
      });
      await mkdir(out, { recursive: true });
      await writeFile(join(out, 'results.json'), `${JSON.stringify(results, null, 2)}\n`);
      const report = await writeReport(results, out);
      if (values.json) {
        process.stdout.write(`${JSON.stringify(results, null, 2)}\n`);
      } else {
        process.stdout.write(`\nModel: ${results.config.modelDescription}\nData:  ${results.config.dataDescription}\n`);
        process.stdout.write(`Device: ${results.machine.backend} (${results.machine.cpu}${results.machine.deviceName ? `, ${results.machine.deviceName}` : ''}); ` +
          `MFU against ${results.machine.peakGflops.toFixed(0)} GFLOP/s (${results.machine.peakSource ?? 'measured in this run'})\n\n`);
        for (const r of results.runs) {
          process.stdout.write(`${r.label}: trainable params: ${r.trainableParams.toLocaleString('en-US')} || all params: ${r.allParams.toLocaleString('en-US')} || trainable%: ${r.trainablePercent.toFixed(4)}\n`);
        }
        process.stdout.write(`\n${formatSummaryTable(results, { maxWidth: process.stdout.columns })}\n\n`);
        for (const c of results.conclusions) process.stdout.write(`- ${c}\n`);
        process.stdout.write(`\nWrote ${join(out, 'results.json')} and ${report.html}\n`);
      }
      return ac.signal.aborted ? 130 : 0;
    } finally {
      process.off('SIGINT', onSigint);
    }
  },
};
