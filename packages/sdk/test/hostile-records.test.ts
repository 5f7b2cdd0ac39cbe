// A 1 M-character record: tokenizing one huge "word" spread its ~10^5 BPE tokens as call arguments
// and died with an uncoded RangeError (call stack); eval scoring of such text must stay bounded too.
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

import { scorePredictions } from '../src/eval/index.js';
import { OptTokenizer } from '../src/tokenizer/index.js';

const OPT_DIR = fileURLToPath(new URL('../../../../shared/data/opt-tokenizer/', import.meta.url));

describe('1 M-character records', () => {
  it.skipIf(!existsSync(join(OPT_DIR, 'vocab.json')))('tokenizes a 1,000,000-character word (was RangeError: call stack)', async () => {
    const tok = await OptTokenizer.fromPretrained(OPT_DIR);
    const text = 'a'.repeat(1_000_000);
    const ids = tok.encode(text, { addSpecialTokens: false });
    expect(ids.length).toBeGreaterThan(1000);
    expect(tok.decode(ids)).toBe(text);
  });

  it('scores a 1,000,000-character prediction and reference with every metric', () => {
    const big = 'a'.repeat(1_000_000);
    const r = scorePredictions([{ prediction: big, references: ['short reference'] }, { prediction: 'short', references: [big] }], { meteor: { synonyms: false } });
    expect(r.corpus.count).toBe(2);
    expect(r.examples.every((e) => e.sentenceBleu === 0)).toBe(true);
  });
});
