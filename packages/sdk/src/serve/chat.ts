// Chat messages → prompt text. A model folder whose tokenizer_config.json has a `chat_template`
// renders it with @huggingface/jinja (transformers' apply_chat_template with
// add_generation_prompt=true). OPT has no template: there the rule is
// the Alpaca template the adapters here are trained with (`lora train`, data/template.ts): the one
// user message is the instruction, system messages (joined by blank lines) are the input, and any
// other shape (several user turns, assistant turns) is refused with a 400 naming the rule, rather than
// rendered in a format the model never saw.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

import { alpacaPrompt } from '../data/template.js';
import { JinjaChatTemplate } from '../tokenizer/chat-template.js';
import { badRequest } from './errors.js';

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
  const path = join(dir, 'tokenizer_config.json');
  let config: Record<string, unknown> = {};
  try {
    config = JSON.parse(await readFile(path, 'utf8')) as Record<string, unknown>;
  } catch {
    return ALPACA_CHAT;
  }
  // The same renderer training data goes through (tokenizer/chat-template.ts), with the generation prompt.
  const template = JinjaChatTemplate.fromConfig(config, path);
  if (!template) return ALPACA_CHAT;
  return {
    kind: 'jinja',
    render: (messages) => {
      try {
        return template.render(messages, { addGenerationPrompt: true });
      } catch (e) {
        throw badRequest(`the model's chat template refused these messages: ${e instanceof Error ? e.message : String(e)}`, 'messages', 'chat_template_error');
      }
    },
  };
}
