// Every command the CLI knows, in the order `lora --help` lists them.
import type { Command } from '../command.js';
import { envCommand } from './env.js';
import { evalCommand } from './eval.js';

export const commands: Command[] = [envCommand, evalCommand];
