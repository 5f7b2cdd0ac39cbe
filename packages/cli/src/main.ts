#!/usr/bin/env node
// The `lora` command line: a thin layer over @lora/sdk. One command per file in commands/.
import type { Command } from './command.js';
import { UsageError } from './command.js';
import { commands } from './commands/index.js';

function help(list: Command[]): string {
  const width = Math.max(...list.map((c) => c.name.length));
  return [
    'lora — fine-tune OPT language models with LoRA on hand-written native kernels',
    '',
    'Usage: lora <command> [options]',
    '',
    'Commands:',
    ...list.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `lora <command> --help` for the options of one command.',
  ].join('\n');
}

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (!name || name === '--help' || name === '-h' || name === 'help') {
    process.stdout.write(`${help(commands)}\n`);
    return name ? 0 : 1;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`lora: unknown command '${name}'\n\n${help(commands)}\n`);
    return 2;
  }
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${cmd.usage}\n`);
    return 0;
  }
  try {
    return await cmd.run(rest);
  } catch (e) {
    const err = e as Error & { code?: string };
    // Bad flags from node:util parseArgs carry ERR_PARSE_ARGS_* codes.
    if (e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS')) {
      process.stderr.write(`lora ${name}: ${err.message}\nusage: ${cmd.usage}\n`);
      return 2;
    }
    // Native errors (ERR_LORA_*) and the SDK's LoraError / EvalError (E_*) are meant for people:
    // their message names the file, argument or value at fault, so no stack trace.
    if (err.code?.startsWith('ERR_LORA') || /^E_[A-Z_]+$/.test(err.code ?? '')) {
      process.stderr.write(`lora ${name}: ${err.message} [${err.code}]\n`);
      return 1;
    }
    throw e;
  }
}

main(process.argv.slice(2)).then(
  (code) => {
    process.exitCode = code;
  },
  (e) => {
    process.stderr.write(`lora: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
