#!/usr/bin/env python3
"""Fixtures for crates/train/src/bleu.rs: sacreBLEU's own numbers on realistic and edge-case data.

Run with the project venv (sacrebleu from PyPI is installed there):

    /work/main/.venv/bin/python scripts/gen_bleu_fixtures.py \
        [--data ../shared/data/multi30k/test.jsonl] [--out crates/train/tests/fixtures/bleu_sacrebleu.json]

What it writes (one JSON file):
- `pool`: hypothesis/references items. Most are Multi30k test sentences (English, some German)
  perturbed with a seeded RNG (drop/swap/replace/duplicate words, truncate, change case or
  punctuation) so BLEU is neither 0 nor 100; the rest are hand-written edge cases (empty lines,
  Unicode, punctuation, HTML entities, hyphen-newline, numbers, odd whitespace). Each item carries
  its sacreBLEU `sentence_bleu` (effective order, as `sacrebleu.sentence_bleu`) and sentence chrF.
- `cases`: named subsets of the pool (indices) with sacreBLEU's corpus BLEU statistics and chrF
  score and both signatures.
- `tokenize_13a`: [line, Tokenizer13a()(line)] for every distinct line in the pool plus extras.

Multiple references follow sacreBLEU's stream layout internally (None where a segment has fewer
references); the JSON stores them per segment.
"""
import argparse
import json
import random
from pathlib import Path

import sacrebleu
from sacrebleu.metrics import BLEU, CHRF
from sacrebleu.tokenizers.tokenizer_13a import Tokenizer13a

SEED = 20240613

FILLER = ["the", "a", "man", "woman", "dog", "is", "on", "in", "with", "red", "blue", "street",
          "running", "two", "people", "small", "big", "of", "and", "water", "ball", "child"]
FILLER_DE = ["der", "die", "das", "ein", "Mann", "Frau", "Hund", "ist", "auf", "im", "mit",
             "rot", "Straße", "läuft", "zwei", "Leute", "klein", "groß", "und", "Wasser", "Mädchen"]


def perturb(sentence, rng, filler):
    """A 'system output' for `sentence`: a few random edits, occasionally none or many."""
    words = sentence.split()
    if not words:
        return sentence
    n_edits = rng.choice([0, 1, 1, 2, 2, 3, 3, 4, 5, 7])
    for _ in range(n_edits):
        op = rng.random()
        if op < 0.25 and len(words) > 1:
            del words[rng.randrange(len(words))]
        elif op < 0.45 and len(words) > 1:
            i = rng.randrange(len(words) - 1)
            words[i], words[i + 1] = words[i + 1], words[i]
        elif op < 0.7:
            words[rng.randrange(len(words))] = rng.choice(filler)
        elif op < 0.8:
            i = rng.randrange(len(words))
            words.insert(i, words[i])
        elif op < 0.87 and len(words) > 3:
            words = words[: rng.randrange(2, len(words))]
        elif op < 0.93:
            i = rng.randrange(len(words))
            words[i] = words[i].lower() if rng.random() < 0.5 else words[i].capitalize()
        else:
            # Detach/strip the final period: exercises the tokenizer's punctuation rules.
            words[-1] = words[-1].rstrip(".") + rng.choice(["", " .", "!", "..."])
    return " ".join(words)


EDGE = [
    # (hypothesis, [references...])
    ("", ["A man is walking down the street."]),
    ("", ["Zwei Hunde spielen im Schnee."]),
    ("   ", ["Someone is there."]),
    ("A dog runs.", [""]),
    ("", [""]),
    ("The cat sat on the mat.", ["The cat sat on the mat."]),
    ("the the the the the the the", ["The cat is on the mat."]),
    ("Größere Straßen für Mädchen — „Zitat“ über Öl & Äpfel.", ["Große Straße für Mädchen – „Zitat“ über Öl und Äpfel."]),
    ("東京は日本の首都です。", ["東京は日本の首都である。"]),
    ("我爱北京天安门，天安门上太阳升。", ["我爱北京天安门。"]),
    ("I ❤️ 🍕 and 👨‍👩‍👧 emoji!", ["I ❤️ 🍕 and 👨‍👩‍👧‍👦 emoji."]),
    ("e\u0301cole naïve café", ["école naïve cafe\u0301"]),
    ("Ελληνικά και русский язык, שלום עולם", ["Ελληνικά και русский язык; שלום"]),
    ("Wait... what?! (Really?) [yes] {no} <tag> a/b c\\d e|f ~g ^h _i `j` 'k' \"l\"",
     ["Wait... what?! (Really) [yes] {no} <tag> a/b c\\d e|f ~g ^h _i `j` 'k' \"l\""]),
    ("@m #n $o %p &q *r +s =t;u:v", ["@m #n $o %p &q *r +s =t;u:v!"]),
    ("Tom &amp; Jerry said &quot;hi&quot; &lt;b&gt; &amp;amp; &amp;lt; &apos;x&apos;",
     ["Tom & Jerry said \"hi\" <b> &amp; &lt; 'x'"]),
    ("<skipped> A man in a <skipped>red shirt.", ["A man in a red shirt."]),
    ("A long-\nword and a line\nbreak.", ["A longword and a line break."]),
    ("ends with a hyphen-\n", ["ends with a hyphen-"]),
    ("a-\n\nb c-\r\nd", ["a- b c- d"]),
    ("1,000,000 people paid $3.50 on 12.05.2020, i.e. 3-4 times; 5,5 % or .5 or 5. or ,5",
     ["1,000,000 people paid $3.50 on 12.05.2020, i.e. 3-4 times: 5.5 % or 0.5 or 5 or 0,5"]),
    ("2-3-4 10- -5 a-b 9-x x-9 1.2.3 1..2 a..b ... ,,, .,. U.S.A. e.g. etc.",
     ["2-3-4 10- -5 a-b 9-x x-9 1.2.3 1..2 a..b ... U.S.A. e.g. etc."]),
    ("tab\tseparated\twords\r\nand\x0bvertical\x0cfeed", ["tab separated words and vertical feed"]),
    ("nbsp\u00a0here thin\u2009space ideo\u3000space nel\u0085line", ["nbsp here thin space ideo space nel line"]),
    ("unit\x1fsep\x1erecord\x1dgroup\x1cfile", ["unit sep record group file"]),
    ("zero\u200bwidth\u2060joiner\ufeffbom", ["zero width joiner bom"]),
    ("trailing spaces and tabs   \t ", ["trailing spaces and tabs"]),
    ("   leading spaces", ["leading spaces"]),
    ("Dr. Smith's dog—it's 'great', isn't it?", ["Dr. Smith's dog - it's \"great\", isn't it?"]),
    ("A", ["A"]),
    ("A", ["B"]),
    ("word", ["a much longer reference sentence with many words in it ."]),
    ("A man in a blue shirt is standing on a ladder cleaning windows and more words here too.",
     ["A man on a ladder."]),
    ("CASE matters HERE", ["case matters here"]),
]


def tokenize_extras():
    """Lines only for the tokenizer table: every class the 13a regexes distinguish."""
    lines = [chr(c) + "x" + chr(c) for c in range(0x20, 0x7F)]
    lines += ["x" + chr(c) + "1" + chr(c) + "x" for c in range(0x20, 0x7F)]
    lines += [
        "", " ", "\n", "-\n", "<skipped>", "<skip<skipped>ped>", "&amp;quot;", "&&amp;amp;",
        "3.14,2.71", "a.1 1.a .1. 1,a a,1", "-1 1- 1-1 a-1 1-a", "x\ny-\nz", "\t\n\r\x0b\x0c",
        "\u2028line\u2029para", "Ünïcödé. Ünïcödé, 1.Ü Ü.1", "١٢٣.٤٥ ١,٢", "x..y,,z.,w",
        "...", "a...", "1...", "...1", ".a", "a.", ",", ".", "5", "5.", ".5",
    ]
    return lines


def bleu_dict(score):
    return {
        "score": score.score,
        "counts": list(score.counts),
        "totals": list(score.totals),
        "precisions": list(score.precisions),
        "bp": score.bp,
        "sys_len": score.sys_len,
        "ref_len": score.ref_len,
    }


def streams(refs_per_segment):
    """Per-segment reference lists -> sacreBLEU's reference streams (None pads)."""
    k = max(len(r) for r in refs_per_segment)
    return [[r[j] if j < len(r) else None for r in refs_per_segment] for j in range(k)]


def main():
    ap = argparse.ArgumentParser()
    root = Path(__file__).resolve().parent.parent
    ap.add_argument("--data", default=str(root.parent / "shared/data/multi30k/test.jsonl"))
    ap.add_argument("--out", default=str(root / "crates/train/tests/fixtures/bleu_sacrebleu.json"))
    args = ap.parse_args()

    rng = random.Random(SEED)
    rows = [json.loads(l) for l in open(args.data, encoding="utf-8")]
    chosen = rng.sample(range(len(rows)), 300)

    pool = []  # {"hyp": str, "refs": [str, ...]}
    for j, idx in enumerate(chosen):
        lang = "de" if j % 6 == 5 else "en"
        filler = FILLER_DE if lang == "de" else FILLER
        ref = rows[idx][lang]
        refs = [ref]
        # Every fourth sentence gets a second reference (a light paraphrase: one edit).
        if j % 4 == 0:
            second = perturb(ref, rng, filler)
            refs.append(second if second != ref else ref.replace(".", " here."))
        pool.append({"hyp": perturb(ref, rng, filler), "refs": refs, "src": f"multi30k-test:{idx}:{lang}"})
    n_real = len(pool)
    for hyp, refs in EDGE:
        pool.append({"hyp": hyp, "refs": list(refs), "src": "edge"})

    bleu_sent = BLEU(effective_order=True)
    for item in pool:
        item["sentence_bleu"] = bleu_dict(bleu_sent.sentence_score(item["hyp"], item["refs"]))
        item["sentence_chrf"] = CHRF().sentence_score(item["hyp"], item["refs"]).score

    real = list(range(n_real))
    edge = list(range(n_real, len(pool)))
    single = [i for i in range(len(pool)) if len(pool[i]["refs"]) == 1]
    multi = [i for i in real if len(pool[i]["refs"]) == 2]
    short_hyp = []  # hypotheses of 1-3 words: higher n-gram orders have zero totals
    for i in real[:40]:
        words = pool[i]["hyp"].split()
        pool.append({"hyp": " ".join(words[: 1 + i % 3]), "refs": pool[i]["refs"][:1], "src": "short"})
        short_hyp.append(len(pool) - 1)
    no_match = []  # hypotheses that share nothing with the references
    for i in real[40:60]:
        pool.append({"hyp": "zzz qqq xxx yyy www", "refs": pool[i]["refs"][:1], "src": "nomatch"})
        no_match.append(len(pool) - 1)
    all_empty = []
    for i in real[60:80]:
        pool.append({"hyp": "", "refs": pool[i]["refs"], "src": "empty"})
        all_empty.append(len(pool) - 1)
    perfect = []
    for i in real[80:90]:
        pool.append({"hyp": pool[i]["refs"][0], "refs": pool[i]["refs"][:1], "src": "perfect"})
        perfect.append(len(pool) - 1)
    reversed_hyp = []  # word order reversed: unigrams match, 4-grams rarely -> exp smoothing path
    for i in real[90:120]:
        pool.append({"hyp": " ".join(reversed(pool[i]["hyp"].split())), "refs": pool[i]["refs"], "src": "reversed"})
        reversed_hyp.append(len(pool) - 1)
    for i in short_hyp + no_match + all_empty + perfect + reversed_hyp:
        item = pool[i]
        item["sentence_bleu"] = bleu_dict(bleu_sent.sentence_score(item["hyp"], item["refs"]))
        item["sentence_chrf"] = CHRF().sentence_score(item["hyp"], item["refs"]).score

    sub_rng = random.Random(SEED + 1)
    cases = {
        "all_single_ref": single,
        "real_multi_ref": multi,
        "real_var_refs": real,
        "everything_var_refs": list(range(len(pool))),
        "edge_cases": edge,
        "first5": real[:5],
        "random12": sub_rng.sample(single, 12),
        "random50_var": sub_rng.sample(range(len(pool)), 50),
        "short_hyps": short_hyp,
        "no_match": no_match,
        "all_empty_hyps": all_empty,
        "perfect": perfect,
        "reversed_words": reversed_hyp,
        "single_reversed": [reversed_hyp[2]],
        "single_real": [real[7]],
        "single_multi_ref": [multi[3]],
        "single_empty_hyp": [edge[0]],
        "single_unicode": [edge[8]],
        "single_entities": [edge[15]],
        "single_empty_ref": [edge[3]],
    }

    out_cases = []
    for name, idx in cases.items():
        hyps = [pool[i]["hyp"] for i in idx]
        refs = streams([pool[i]["refs"] for i in idx])
        bleu = BLEU()
        b = bleu.corpus_score(hyps, refs)
        chrf = CHRF()
        c = chrf.corpus_score(hyps, refs)
        out_cases.append({
            "name": name,
            "indices": idx,
            "bleu": bleu_dict(b),
            "bleu_signature": str(bleu.get_signature()),
            "bleu_format": b.format(signature=str(bleu.get_signature())),
            "chrf": c.score,
            "chrf_signature": str(chrf.get_signature()),
        })

    tok = Tokenizer13a()
    lines, seen = [], set()
    for item in pool:
        for line in [item["hyp"], *item["refs"]]:
            if line not in seen:
                seen.add(line)
                lines.append(line)
    for line in tokenize_extras():
        if line not in seen:
            seen.add(line)
            lines.append(line)

    out = {
        "generator": "scripts/gen_bleu_fixtures.py",
        "sacrebleu_version": sacrebleu.__version__,
        "seed": SEED,
        "pool": pool,
        "cases": out_cases,
        "tokenize_13a": [[line, tok(line)] for line in lines],
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    with open(args.out, "w", encoding="utf-8") as f:
        json.dump(out, f, ensure_ascii=False, indent=0)
        f.write("\n")
    print(f"wrote {args.out}: {len(pool)} pool items, {len(out_cases)} cases, {len(lines)} tokenizer lines")
    for c in out_cases:
        print(f"  {c['name']:22s} n={len(c['indices']):4d} BLEU={c['bleu']['score']:8.4f} chrF={c['chrf']:8.4f}  {c['bleu_signature']}")


if __name__ == "__main__":
    main()
