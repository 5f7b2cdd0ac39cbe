// The shape of a CLI command: one file per command under commands/, registered in main.ts.
import type { CommandSpec } from './flags.js';

export interface Subcommand {
  name: string;
  summary: string;
  /** The declared flags; `lora <command> <sub> --help` prints them. */
  spec: CommandSpec;
}

export interface Command {
  name: string;
  summary: string;
  /** The declared flags; `lora help <command>` and `lora <command> --help` print them. */
  spec?: CommandSpec;
  /** Help text of a command that declares no spec (kept for commands not yet moved to flags.ts). */
  usage?: string;
  /** Subcommands with their own flags (e.g. `eval score`, `bench kernels`). */
  subcommands?: readonly Subcommand[];
  /** Returns the process exit code. */
  run(argv: string[]): Promise<number>;
}

/** An error the user caused (bad flag, missing file): printed without a stack trace. */
export class UsageError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'UsageError';
  }
}
