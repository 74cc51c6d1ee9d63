#!/usr/bin/env python3
"""Classification-report fixtures from scikit-learn, for crates/train/src/metrics.rs.

    python3 scripts/gen_classification_fixtures.py   # writes tests/fixtures/classification_report.json

Each case is a list of true and predicted class indices with the class names, and what
scikit-learn's `classification_report` (zero_division=0), `accuracy_score` and
`confusion_matrix` (rows = true class) give for them. The cases are drawn from a fixed seed:
two classes, four classes with a class never predicted, and seven skewed classes.
"""
import json
import os
import random

import sklearn
from sklearn.metrics import accuracy_score, classification_report, confusion_matrix


def case(name, labels, y_true, y_pred):
    idx = list(range(len(labels)))
    rep = classification_report(y_true, y_pred, labels=idx, target_names=labels, output_dict=True, zero_division=0)
    avg = lambda key: {k: rep[key][k] for k in ("precision", "recall", "f1-score")}
    rename = lambda d: {"precision": d["precision"], "recall": d["recall"], "f1": d["f1-score"]}
    from sklearn.metrics import precision_recall_fscore_support

    p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=idx, average="micro", zero_division=0)
    return {
        "name": name,
        "labels": labels,
        "y_true": y_true,
        "y_pred": y_pred,
        "accuracy": accuracy_score(y_true, y_pred),
        "macro": rename(avg("macro avg")),
        "weighted": rename(avg("weighted avg")),
        "micro": {"precision": p, "recall": r, "f1": f},
        "per_class": {
            n: {"precision": rep[n]["precision"], "recall": rep[n]["recall"], "f1": rep[n]["f1-score"], "support": rep[n]["support"]}
            for n in labels
        },
        "confusion": confusion_matrix(y_true, y_pred, labels=idx).tolist(),
        "sklearn": sklearn.__version__,
    }


def main():
    rng = random.Random(15)
    cases = []
    t = [rng.randrange(2) for _ in range(40)]
    cases.append(case("binary", ["neg", "pos"], t, [y if rng.random() < 0.7 else 1 - y for y in t]))
    t = [rng.randrange(4) for _ in range(60)]
    # Class 3 is never predicted: its precision is 0 by zero_division=0.
    cases.append(case("four_one_never_predicted", ["business", "sci/tech", "sports", "world"], t,
                      [y if rng.random() < 0.6 and y != 3 else rng.randrange(3) for y in t]))
    weights = [30, 20, 10, 5, 3, 2, 1]
    t = rng.choices(range(7), weights=weights, k=120)
    cases.append(case("seven_skewed", [f"c{i}" for i in range(7)], t,
                      [y if rng.random() < 0.5 else rng.choices(range(7), weights=weights)[0] for y in t]))
    out = os.path.join(os.path.dirname(__file__), "..", "tests", "fixtures", "classification_report.json")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    with open(out, "w") as fh:
        json.dump(cases, fh, indent=1)
        fh.write("\n")


if __name__ == "__main__":
    main()
