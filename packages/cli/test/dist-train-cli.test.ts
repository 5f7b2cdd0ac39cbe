// `mpirun -np 2 lora train` on a tiny model: data-parallel with no other flag, rank 0 alone prints and
// writes the run (one metrics block, one data summary, the adapter, checkpoints, training_args.json with
// world_size 2), and `lora env` says whether MPI and NCCL are usable. Skips with the reason without
// mpirun or the MPI plug-in (the SDK's dist-train.test.ts checks the numbers against one process).
import { spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { distInfo, ensureTinyModel, syntheticCodeInstructions } from '@lora/sdk';
import { beforeAll, describe, expect, it } from 'vitest';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'lora-dist-cli-'));
const data = join(dir, 'data.jsonl');
const info = distInfo();
const skip = spawnSync('mpirun', ['--version']).status !== 0 ? 'mpirun not found (install openmpi-bin: scripts/setup-system.sh)' : !info.usable ? info.reason : '';
const mpiEnv = {
  ...process.env, OMPI_ALLOW_RUN_AS_ROOT: '1', OMPI_ALLOW_RUN_AS_ROOT_CONFIRM: '1', OMPI_MCA_rmaps_base_oversubscribe: '1',
  OMPI_MCA_btl_vader_single_copy_mechanism: 'none', LORA_NUM_THREADS: '1',
};
let model = '';

beforeAll(async () => {
  const records = syntheticCodeInstructions(64, 1);
  writeFileSync(data, records.map((r) => JSON.stringify(r)).join('\n'));
  model = (await ensureTinyModel(join(dir, 'model'), records, { hidden: 32, ffn: 64, layers: 2, heads: 4, embedDim: 16, merges: 0, maxPositions: 256, warmupRounds: 0 })).dir;
});

describe.skipIf(skip !== '')(`lora train under mpirun${skip ? ` (skipped: ${skip})` : ''}`, () => {
  it('trains data-parallel on 2 ranks; only rank 0 prints and writes', () => {
    const out = join(dir, 'out');
    const args = ['-np', '2', process.execPath, cli, 'train', '--model', model, '--data', data, '--out', out, '--batch', '2', '--seq', '64', '--steps', '4', '--save-steps', '2', '--split', '0.75'];
    const r = spawnSync('mpirun', args, { encoding: 'utf8', env: mpiEnv, timeout: 120_000 });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout.match(/\*\*\*\*\* train metrics \*\*\*\*\*/g)?.length).toBe(1);
    expect(r.stderr.match(/data-parallel: 2 ranks \(Open MPI/g)?.length).toBe(1);
    expect(r.stderr.match(/records; --split 0.75/g)?.length).toBe(1);
    expect(r.stderr).toContain('(batch 2 × 2 ranks × grad-accum 1)');
    for (const f of ['adapter_model.safetensors', 'adapter_config.json', 'trainer_state.json', 'checkpoints/checkpoint-2', 'checkpoints/checkpoint-4']) expect(existsSync(join(out, f)), f).toBe(true);
    expect(JSON.parse(readFileSync(join(out, 'training_args.json'), 'utf8')).world_size).toBe(2);
    const state = JSON.parse(readFileSync(join(out, 'checkpoints', 'checkpoint-4', 'trainer_state.json'), 'utf8'));
    expect(state.lora_trainer.settings.worldSize).toBe(2);
  }, 120_000);

  it('lora env reports MPI usable and why NCCL is not', () => {
    const r = spawnSync(process.execPath, [cli, 'env'], { encoding: 'utf8' });
    expect(r.status, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/mpi +usable \(plug-in .*lora_mpi\.so\); not launched by mpirun/);
    expect(r.stdout).toMatch(/nccl +(built into the MPI plug-in|NCCL unavailable: )/);
  });
});
