#!/usr/bin/env node
// The `lora` command line: a thin layer over @lora/sdk. One command per file in commands/.
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import type { Command, Subcommand } from './command.js';
import { UsageError } from './command.js';
import { commands } from './commands/index.js';
import { closest, formatHelp } from './flags.js';

function version(): string {
  const pkg = JSON.parse(readFileSync(join(dirname(fileURLToPath(import.meta.url)), '..', 'package.json'), 'utf8')) as { name: string; version: string };
  return `${pkg.name} ${pkg.version} (node ${process.version})`;
}

function topHelp(list: readonly Command[]): string {
  const width = Math.max(...list.map((c) => c.name.length));
  return [
    'lora — fine-tune language models with LoRA on hand-written native kernels',
    '',
    'Usage: lora <command> [options]',
    '',
    'Commands:',
    ...list.map((c) => `  ${c.name.padEnd(width)}  ${c.summary}`),
    '',
    'Run `lora help <command>` or `lora <command> --help` for the options of one command;',
    '`lora --version` prints the version.',
  ].join('\n');
}

/** A command's help: its flags, then its subcommands (each has its own --help). */
function commandHelp(cmd: Command, sub?: Subcommand): string {
  if (sub) return formatHelp(sub.spec);
  const subs = cmd.subcommands ?? [];
  const width = Math.max(0, ...subs.map((s) => s.name.length));
  const tail = subs.length
    ? ['', 'Subcommands:', ...subs.map((s) => `  lora ${cmd.name} ${s.name.padEnd(width)}  ${s.summary}`), '', `Run \`lora ${cmd.name} <subcommand> --help\` for its options.`]
    : [];
  return [cmd.spec ? formatHelp(cmd.spec) : (cmd.usage ?? `Usage: lora ${cmd.name} [options]`), ...tail].join('\n');
}

const didYouMean = (word: string, names: string[]) => {
  const c = closest(word, names);
  return c ? ` (did you mean '${c}'?)` : '';
};

export async function main(argv: string[]): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-v' || name === 'version') {
    process.stdout.write(`${version()}\n`);
    return 0;
  }
  if (!name || name === '--help' || name === '-h' || (name === 'help' && rest.length === 0)) {
    process.stdout.write(`${topHelp(commands)}\n`);
    return name ? 0 : 1;
  }
  const names = commands.map((c) => c.name);
  if (name === 'help') {
    const cmd = commands.find((c) => c.name === rest[0]);
    if (!cmd) {
      process.stderr.write(`lora help: unknown command '${rest[0]}'${didYouMean(rest[0], names)}; commands: ${names.join(', ')}\n`);
      return 2;
    }
    const sub = rest[1] === undefined ? undefined : cmd.subcommands?.find((s) => s.name === rest[1]);
    if (rest[1] !== undefined && !sub) {
      const subs = (cmd.subcommands ?? []).map((s) => s.name);
      process.stderr.write(`lora help ${cmd.name}: unknown subcommand '${rest[1]}'${didYouMean(rest[1], subs)}${subs.length ? `; subcommands: ${subs.join(', ')}` : ''}\n`);
      return 2;
    }
    process.stdout.write(`${commandHelp(cmd, sub)}\n`);
    return 0;
  }
  const cmd = commands.find((c) => c.name === name);
  if (!cmd) {
    process.stderr.write(`lora: unknown command '${name}'${didYouMean(name, names)}\n\n${topHelp(commands)}\n`);
    return 2;
  }
  const sub = cmd.subcommands?.find((s) => s.name === rest[0]);
  if (rest.includes('--help') || rest.includes('-h')) {
    process.stdout.write(`${commandHelp(cmd, sub)}\n`);
    return 0;
  }
  const where = sub ? `${name} ${sub.name}` : name;
  try {
    return await cmd.run(rest);
  } catch (e) {
    const err = e as Error & { code?: string; path?: string };
    if (e instanceof UsageError || err.code?.startsWith('ERR_PARSE_ARGS')) {
      const synopses = sub ? [sub.spec.synopsis] : [cmd.spec?.synopsis ?? cmd.usage ?? `lora ${name}`, ...(cmd.subcommands ?? []).map((s) => s.spec.synopsis)];
      process.stderr.write(`lora ${where}: ${err.message}\n${synopses.map((l) => `usage: ${l}\n`).join('')}Run \`lora ${where} --help\` for the options.\n`);
      return 2;
    }
    // Native errors (ERR_LORA_*) and the SDK's LoraError / EvalError (E_*) are meant for people:
    // their message names the file, argument or value at fault, so no stack trace.
    if (err.code?.startsWith('ERR_LORA') || /^E_[A-Z_]+$/.test(err.code ?? '')) {
      process.stderr.write(`lora ${where}: ${err.message} [${err.code}]\n`);
      return 1;
    }
    // A path the user gave that cannot be read or written is their mistake too, not a crash.
    if (err.code && /^E(NOENT|ACCES|PERM|ISDIR|NOTDIR|EXIST|ROFS|NOSPC)$/.test(err.code)) {
      process.stderr.write(`lora ${where}: ${err.message} [${err.code}]\n`);
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
    process.stderr.write(`lora: internal error, please report it with \`lora env\`: ${(e as Error).stack ?? String(e)}\n`);
    process.exitCode = 1;
  },
);
