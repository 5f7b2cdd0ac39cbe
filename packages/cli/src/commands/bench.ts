// `lora bench`: the LoRA rank sweep (default) or the base-format sweep, with a live progress line
// per run, the summary table, results.json and an HTML report; `lora bench kernels` runs the
// kernel benchmarks. Under `mpirun -np N` each run is data-parallel (--batch per rank; tokens/s
// counts every rank's tokens) and only rank 0 prints and writes results.
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { Writable } from 'node:stream';

import { native } from '@lora/core-native';
import { connectDistributed, EMBEDDED_DEFAULTS, runSweep, TRAINING_DEFAULTS as D, type BaseDType, type DeviceOption, type LoraTarget, type SweepEvent } from '@lora/sdk';

import { UsageError, type Command } from '../command.js';
import { formatNumber, parseFlags, type CommandSpec } from '../flags.js';
import { kernelsSubcommand, runKernelBenchCli } from './bench-kernels.js';
import { BASE_FORMATS, TARGET_CHOICES, deviceFlag, dtypeFlag, expandTargets, jsonFlag, seedFlag, splitFlag } from './common-flags.js';
import { formatSummaryTable, writeReport } from '../report/index.js';
import { noiseNotes } from '../report/loss-stats.js';
import { Progress } from '../progress.js';

const SEED_PRESET = { model: 'facebook/opt-350m', data: 'sahil2801/CodeAlpaca-20k', split: 0.5, ranks: [8, 128, 256], alphaMult: 4, dropout: 0.1, seq: 256, batch: 4, epochs: 1 };

const BENCH_SPEC: CommandSpec = {
  command: 'lora bench',
  synopsis: 'lora bench [options]          the LoRA rank sweep (embedded tiny model + data unless --model/--data)',
  description: 'Trains one LoRA adapter per rank (or per base format) on the same model, data, seed and steps, then prints the\n' +
    'seed experiment\'s table and writes results.json, report.html and SVG charts. With no --model/--data it runs on an\n' +
    `embedded tiny OPT and synthetic data: ${EMBEDDED_DEFAULTS.steps} steps, batch ${EMBEDDED_DEFAULTS.batch}, seq ${EMBEDDED_DEFAULTS.seq}, lr ${EMBEDDED_DEFAULTS.lr} (its random-init model needs\n` +
    `the larger lr to separate the ranks in ${EMBEDDED_DEFAULTS.steps} steps); otherwise the training defaults of lora train apply.`,
  flags: [
    { name: 'model', kind: 'string', metavar: 'DIR|ID', help: 'Hugging Face model folder or hub id', defaultText: 'embedded tiny OPT (opt-350m layout)' },
    { name: 'arch', kind: 'enum', choices: ['opt', 'llama'], default: 'opt', help: 'family of the embedded tiny model when no --model: opt (opt-350m layout) or llama (SmolLM2\'s shape)' },
    { name: 'data', kind: 'string', metavar: 'FILE|ID', help: 'CodeAlpaca-style JSON/JSONL/Parquet or hub dataset id', defaultText: 'embedded synthetic records' },
    { name: 'preset', kind: 'enum', choices: ['seed'], help: `the seed experiment: ${SEED_PRESET.model}, ${SEED_PRESET.data}, split ${SEED_PRESET.split}, r ${SEED_PRESET.ranks.join('/')}, 1 epoch` },
    { name: 'sweep', kind: 'enum', choices: ['rank', 'quant'], default: 'rank', help: 'rank sweep, or the same training with the base in each format' },
    { name: 'ranks', kind: 'list', metavar: 'R,R,...', default: ['8', '128', '256'], help: 'LoRA ranks (the quant sweep uses the first)' },
    { name: 'alpha-mult', kind: 'number', min: 0, minExclusive: true, default: D.alphaPerRank, help: 'alpha = this × r' },
    { name: 'dropout', kind: 'number', min: 0, max: 0.99, default: D.dropout, help: 'dropout on the LoRA branch input', aliases: ['lora_dropout'] },
    { name: 'targets', kind: 'list', itemName: 'target', choices: TARGET_CHOICES, default: ['q_proj', 'k_proj', 'v_proj'], help: 'linears that get a LoRA branch (the seed\'s q/k/v)', aliases: ['target_modules'] },
    { name: 'steps', kind: 'int', min: 1, defaultText: `${EMBEDDED_DEFAULTS.steps} embedded, else one epoch`, help: 'optimizer steps per run', aliases: ['max_steps'] },
    { name: 'epochs', kind: 'int', min: 1, help: 'passes over the training records', aliases: ['num_train_epochs'] },
    { name: 'batch', kind: 'int', min: 1, defaultText: `${EMBEDDED_DEFAULTS.batch} embedded, else ${D.batchSize}`, help: 'sequences per step', aliases: ['per_device_train_batch_size'] },
    { name: 'seq', kind: 'int', min: 2, defaultText: `${EMBEDDED_DEFAULTS.seq} embedded, else ${D.seq}`, help: 'tokens per sequence', aliases: ['max_seq_length'] },
    { name: 'lr', kind: 'number', min: 0, minExclusive: true, defaultText: `${EMBEDDED_DEFAULTS.lr} embedded, else ${formatNumber(D.lr)}`, help: 'peak learning rate', aliases: ['learning_rate'] },
    splitFlag(),
    seedFlag(),
    dtypeFlag('base weight format of the rank sweep'),
    deviceFlag(),
    { name: 'gpu', kind: 'boolean', help: 'same as --device cuda' },
    { name: 'eval', kind: 'int', min: 1, metavar: 'N', help: 'after each run, evaluate its adapter on N held-out records (BLEU/ROUGE/METEOR, latency)' },
    { name: 'out', kind: 'string', metavar: 'DIR', defaultText: 'bench/results/run-<time>', help: 'results.json, report.html, charts/' },
    jsonFlag('print results.json instead of the table'),
  ],
  exclusive: [['steps', 'epochs'], ['gpu', 'device']],
};

export const benchCommand: Command = {
  name: 'bench',
  summary: 'Run the LoRA rank sweep (or quant sweep, or kernel benchmarks) and write a report',
  spec: BENCH_SPEC,
  subcommands: [kernelsSubcommand],
  async run(argv) {
    if (argv[0] === 'kernels') return runKernelBenchCli(argv.slice(1));
    const { values: v, given } = parseFlags(BENCH_SPEC, argv);
    const values = v as {
      model?: string; arch: 'opt' | 'llama'; data?: string; preset?: string; sweep: 'rank' | 'quant'; ranks: string[]; 'alpha-mult': number; dropout: number;
      targets: string[]; steps?: number; epochs?: number; batch?: number; seq?: number; lr?: number; split: number; seed: number;
      dtype: BaseDType; device: DeviceOption; gpu?: boolean; eval?: number; out?: string; json?: boolean;
    };
    const preset = values.preset === 'seed' ? SEED_PRESET : undefined;
    const ranks = values.ranks.map((r) => {
      const n = Number(r);
      if (!Number.isInteger(n) || n < 1) throw new UsageError(`--ranks takes positive integers, got '${r}'`);
      return n;
    });
    const device: DeviceOption = values.gpu ? 'cuda' : values.device;
    if (device === 'cuda') {
      const cuda = native().backends().find((b) => b.name === 'cuda');
      if (!cuda?.usable) {
        process.stderr.write(`lora bench: --gpu needs a CUDA GPU, and ${cuda?.reason ?? 'the CUDA backend is not in this build'}.\n` +
          `Run without --gpu to use the CPU, or see \`npx lora env\`.\n`);
        return 1;
      }
    }
    const sweep = values.sweep;
    if (sweep === 'quant' && given.has('dtype')) throw new UsageError(`--dtype sets the base of the rank sweep; the quant sweep trains every format (${BASE_FORMATS.join(', ')})`);
    const dtype = given.has('dtype') ? values.dtype : undefined;
    const out = resolve(values.out ?? join('bench', 'results', `run-${new Date().toISOString().replace(/[:.]/g, '-')}`));
    const comm = await connectDistributed();
    const writer = (comm?.rank ?? 0) === 0;
    const progress = new Progress(writer ? process.stderr : (new Writable({ write: (_c, _e, done) => done() }) as unknown as NodeJS.WriteStream));
    if (comm && writer) progress.line(`data-parallel: ${comm.size} ranks (${comm.library}), batch per rank`);
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
        arch: values.arch,
        data: values.data ?? preset?.data,
        sweep,
        split: given.has('split') ? values.split : (preset?.split ?? values.split),
        ranks: given.has('ranks') ? ranks : (preset?.ranks ?? ranks),
        alphaMult: given.has('alpha-mult') ? values['alpha-mult'] : (preset?.alphaMult ?? values['alpha-mult']),
        dropout: given.has('dropout') ? values.dropout : (preset?.dropout ?? values.dropout),
        targets: expandTargets(values.targets) as LoraTarget[],
        steps: values.steps,
        epochs: values.epochs ?? (values.steps ? undefined : preset?.epochs),
        batch: values.batch ?? preset?.batch,
        seq: values.seq ?? preset?.seq,
        lr: values.lr,
        seed: values.seed,
        eval: values.eval,
        dtype,
        device,
        signal: ac.signal,
        onEvent,
        distributed: comm,
      });
      comm?.finalize();
      if (!writer) return ac.signal.aborted ? 130 : 0;
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
        for (const c of [...results.conclusions, ...noiseNotes(results)]) process.stdout.write(`- ${c}\n`);
        process.stdout.write(`\nWrote ${join(out, 'results.json')} and ${report.html}\n`);
      }
      return ac.signal.aborted ? 130 : 0;
    } finally {
      process.off('SIGINT', onSigint);
    }
  },
};
