#!/usr/bin/env python3
"""WER / CER fixtures from jiwer for crates/train/src/wer.rs.

Writes crates/train/src/wer_fixtures.json: corpora of (reference, hypothesis) pairs with
jiwer's corpus-level WER, CER, CER with spaces removed (all as fractions, as jiwer returns
them) and the word-level substitution / deletion / insertion / hit counts.

    pip install jiwer
    python3 scripts/gen_wer_fixtures.py
"""
import importlib.metadata
import json
import os
import random

import jiwer

WORDS = "A B C D E F G ONE TWO THREE OH NINE YES NO ENTER RUBOUT ERASE P I T S B U R G H".split()


def corpus(rng, n):
    pairs = []
    for _ in range(n):
        ref = [rng.choice(WORDS) for _ in range(rng.randint(1, 8))]
        hyp = list(ref)
        for _ in range(rng.randint(0, 4)):
            op = rng.choice("sdi")
            if op == "s" and hyp:
                hyp[rng.randrange(len(hyp))] = rng.choice(WORDS)
            elif op == "d" and hyp:
                del hyp[rng.randrange(len(hyp))]
            else:
                hyp.insert(rng.randint(0, len(hyp)), rng.choice(WORDS))
        pairs.append((" ".join(ref), " ".join(hyp)))
    return pairs


def entry(name, pairs):
    refs = [r for r, _ in pairs]
    hyps = [h for _, h in pairs]
    out = jiwer.process_words(refs, hyps)
    nospace = lambda xs: [x.replace(" ", "") for x in xs]
    return {
        "name": name,
        "references": refs,
        "hypotheses": hyps,
        "wer": jiwer.wer(refs, hyps),
        "cer": jiwer.cer(refs, hyps),
        "cer_no_space": jiwer.cer(nospace(refs), nospace(hyps)),
        "substitutions": out.substitutions,
        "deletions": out.deletions,
        "insertions": out.insertions,
        "hits": out.hits,
    }


def main():
    rng = random.Random(17)
    cases = [
        entry("identical", [("P I T T S B U R G H", "P I T T S B U R G H")]),
        entry("all_wrong", [("YES", "NO ENTER")]),
        entry("empty_hypothesis", [("ONE TWO THREE", ""), ("A B", "A B")]),
        entry("deepspeech_style", [("ENTER SIX TWO FOUR", "ENTER SIX TO FOR"), ("RUBOUT G M E D", "RUBOUT G N E D")]),
        entry("whitespace", [("  A   B  C ", "A B  D")]),
    ]
    for i in range(6):
        cases.append(entry(f"random_{i}", corpus(rng, 1 + 7 * i)))
    out = os.path.join(os.path.dirname(__file__), "..", "crates", "train", "src", "wer_fixtures.json")
    with open(out, "w") as f:
        json.dump({"jiwer": importlib.metadata.version("jiwer"), "cases": cases}, f, indent=1)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
