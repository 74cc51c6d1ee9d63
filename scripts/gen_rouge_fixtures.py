#!/usr/bin/env python3
"""Fixtures for crates/train/src/rouge.rs: Google rouge-score's own numbers and NLTK's stems.

Run with a venv holding rouge-score 0.1.2 and nltk (both from PyPI):

    python3 -m venv .venv && .venv/bin/pip install rouge-score nltk
    .venv/bin/python scripts/gen_rouge_fixtures.py \
        [--data ../shared/data/gigaword] [--out crates/train/tests/fixtures/rouge_score.json]

What it writes (one JSON file, one item per line):
- `examples`: hypothesis/references items with rouge-score's P, R, F for rouge1, rouge2 and
  rougeL (`RougeScorer(['rouge1', 'rouge2', 'rougeL'], use_stemmer=stemmer)`; one reference:
  `score(target=ref, prediction=hyp)`, several: `score_multi(refs, hyp)`). The realistic ones
  are synthetic sentences drawn from the Gigaword test vocabulary (no test sentence is copied)
  and perturbed with a seeded RNG (dropped, swapped, repeated, replaced or inflected words,
  capitalisation, punctuation, `#` digits, `UNK`/`<unk>`); multi-reference items mimic DUC
  (four mixed-case, untokenised references); a few are long (hundreds of words); the rest are
  hand-written edge cases (empty and whitespace-only texts, punctuation only, Unicode,
  repeated words, numbers, single tokens). Most items are scored with and without stemming.
- `corpus`: named subsets with the mean of the per-example P, R and F (Python's `sum()/n`).
- `tokenize`: [text, tokens with stemmer, tokens without] for the edge texts and a sample of
  the rest (`rouge_score.tokenize.tokenize`).
- `stems`: [word, PorterStemmer().stem(word)] for every distinct whitespace word and every
  rouge-score token of the Gigaword test documents and summaries, and a list of words that
  exercise NLTK's special cases (irregular forms, each step's rules, case, Unicode).
"""
import argparse
import json
import random
from pathlib import Path

import nltk
from nltk.stem.porter import PorterStemmer
from rouge_score import rouge_scorer, tokenize

SEED = 20261203
TYPES = ["rouge1", "rouge2", "rougeL"]

# Words that hit NLTK's deviations from Porter's paper, each step's rules, and odd inputs.
TRICKY = """
generously sensational agreed feed feeds agreement dying lying tying skies sky news proceed
exceed succeed proceeding exceeded succeeds innings inning outings outing cannings canning
howe dies died spied flies ties tied cries cried happy enjoy enjoyment spy fly try tries
controlling controll roll rolling falling hissing fizzed hopping tanned failing filing
conflated troubled sized relational conditional rational valenci hesitanci digitizer
conformabli radicalli differentli vileli analogousli vietnamization predication operator
feudalism decisiveness hopefulness callousness formaliti sensitiviti sensibiliti triplicate
formative formalize electriciti electrical hopeful goodness revival allowance inference
airliner gyroscopic adjustable defensible irritant replacement adjustment dependent adoption
homologou communism activate angulariti homologous effective bowdlerize probate rate cease
geology theology archaeology philology apology analogi beautifulli hopefulli finally
generally really syzygy toy toys yyyy yyyyy y by ay ays yays yes oed ied eed ing ed sing
singing bled plastered motoring caresses ponies caress cats ss s is as us bus gas this ions
onion lion nation national generalization generalizations oscillators abilities skating dated
owed aed ued 1990s 1234 a1b2 4ing 2nds x-ray don't u.s. 's n't #### ##th -lrb- -rrb- <unk>
unk UNK Running RUNNING MeN GENEROUSLY Skies DYING ab AB abc allied rallied tallied bullied
fulli carefulli beautifully cheerfully anomalli generalli totalli ideally really equally
orally e ee eee eeee ll lll llll sses ssss ies iies alli logi ational tional izer biliti
ization ement ment ent ion sion tion ou ism ate iti ous ive ize ative alize iciti ical ful
ness icate eful nessful mississippi conspiracies possibilities responsibilities universities
communities opportunities activities authorities securities qualities utilities capabilities
""".split()

UNICODE_WORDS = ["İstanbul", "İİİ", "\u212aelvin", "ÅNGSTRÖM", "Straße", "naïve", "café", "ΟΔΟΣ",
                 "ﬁnancial", "Ǆemal", "ǅungla", "ΣΊΣΥΦΟΣ", "dŽ", "über", "ÉCOLE", "résumés"]

EDGE = [
    # (hypothesis, [references...])
    ("", ["police arrest five protesters"]),
    ("police arrest five protesters", [""]),
    ("", [""]),
    ("   \t\n ", ["someone is there"]),
    ("someone is there", ["  \n  "]),
    ("!!! ... --- ???", ["police arrest protesters"]),
    ("police arrest protesters", ["-lrb- -rrb- ... ,"]),
    ("... , ; : ' ''", ["`` '' -- ."]),
    ("#", ["#"]),
    ("## killed in ### attacks", ["# killed in #### attacks"]),
    ("#.# percent ##,### people ##-year-old", ["#.# percent of ##,### people"]),
    ("1990s 2,000 3.5 12.05.2020 100% 1st 2nd", ["1990s 2000 3 5 1st second"]),
    ("UNK wins UNK title", ["<unk> wins unk title"]),
    ("<unk> <unk> <unk>", ["UNK UNK"]),
    ("unk", ["<UNK>"]),
    ("Ünïcödé café naïve İstanbul", ["unicode cafe naive istanbul"]),
    ("東京は日本の首都です。", ["東京は日本の首都である。"]),
    ("我爱北京天安门 beijing", ["beijing 天安门"]),
    ("\u212a-pop \u212aelvin", ["k pop kelvin"]),
    ("ΟΔΟΣ Straße ﬁnancial", ["οδος strasse financial"]),
    ("I ❤️ 🍕 and 👨‍👩‍👧 emoji!", ["i love pizza and emoji"]),
    ("the the the the the the the", ["the cat is on the mat"]),
    ("police police police", ["police"]),
    ("police", ["police police police"]),
    ("a b a b a b", ["a b a b"]),
    ("a b c d e f", ["f e d c b a"]),
    ("a", ["a"]),
    ("a", ["b"]),
    ("police", ["police arrest"]),
    ("police arrest", ["police"]),
    ("was has its", ["wa ha it"]),
    ("the skies were dying generously", ["sky die generous"]),
    ("sensational agreed feeds proceeding", ["sensation agree feed proceed"]),
    ("long-haul flights resumed", ["long haul flight resume"]),
    ("POLICE ARREST FIVE", ["police arrest five"]),
    ("line one\nline two", ["line one line two"]),
    ("tab\tseparated\u00a0nbsp\u3000ideographic", ["tab separated nbsp ideographic"]),
    ("u.s. 's n't don't -lrb- afp -rrb-", ["us s nt dont afp"]),
    ("x", ["a much longer reference with many words in it ."]),
    ("a much longer hypothesis with many words in it and more and more words .", ["words"]),
]


def scorer(stem):
    return rouge_scorer.RougeScorer(TYPES, use_stemmer=stem)


def scores_of(hyp, refs, stem):
    sc = scorer(stem)
    s = sc.score(refs[0], hyp) if len(refs) == 1 else sc.score_multi(refs, hyp)
    return {t: [s[t].precision, s[t].recall, s[t].fmeasure] for t in TYPES}


SUFFIXES = ["s", "ed", "ing", "ly", "ies", "ness", "ation", "er", "ment", "al"]
PUNCT = [",", ".", "'s", "``", "''", "-lrb-", "-rrb-", ":", "--", "!", "?"]


def sentence(rng, frequent, vocab, lo, hi):
    n = rng.randint(lo, hi)
    return [rng.choice(frequent) if rng.random() < 0.55 else rng.choice(vocab) for _ in range(n)]


def perturb(words, rng, frequent, vocab):
    """A 'system output' for `words`: a few random edits, occasionally none or many."""
    words = list(words)
    for _ in range(rng.choice([0, 1, 2, 2, 3, 3, 4, 5, 7, 10])):
        op = rng.random()
        if op < 0.2 and len(words) > 1:
            del words[rng.randrange(len(words))]
        elif op < 0.35 and len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op < 0.5:
            words[rng.randrange(len(words))] = rng.choice(frequent if rng.random() < 0.5 else vocab)
        elif op < 0.6 and words:
            i = rng.randrange(len(words))
            words.insert(i, words[i])
        elif op < 0.75 and words:
            # Inflect: exercises the stemmer (these match only with use_stemmer=True).
            i = rng.randrange(len(words))
            w = words[i]
            words[i] = w[:-1] + rng.choice(SUFFIXES) if len(w) > 4 and rng.random() < 0.5 else w + rng.choice(SUFFIXES)
        elif op < 0.82:
            words.insert(rng.randrange(len(words) + 1), rng.choice(["UNK", "<unk>", "#", "##", "###,###", "#.#"]))
        elif op < 0.9:
            words.insert(rng.randrange(len(words) + 1), rng.choice(PUNCT))
        elif words:
            i = rng.randrange(len(words))
            words[i] = words[i].upper() if rng.random() < 0.5 else words[i].capitalize()
    return words


def duc_style(words, rng):
    """A mixed-case, untokenised reference like DUC's: capitalised, punctuation attached."""
    text = " ".join(w for w in words if w not in ("-lrb-", "-rrb-", "``", "''"))
    text = text.replace(" 's", "'s").replace(" ,", ",").replace(" n't", "n't")
    text = text[:1].upper() + text[1:]
    return text + rng.choice([".", "", "!", " ..."])


def main():
    ap = argparse.ArgumentParser()
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--data", default=str(root.parent / "shared/data/gigaword"))
    ap.add_argument("--out", default=str(root / "crates/train/tests/fixtures/rouge_score.json"))
    args = ap.parse_args()
    data = Path(args.data)

    rng = random.Random(SEED)
    counts = {}
    words_raw, words_tok = set(), set()
    for line in open(data / "test.jsonl", encoding="utf-8"):
        row = json.loads(line)
        for text in (row["document"], row["summary"]):
            for w in text.split():
                counts[w] = counts.get(w, 0) + 1
                words_raw.add(w)
            words_tok.update(tokenize.tokenize(text, None))
    by_freq = sorted(counts, key=lambda w: (-counts[w], w))
    frequent = by_freq[:300]
    vocab = sorted(words_raw)

    examples = []

    def add(hyp, refs, src, stems=(True, False)):
        idx = []
        for stem in stems:
            examples.append({"hyp": hyp, "refs": list(refs), "stemmer": stem, "src": src,
                             **scores_of(hyp, list(refs), stem)})
            idx.append(len(examples) - 1)
        return idx

    cases = {"edge": [], "single": [], "multi": [], "long": []}
    for hyp, refs in EDGE:
        cases["edge"] += add(hyp, refs, "edge")
    for j in range(180):
        ref = sentence(rng, frequent, vocab, 4, 16)
        if j % 3 == 0:
            hyp = sentence(rng, frequent, vocab, 6, 30)  # an unrelated lead-like hypothesis
            hyp[: len(ref) // 2] = perturb(ref[: len(ref) // 2], rng, frequent, vocab)
        else:
            hyp = perturb(ref, rng, frequent, vocab)
        stems = (True, False) if j % 3 == 1 else (True,)
        idx = add(" ".join(hyp), [" ".join(ref)], "synthetic", stems)
        cases["single"] += idx
    for j in range(50):
        base = sentence(rng, frequent, vocab, 6, 14)
        refs = [duc_style(perturb(base, rng, frequent, vocab), rng) for _ in range(4)]
        if j % 10 == 9:
            refs[2] = refs[0]  # duplicate references: ties go to the first (np.argmax)
        hyp = " ".join(perturb(base, rng, frequent, vocab))
        cases["multi"] += add(hyp, refs, "multi")
    for j in range(4):
        ref = sentence(rng, frequent, vocab, 100, 250)
        hyp = perturb(ref, rng, frequent, vocab) + sentence(rng, frequent, vocab, 20, 120)
        if j % 2:
            rng.shuffle(hyp)
        cases["long"] += add(" ".join(hyp), [" ".join(ref)], "long")

    def mean(idx):
        out = {"indices": idx, "stemmer": examples[idx[0]]["stemmer"]}
        assert all(examples[i]["stemmer"] == out["stemmer"] for i in idx)
        for t in TYPES:
            out[t] = [sum(examples[i][t][k] for i in idx) / len(idx) for k in range(3)]
        return out

    stem_of = {True: [], False: []}
    for name, idx in cases.items():
        for i in idx:
            stem_of[examples[i]["stemmer"]].append(i)
    corpus = {f"{name}_{'stem' if s else 'nostem'}": mean([i for i in idx if examples[i]["stemmer"] == s])
              for name, idx in cases.items() for s in (True, False)
              if any(examples[i]["stemmer"] == s for i in idx)}
    corpus["all_stem"] = mean(sorted(stem_of[True]))
    corpus["all_nostem"] = mean(sorted(stem_of[False]))

    porter = PorterStemmer()
    texts, seen = [], set()
    sample = [e for e in examples if e["src"] != "long"]
    for e in sample[:120]:
        for text in [e["hyp"], *e["refs"]]:
            if text not in seen:
                seen.add(text)
                texts.append(text)
    for text in [" ".join(TRICKY), " ".join(UNICODE_WORDS), "Caresses\u00a0PONIES\tgenerously-sensational"]:
        texts.append(text)
    tok_table = [[t, tokenize.tokenize(t, porter), tokenize.tokenize(t, None)] for t in texts]

    words = sorted(words_raw | words_tok) + TRICKY + UNICODE_WORDS
    stems, seen = [], set()
    for w in words:
        if w not in seen:
            seen.add(w)
            stems.append([w, porter.stem(w)])

    out = {
        "generator": "scripts/gen_rouge_fixtures.py",
        "rouge_score_version": "0.1.2",
        "nltk_version": nltk.__version__,
        "seed": SEED,
        "examples": examples,
        "corpus": corpus,
        "tokenize": tok_table,
        "stems": stems,
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    compact = dict(ensure_ascii=False, separators=(",", ":"))
    with open(args.out, "w", encoding="utf-8") as f:
        # One item per line: small diffs when the generator changes, and still compact.
        f.write("{\n")
        keys = list(out)
        for k, key in enumerate(keys):
            value = out[key]
            f.write(json.dumps(key) + ":")
            if isinstance(value, list):
                f.write("[\n" + ",\n".join(json.dumps(v, **compact) for v in value) + "\n]")
            elif isinstance(value, dict):
                f.write("{\n" + ",\n".join(json.dumps(n) + ":" + json.dumps(v, **compact) for n, v in value.items()) + "\n}")
            else:
                f.write(json.dumps(value, **compact))
            f.write(",\n" if k + 1 < len(keys) else "\n")
        f.write("}\n")
    size = Path(args.out).stat().st_size
    print(f"wrote {args.out} ({size // 1024} KiB): {len(examples)} examples, {len(corpus)} corpus cases, "
          f"{len(tok_table)} tokenizer texts, {len(stems)} stems")
    for name, c in corpus.items():
        print(f"  {name:16s} n={len(c['indices']):4d} " + " ".join(f"{t}={100 * c[t][2]:.4f}" for t in TYPES))


if __name__ == "__main__":
    main()
