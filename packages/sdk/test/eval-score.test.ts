// scorePredictions and parseScoreInput: the layer `lora eval score` and `lora eval` share.
import { describe, expect, it } from 'vitest';

import { EvalError, corpusBleu, meteorScore, parseScoreInput, rougeScoreMulti, scorePredictions, sentenceBleu } from '../src/eval/index.js';

const enc = (s: string): Uint8Array => new TextEncoder().encode(s);

const REFS = [
  ['The dog bit the man.', 'The dog had bit the man.'],
  ['It was not unexpected.', 'No one was surprised.'],
  ['The man bit him first.', 'The man had bitten the dog.'],
];
const HYPS = ['The dog bit the man.', "It wasn't surprising.", 'The man had just bitten him.'];

describe('scorePredictions', () => {
  it('reports corpus BLEU exactly as corpusBleu, and per-example sentence BLEU, ROUGE and METEOR', () => {
    const r = scorePredictions(
      HYPS.map((prediction, i) => ({ prediction, references: REFS[i] })),
      { meteor: { synonyms: false } },
    );
    expect(r.corpus.count).toBe(3);
    expect(r.corpus.bleu?.score).toBeCloseTo(48.530827, 6);
    expect(r.corpus.bleu?.signature).toBe('nrefs:2|case:mixed|eff:no|tok:13a|smooth:exp');
    expect(r.examples).toHaveLength(3);
    r.examples.forEach((e, i) => {
      expect(e.index).toBe(i);
      expect(e.sentenceBleu).toBeCloseTo(sentenceBleu(HYPS[i], REFS[i]).score, 12);
      const rouge = rougeScoreMulti(REFS[i], HYPS[i]);
      expect(e.rouge?.rougeL).toEqual({ p: rouge.rougeL.precision, r: rouge.rougeL.recall, f: rouge.rougeL.fmeasure });
      expect(e.meteor).toBeCloseTo(meteorScore(REFS[i], HYPS[i], { synonyms: false }), 12);
      expect(e.notes).toBeUndefined();
    });
    const meanF = r.examples.reduce((a, e) => a + (e.rouge?.rouge1.f ?? 0), 0) / 3;
    expect(r.corpus.rouge?.rouge1.f).toBeCloseTo(meanF, 12);
    expect(r.examples[0].sentenceBleu).toBeCloseTo(100, 10);
  });

  it('scores empty predictions and empty references 0 with a note, and keeps them in the corpus', () => {
    const r = scorePredictions(
      [
        { prediction: 'a cat sat on the mat', references: ['a cat sat on the mat'] },
        { prediction: '', references: ['something here'] },
        { prediction: 'an orphan prediction', references: [''] },
        { prediction: 'two refs one empty', references: ['', 'two refs one empty'] },
      ],
      { meteor: { synonyms: false } },
    );
    expect(r.corpus.count).toBe(4);
    expect(r.corpus.emptyPredictions).toBe(1);
    expect(r.corpus.emptyReferences).toBe(1);
    expect(r.examples[1].notes).toEqual(['empty prediction: scored 0']);
    expect(r.examples[1]).toMatchObject({ sentenceBleu: 0, meteor: 0, rouge: { rouge1: { p: 0, r: 0, f: 0 } } });
    expect(r.examples[2].notes?.[0]).toMatch(/^empty reference: scored 0/);
    expect(r.examples[2]).toMatchObject({ sentenceBleu: 0, meteor: 0 });
    expect(r.examples[3].notes).toEqual(['1 empty reference(s) ignored']);
    expect(r.examples[3].sentenceBleu).toBeCloseTo(100, 10);
    // corpus BLEU: the orphan prediction's n-grams count, unmatched, against a reference of length 0
    const expected = corpusBleu(
      ['a cat sat on the mat', '', 'an orphan prediction', 'two refs one empty'],
      [['a cat sat on the mat', 'something here', ' ', 'two refs one empty']],
    );
    expect(r.corpus.bleu?.score).toBeCloseTo(expected.score, 12);
    expect(r.corpus.bleu?.totals).toEqual(expected.totals);
  });

  it('computes only the metrics asked for and needs no WordNet without METEOR', () => {
    const r = scorePredictions([{ prediction: 'x', references: ['x'] }], { metrics: ['rouge'] });
    expect(r.corpus.bleu).toBeUndefined();
    expect(r.corpus.meteor).toBeUndefined();
    expect(r.examples[0].sentenceBleu).toBeUndefined();
    expect(r.examples[0].rouge?.rouge1.f).toBe(1);
    expect(() => scorePredictions([], { metrics: ['bogus' as never] })).toThrow(EvalError);
  });

  it('passes ROUGE stemming and BLEU options through', () => {
    const ex = [{ prediction: 'the cats were running', references: ['the cat was runs'] }];
    const plain = scorePredictions(ex, { metrics: ['rouge'] });
    const stemmed = scorePredictions(ex, { metrics: ['rouge'], rougeStemmer: true });
    expect(stemmed.corpus.rouge!.rouge1.f).toBeGreaterThan(plain.corpus.rouge!.rouge1.f);
    const lc = scorePredictions([{ prediction: 'THE CAT', references: ['the cat'] }], { metrics: ['bleu'], bleu: { lowercase: true, smoothMethod: 'floor' } });
    expect(lc.corpus.bleu?.signature).toBe('nrefs:1|case:lc|eff:no|tok:13a|smooth:floor[0.10]');
  });
});

describe('parseScoreInput', () => {
  it('reads prediction with reference or references, skipping blank lines, CRLF and a BOM', () => {
    const p = parseScoreInput(
      enc('\ufeff{"prediction":"a","reference":"b"}\r\n\n  \n{"prediction":"c","references":["d","e"]}'),
    );
    expect(p.examples).toEqual([
      { prediction: 'a', references: ['b'], line: 1 },
      { prediction: 'c', references: ['d', 'e'], line: 4 },
    ]);
    expect(p.warnings).toEqual([]);
  });

  it.each([
    ['{"prediction":"a","reference":"b"}\n{"prediction": "a", "reference": }', /f\.jsonl:2: malformed JSON/],
    ['[1,2]', /f\.jsonl:1: expected a JSON object/],
    ['{"reference":"b"}', /f\.jsonl:1: missing field "prediction"/],
    ['{"prediction":null,"reference":"b"}', /"prediction" must be a string, got null/],
    ['{"prediction":"a"}', /missing field "reference" \(or "references", a list\)/],
    ['{"prediction":"a","reference":["b"]}', /use "references" for a list/],
    ['{"prediction":"a","references":[]}', /"references" must be a non-empty list of strings/],
    ['{"prediction":"a","references":["b",3]}', /"references" must be a non-empty list of strings/],
    ['{"prediction":"a","reference":"b","references":["c"]}', /either "reference" or "references", not both/],
  ])('%s -> error naming the line', (text, re) => {
    let err: unknown;
    try {
      parseScoreInput(enc(text), { source: 'f.jsonl' });
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(EvalError);
    expect((err as EvalError).code).toBe('E_EVAL_INPUT');
    expect((err as EvalError).message).toMatch(re);
  });

  it('rejects bytes that are not UTF-8 with the line and offset, or replaces them with a warning', () => {
    const good = enc('{"prediction":"ok","reference":"ok"}\n');
    const bad = new Uint8Array([...good, ...enc('{"prediction":"caf'), 0xe9, ...enc('","reference":"x"}\n')]);
    expect(() => parseScoreInput(bad, { source: 'f.jsonl' })).toThrow(/f\.jsonl:2: bytes that are not valid UTF-8 at byte 18 of the line/);
    const p = parseScoreInput(bad, { source: 'f.jsonl', invalidUtf8: 'replace' });
    expect(p.examples[1].prediction).toBe('caf\ufffd');
    expect(p.warnings).toEqual(['f.jsonl:2: bytes that are not valid UTF-8 at byte 18 of the line; replaced with U+FFFD']);
    // overlong encodings and lone surrogates are invalid too
    expect(() => parseScoreInput(new Uint8Array([...enc('{"prediction":"'), 0xc0, 0xaf, ...enc('","reference":"x"}')]))).toThrow(/not valid UTF-8 at byte 15/);
    expect(() => parseScoreInput(new Uint8Array([...enc('{"prediction":"'), 0xed, 0xa0, 0x80, ...enc('","reference":"x"}')]))).toThrow(/not valid UTF-8/);
  });
});
