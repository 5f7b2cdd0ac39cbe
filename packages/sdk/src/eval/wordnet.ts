/**
 * A reader of the Princeton WordNet 3.0 dictionary files, doing what METEOR needs from NLTK's
 * `WordNetCorpusReader`: `synsets(word)` through `morphy` (exception lists, then the detachment rules,
 * applied repeatedly until a form is found), and each synset's lemma names.
 *
 * The files are the ones Debian's `wordnet-base` package installs in /usr/share/wordnet (index.noun,
 * data.noun, noun.exc, ... for noun, verb, adj, adv). Other places can be named with `dir` or the
 * LORA_WORDNET_DIR environment variable. Index and exception files are parsed when the reader is
 * opened (about 1 s); data lines are read on demand by byte offset.
 */
import { closeSync, existsSync, openSync, readFileSync, readSync, statSync } from 'node:fs';
import { join } from 'node:path';

import { EvalError } from './errors.js';

export type WordNetPos = 'n' | 'v' | 'a' | 'r';

const FILE_SUFFIX: Record<WordNetPos, string> = { n: 'noun', v: 'verb', a: 'adj', r: 'adv' };
/** NLTK's POS_LIST order. */
const POS_LIST: WordNetPos[] = ['n', 'v', 'a', 'r'];

const SUBSTITUTIONS: Record<WordNetPos, Array<[string, string]>> = {
  n: [['s', ''], ['ses', 's'], ['ves', 'f'], ['xes', 'x'], ['zes', 'z'], ['ches', 'ch'], ['shes', 'sh'], ['men', 'man'], ['ies', 'y']],
  v: [['s', ''], ['ies', 'y'], ['es', 'e'], ['es', ''], ['ed', 'e'], ['ed', ''], ['ing', 'e'], ['ing', '']],
  a: [['er', ''], ['est', ''], ['er', 'e'], ['est', 'e']],
  r: [],
};

/** Where WordNet is looked for when no directory is given, in order. */
export const WORDNET_SEARCH_PATHS: readonly string[] = [
  '/usr/share/wordnet',
  '/usr/share/wordnet/dict',
  '/usr/local/share/wordnet',
  '/usr/local/share/wordnet/dict',
  '/usr/local/WordNet-3.0/dict',
  '/opt/homebrew/share/wordnet/dict',
];

export const WORDNET_INSTALL_HINT =
  "install WordNet 3.0's dictionary files, e.g. `apt-get install wordnet-base` (Debian/Ubuntu: files land in " +
  '/usr/share/wordnet), or point LORA_WORDNET_DIR at a directory holding index.noun, data.noun, noun.exc, ... ' +
  "for noun/verb/adj/adv; or score METEOR without the synonym stage (synonyms: false / --no-synonyms)";

function requiredFiles(dir: string): string[] {
  const out: string[] = [];
  for (const s of Object.values(FILE_SUFFIX)) out.push(join(dir, `index.${s}`), join(dir, `data.${s}`), join(dir, `${s}.exc`));
  return out;
}

/** The directory that holds a complete WordNet, or undefined. */
export function findWordNetDir(dir?: string): string | undefined {
  const candidates: string[] = [];
  if (dir) candidates.push(dir, join(dir, 'dict'));
  else {
    const env = process.env.LORA_WORDNET_DIR;
    if (env) candidates.push(env, join(env, 'dict'));
    const wnhome = process.env.WNHOME;
    if (wnhome) candidates.push(join(wnhome, 'dict'));
    candidates.push(...WORDNET_SEARCH_PATHS);
  }
  return candidates.find((d) => requiredFiles(d).every((f) => existsSync(f)));
}

export class WordNet {
  readonly dir: string;
  /** lemma -> pos -> synset offsets (adjective satellites share the adjective entries, as in NLTK). */
  private readonly index = new Map<string, Map<WordNetPos, number[]>>();
  private readonly exceptions: Record<WordNetPos, Map<string, string[]>> = { n: new Map(), v: new Map(), a: new Map(), r: new Map() };
  private readonly fds = new Map<WordNetPos, { fd: number; size: number }>();
  private readonly synsetCache = new Map<string, string[]>();
  private readonly synonymCache = new Map<string, Set<string>>();

  private constructor(dir: string) {
    this.dir = dir;
    for (const pos of POS_LIST) {
      const suffix = FILE_SUFFIX[pos];
      this.loadIndex(join(dir, `index.${suffix}`));
      this.loadExceptions(pos, join(dir, `${suffix}.exc`));
    }
  }

  /** Opens WordNet from `dir` (or the search path); throws E_WORDNET_MISSING saying what to install. */
  static open(dir?: string): WordNet {
    const found = findWordNetDir(dir);
    if (!found) {
      const where = dir ? `in ${dir}` : `in LORA_WORDNET_DIR or ${WORDNET_SEARCH_PATHS.join(', ')}`;
      throw new EvalError('E_WORDNET_MISSING', `WordNet data not found ${where}: ${WORDNET_INSTALL_HINT}`);
    }
    return new WordNet(found);
  }

  private loadIndex(file: string): void {
    const text = readFileSync(file, 'utf8');
    let lineNo = 0;
    for (const line of text.split('\n')) {
      lineNo++;
      if (line.length === 0 || line.startsWith(' ')) continue;
      const f = line.split(/\s+/).filter((x) => x.length > 0);
      const lemma = f[0];
      const pos = f[1] as WordNetPos;
      const nSynsets = Number(f[2]);
      const nPointers = Number(f[3]);
      const start = 4 + nPointers + 2;
      const offsets = f.slice(start, start + nSynsets).map(Number);
      if (!(nSynsets > 0) || offsets.length !== nSynsets || offsets.some((o) => !Number.isInteger(o)) || !Object.hasOwn(FILE_SUFFIX, pos)) {
        throw new EvalError('E_WORDNET_FORMAT', `WordNet: ${file}, line ${lineNo} does not parse as an index entry`);
      }
      let byPos = this.index.get(lemma);
      if (!byPos) this.index.set(lemma, (byPos = new Map()));
      byPos.set(pos, offsets);
    }
  }

  private loadExceptions(pos: WordNetPos, file: string): void {
    const map = this.exceptions[pos];
    for (const line of readFileSync(file, 'utf8').split('\n')) {
      const terms = line.split(/\s+/).filter((x) => x.length > 0);
      if (terms.length > 0) map.set(terms[0], terms.slice(1));
    }
  }

  private has(form: string, pos: WordNetPos): boolean {
    return this.index.get(form)?.has(pos) ?? false;
  }

  /** NLTK's `_morphy(form, pos)`: base forms of `form` that WordNet lists for `pos`. */
  morphy(form: string, pos: WordNetPos, checkExceptions = true): string[] {
    const subs = SUBSTITUTIONS[pos];
    const applyRules = (forms: string[]): string[] => {
      const out: string[] = [];
      const seen = new Set<string>();
      for (const f of forms) {
        for (const [old, rep] of subs) {
          if (f.endsWith(old)) {
            const g = f.slice(0, f.length - old.length) + rep;
            // Duplicates only repeat work: the result is filtered through a set below.
            if (!seen.has(g)) {
              seen.add(g);
              out.push(g);
            }
          }
        }
      }
      return out;
    };
    const filter = (forms: string[]): string[] => {
      const out: string[] = [];
      for (const f of forms) if (this.has(f, pos) && !out.includes(f)) out.push(f);
      return out;
    };
    if (checkExceptions) {
      const exc = this.exceptions[pos].get(form);
      if (exc) return filter([form, ...exc]);
    }
    let forms = applyRules([form]);
    const first = filter([form, ...forms]);
    if (first.length > 0) return first;
    while (forms.length > 0) {
      forms = applyRules(forms);
      const r = filter(forms);
      if (r.length > 0) return r;
    }
    return [];
  }

  private dataLine(pos: WordNetPos, offset: number): string {
    let h = this.fds.get(pos);
    if (!h) {
      const file = join(this.dir, `data.${FILE_SUFFIX[pos]}`);
      h = { fd: openSync(file, 'r'), size: statSync(file).size };
      this.fds.set(pos, h);
    }
    const chunks: Buffer[] = [];
    let at = offset;
    for (;;) {
      const buf = Buffer.alloc(4096);
      const n = readSync(h.fd, buf, 0, buf.length, at);
      if (n <= 0) break;
      const nl = buf.subarray(0, n).indexOf(10);
      if (nl >= 0) {
        chunks.push(buf.subarray(0, nl));
        break;
      }
      chunks.push(buf.subarray(0, n));
      at += n;
    }
    return Buffer.concat(chunks).toString('utf8');
  }

  /** Lemma names of the synset at `offset` of `pos`'s data file, syntactic markers like "(a)" removed. */
  lemmaNames(pos: WordNetPos, offset: number): string[] {
    const key = `${pos}${offset}`;
    const hit = this.synsetCache.get(key);
    if (hit) return hit;
    const line = this.dataLine(pos, offset);
    const f = line.split('|')[0].split(/\s+/).filter((x) => x.length > 0);
    if (Number(f[0]) !== offset) {
      throw new EvalError('E_WORDNET_FORMAT', `WordNet: no synset at offset ${offset} of data.${FILE_SUFFIX[pos]}`);
    }
    const nLemmas = parseInt(f[3], 16);
    const names: string[] = [];
    for (let i = 0; i < nLemmas; i++) {
      const raw = f[4 + 2 * i];
      const m = /^(.*?)(\(.*\))?$/s.exec(raw);
      names.push(m ? m[1] : raw);
    }
    this.synsetCache.set(key, names);
    return names;
  }

  /** For every synset of `word` (NLTK's `wordnet.synsets(word)`, all parts of speech), its lemma names. */
  synsetLemmaNames(word: string): string[][] {
    const lemma = word.toLowerCase();
    const out: string[][] = [];
    for (const pos of POS_LIST) {
      for (const form of this.morphy(lemma, pos)) {
        for (const offset of this.index.get(form)?.get(pos) ?? []) out.push(this.lemmaNames(pos, offset));
      }
    }
    return out;
  }

  /**
   * The set NLTK's METEOR matches against: the lemma names without '_' of all synsets of `word`,
   * plus the word itself.
   */
  synonyms(word: string): Set<string> {
    const hit = this.synonymCache.get(word);
    if (hit) return hit;
    const set = new Set<string>();
    for (const names of this.synsetLemmaNames(word)) for (const n of names) if (!n.includes('_')) set.add(n);
    set.add(word);
    if (this.synonymCache.size > 200_000) this.synonymCache.clear();
    this.synonymCache.set(word, set);
    return set;
  }

  /** Closes the data files; the reader opens them again if used afterwards. */
  close(): void {
    for (const { fd } of this.fds.values()) closeSync(fd);
    this.fds.clear();
  }
}

const opened = new Map<string, WordNet>();

/** A WordNet reader shared per directory (opening one parses ~10 MB of index files). */
export function loadWordNet(dir?: string): WordNet {
  const found = findWordNetDir(dir);
  const key = found ?? `missing:${dir ?? ''}`;
  let wn = opened.get(key);
  if (!wn) {
    wn = WordNet.open(dir);
    opened.set(key, wn);
  }
  return wn;
}
