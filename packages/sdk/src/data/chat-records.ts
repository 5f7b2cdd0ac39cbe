// Chat-form training records: `messages` lists (role/content, the OpenAI and TRL form) and ShareGPT
// `conversations` (from/value), read beside Alpaca records. Every row is checked and a bad one is
// named (record index or line), like records.ts does for Alpaca rows.
import { LoraError } from '../io/errors.js';
import type { ChatMessage } from '../tokenizer/chat-template.js';
import { parseRows, readRows, toRecord, type InstructionRecord, type RecordFormat } from './records.js';

export interface ChatRecord {
  messages: ChatMessage[];
}

/** An Alpaca record or a conversation. */
export type TrainingRecord = InstructionRecord | ChatRecord;

export const isChatRecord = (r: TrainingRecord): r is ChatRecord => 'messages' in r;

/** ShareGPT's speaker names → chat roles (FastChat's conversion: human/user, gpt/assistant, system). */
const SHAREGPT_ROLES: Record<string, string> = { human: 'user', user: 'user', gpt: 'assistant', assistant: 'assistant', chatgpt: 'assistant', system: 'system', tool: 'tool' };

function turns(list: unknown, where: string, key: 'messages' | 'conversations'): ChatMessage[] {
  if (!Array.isArray(list) || list.length === 0) throw new LoraError('E_DATA', `${where}: '${key}' must be a non-empty list`);
  const [roleKey, textKey] = key === 'messages' ? ['role', 'content'] : ['from', 'value'];
  return list.map((turn: unknown, i) => {
    const at = `${where}: ${key}[${i}]`;
    if (typeof turn !== 'object' || turn === null || Array.isArray(turn)) throw new LoraError('E_DATA', `${at}: expected an object with '${roleKey}' and '${textKey}'`);
    const t = turn as Record<string, unknown>;
    const speaker = t[roleKey];
    const text = t[textKey];
    if (typeof speaker !== 'string' || !speaker) throw new LoraError('E_DATA', `${at}: '${roleKey}' must be a non-empty string`);
    // Lists of content parts (images, audio) have no text-only rendering here.
    if (typeof text !== 'string') throw new LoraError('E_DATA', `${at}: '${textKey}' must be a string, got ${Array.isArray(text) ? 'a list' : typeof text}`);
    const role = key === 'messages' ? speaker : SHAREGPT_ROLES[speaker.toLowerCase()];
    if (!role) throw new LoraError('E_DATA', `${at}: unknown speaker '${speaker}' (ShareGPT speakers: ${Object.keys(SHAREGPT_ROLES).join(', ')})`);
    return { role, content: text };
  });
}

/** One row as an Alpaca record or a conversation; any other shape is E_DATA naming the row. */
export function toTrainingRecord(row: unknown, where: string): TrainingRecord {
  if (typeof row === 'object' && row !== null && !Array.isArray(row)) {
    const r = row as Record<string, unknown>;
    if ('messages' in r) return { messages: turns(r.messages, where, 'messages') };
    if ('conversations' in r) return { messages: turns(r.conversations, where, 'conversations') };
    if ('instruction' in r) return toRecord(row, where);
    const keys = Object.keys(r).slice(0, 8).join(', ') || 'none';
    throw new LoraError('E_DATA', `${where}: unknown record shape (keys: ${keys}); expected Alpaca (instruction, input, output), messages [{role, content}] or ShareGPT conversations [{from, value}]`);
  }
  throw new LoraError('E_DATA', `${where}: expected an object (an Alpaca record, messages or conversations)`);
}

/** Training records (Alpaca or chat) from text in JSON (an array) or JSONL. */
export function parseTrainingRecords(text: string, format: 'json' | 'jsonl', source = 'data'): TrainingRecord[] {
  return parseRows(text, format, source, toTrainingRecord);
}

/** Training records (Alpaca or chat, mixed if the file mixes them) of a JSON, JSONL or Parquet file. */
export function readTrainingRecords(path: string, options: { format?: RecordFormat } = {}): Promise<TrainingRecord[]> {
  return readRows(path, toTrainingRecord, options);
}
