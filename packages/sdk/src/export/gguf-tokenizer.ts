// The tokenizer in GGUF metadata, from a Hugging Face tokenizer.json (+ tokenizer_config.json), as
// convert_hf_to_gguf's _set_vocab_gpt2 + SpecialVocab write it for byte-level BPE models: the full
// token list (ids without a token become "[PAD<i>]" of type UNUSED, so the list matches the
// embedding rows), token types, merges, special ids, add-bos/eos flags and the chat template.
import { readFile, stat } from 'node:fs/promises';
import { existsSync } from 'node:fs';
import { join } from 'node:path';

import { LoraError } from '../io/errors.js';
import type { GgufValue } from './gguf-format.js';
import { kv } from './gguf-writer.js';

/** llama.cpp's token types (llama.h: LLAMA_TOKEN_TYPE_*). */
const NORMAL = 1;
const CONTROL = 3;
const USER_DEFINED = 4;
const UNUSED = 5;

interface TokenizerJson {
  model?: { type?: string; vocab?: Record<string, number>; merges?: (string | [string, string])[] };
  added_tokens?: { id: number; content: string; special: boolean }[];
  pre_tokenizer?: unknown;
  post_processor?: { type?: string; single?: unknown[] } | null;
}

export interface TokenizerFiles {
  tokenizer: TokenizerJson;
  config: Record<string, unknown>;
  generation?: Record<string, unknown>;
  /** The GGUF metadata built from these files, by the model's vocab size (built once). */
  metadataByVocab?: Map<number, Map<string, GgufValue>>;
}

// Parsing a 9 MB tokenizer.json and building 150k-token metadata takes seconds; exporting one
// folder in several formats (f16 + q8_0 + an adapter) reuses the last few results.
const recent = new Map<string, TokenizerFiles>();

export async function readTokenizerFiles(dir: string): Promise<TokenizerFiles> {
  const path = join(dir, 'tokenizer.json');
  if (!existsSync(path)) throw new LoraError('E_TOKENIZER', `GGUF export needs ${path} (a Hugging Face fast tokenizer)`);
  const key = await fingerprint(dir);
  const hit = recent.get(key);
  if (hit) return hit;
  const files = await parseTokenizerFiles(dir, path);
  recent.set(key, files);
  if (recent.size > 4) recent.delete(recent.keys().next().value!);
  return files;
}

async function fingerprint(dir: string): Promise<string> {
  const parts = [dir];
  for (const f of ['tokenizer.json', 'tokenizer_config.json', 'generation_config.json']) {
    const s = await stat(join(dir, f)).catch(() => undefined);
    parts.push(s ? `${s.size}:${s.mtimeMs}:${s.ino}` : '-');
  }
  return parts.join('|');
}

async function parseTokenizerFiles(dir: string, path: string): Promise<TokenizerFiles> {
  const json = async (p: string) => {
    try { return JSON.parse(await readFile(p, 'utf8')); } catch (e) { throw new LoraError('E_TOKENIZER', `cannot read ${p}: ${(e as Error).message}`); }
  };
  const cfgPath = join(dir, 'tokenizer_config.json');
  const genPath = join(dir, 'generation_config.json');
  return {
    tokenizer: await json(path),
    config: existsSync(cfgPath) ? await json(cfgPath) : {},
    generation: existsSync(genPath) ? await json(genPath) : undefined,
  };
}

/**
 * llama.cpp's pre-tokenizer name. convert_hf_to_gguf finds it by hashing the ids of a test string;
 * we read the pre-tokenizer's split regex instead, which is what those names stand for.
 */
export function preTokenizerName(tok: TokenizerJson): string {
  const s = JSON.stringify(tok.pre_tokenizer ?? null);
  if (s.includes('\\\\p{N}{1,3}')) return 'llama-bpe';
  if (s.includes("(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\\\r\\\\n\\\\p{L}\\\\p{N}]?\\\\p{L}+|\\\\p{N}|")) return 'qwen2';
  if (s.includes('"Digits"') && s.includes('"individual_digits":true') && s.includes('ByteLevel')) return 'smollm';
  if (/^\{"type":"ByteLevel"/.test(s)) return 'gpt-2';
  throw new LoraError('E_TOKENIZER', `tokenizer.json: pre-tokenizer ${s.slice(0, 200)} is not one the GGUF export recognises (llama-bpe, qwen2, smollm, gpt-2)`);
}

const contentOf = (v: unknown): string | undefined =>
  typeof v === 'string' ? v : v && typeof v === 'object' && typeof (v as { content?: unknown }).content === 'string' ? (v as { content: string }).content : undefined;

/** GGUF tokenizer metadata for a byte-level BPE tokenizer and a model with `vocabSize` embedding rows. */
export function tokenizerMetadata(files: TokenizerFiles, vocabSize: number): Map<string, GgufValue> {
  files.metadataByVocab ??= new Map();
  let meta = files.metadataByVocab.get(vocabSize);
  if (!meta) files.metadataByVocab.set(vocabSize, (meta = buildTokenizerMetadata(files, vocabSize)));
  return meta;
}

function buildTokenizerMetadata(files: TokenizerFiles, vocabSize: number): Map<string, GgufValue> {
  const { tokenizer: tok, config } = files;
  if (tok.model?.type !== 'BPE' || !tok.model.vocab) throw new LoraError('E_TOKENIZER', `tokenizer.json: model type ${tok.model?.type} is not byte-level BPE`);
  const tokens: string[] = new Array(vocabSize);
  const types = new Array<number>(vocabSize).fill(UNUSED);
  const idOf = new Map<string, number>();
  const put = (id: number, text: string, type: number) => {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) throw new LoraError('E_TOKENIZER', `tokenizer.json: token id ${id} ("${text}") is outside the model's vocab_size ${vocabSize}`);
    tokens[id] = text;
    types[id] = type;
    idOf.set(text, id);
  };
  for (const [text, id] of Object.entries(tok.model.vocab)) put(id, text, NORMAL);
  for (const a of tok.added_tokens ?? []) put(a.id, a.content, a.special ? CONTROL : USER_DEFINED);
  for (let i = 0; i < vocabSize; i++) if (tokens[i] === undefined) tokens[i] = `[PAD${i}]`;
  const merges = (tok.model.merges ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : m));

  const meta = new Map<string, GgufValue>([
    ['tokenizer.ggml.model', kv.str('gpt2')],
    ['tokenizer.ggml.pre', kv.str(preTokenizerName(tok))],
    ['tokenizer.ggml.tokens', kv.arr('string', tokens)],
    ['tokenizer.ggml.token_type', kv.arr('i32', types)],
    ['tokenizer.ggml.merges', kv.arr('string', merges)],
  ]);
  const special = (key: string, text: string | undefined) => {
    if (text === undefined) return;
    const id = idOf.get(text);
    if (id === undefined) throw new LoraError('E_TOKENIZER', `tokenizer_config.json: ${key} "${text}" is not a token of tokenizer.json`);
    meta.set(`tokenizer.ggml.${key}_id`, kv.u32(id));
  };
  special('bos_token', contentOf(config.bos_token));
  special('eos_token', contentOf(config.eos_token));
  special('padding_token', contentOf(config.pad_token));
  special('unknown_token', contentOf(config.unk_token));
  meta.set('tokenizer.ggml.add_bos_token', kv.bool(addsBos(files)));
  meta.set('tokenizer.ggml.add_eos_token', kv.bool(config.add_eos_token === true));
  const template = chatTemplate(config);
  if (template) meta.set('tokenizer.chat_template', kv.str(template));
  return meta;
}

/** tokenizer_config's add_bos_token when given, else whether tokenizer.json's post-processor inserts a bos. */
function addsBos(files: TokenizerFiles): boolean {
  if (typeof files.config.add_bos_token === 'boolean') return files.config.add_bos_token;
  const pp = files.tokenizer.post_processor;
  const bos = contentOf(files.config.bos_token);
  if (pp?.type === 'TemplateProcessing' && bos) return JSON.stringify(pp.single ?? []).includes(JSON.stringify(bos));
  return false;
}

/** The default chat template (a string, or the entry named "default" of a list). */
export function chatTemplate(config: Record<string, unknown>): string | undefined {
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) return (t.find((x) => x?.name === 'default') as { template?: string } | undefined)?.template;
  return undefined;
}
