// An Ollama Modelfile beside the GGUF files: FROM the model, ADAPTER the LoRA GGUF, the chat
// template turned from Jinja into Ollama's Go-template form for the common ChatML and Llama 3
// header layouts, and stop parameters from the special tokens that end a turn.
import { LoraError } from '../io/errors.js';

export interface ModelfileOptions {
  from: string;
  adapter?: string;
  chatTemplate?: string;
  /** Token strings that end a turn (eos, <|im_end|>, <|eot_id|>, ...). */
  stops: string[];
}

const quote = (s: string) => JSON.stringify(s);

/**
 * Ollama templates are Go templates, not Jinja; a Jinja chat template cannot be run by Ollama as is.
 * We recognise the two turn layouts our families use and write their Go form; any other template is
 * left out with a comment (Ollama then uses its default), rather than writing one that would break.
 */
export function ollamaTemplate(jinja: string | undefined): string | undefined {
  if (!jinja) return undefined;
  if (jinja.includes('<|im_start|>')) {
    return '{{- range .Messages }}<|im_start|>{{ .Role }}\n{{ .Content }}<|im_end|>\n{{ end }}<|im_start|>assistant\n';
  }
  if (jinja.includes('<|start_header_id|>')) {
    return '{{- range .Messages }}<|start_header_id|>{{ .Role }}<|end_header_id|>\n\n{{ .Content }}<|eot_id|>{{ end }}<|start_header_id|>assistant<|end_header_id|>\n\n';
  }
  return undefined;
}

export function modelfile(o: ModelfileOptions): string {
  if (/[\n"]/.test(o.from) || (o.adapter && /[\n"]/.test(o.adapter))) throw new LoraError('E_CONFIG', 'Modelfile paths cannot contain newlines or quotes');
  const lines = [`FROM ${o.from}`];
  if (o.adapter) lines.push(`ADAPTER ${o.adapter}`);
  const t = ollamaTemplate(o.chatTemplate);
  if (t) lines.push(`TEMPLATE """${t}"""`);
  else if (o.chatTemplate) lines.push('# the chat template is not a ChatML or Llama 3 layout: Ollama will use its default template');
  for (const s of [...new Set(o.stops)]) lines.push(`PARAMETER stop ${quote(s)}`);
  return `${lines.join('\n')}\n`;
}
