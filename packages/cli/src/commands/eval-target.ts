// `lora eval --target-url URL --target-model NAME`: the flags that point lora eval at any
// OpenAI-compatible server (lora serve, vLLM, OpenAI's API) instead of an in-process model.
import { OpenAITarget, type TargetApi } from '@lora/sdk';

import { UsageError } from '../command.js';
import type { FlagSpec } from '../flags.js';

export const TARGET_FLAGS: FlagSpec[] = [
  { name: 'target-url', kind: 'string', metavar: 'URL', help: 'evaluate an OpenAI-compatible server instead of --model (http://host:port or …/v1); key from $LORA_TARGET_API_KEY' },
  { name: 'target-model', kind: 'string', metavar: 'NAME', help: 'the served model (or adapter) name to evaluate at --target-url' },
  {
    name: 'target-api', kind: 'enum', choices: ['completions', 'chat'], default: 'completions',
    help: 'completions sends the training template\'s prompt (scores comparable with --model); chat sends the instruction as a user message (chat-only APIs)',
  },
];

/** The target the flags name, or undefined when --target-url is absent. */
export function targetFromFlags(values: Record<string, unknown>): OpenAITarget | undefined {
  const url = values['target-url'] as string | undefined;
  const model = values['target-model'] as string | undefined;
  if (url === undefined && model === undefined) return undefined;
  if (url === undefined || model === undefined) throw new UsageError('--target-url and --target-model go together');
  if (values.adapter !== undefined) throw new UsageError('--adapter loads an adapter in-process; with --target-url, name the served adapter in --target-model');
  try {
    return new OpenAITarget({ url, model, api: values['target-api'] as TargetApi, apiKey: process.env.LORA_TARGET_API_KEY || undefined });
  } catch (e) {
    throw new UsageError((e as Error).message);
  }
}
