// A conversation → one training example: the text is the model's chat template over every message
// (transformers' apply_chat_template, tokenized without added special tokens, as it does), and
// labels are kept only on the assistant turns — each turn's content and the special token that
// closes it (<|eot_id|>, <|im_end|>) so the model learns to stop; everything else is −100.
//
// Templates mark no turn boundaries (transformers' {% generation %} blocks are rare), so each
// assistant turn is found in the rendered text: it starts after the rendering of the messages before
// it plus the generation prompt when the template is prefix-stable there, and at its content in any
// case. The text is then tokenized in segments cut at those boundaries; for the byte-level templates
// tested (Llama 3, Qwen3) the cuts fall on pre-tokenizer boundaries, so the ids equal the whole text's.
import { isLoraError, LoraError } from '../io/errors.js';
import type { ChatMessage, JinjaChatTemplate } from '../tokenizer/chat-template.js';
import { IGNORE_INDEX, tokenizeRecord, type Example, type ExampleOptions, type TokenizerLike } from './batches.js';
import { isChatRecord, type ChatRecord, type TrainingRecord } from './chat-records.js';

/** A tokenizer that can also say which ids are special and carries the folder's chat template. */
export interface ChatTokenizerLike extends TokenizerLike {
  readonly chatTemplate?: JinjaChatTemplate;
  isSpecialId?(id: number): boolean;
  idToTokenString?(id: number): string | undefined;
}

/** Where in the text an assistant turn's content may be: as given, trimmed (Llama 3 trims), or after a reasoning block a template strips from past turns (Qwen3). */
function candidates(content: string): string[] {
  const out = [content, content.trim()];
  const afterThink = content.split('</think>');
  if (afterThink.length > 1) out.push(afterThink[afterThink.length - 1].trim());
  return out;
}

/** [start, end) character spans of the assistant turns in `text`. */
function assistantSpans(tok: ChatTokenizerLike, template: JinjaChatTemplate, messages: readonly ChatMessage[], text: string, where: string): [number, number][] {
  const spans: [number, number][] = [];
  let cursor = 0;
  messages.forEach((m, i) => {
    if (m.role === 'assistant' && i > 0) {
      const before = template.render(messages.slice(0, i), { addGenerationPrompt: true });
      // Exact where the template is prefix-stable: the turn starts where the prompt for it ends (and a
      // short user message matched inside an earlier answer cannot push the search past this turn).
      if (text.startsWith(before)) cursor = before.length;
    }
    let at = -1;
    let found = '';
    for (const c of candidates(m.content)) {
      at = text.indexOf(c, cursor);
      if (at >= 0) { found = c; break; }
    }
    if (at < 0) {
      if (m.role === 'assistant') throw new LoraError('E_DATA', `${where}: messages[${i}] (assistant) does not appear in the chat template's rendering, so its labels cannot be placed`);
      return; // a template may drop or rewrite other messages (a default system prompt, say)
    }
    let end = at + found.length;
    if (m.role === 'assistant') {
      end += closingToken(tok, text, end);
      spans.push([at, end]);
    }
    cursor = end;
  });
  return spans;
}

/** Length of the special token that directly follows `pos` (the turn's end marker), or 0. */
function closingToken(tok: ChatTokenizerLike, text: string, pos: number): number {
  if (!tok.isSpecialId || !tok.idToTokenString) return 0;
  const first = tok.encode(text.slice(pos, pos + 64), { addSpecialTokens: false })[0];
  if (first === undefined || !tok.isSpecialId(first)) return 0;
  const s = tok.idToTokenString(first);
  return s !== undefined && text.startsWith(s, pos) ? s.length : 0;
}

function templated(tok: ChatTokenizerLike, template: JinjaChatTemplate, r: ChatRecord, o: ExampleOptions, where: string): Example {
  const text = template.render(r.messages);
  const ids: number[] = [];
  const labels: number[] = [];
  let pos = 0;
  const push = (from: number, to: number, learn: boolean) => {
    if (to <= from) return;
    for (const id of tok.encode(text.slice(from, to), { addSpecialTokens: false })) {
      ids.push(id);
      labels.push(learn ? id : IGNORE_INDEX);
    }
  };
  for (const [start, end] of assistantSpans(tok, template, r.messages, text, where)) {
    push(pos, start, false);
    push(start, end, true);
    pos = end;
  }
  push(pos, text.length, false);
  return { inputIds: ids.slice(0, o.maxLength), labels: labels.slice(0, o.maxLength) };
}

/**
 * A model without a chat template (OPT) is trained on the Alpaca template, so a conversation of
 * system messages, one user and one assistant message is that record (system → input, as the server
 * renders chats for such models); longer conversations need a template and are refused.
 */
function asAlpaca(tok: TokenizerLike, r: ChatRecord, o: ExampleOptions, where: string): Example {
  const roles = r.messages.map((m) => m.role);
  const users = roles.filter((x) => x === 'user').length;
  const shape = roles.filter((x) => x !== 'system').join(',');
  if (users !== 1 || shape !== 'user,assistant') {
    throw new LoraError('E_DATA', `${where}: this model has no chat_template, so conversations train as Alpaca records: optional system messages, then one user and one assistant message (got ${roles.join(', ')})`);
  }
  const input = r.messages.filter((m) => m.role === 'system').map((m) => m.content).join('\n\n');
  const record = { instruction: r.messages[roles.indexOf('user')].content, input, output: r.messages[roles.indexOf('assistant')].content };
  return tokenizeRecord(tok, record, { ...o, responseOnly: true });
}

/** Any training record → example. Conversations always learn from assistant turns only; `where` names the record in errors. */
export function tokenizeTrainingRecord(tok: ChatTokenizerLike, r: TrainingRecord, o: ExampleOptions, where = 'record'): Example {
  if (!isChatRecord(r)) return tokenizeRecord(tok, r, o);
  if (!tok.chatTemplate) return asAlpaca(tok, r, o, where);
  try {
    return templated(tok, tok.chatTemplate, r, o, where);
  } catch (e) {
    // A template that raises names its file; say which record made it raise.
    if (isLoraError(e, 'E_TOKENIZER')) throw new LoraError('E_TOKENIZER', `${where}: ${e.message}`, { cause: e, field: e.field });
    throw e;
  }
}
