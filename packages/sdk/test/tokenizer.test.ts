import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildByteLevelTokenizer, OptTokenizer, pretokenize } from '../src/tokenizer/index.js';

// The real OPT tokenizer files live beside the repo (shared/data), never inside it.
const OPT_DIR = fileURLToPath(new URL('../../../../shared/data/opt-tokenizer/', import.meta.url));
const haveOpt = existsSync(join(OPT_DIR, 'vocab.json'));

let tmp: string;
beforeAll(async () => { tmp = await mkdtemp(join(tmpdir(), 'lora-tok-')); });
afterAll(async () => { await rm(tmp, { recursive: true, force: true }); });

const SAMPLES = [
  'Hello, world!',
  "  leading spaces, tabs\tand\nnewlines  \n\n",
  'emoji 🤗🚀 and a family 👨‍👩‍👧 (ZWJ)',
  '中文分词测试，日本語のテキスト、한국어',
  'code: def f(x):\n    return x**2  # ok',
  "it's they're we've I'm you'll he'd",
  'mixed </s> special <pad> tokens <s> here <unk>',
];

describe.skipIf(!haveOpt)('OPT tokenizer (shared/data/opt-tokenizer)', () => {
  let tok: OptTokenizer;
  beforeAll(async () => { tok = await OptTokenizer.fromFiles(OPT_DIR); });

  it('reproduces the ids in DESIGN.md', () => {
    expect(tok.encode('A photo of a cat')).toEqual([2, 250, 1345, 9, 10, 4758]);
    expect(tok.encode("Hello, I'm am conscious and")).toEqual([2, 31414, 6, 38, 437, 524, 13316, 8]);
    expect(tok.encode('A photo of a cat', { addSpecialTokens: false })).toEqual([250, 1345, 9, 10, 4758]);
  });

  it('knows OPT special ids and recognises special tokens in text', () => {
    expect([tok.bosTokenId, tok.eosTokenId, tok.padTokenId, tok.vocabSize]).toEqual([2, 2, 1, 50265]);
    expect(tok.encode('a</s>b<pad>', { addSpecialTokens: false })).toEqual([102, 2, 428, 1]);
    expect(tok.encode('<s><unk>', { addSpecialTokens: false })).toEqual([0, 3]);
  });

  it('round-trips UTF-8 exactly, including characters split across tokens', () => {
    for (const s of SAMPLES) expect(tok.decode(tok.encode(s, { addSpecialTokens: false }))).toBe(s);
    const ids = tok.encode('🤗', { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(1); // one emoji, several byte tokens
    expect(tok.decode(ids.slice(0, 1))).toBe('\uFFFD'); // a partial character decodes to the replacement char
  });

  it('skips special tokens on request', () => {
    const ids = tok.encode('Hi</s>', { addSpecialTokens: true });
    expect(tok.decode(ids)).toBe('</s>Hi</s>');
    expect(tok.decode(ids, { skipSpecialTokens: true })).toBe('Hi');
  });

  it('loads the same vocabulary from tokenizer.json', async () => {
    const { readFile } = await import('node:fs/promises');
    const vocab = JSON.parse(await readFile(join(OPT_DIR, 'vocab.json'), 'utf8')) as Record<string, number>;
    const merges = (await readFile(join(OPT_DIR, 'merges.txt'), 'utf8')).split('\n').slice(1).filter(Boolean);
    const dir = join(tmp, 'fast');
    await (await import('node:fs/promises')).mkdir(dir);
    const specials = ['<s>', '<pad>', '</s>', '<unk>'].map((content) => ({ id: vocab[content], content, special: true }));
    await writeFile(join(dir, 'tokenizer.json'), JSON.stringify({
      added_tokens: specials,
      model: { type: 'BPE', vocab, merges: merges.map((m) => m.split(' ')) },
      post_processor: { type: 'TemplateProcessing', single: [{ SpecialToken: { id: '</s>', type_id: 0 } }, { Sequence: { id: 'A', type_id: 0 } }] },
    }));
    await copyFile(join(OPT_DIR, 'tokenizer_config.json'), join(dir, 'tokenizer_config.json'));
    const fast = await OptTokenizer.fromFiles(dir);
    for (const s of ['A photo of a cat', ...SAMPLES]) expect(fast.encode(s)).toEqual(tok.encode(s));
  });
});

describe('tokenizer files', () => {
  it('names the missing file', async () => {
    const dir = join(tmp, 'half');
    await (await import('node:fs/promises')).mkdir(dir);
    await writeFile(join(dir, 'vocab.json'), '{"<s>":0}');
    await expect(OptTokenizer.fromFiles(dir)).rejects.toMatchObject({ code: 'E_TOKENIZER', message: expect.stringMatching(/merges\.txt/) });
    await expect(OptTokenizer.fromFiles(join(tmp, 'nothing-here'))).rejects.toThrow(/vocab\.json and merges\.txt \(or tokenizer\.json\)/);
  });

  it('pre-tokenizes like GPT-2', () => {
    expect(pretokenize("Hello, I'm  here 123!")).toEqual(['Hello', ',', ' I', "'m", ' ', ' here', ' 123', '!']);
  });
});

describe('built-in byte-level tokenizer', () => {
  it('encodes any text with OPT special ids and round-trips it', () => {
    const tok = buildByteLevelTokenizer();
    expect(tok.vocabSize).toBe(260);
    expect([tok.bosTokenId, tok.padTokenId, tok.eosTokenId, tok.tokenToId('<unk>')]).toEqual([2, 1, 2, 3]);
    for (const s of SAMPLES) expect(tok.decode(tok.encode(s), { skipSpecialTokens: true })).toBe(s.replace(/<\/s>|<pad>|<s>|<unk>/g, ''));
    expect(tok.encode('A')[0]).toBe(2);
    expect(tok.encode('A')[1]).toBe(4 + 0x41);
  });

  it('learns merges deterministically, shortens text, and saves files it can load back', async () => {
    const corpus = Array.from({ length: 50 }, (_, i) => `def add(a, b):\n    return a + b  # example ${i}`);
    const tok = buildByteLevelTokenizer({ corpus, numMerges: 40 });
    const again = buildByteLevelTokenizer({ corpus, numMerges: 40 });
    expect(tok.spec.merges).toEqual(again.spec.merges);
    expect(tok.spec.merges.length).toBeGreaterThan(20); // stops early once no pair occurs twice
    expect(tok.spec.merges.length).toBeLessThanOrEqual(40);
    const text = 'def add(a, b):\n    return a + b';
    expect(tok.encode(text).length).toBeLessThan(buildByteLevelTokenizer().encode(text).length);
    expect(tok.decode(tok.encode(text, { addSpecialTokens: false }))).toBe(text);
    const dir = join(tmp, 'built');
    await tok.save(dir);
    const loaded = await OptTokenizer.fromFiles(dir);
    expect(loaded.encode(text)).toEqual(tok.encode(text));
    expect(loaded.vocabSize).toBe(tok.vocabSize);
  });
});
