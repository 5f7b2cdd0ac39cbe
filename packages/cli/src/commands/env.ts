// `lora env [--json]`: what this machine offers the kernels, as a block to paste into a bug report.
import { parseArgs } from 'node:util';

import { environment, formatEnvironment } from '@lora/core-native';

import type { Command } from '../command.js';

export const envCommand: Command = {
  name: 'env',
  summary: 'Show Node, addon, CPU features, backends and CUDA status',
  usage: 'lora env [--json]',
  async run(argv) {
    const { values } = parseArgs({ args: argv, options: { json: { type: 'boolean', default: false } }, strict: true });
    const report = environment();
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatEnvironment(report)}\n`);
    return 0;
  },
};
