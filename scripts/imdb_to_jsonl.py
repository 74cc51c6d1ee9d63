#!/usr/bin/env python3
"""IMDb reviews (one review per line, a file per label) as JSON Lines that `corpus = "text"` reads.

    python3 scripts/imdb_to_jsonl.py ../shared/data/lm/imdb /tmp/imdb
    # writes /tmp/imdb/train.jsonl.gz and /tmp/imdb/test.jsonl.gz: {"text": ..., "label": "pos"|"neg"}

The inputs are `{train,test}_{pos,neg}.txt.gz` (see ../shared/data/lm/SOURCES.md, section 3);
the reviews are copied byte for byte (HTML `<br />` kept), negatives first, then positives, in
file order. Any folder of one-text-per-line files per label converts the same way.
"""
import gzip
import json
import os
import sys


def main():
    src, out = sys.argv[1], sys.argv[2]
    os.makedirs(out, exist_ok=True)
    for split in ("train", "test"):
        with gzip.open(os.path.join(out, f"{split}.jsonl.gz"), "wt", encoding="utf-8") as fh:
            for label in ("neg", "pos"):
                with gzip.open(os.path.join(src, f"{split}_{label}.txt.gz"), "rt", encoding="utf-8") as f:
                    for line in f:
                        fh.write(json.dumps({"text": line.rstrip("\n"), "label": label}) + "\n")


if __name__ == "__main__":
    main()
