import { join } from 'node:path';
import { isLoraError, LoraError } from '../io/errors.js';
import { jsonSyntaxError, readSmallFile } from '../io/safe-file.js';
import { OPT_SPECIAL_TOKENS, OPT_TOKEN_ROLES, type TokenizerSpec } from './spec.js';

type Json = Record<string, unknown>;

async function readJson(dir: string, name: string, required: boolean): Promise<Json | undefined> {
  const text = await readText(dir, name, required);
  if (text === undefined) return undefined;
  try {
    const v = JSON.parse(text) as unknown;
    if (typeof v !== 'object' || v === null || Array.isArray(v)) throw new Error('not a JSON object');
    return v as Json;
  } catch (err) {
    // V8's JSON messages quote the text; say only where it broke.
    throw new LoraError('E_TOKENIZER', `${join(dir, name)}: ${err instanceof SyntaxError ? `not valid JSON (${jsonSyntaxError(err)})` : (err as Error).message}`);
  }
}

async function readText(dir: string, name: string, required: boolean): Promise<string | undefined> {
  try {
    // FIFOs, devices and symlinks out of the folder are refused (E_FILE_TYPE); tokenizer.json is < 64 MiB.
    return new TextDecoder().decode(await readSmallFile(join(dir, name), 64 * 1024 * 1024));
  } catch (err) {
    if (!isLoraError(err, 'E_FILE_NOT_FOUND')) throw err;
    if (required) throw new LoraError('E_TOKENIZER', `tokenizer file missing: ${join(dir, name)}`);
    return undefined;
  }
}

/** `bos_token` etc. are either a string or an AddedToken object `{ content, ... }`. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (typeof v === 'object' && v !== null && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

/**
 * Reads a tokenizer folder: `vocab.json` + `merges.txt` (the slow GPT2Tokenizer files) when both
 * exist, else `tokenizer.json`; then `tokenizer_config.json` and `special_tokens_map.json` for the
 * roles of special tokens and whether bos is added. Missing files are named in the error.
 */
export async function loadTokenizerSpec(dir: string): Promise<TokenizerSpec> {
  const hasVocab = (await readText(dir, 'vocab.json', false)) !== undefined;
  const hasMerges = (await readText(dir, 'merges.txt', false)) !== undefined;
  const hasJson = (await readText(dir, 'tokenizer.json', false)) !== undefined;
  let base: Pick<TokenizerSpec, 'vocab' | 'merges' | 'specialTokens'> & { bosFromTemplate?: boolean };
  if (hasVocab && hasMerges) {
    base = await loadSlowFiles(dir);
  } else if (hasJson) {
    base = await loadTokenizerJson(dir);
  } else {
    const missing = hasVocab ? 'merges.txt' : hasMerges ? 'vocab.json' : 'vocab.json and merges.txt (or tokenizer.json)';
    throw new LoraError('E_TOKENIZER', `tokenizer file missing in ${dir}: ${missing}`);
  }
  const config = (await readJson(dir, 'tokenizer_config.json', false)) ?? {};
  const map = (await readJson(dir, 'special_tokens_map.json', false)) ?? {};
  const role = (key: string, fallback: string) => tokenContent(config[key]) ?? tokenContent(map[key]) ?? fallback;
  const spec: TokenizerSpec = {
    ...base,
    bosToken: role('bos_token', OPT_TOKEN_ROLES.bosToken),
    eosToken: role('eos_token', OPT_TOKEN_ROLES.eosToken),
    padToken: role('pad_token', OPT_TOKEN_ROLES.padToken),
    unkToken: role('unk_token', OPT_TOKEN_ROLES.unkToken),
    // OPT prepends bos; a config that says otherwise wins, and so does tokenizer.json's template.
    addBosToken: typeof config.add_bos_token === 'boolean' ? config.add_bos_token : (base.bosFromTemplate ?? true),
    addEosToken: config.add_eos_token === true,
  };
  const extra = [spec.bosToken, spec.eosToken, spec.padToken, spec.unkToken];
  const additional = Array.isArray(config.additional_special_tokens) ? config.additional_special_tokens.map(tokenContent) : [];
  for (const t of [...extra, ...additional]) if (t && spec.vocab.has(t) && !spec.specialTokens.includes(t)) spec.specialTokens.push(t);
  return spec;
}

async function loadSlowFiles(dir: string) {
  const vocabJson = (await readJson(dir, 'vocab.json', true))!;
  const vocab = new Map<string, number>();
  for (const [token, id] of Object.entries(vocabJson)) {
    if (typeof id !== 'number' || !Number.isInteger(id) || id < 0) {
      throw new LoraError('E_TOKENIZER', `${join(dir, 'vocab.json')}: id of ${JSON.stringify(token)} is not a non-negative integer`);
    }
    vocab.set(token, id);
  }
  const merges = parseMerges((await readText(dir, 'merges.txt', true))!, join(dir, 'merges.txt'));
  const added = (await readJson(dir, 'added_tokens.json', false)) ?? {};
  for (const [token, id] of Object.entries(added)) if (typeof id === 'number') vocab.set(token, id);
  const specialTokens = OPT_SPECIAL_TOKENS.map(([t]) => t).filter((t) => vocab.has(t)) as string[];
  return { vocab, merges, specialTokens };
}

export function parseMerges(text: string, where: string): [string, string][] {
  const merges: [string, string][] = [];
  text.split('\n').forEach((line, i) => {
    line = line.replace(/\r$/, '');
    if (line === '' || (i === 0 && line.startsWith('#version'))) return;
    const parts = line.split(' ');
    if (parts.length !== 2 || !parts[0] || !parts[1]) throw new LoraError('E_TOKENIZER', `${where}:${i + 1}: expected "left right", got ${JSON.stringify(line)}`);
    merges.push([parts[0], parts[1]]);
  });
  return merges;
}

async function loadTokenizerJson(dir: string) {
  const where = join(dir, 'tokenizer.json');
  const json = (await readJson(dir, 'tokenizer.json', true))!;
  const model = json.model as Json | undefined;
  if (!model || model.type !== 'BPE') throw new LoraError('E_TOKENIZER', `${where}: model.type must be "BPE", got ${JSON.stringify(model?.type)}`);
  const vocab = new Map<string, number>(Object.entries((model.vocab ?? {}) as Record<string, number>));
  const rawMerges = Array.isArray(model.merges) ? model.merges : [];
  // Older files write merges as "a b" strings, newer ones as ["a", "b"] pairs.
  const merges = rawMerges.map((m, i): [string, string] => {
    const pair = typeof m === 'string' ? m.split(' ') : m;
    if (!Array.isArray(pair) || pair.length !== 2) throw new LoraError('E_TOKENIZER', `${where}: merge #${i} is malformed`);
    return [String(pair[0]), String(pair[1])];
  });
  const specialTokens: string[] = [];
  for (const t of (Array.isArray(json.added_tokens) ? json.added_tokens : []) as Json[]) {
    if (typeof t.content !== 'string' || typeof t.id !== 'number') continue;
    vocab.set(t.content, t.id);
    specialTokens.push(t.content);
  }
  // TemplateProcessing whose single-sequence template starts with a special token means "add bos".
  const single = (json.post_processor as Json | null)?.single;
  const bosFromTemplate = Array.isArray(single) ? 'SpecialToken' in ((single[0] ?? {}) as Json) : undefined;
  return { vocab, merges, specialTokens, bosFromTemplate };
}
