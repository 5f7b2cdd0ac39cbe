// Every command the CLI knows, in the order `lora --help` lists them.
import type { Command } from '../command.js';
import { benchCommand } from './bench.js';
import { checkCommand } from './check.js';
import { envCommand } from './env.js';
import { evalCommand } from './eval.js';
import { exportCommand } from './export.js';
import { generateCommand } from './generate.js';
import { serveCommand } from './serve.js';
import { trainCommand } from './train.js';

export const commands: Command[] = [benchCommand, trainCommand, generateCommand, checkCommand, evalCommand, serveCommand, exportCommand, envCommand];
