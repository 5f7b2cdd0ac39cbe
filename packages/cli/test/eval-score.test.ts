// `lora eval score`: runs the built CLI (dist/main.js) on JSONL files written by the test.
import { spawnSync } from 'node:child_process';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

import { describe, expect, it } from 'vitest';

const cli = join(dirname(fileURLToPath(import.meta.url)), '..', 'dist', 'main.js');
const dir = mkdtempSync(join(tmpdir(), 'lora-eval-score-'));

function file(name: string, content: string | Uint8Array): string {
  const p = join(dir, name);
  writeFileSync(p, content);
  return p;
}

function lora(...args: string[]): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8', env: { ...process.env } });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

// sacreBLEU's README example as JSONL, with both reference layouts
const README = file(
  'readme.jsonl',
  [
    { prediction: 'The dog bit the man.', references: ['The dog bit the man.', 'The dog had bit the man.'] },
    { prediction: "It wasn't surprising.", references: ['It was not unexpected.', 'No one was surprised.'] },
    { prediction: 'The man had just bitten him.', references: ['The man bit him first.', 'The man had bitten the dog.'] },
  ]
    .map((o) => JSON.stringify(o))
    .join('\n'),
);

describe('lora eval score', () => {
  it('prints corpus BLEU as sacreBLEU does and mean ROUGE/METEOR as a table', () => {
    const r = lora('eval', 'score', '--input', README, '--no-synonyms');
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(/^lora eval score: 3 examples from /);
    expect(r.stdout).toMatch(/BLEU +48\.53 +82\.4\/50\.0\/45\.5\/37\.5 \(BP = 0\.943 ratio = 0\.944 hyp_len = 17 ref_len = 18\) nrefs:2\|case:mixed\|eff:no\|tok:13a\|smooth:exp/);
    for (const m of ['ROUGE-1 F', 'ROUGE-2 F', 'ROUGE-L F', 'ROUGE-Lsum F', 'METEOR']) expect(r.stdout).toContain(m);
  });

  it('prints one JSON object with corpus and per-example scores with --json', () => {
    const r = lora('eval', 'score', '--input', README, '--json', '--no-synonyms', '--metrics', 'bleu,rouge,meteor');
    expect(r.status).toBe(0);
    const out = JSON.parse(r.stdout);
    expect(out.corpus.bleu.score).toBeCloseTo(48.530827, 6);
    expect(out.corpus.bleu.counts).toEqual([14, 7, 5, 3]);
    expect(out.examples).toHaveLength(3);
    expect(out.examples[0]).toMatchObject({ index: 0, line: 1 });
    expect(out.examples[0].sentenceBleu).toBeCloseTo(100, 8);
    expect(Object.keys(out.examples[1].rouge)).toEqual(['rouge1', 'rouge2', 'rougeL', 'rougeLsum']);
    expect(Object.keys(out.examples[1].rouge.rouge1)).toEqual(['p', 'r', 'f']);
    expect(typeof out.examples[2].meteor).toBe('number');
  });

  it('tokenizes METEOR input with NLTK word_tokenize by default, or on whitespace', () => {
    const f = file('punct.jsonl', JSON.stringify({ prediction: 'The cat sat.', reference: 'The cat sat' }));
    const tb = JSON.parse(lora('eval', 'score', '--input', f, '--json', '--metrics', 'meteor', '--no-synonyms').stdout);
    const ws = JSON.parse(lora('eval', 'score', '--input', f, '--json', '--metrics', 'meteor', '--no-synonyms', '--meteor-tokenize', 'whitespace').stdout);
    expect(tb.examples[0].meteor).toBeGreaterThan(ws.examples[0].meteor);
    expect(lora('eval', 'score', '--input', f, '--meteor-tokenize', 'moses').status).toBe(2);
  });

  it('applies --metrics and --stemmer', () => {
    const f = file('stem.jsonl', JSON.stringify({ prediction: 'the cats were running', reference: 'the cat was runs' }));
    const plain = JSON.parse(lora('eval', 'score', '--input', f, '--json', '--metrics', 'rouge').stdout);
    const stemmed = JSON.parse(lora('eval', 'score', '--input', f, '--json', '--metrics', 'rouge', '--stemmer').stdout);
    expect(plain.corpus.bleu).toBeUndefined();
    expect(plain.corpus.meteor).toBeUndefined();
    expect(stemmed.corpus.rouge.rouge1.f).toBeGreaterThan(plain.corpus.rouge.rouge1.f);
  });

  it('scores empty predictions and references 0 with a note instead of dropping them', () => {
    const f = file('empty.jsonl', ['{"prediction":"the cat","reference":"the cat"}', '{"prediction":"","reference":"a dog"}', '{"prediction":"a dog","reference":""}'].join('\n'));
    const table = lora('eval', 'score', '--input', f, '--no-synonyms');
    expect(table.status).toBe(0);
    expect(table.stdout).toMatch(/3 examples/);
    expect(table.stdout).toMatch(/example 1 \(line 2\): empty prediction: scored 0/);
    expect(table.stdout).toMatch(/example 2 \(line 3\): empty reference: scored 0/);
    const json = JSON.parse(lora('eval', 'score', '--input', f, '--no-synonyms', '--json').stdout);
    expect(json.examples.map((e: { meteor: number }) => e.meteor)).toEqual([expect.any(Number), 0, 0]);
    expect(json.corpus.emptyPredictions).toBe(1);
    expect(json.corpus.emptyReferences).toBe(1);
  });

  it('names the line of malformed JSON and of missing fields', () => {
    const bad = file('bad.jsonl', '{"prediction":"a","reference":"a"}\n{"prediction":"a", reference:"a"}\n');
    const r = lora('eval', 'score', '--input', bad);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/bad\.jsonl:2: malformed JSON/);
    expect(r.stderr).not.toMatch(/at .*\.js:\d+/);
    const missing = file('missing.jsonl', '{"prediction":"a"}\n');
    expect(lora('eval', 'score', '--input', missing).stderr).toMatch(/missing\.jsonl:1: missing field "reference"/);
  });

  it('rejects non-UTF-8 input by default and replaces it with a warning on request', () => {
    const bytes = Buffer.concat([Buffer.from('{"prediction":"caf'), Buffer.from([0xe9]), Buffer.from('","reference":"cafe"}\n')]);
    const f = file('latin1.jsonl', bytes);
    const r = lora('eval', 'score', '--input', f, '--no-synonyms');
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/latin1\.jsonl:1: bytes that are not valid UTF-8 at byte 18 of the line/);
    expect(r.stderr).toMatch(/--replace-invalid-utf8/);
    const ok = lora('eval', 'score', '--input', f, '--no-synonyms', '--replace-invalid-utf8', '--json');
    expect(ok.status).toBe(0);
    expect(ok.stderr).toMatch(/warning: .*latin1\.jsonl:1: .*replaced with U\+FFFD/);
    expect(JSON.parse(ok.stdout).warnings).toHaveLength(1);
  });

  it('says what to install when METEOR needs WordNet and it is not there', () => {
    const empty = mkdtempSync(join(tmpdir(), 'no-wordnet-'));
    const r = lora('eval', 'score', '--input', README, '--wordnet', empty);
    expect(r.status).toBe(1);
    expect(r.stderr).toMatch(/WordNet data not found in .*apt-get install wordnet-base/);
    expect(r.stderr).toMatch(/--no-synonyms/);
  });

  it('rejects bad usage with exit code 2 and the usage line', () => {
    for (const args of [['eval'], ['eval', 'frob'], ['eval', 'score'], ['eval', 'score', '--input', README, '--metrics', 'bleu,cider'], ['eval', 'score', '--input', README, '--tokenize', 'moses'], ['eval', 'score', '--bogus']]) {
      const r = lora(...args);
      expect(r.status, args.join(' ')).toBe(2);
      expect(r.stderr).toMatch(/usage: lora eval score/);
    }
    const nofile = lora('eval', 'score', '--input', join(dir, 'nope.jsonl'));
    expect(nofile.status).toBe(1);
    expect(nofile.stderr).toMatch(/cannot read .*nope\.jsonl: no such file/);
    const blank = lora('eval', 'score', '--input', file('blank.jsonl', '\n\n'));
    expect(blank.status).toBe(1);
    expect(blank.stderr).toMatch(/holds no examples/);
  });
});
