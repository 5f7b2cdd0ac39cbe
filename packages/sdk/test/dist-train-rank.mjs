// One rank of the data-parallel tests (dist-train.test.ts), run by `mpirun -np N node dist-train-rank.mjs SPEC.json`
// or, as the single-process reference, by plain `node`. Trains the tiny pre-LN fixture on the built SDK and writes
// OUT/rank-<r>.json: the loss history and every LoRA weight, so the test can compare ranks and runs bit for bit.
import { readFileSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { buildByteLevelTokenizer, connectDistributed, OptForCausalLM, syntheticCodeInstructions, tokenizeRecord, Trainer } from '@lora/sdk';

const spec = JSON.parse(readFileSync(process.argv[2], 'utf8'));
const here = dirname(fileURLToPath(import.meta.url));
const comm = await connectDistributed({ timeoutS: spec.timeoutS ?? 60 });
const rank = comm?.rank ?? 0;
const seed = spec.seedByRank?.[rank] ?? spec.seed;
const tok = buildByteLevelTokenizer();
const examples = syntheticCodeInstructions(spec.records ?? 64, 3).map((r) => tokenizeRecord(tok, r, { maxLength: 48 }));
const model = await OptForCausalLM.fromPretrained(spec.modelDir ?? join(here, 'fixtures', 'opt-tiny-preln', 'model'), { device: 'cpu' });
model.addLora({ r: 4, alpha: 16, dropout: spec.dropout ?? 0, targetModules: ['q_proj', 'k_proj', 'v_proj', 'fc1'], seed: 1 });
const trainer = new Trainer(model, {
  examples, batchSize: spec.batchSize, gradAccum: spec.gradAccum ?? 1, seq: 48, maxSteps: spec.steps, lr: 1e-2, seed, warmupSteps: 2,
  loggingSteps: 4, checkpointDir: spec.checkpointDir, saveSteps: spec.saveSteps ?? 500, resumeFrom: spec.resume ? 'latest' : undefined,
  distributed: comm,
  onEvent: (e) => {
    // The kill test: this rank dies by SIGKILL once the step is done (mpirun must then end the others).
    if (e.type === 'step' && spec.killRank === rank && e.step === spec.killAtStep) process.kill(process.pid, 'SIGKILL');
    // The timeout test: this rank stays alive but stops taking part (a stuck rank), blocking for stallS.
    if (e.type === 'step' && spec.stallRank === rank && e.step === spec.stallAtStep) {
      const until = Date.now() + spec.stallS * 1000;
      while (Date.now() < until);
    }
  },
});
const result = await trainer.train();
const weights = model.lora.modules().map((m) => [Array.from(m.a.toArray()), Array.from(m.b.toArray())]);
writeFileSync(join(spec.out, `rank-${rank}.json`), JSON.stringify({ rank, size: comm?.size ?? 1, reason: result.reason, losses: result.lossHistory, weights }));
model.dispose();
comm?.finalize();
