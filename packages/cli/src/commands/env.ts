// `lora env [--json]`: what this machine offers the kernels, as a block to paste into a bug report.
import { environment, formatEnvironment } from '@lora/core-native';

import type { Command } from '../command.js';
import { parseFlags, type CommandSpec } from '../flags.js';
import { jsonFlag } from './common-flags.js';

const ENV_SPEC: CommandSpec = {
  command: 'lora env',
  synopsis: 'lora env [--json]',
  description: 'Node, the addon\'s path and variant, CPU model and ISA features, backends built and usable (with reasons),\nCUDA runtime and driver. Paste it into bug reports.',
  flags: [jsonFlag('print the report as JSON')],
};

export const envCommand: Command = {
  name: 'env',
  summary: 'Show Node, addon, CPU features, backends and CUDA status',
  spec: ENV_SPEC,
  async run(argv) {
    const { values } = parseFlags(ENV_SPEC, argv);
    const report = environment();
    process.stdout.write(values.json ? `${JSON.stringify(report, null, 2)}\n` : `${formatEnvironment(report)}\n`);
    return 0;
  },
};
