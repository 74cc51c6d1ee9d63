#!/usr/bin/env python3
"""Fixtures for crates/train/src/seqeval.rs: seqeval's own numbers (default mode, which reads
entities as conlleval does) on made-up tag sequences.

    pip install seqeval
    python3 scripts/gen_seqeval_fixtures.py [--out crates/train/tests/fixtures/seqeval.json]

What it writes (one JSON file, a list of cases): each case has `name`, `true` and `pred` (lists
of sentences of tags), seqeval's `entities` of each side (`get_entities` on the nested list,
(type, start, end) over the sentences joined with an O between them), per-type precision,
recall, F1 and support (`precision_recall_fscore_support(average=None)`), micro-averaged
precision, recall and F1, and `accuracy_score` (token accuracy). The cases are hand-written edge
cases (IOB1 input, entities at sentence boundaries, ill-formed sequences starting with I-,
BIOES, empty predictions) plus random sequences from a seeded generator. No corpus text.
"""
import argparse
import json
import random
import warnings

from seqeval.metrics import accuracy_score
from seqeval.metrics.sequence_labeling import get_entities, precision_recall_fscore_support

TYPES = ["PER", "LOC", "ORG", "MISC"]


def random_tags(rng, n, scheme):
    """A sequence of n tags in `scheme`, well-formed or not (probability 0.3 of noise)."""
    out = []
    for _ in range(n):
        r = rng.random()
        if r < 0.45:
            out.append("O")
        else:
            prefix = rng.choice(["B", "I"] if scheme != "bioes" else ["B", "I", "E", "S"])
            out.append(f"{prefix}-{rng.choice(TYPES)}")
    return out


def perturb(rng, sent):
    """A prediction near the truth: each tag kept with probability 0.8."""
    pool = [t for t in sent] + ["O", "B-PER", "I-PER", "I-LOC", "B-ORG", "E-MISC", "S-LOC"]
    return [t if rng.random() < 0.8 else rng.choice(pool) for t in sent]


def case(name, y_true, y_pred):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        p, r, f, s = precision_recall_fscore_support(y_true, y_pred, average=None)
        mp, mr, mf, _ = precision_recall_fscore_support(y_true, y_pred, average="micro")
    types = sorted({t for t, _, _ in get_entities(y_true)} | {t for t, _, _ in get_entities(y_pred)})
    per_type = {
        t: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]), "support": int(s[i])}
        for i, t in enumerate(types)
    }
    return {
        "name": name,
        "true": y_true,
        "pred": y_pred,
        "true_entities": [list(e) for e in get_entities(y_true)],
        "pred_entities": [list(e) for e in get_entities(y_pred)],
        "per_type": per_type,
        "precision": float(mp),
        "recall": float(mr),
        "f1": float(mf),
        "accuracy": float(accuracy_score(y_true, y_pred)),
    }


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default="crates/train/tests/fixtures/seqeval.json")
    args = ap.parse_args()
    cases = [
        case(
            "iob1 as distributed",
            [["I-PER", "I-PER", "O", "I-LOC", "B-LOC", "O"], ["I-ORG", "O"]],
            [["I-PER", "I-PER", "O", "I-LOC", "I-LOC", "O"], ["B-ORG", "O"]],
        ),
        case(
            "entities at sentence boundaries",
            [["B-PER", "I-PER"], ["I-PER", "O", "B-LOC"], ["B-ORG"]],
            [["B-PER", "I-PER"], ["B-PER", "O", "B-LOC"], ["I-ORG"]],
        ),
        case(
            "ill-formed sequences starting with I-",
            [["I-MISC", "I-MISC", "O"], ["O", "I-PER", "B-PER", "I-LOC"]],
            [["I-MISC", "B-MISC", "O"], ["O", "I-PER", "I-PER", "I-LOC"]],
        ),
        case(
            "bioes",
            [["B-PER", "E-PER", "O", "S-LOC"], ["B-ORG", "I-ORG", "E-ORG"]],
            [["B-PER", "E-PER", "O", "B-LOC"], ["B-ORG", "I-ORG", "I-ORG"]],
        ),
        case("nothing predicted", [["B-PER", "O"], ["O", "B-LOC"]], [["O", "O"], ["O", "O"]]),
        case("nothing to find", [["O", "O"]], [["O", "B-MISC"]]),
        case("type change inside", [["B-PER", "I-PER", "I-PER"]], [["B-PER", "I-LOC", "I-PER"]]),
    ]
    rng = random.Random(19)
    for k in range(30):
        scheme = ["iob1", "iob2", "bioes"][k % 3]
        y_true = [random_tags(rng, rng.randint(1, 12), scheme) for _ in range(rng.randint(1, 6))]
        y_pred = [perturb(rng, s) for s in y_true]
        cases.append(case(f"random {scheme} {k}", y_true, y_pred))
    with open(args.out, "w") as f:
        json.dump(cases, f, indent=0)
        f.write("\n")
    print(f"wrote {len(cases)} cases to {args.out}")


if __name__ == "__main__":
    main()
