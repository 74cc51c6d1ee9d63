#!/usr/bin/env python3
"""Scores a finished `task = "tag"` run with the reference scorer, end to end: every sentence
of a CoNLL column file (or CoNLL-U) goes through `train tag --json`, and seqeval (default mode,
as conlleval) scores the predicted tags against the file's own tags; token accuracy too.

    pip install seqeval
    python3 scripts/seqeval_check.py --run runs/conll2003_ner-… \
        --file ../shared/data/tagging/conll2003/eng.testb [--format conll] [--bin target/release/train]

The numbers should equal the run's summary.json `test` entry (same split, same checkpoint):
an independent check of the reader, the scheme conversion and the metric together. For
CoNLL files: entity precision, recall and F1; for CoNLL-U (UPOS column): token accuracy.
"""
import argparse
import json
import subprocess

from seqeval.metrics import accuracy_score, classification_report, f1_score, precision_score, recall_score


def read_conll(path):
    sents, cur = [], []
    for line in open(path, encoding="utf-8"):
        fields = line.split()
        if not fields or fields[0] == "-DOCSTART-":
            if cur:
                sents.append(cur)
            cur = []
            continue
        cur.append((fields[0], fields[-1]))
    if cur:
        sents.append(cur)
    return sents


def read_conllu(path, column=3):
    sents, cur = [], []
    for line in open(path, encoding="utf-8"):
        line = line.rstrip("\n")
        if not line.strip():
            if cur:
                sents.append(cur)
            cur = []
            continue
        if line.startswith("#"):
            continue
        f = line.split("\t")
        if "-" in f[0] or "." in f[0]:
            continue
        cur.append((f[1], f[column]))
    if cur:
        sents.append(cur)
    return sents


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--run", required=True)
    ap.add_argument("--file", required=True)
    ap.add_argument("--format", choices=["conll", "conllu"], default="conll")
    ap.add_argument("--bin", default="target/release/train")
    args = ap.parse_args()
    sents = read_conll(args.file) if args.format == "conll" else read_conllu(args.file)
    text = "\n".join(" ".join(w for w, _ in s) for s in sents) + "\n"
    out = subprocess.run([args.bin, "tag", "--run", args.run, "--json"], input=text, capture_output=True,
                         text=True, check=True)
    pred = [json.loads(line)["tags"] for line in out.stdout.splitlines()]
    gold = [[t for _, t in s] for s in sents]
    assert len(pred) == len(gold) and all(len(p) == len(g) for p, g in zip(pred, gold))
    result = {"sentences": len(gold)}
    if args.format == "conllu":
        result["accuracy"] = accuracy_score(gold, pred)
    if args.format == "conll":
        # Entities do not depend on the scheme; token accuracy does (the run reports it over
        # its target-scheme tags, `train tag` prints IOB2), so it is left out here.
        result.update(precision=precision_score(gold, pred), recall=recall_score(gold, pred), f1=f1_score(gold, pred))
        print(classification_report(gold, pred, digits=4))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
