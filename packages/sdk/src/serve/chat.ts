// Chat messages → prompt text. A model folder whose tokenizer_config.json has a `chat_template`
// renders it with @huggingface/jinja (transformers' apply_chat_template with
// add_generation_prompt=true) when that package is installed. OPT has no template: there the rule is
// the Alpaca template the adapters here are trained with (`lora train`, data/template.ts): the one
// user message is the instruction, system messages (joined by blank lines) are the input, and any
// other shape (several user turns, assistant turns) is refused with a 400 naming the rule, rather than
// rendered in a format the model never saw.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { alpacaPrompt } from '../data/template.js';
import { badRequest, ServeError } from './errors.js';

export interface ChatMessage {
  role: 'system' | 'user' | 'assistant' | 'developer';
  content: string;
}

export interface ChatTemplate {
  /** What the template is, for /v1/models and errors. */
  readonly kind: 'alpaca' | 'jinja';
  render(messages: readonly ChatMessage[]): string;
}

export const ALPACA_CHAT: ChatTemplate = {
  kind: 'alpaca',
  render(messages) {
    const users = messages.filter((m) => m.role === 'user');
    const others = messages.filter((m) => m.role !== 'user' && m.role !== 'system' && m.role !== 'developer');
    if (users.length !== 1 || others.length || messages.at(-1)?.role !== 'user') {
      throw badRequest(
        'this model has no chat template; its chat rule is the Alpaca instruction template: exactly one user message (the instruction), ' +
          'optionally after system messages (the input). Multi-turn conversations need a model with a chat_template.',
        'messages', 'unsupported_conversation',
      );
    }
    const input = messages.filter((m) => m.role === 'system' || m.role === 'developer').map((m) => m.content).join('\n\n');
    return alpacaPrompt({ instruction: users[0].content, input });
  },
};

/** The chat template of a model folder: its tokenizer_config.json's chat_template, else the Alpaca rule. */
export async function loadChatTemplate(dir: string): Promise<ChatTemplate> {
  let config: Record<string, unknown> = {};
  try {
    config = JSON.parse(await readFile(join(dir, 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
  } catch {
    return ALPACA_CHAT;
  }
  let source = config.chat_template;
  if (Array.isArray(source)) source = (source.find((t: { name?: string }) => t?.name === 'default') as { template?: string } | undefined)?.template;
  if (typeof source !== 'string' || !source) return ALPACA_CHAT;
  const special = (v: unknown) => (typeof v === 'string' ? v : typeof v === 'object' && v && 'content' in v ? String((v as { content: unknown }).content) : '');
  const vars = { bos_token: special(config.bos_token), eos_token: special(config.eos_token), add_generation_prompt: true };
  const pkg = '@huggingface/jinja';
  let Template: new (s: string) => { render(v: Record<string, unknown>): string };
  try {
    ({ Template } = (await import(pkg)) as { Template: typeof Template });
  } catch {
    const unavailable = new ServeError(500, 'chat_template_unavailable', `${dir} has a Jinja chat_template, and rendering it needs the @huggingface/jinja package (npm i @huggingface/jinja); /v1/completions still works`);
    return { kind: 'jinja', render: () => { throw unavailable; } };
  }
  const template = new Template(source);
  return {
    kind: 'jinja',
    render: (messages) => {
      try {
        return template.render({ ...vars, messages });
      } catch (e) {
        throw badRequest(`the model's chat template refused these messages: ${e instanceof Error ? e.message : String(e)}`, 'messages', 'chat_template_error');
      }
    },
  };
}
