// The Alpaca prompt template (Stanford Alpaca / CodeAlpaca), with and without an input. Training
// text is prompt + output; with `responseOnly`, the loss covers only the output tokens.
import type { InstructionRecord } from './records.js';

const WITH_INPUT =
  'Below is an instruction that describes a task, paired with an input that provides further context. ' +
  'Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:\n';
const WITHOUT_INPUT =
  'Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n' +
  '### Instruction:\n{instruction}\n\n### Response:\n';

/** The prompt for a record: everything up to and including "### Response:\n". */
export function alpacaPrompt(r: Pick<InstructionRecord, 'instruction' | 'input'>): string {
  const t = r.input.trim() ? WITH_INPUT : WITHOUT_INPUT;
  // A function replacer, so `$&` and friends in user text are not interpreted.
  return t.replace('{instruction}', () => r.instruction).replace('{input}', () => r.input);
}
