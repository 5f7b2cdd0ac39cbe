// The run's record, checked from the outside: TensorBoard event files decoded by a reader written
// here from the published formats (TFRecord framing with masked CRC-32C; tensorflow's event.proto
// and summary.proto field numbers), sharing no code with the writer, hold the same scalars as
// trainer_log.jsonl; trainer_state.json has HF's schema; eval during training logs eval_loss and
// perplexity, and loadBestModelAtEnd ends on the best checkpoint's adapter.
import { mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

import { adapterTensors, buildByteLevelTokenizer, OptForCausalLM, SafetensorsFile, seededRandom, syntheticCodeInstructions, tokenizeRecord, Trainer, type TrainerOptions } from '../src/index.js';

const modelDir = join(dirname(fileURLToPath(import.meta.url)), 'fixtures', 'opt-tiny-preln', 'model');
const tok = buildByteLevelTokenizer();
const records = syntheticCodeInstructions(48, 5);
const examples = records.slice(0, 32).map((r) => tokenizeRecord(tok, r, { maxLength: 64 }));
const held = records.slice(32).map((r) => tokenizeRecord(tok, r, { maxLength: 64 }));
const tmp = mkdtempSync(join(tmpdir(), 'lora-train-records-'));

async function model(): Promise<OptForCausalLM> {
  const m = await OptForCausalLM.fromPretrained(modelDir, { device: 'cpu' });
  m.addLora({ r: 4, alpha: 16, dropout: 0.05, targetModules: ['q_proj', 'v_proj', 'fc1'], seed: 1 });
  return m;
}

const opts = (extra: Partial<TrainerOptions>): TrainerOptions => ({ examples, batchSize: 4, seq: 64, lr: 1e-2, seed: 3, maxSteps: 12, ...extra });

// ---- An independent TensorBoard reader (from the TFRecord and protobuf specifications) ----

/** CRC-32C computed bit by bit (reflected polynomial 0x82F63B78), no table. */
function crc32cBitwise(bytes: Uint8Array): number {
  let crc = ~0 >>> 0;
  for (const b of bytes) {
    crc = (crc ^ b) >>> 0;
    for (let i = 0; i < 8; i++) crc = crc & 1 ? ((crc >>> 1) ^ 0x82f63b78) >>> 0 : crc >>> 1;
  }
  return ~crc >>> 0;
}
const masked = (bytes: Uint8Array) => {
  const c = crc32cBitwise(bytes);
  return (((c >>> 15) | (c << 17)) + 0xa282ead8) >>> 0;
};

type Field = { no: number; wire: number; int?: bigint; bytes?: Uint8Array; fixed?: DataView };
function fields(buf: Uint8Array): Field[] {
  const out: Field[] = [];
  let i = 0;
  const varint = (): bigint => {
    let v = 0n;
    let shift = 0n;
    for (;;) {
      const b = buf[i++];
      v |= BigInt(b & 0x7f) << shift;
      if (!(b & 0x80)) return v;
      shift += 7n;
    }
  };
  while (i < buf.length) {
    const key = Number(varint());
    const no = key >> 3;
    const wire = key & 7;
    if (wire === 0) out.push({ no, wire, int: varint() });
    else if (wire === 1) (out.push({ no, wire, fixed: new DataView(buf.buffer, buf.byteOffset + i, 8) }), (i += 8));
    else if (wire === 5) (out.push({ no, wire, fixed: new DataView(buf.buffer, buf.byteOffset + i, 4) }), (i += 4));
    else if (wire === 2) {
      const n = Number(varint());
      out.push({ no, wire, bytes: buf.subarray(i, i + n) });
      i += n;
    } else throw new Error(`wire type ${wire}`);
  }
  return out;
}

/** Every (tag, step, value) scalar of an event file; throws on a bad frame CRC. */
function readScalars(path: string): { version: string; scalars: { tag: string; step: number; value: number }[] } {
  const file = new Uint8Array(readFileSync(path));
  const view = new DataView(file.buffer, file.byteOffset);
  const scalars: { tag: string; step: number; value: number }[] = [];
  let version = '';
  for (let off = 0; off < file.length; ) {
    const len = Number(view.getBigUint64(off, true));
    if (view.getUint32(off + 8, true) !== masked(file.subarray(off, off + 8))) throw new Error('length crc');
    const data = file.subarray(off + 12, off + 12 + len);
    if (view.getUint32(off + 12 + len, true) !== masked(data)) throw new Error('data crc');
    off += 16 + len;
    // Event: wall_time = 1 (double), step = 2 (int64), file_version = 3 (string), summary = 5.
    const ev = fields(data);
    const step = Number(ev.find((f) => f.no === 2)?.int ?? 0n);
    const fv = ev.find((f) => f.no === 3);
    if (fv) version = new TextDecoder().decode(fv.bytes);
    expect(ev.find((f) => f.no === 1)?.wire).toBe(1);
    for (const s of ev.filter((f) => f.no === 5)) {
      // Summary: repeated Value value = 1; Value: tag = 1 (string), simple_value = 2 (float).
      for (const v of fields(s.bytes!).filter((f) => f.no === 1)) {
        const vf = fields(v.bytes!);
        scalars.push({ tag: new TextDecoder().decode(vf.find((f) => f.no === 1)!.bytes), step, value: vf.find((f) => f.no === 2)!.fixed!.getFloat32(0, true) });
      }
    }
  }
  return { version, scalars };
}

describe('the run record', () => {
  it('TensorBoard files decode (independently) to the same scalars as trainer_log.jsonl', async () => {
    const out = join(tmp, 'tb');
    using m = await model();
    const r = await new Trainer(m, opts({ outputDir: out, reportTo: ['tensorboard'], evalExamples: held, evalSteps: 4, loggingSteps: 4 })).train();
    expect(r.reason).toBe('finished');
    const runs = readdirSync(join(out, 'runs'));
    expect(runs).toHaveLength(1);
    const files = readdirSync(join(out, 'runs', runs[0]));
    expect(files).toHaveLength(1);
    expect(files[0]).toMatch(/^events\.out\.tfevents\.\d+\./);
    const { version, scalars } = readScalars(join(out, 'runs', runs[0], files[0]));
    expect(version).toBe('brain.Event:2');
    const log = readFileSync(join(out, 'trainer_log.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l));
    const want: { tag: string; step: number; value: number }[] = [];
    for (const l of log) {
      if ('loss' in l) want.push({ tag: 'train/loss', step: l.step, value: l.loss }, { tag: 'train/learning_rate', step: l.step, value: l.lr }, { tag: 'train/grad_norm', step: l.step, value: l.grad_norm });
      if ('eval_loss' in l) want.push({ tag: 'eval/loss', step: l.step, value: l.eval_loss });
    }
    const pick = (xs: typeof want) => xs.filter((s) => ['train/loss', 'train/learning_rate', 'train/grad_norm', 'eval/loss'].includes(s.tag));
    // TensorBoard stores simple_value as f32: the log's f64 values rounded to f32 must match exactly.
    expect(pick(scalars)).toEqual(want.map((s) => ({ ...s, value: Math.fround(s.value) })));
    expect(want.filter((s) => s.tag === 'train/loss')).toHaveLength(12);
    expect(want.filter((s) => s.tag === 'eval/loss').map((s) => s.step)).toEqual([4, 8, 12]);
  });

  it("keeps HF's trainer_state schema, eval entries with perplexity, and ends on the best checkpoint", async () => {
    const out = join(tmp, 'best');
    using m = await model();
    // At 64 tokens every training example is the same Alpaca preamble; held out is seeded random
    // byte text. As the model memorises the preamble, its loss on other text turns up: a best
    // checkpoint that is not the last.
    const rand = seededRandom(11);
    const noise = Array.from({ length: 8 }, () => {
      const ids = Array.from({ length: 64 }, () => 3 + Math.floor(rand() * 256));
      return { inputIds: ids, labels: ids };
    });
    const r = await new Trainer(m, opts({
      lr: 5e-2, maxSteps: 16, outputDir: out, checkpointDir: join(out, 'checkpoints'), evalExamples: noise, evalSteps: 2, saveSteps: 2, loggingSteps: 2, loadBestModelAtEnd: true,
    })).train();
    expect(r.reason).toBe('finished');
    const state = JSON.parse(readFileSync(join(out, 'trainer_state.json'), 'utf8'));
    for (const k of ['best_metric', 'best_model_checkpoint', 'best_global_step', 'epoch', 'eval_steps', 'global_step', 'is_hyper_param_search', 'is_local_process_zero',
      'is_world_process_zero', 'log_history', 'logging_steps', 'max_steps', 'num_input_tokens_seen', 'num_train_epochs', 'save_steps', 'stateful_callbacks',
      'total_flos', 'train_batch_size', 'trial_name', 'trial_params']) expect(state).toHaveProperty(k);
    const evals = state.log_history.filter((h: Record<string, number>) => 'eval_loss' in h);
    expect(evals.map((h: { step: number }) => h.step)).toEqual([2, 4, 6, 8, 10, 12, 14, 16]);
    for (const h of evals) expect(h.eval_perplexity).toBeCloseTo(Math.exp(h.eval_loss), 8);
    const best = evals.reduce((a: { eval_loss: number }, b: { eval_loss: number }) => (b.eval_loss < a.eval_loss ? b : a));
    expect(state.best_metric).toBe(best.eval_loss);
    expect(state.best_global_step).toBe(best.step);
    expect(state.best_global_step).toBeLessThan(16); // the test means something only if the best is not the last
    expect(state.best_model_checkpoint).toBe(join(out, 'checkpoints', `checkpoint-${best.step}`));
    const f = await SafetensorsFile.open(join(state.best_model_checkpoint, 'adapter_model.safetensors'));
    try {
      const mine = adapterTensors(m.lora!);
      for (const k of f.keys()) expect((await f.read(k)).data).toEqual(mine.get(k)!.data);
    } finally {
      await f.close();
    }
    const train = state.log_history.at(-1);
    expect(train).toMatchObject({ step: 16 });
    expect(train.train_loss).toBeCloseTo(r.lossHistory.reduce((a, b) => a + b, 0) / 16, 3);
  });
});
