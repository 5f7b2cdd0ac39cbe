// A model's chat template: tokenizer_config.json's `chat_template` (Jinja), rendered with
// @huggingface/jinja the way transformers' apply_chat_template renders it — `messages`,
// `add_generation_prompt`, `bos_token`/`eos_token` and the other special-token strings, and
// `raise_exception` (built into the renderer). One module for training data and for the server.
import { Template } from '@huggingface/jinja';

import { LoraError } from '../io/errors.js';

export interface ChatMessage {
  role: string;
  content: string;
}

export interface RenderOptions {
  /** End with the header that opens an assistant turn (for generation). Default false, like transformers. */
  addGenerationPrompt?: boolean;
  /** More template variables (`enable_thinking`, `tools`, …). */
  variables?: Record<string, unknown>;
}

/** `bos_token` etc. are either a string or an AddedToken object `{ content, ... }` in tokenizer_config.json. */
export function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as { content?: unknown }).content === 'string') return (v as { content: string }).content;
  return undefined;
}

export class JinjaChatTemplate {
  private readonly template: Template;

  /** `where` names the file in errors (a folder's tokenizer_config.json). */
  constructor(readonly source: string, private readonly specialTokens: Record<string, string>, private readonly where: string) {
    try {
      this.template = new Template(source);
    } catch (e) {
      throw new LoraError('E_TOKENIZER', `${where}: chat_template does not parse: ${(e as Error).message}`, { cause: e, field: 'chat_template' });
    }
  }

  /**
   * The template of a tokenizer_config.json object, or undefined when it has none. A list of named
   * templates (transformers' multi-template form) gives the one named "default".
   */
  static fromConfig(config: Record<string, unknown>, where: string): JinjaChatTemplate | undefined {
    let source = config.chat_template;
    if (Array.isArray(source)) source = (source.find((t: { name?: unknown }) => t?.name === 'default') as { template?: unknown } | undefined)?.template;
    if (typeof source !== 'string' || !source) return undefined;
    const special: Record<string, string> = {};
    for (const key of ['bos_token', 'eos_token', 'pad_token', 'unk_token']) {
      // transformers passes every special token's string; a null one is the empty string here so
      // `bos_token + ...` stays a string concatenation (Qwen's config has bos_token: null).
      special[key] = tokenContent(config[key]) ?? '';
    }
    return new JinjaChatTemplate(source, special, where);
  }

  /** The prompt text; a template that raises (raise_exception, a bad role) is E_TOKENIZER naming the file. */
  render(messages: readonly ChatMessage[], o: RenderOptions = {}): string {
    try {
      return this.template.render({ ...this.specialTokens, ...o.variables, messages, add_generation_prompt: o.addGenerationPrompt ?? false });
    } catch (e) {
      throw new LoraError('E_TOKENIZER', `${this.where}: the chat template raised an error for these messages: ${(e as Error).message}`, { cause: e, field: 'chat_template' });
    }
  }
}
