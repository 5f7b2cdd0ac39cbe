// `lora train`'s flags: names, Hugging Face / PEFT spellings (TrainingArguments, LoraConfig, TRL's
// SFTConfig), defaults (TRAINING_DEFAULTS, shared with the SDK) and help. A flag is declared here
// when train.ts reads it, so --help lists exactly what is accepted.
import { TRAINING_DEFAULTS as D } from '@lora/sdk';

import type { CommandSpec } from '../flags.js';
import { TARGET_CHOICES, dataFlag, deviceFlag, dtypeFlag, modelFlag, seedFlag, splitFlag } from './common-flags.js';

export const TRAIN_SPEC: CommandSpec = {
  command: 'lora train',
  synopsis: 'lora train --model DIR|ID --data FILE|ID --out DIR [options]',
  description: 'Fine-tunes a LoRA adapter and writes it in PEFT\'s format (adapter_config.json + adapter_model.safetensors) to OUT,\n' +
    'with resumable checkpoints under OUT/checkpoints. Trains on the --split fraction of the records; `lora eval --adapter OUT`\n' +
    'then evaluates the held-out rest.',
  flags: [
    modelFlag(),
    dataFlag(),
    { name: 'out', kind: 'string', metavar: 'DIR', help: 'where the adapter and checkpoints go', aliases: ['output_dir'] },
    { name: 'r', kind: 'int', min: 1, default: D.r, help: 'LoRA rank', aliases: ['lora_r', 'rank'] },
    { name: 'alpha', kind: 'number', min: 0, minExclusive: true, defaultText: `${D.alphaPerRank} × r`, help: 'LoRA alpha; the update is scaled by alpha/r', aliases: ['lora_alpha'] },
    { name: 'dropout', kind: 'number', min: 0, max: 0.99, default: D.dropout, help: 'dropout on the LoRA branch input', aliases: ['lora_dropout'] },
    { name: 'targets', kind: 'list', itemName: 'target', choices: TARGET_CHOICES, default: D.targets, metavar: 'A,B,...', help: 'linears that get a LoRA branch; all-linear = every one', aliases: ['target_modules'] },
    { name: 'rslora', kind: 'boolean', help: 'scale by alpha/√r (rsLoRA)', aliases: ['use_rslora'] },
    { name: 'steps', kind: 'int', min: 1, defaultText: 'epochs × steps per epoch', help: 'optimizer steps to run', aliases: ['max_steps'] },
    { name: 'epochs', kind: 'int', min: 1, default: D.epochs, help: 'passes over the training records', aliases: ['num_train_epochs'] },
    { name: 'batch', kind: 'int', min: 1, default: D.batchSize, help: 'sequences per micro-batch', aliases: ['per_device_train_batch_size', 'batch-size'] },
    { name: 'grad-accum', kind: 'int', min: 1, default: D.gradAccum, help: 'micro-batches per optimizer step', aliases: ['gradient_accumulation_steps'] },
    { name: 'seq', kind: 'int', min: 2, default: D.seq, help: 'tokens per sequence; longer records are truncated', aliases: ['max_seq_length', 'max-length'] },
    { name: 'lr', kind: 'number', min: 0, minExclusive: true, default: D.lr, help: 'peak learning rate (AdamW)', aliases: ['learning_rate'] },
    { name: 'schedule', kind: 'enum', choices: ['linear', 'cosine', 'constant'], default: D.schedule, help: 'learning-rate schedule after warmup', aliases: ['lr_scheduler_type'] },
    { name: 'warmup', kind: 'int', min: 0, defaultText: '0', help: 'warmup steps', aliases: ['warmup_steps'] },
    { name: 'warmup-ratio', kind: 'number', min: 0, max: 1, help: 'warmup as a fraction of the total steps (when --warmup is not given)', aliases: ['warmup_ratio'] },
    { name: 'logging-steps', kind: 'int', min: 1, default: D.loggingSteps, help: 'log the mean loss every N steps', aliases: ['logging_steps'] },
    splitFlag(),
    { name: 'response-only', kind: 'boolean', help: 'loss on the response tokens only (TRL completion_only_loss)', aliases: ['completion_only_loss'] },
    { name: 'packing', kind: 'boolean', help: 'pack several records into each sequence' },
    dtypeFlag(),
    deviceFlag(),
    seedFlag(),
    { name: 'save-steps', kind: 'int', min: 1, default: D.saveSteps, help: 'write a checkpoint every N steps (and at the end)', aliases: ['save_steps'] },
    { name: 'resume', kind: 'boolean', help: 'continue from the newest checkpoint in OUT/checkpoints', aliases: ['resume_from_checkpoint'] },
    { name: 'checkpointing', kind: 'boolean', help: 'activation checkpointing: less memory, one more forward per step', aliases: ['gradient_checkpointing'] },
  ],
  exclusive: [['steps', 'epochs'], ['warmup', 'warmup-ratio']],
  notes: [
    'Hugging Face spellings work too (--learning_rate 2e-4, --lora_alpha 16, --max_steps 100, --bf16, ...), and any flag may be',
    'written with underscores. Example:',
    '  lora train --model facebook/opt-350m --data code_alpaca.json --out runs/r8 --r 8 --steps 200 --dtype bf16',
  ],
};
