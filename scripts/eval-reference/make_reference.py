#!/usr/bin/env python3
"""Reference values for lora's metric tests, computed with NLTK itself.

Writes packages/sdk/test/fixtures/eval/nltk-reference.json with
  - porter:   stems of a few thousand words in NLTK's three PorterStemmer modes;
  - wordnet:  the synonym sets NLTK's METEOR builds (lemma names without '_' of wordnet.synsets(w), plus w);
  - meteor:   nltk.translate.meteor_score.meteor_score on example pairs (with and without the
              WordNet stage), tokenised with str.split() and scored with the default alpha/beta/gamma,
              and tokenised with word_tokenize(preserve_line=True) ('meteor_treebank');
  - treebank: NLTKWordTokenizer tokens (word_tokenize(text, preserve_line=True)) of assorted strings.

Needs Debian's python3-nltk (3.8) and wordnet-base (WordNet 3.0 in /usr/share/wordnet):
    apt-get install -y python3-nltk wordnet-base
    /usr/bin/python3 scripts/eval-reference/make_reference.py

sacreBLEU and rouge-score are not packaged by Debian, so their reference values are pinned in the
tests from those projects' own test suites instead (see the comments there).
"""
import json
import os
import random
import sys
import tempfile

import nltk
from nltk.corpus.reader.wordnet import WordNetCorpusReader
from nltk.stem.porter import PorterStemmer
from nltk.tokenize import word_tokenize
from nltk.translate.meteor_score import meteor_score

WORDNET = os.environ.get("WORDNET_DIR", "/usr/share/wordnet")
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
OUT = os.path.join(ROOT, "packages", "sdk", "test", "fixtures", "eval", "nltk-reference.json")

# Debian's wordnet-base has every dictionary file but 'lexnames', which NLTK's reader insists on
# opening; the lexicographer file names do not affect lemma names, so a standard list is written.
LEXNAMES = (
    "adj.all adj.pert adv.all noun.Tops noun.act noun.animal noun.artifact noun.attribute noun.body "
    "noun.cognition noun.communication noun.event noun.feeling noun.food noun.group noun.location "
    "noun.motive noun.object noun.person noun.phenomenon noun.plant noun.possession noun.process "
    "noun.quantity noun.relation noun.shape noun.state noun.substance noun.time verb.body verb.change "
    "verb.cognition verb.communication verb.competition verb.consumption verb.contact verb.creation "
    "verb.emotion verb.motion verb.perception verb.possession verb.social verb.stative verb.weather adj.ppl"
).split()


def open_wordnet():
    root = tempfile.mkdtemp(prefix="wn-")
    for name in os.listdir(WORDNET):
        os.symlink(os.path.join(WORDNET, name), os.path.join(root, name))
    with open(os.path.join(root, "lexnames"), "w") as f:
        for i, name in enumerate(LEXNAMES):
            f.write("%02d\t%s\t%d\n" % (i, name, {"adj": 3, "adv": 4, "noun": 1, "verb": 2}[name.split(".")[0]]))
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return WordNetCorpusReader(root, None)


class NoWordNet:
    """Stands in for WordNet to run METEOR's exact + stem stages only."""

    def synsets(self, word):
        return []


def index_lemmas(pos, every):
    out = []
    with open(os.path.join(WORDNET, "index." + pos)) as f:
        for i, line in enumerate(f):
            if line.startswith(" "):
                continue
            if i % every == 0:
                w = line.split()[0]
                if "_" not in w:
                    out.append(w)
    return out


def porter_words(rng):
    words = set()
    for pos, every in (("noun", 60), ("verb", 12), ("adj", 30), ("adv", 8)):
        words.update(index_lemmas(pos, every))
    base = sorted(words)
    suffixes = ["s", "es", "ies", "ed", "ied", "ing", "ly", "ness", "ational", "tional", "ization", "fulness",
                "alli", "logi", "bli", "ement", "ance", "ible", "ize", "er", "est", "eed", "y", "ll", "fulli"]
    for w in rng.sample(base, 400):
        words.add(w + rng.choice(suffixes))
    words.update(["caresses", "ponies", "ties", "caress", "cats", "feed", "agreed", "plastered", "bled",
                  "motoring", "sing", "conflated", "troubled", "sized", "hopping", "tanned", "falling",
                  "hissing", "fizzed", "failing", "filing", "happy", "sky", "skies", "dying", "lying",
                  "tying", "news", "innings", "outings", "cannings", "howe", "proceed", "exceed", "succeed",
                  "relational", "conditional", "rational", "valenci", "hesitanci", "digitizer", "conformabli",
                  "radicalli", "differentli", "vileli", "analogousli", "vietnamization", "predication",
                  "operator", "feudalism", "decisiveness", "hopefulness", "callousness", "formaliti",
                  "sensitiviti", "sensibiliti", "triplicate", "formative", "formalize", "electriciti",
                  "electrical", "hopeful", "goodness", "revival", "allowance", "inference", "airliner",
                  "gyroscopic", "adjustable", "defensible", "irritant", "replacement", "adjustment",
                  "dependent", "adoption", "homologou", "communism", "activate", "angulariti", "homologous",
                  "effective", "bowdlerize", "probate", "rate", "cease", "controll", "roll", "generously",
                  "ied", "died", "cried", "spied", "ies", "a", "is", "as", "by", "yy", "y", "ay", "oy",
                  "abyss", "syzygy", "rhythm", "crying", "flying", "queueing", "Generalizations", "RUNNING",
                  "Skies", "café", "naïve", "über", "straße", "x1", "b2b", "e-mail", "don't", "co-operate",
                  "", "ss", "sss", "eed", "ing", "ed", "alli", "logi", "fully"])
    return sorted(words)


def synonym_words(rng, wn):
    words = set()
    for pos, every in (("noun", 300), ("verb", 60), ("adj", 150), ("adv", 40)):
        words.update(index_lemmas(pos, every))
    words = set(rng.sample(sorted(words), min(400, len(words))))
    # inflected forms, exception-list entries and stems, which METEOR's third stage really sees
    words.update(["geese", "ran", "better", "best", "went", "children", "mice", "feet", "bigger", "happiest",
                  "dogs", "boxes", "churches", "wolves", "women", "flies", "running", "hoped", "hopping",
                  "guide", "guiding", "principle", "ensures", "guarantees", "military", "army", "forces",
                  "obeys", "heed", "commands", "directions", "party", "activity", "guidebook", "insure",
                  "troops", "hearing", "forever", "always", "direct", "action", "practical", "cat", "kitten",
                  "happili", "gener", "relat", "condit", "ensur", "guarante", "militari", "forc", "obey",
                  "command", "direct", "activ", "sss", "ssssssss", "xyzzy", "12", "u.s.", "car", "auto",
                  "automobile", "big", "large", "quick", "fast", "rapid", "say", "tell", "talk", "speak"])
    return sorted(words)


def synonyms(wn, word):
    from itertools import chain
    return sorted(set(chain.from_iterable(
        (lemma.name() for lemma in synset.lemmas() if lemma.name().find("_") < 0)
        for synset in wn.synsets(word))).union({word}))


def meteor_cases(rng):
    h1 = "It is a guide to action which ensures that the military always obeys the commands of the party"
    h2 = "It is to insure the troops forever hearing the activity guidebook that party direct"
    r1 = "It is a guide to action that ensures that the military will forever heed Party commands"
    r2 = "It is the guiding principle which guarantees the military forces always being under the command of the Party"
    r3 = "It is the practical guide for the army always to heed the directions of the party"
    cases = [
        ("nltk-doctest-single", h1, [r1]),
        ("nltk-doctest-multi-h1", h1, [r1, r2, r3]),
        ("nltk-doctest-multi-h2", h2, [r1, r2, r3]),
        ("nltk-doctest-h2-r1", h2, [r1]),
        ("nltk-doctest-h2-r2", h2, [r2]),
        ("nltk-doctest-h2-r3", h2, [r3]),
        ("nltk-doctest-no-match", "non matching hypothesis", ["this is a cat"]),
        ("sacrebleu-readme-1", "The dog bit the man.", ["The dog bit the man.", "The dog had bit the man."]),
        ("sacrebleu-readme-2", "It wasn't surprising.", ["It was not unexpected.", "No one was surprised."]),
        ("sacrebleu-readme-3", "The man had just bitten him.", ["The man bit him first.", "The man had bitten the dog."]),
        ("rouge-readme", "The quick brown dog jumps on the log.", ["The quick brown fox jumps over the lazy dog"]),
        ("code-1", "def add(a, b): return a + b", ["def add(x, y):\n    return x + y"]),
        ("code-2", "for i in range(10): print(i)", ["for (let i = 0; i < 10; i++) console.log(i);"]),
        ("code-3", "SELECT name FROM users WHERE id = 1;", ["SELECT name FROM users WHERE id=1"]),
        ("empty-hypothesis", "", ["a reference"]),
        ("empty-reference", "a hypothesis", [""]),
        ("both-empty", "", [""]),
        ("unicode-1", "Producția de zahăr primă va fi exprimată în ceea ce privește zahărul alb;",
         ["producţia de zahăr brut se exprimă în zahăr alb;"]),
        ("unicode-2", "Die Katze sitzt auf der Matte 🐈", ["Die KATZE saß auf der Matte"]),
        ("unicode-3", "東京は 日本の 首都です", ["東京は 日本の 首都"]),
        ("case", "THE CAT SAT ON THE MAT", ["the cat sat on the mat"]),
        ("repeats", "the the the the cat", ["the cat the mat the"]),
        ("stems", "the runners were running quickly and happily", ["a runner runs quick and happy"]),
        ("synonyms", "the big car was quick", ["the large automobile was fast"]),
    ]
    vocab = ("the a cat dog sat sits sitting on mat mats big large small little car auto automobile quick fast "
             "rapid run runs running ran say said tell told speak talk house home guide guiding command commands "
             "party army military forces always forever heed obey obeys of to is was be").split()
    for k in range(60):
        n = rng.randint(1, 14)
        hyp = " ".join(rng.choice(vocab) for _ in range(n))
        refs = [" ".join(rng.choice(vocab) for _ in range(rng.randint(1, 14))) for _ in range(rng.randint(1, 3))]
        cases.append(("random-%d" % k, hyp, refs))
    return cases


def wt(text):
    return word_tokenize(text, preserve_line=True)


def main():
    rng = random.Random(20240606)
    wn = open_wordnet()
    out = {
        "generator": "scripts/eval-reference/make_reference.py",
        "nltk": nltk.__version__,
        "wordnet": wn.get_version(),
        "tokenization": "str.split()",
    }
    words = porter_words(rng)
    out["porter"] = {
        "words": words,
        "NLTK_EXTENSIONS": [PorterStemmer(PorterStemmer.NLTK_EXTENSIONS).stem(w) for w in words],
        "MARTIN_EXTENSIONS": [PorterStemmer(PorterStemmer.MARTIN_EXTENSIONS).stem(w) for w in words],
        "ORIGINAL_ALGORITHM": [PorterStemmer(PorterStemmer.ORIGINAL_ALGORITHM).stem(w) for w in words],
    }
    out["wordnet_synonyms"] = {w: synonyms(wn, w) for w in synonym_words(rng, wn)}
    meteor = []
    for name, hyp, refs in meteor_cases(rng):
        h = hyp.split()
        rs = [r.split() for r in refs]
        meteor.append({
            "name": name,
            "hypothesis": hyp,
            "references": refs,
            "meteor": meteor_score(rs, h, wordnet=wn),
            "meteor_no_synonyms": meteor_score(rs, h, wordnet=NoWordNet()),
            "meteor_alpha_beta_gamma": meteor_score(rs, h, wordnet=wn, alpha=0.85, beta=0.2, gamma=0.6),
            "meteor_treebank": meteor_score([wt(r) for r in refs], wt(hyp), wordnet=wn),
        })
    out["meteor"] = meteor
    texts = [c[1] for c in meteor_cases(random.Random(1))] + [r for c in meteor_cases(random.Random(1)) for r in c[2]]
    texts += [
        'Good muffins cost $3.88 (roughly 3,36 euros)\nin New York.  Please buy me\ntwo of them.\nThanks.',
        "They'll save and invest more. I cannot go; you gotta gimme 'em! \"Quoted\" text, 'single' -- dash...",
        "Hello: world, 1,000 and 3:45 -- 'tis and 'twas; what's up? wanna go d'ye more'n lemme gonna",
        "«Guillemets» “curly” ‘quotes’ „low” don't WON'T I'm we'd you've they're",
        "x = f(a[0], {b: 1}) <tag> * 2 ** 3 @user #tag 50% & co.",
        "Ends with colon:\n", "ends with period.\n", "Ünïcödé wörds… and 東京は首都です。", "", "   ", "''quoted''", '"start',
    ]
    seen = set()
    out["treebank"] = []
    for t in texts:
        if t in seen:
            continue
        seen.add(t)
        out["treebank"].append({"text": t, "tokens": wt(t)})
    with open(OUT, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=1)
        f.write("\n")
    print("wrote %s: %d stems, %d synonym sets, %d METEOR cases" % (OUT, len(words), len(out["wordnet_synonyms"]), len(meteor)))


if __name__ == "__main__":
    sys.exit(main())
