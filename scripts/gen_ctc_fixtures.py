#!/usr/bin/env python3
"""CTC loss fixtures from PyTorch for crates/model/src/ctc_tests.rs.

Writes crates/model/src/ctc_fixtures.json: for each case, log-probabilities (batch, time,
classes) batch first, targets, input lengths, reduction, zero_infinity, and PyTorch's
`torch.nn.functional.ctc_loss` value and its gradient with respect to the log-probs (a leaf
tensor, so this is PyTorch's own backward; for reduction "none" the gradient of the sum).
Non-finite numbers are written as the strings "inf", "-inf", "nan" (JSON has no literal).

    pip install torch
    python3 scripts/gen_ctc_fixtures.py
"""
import json
import math
import os

import torch
import torch.nn.functional as F


def enc(v):
    if isinstance(v, list):
        return [enc(x) for x in v]
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def case(name, dtype, time, classes, targets, input_lengths, reduction, zero_infinity, seed):
    g = torch.Generator().manual_seed(seed)
    batch = len(targets)
    logits = torch.randn(time, batch, classes, generator=g, dtype=torch.float64) * 2.0
    lp = F.log_softmax(logits, dim=-1).to(dtype).detach().requires_grad_(True)
    flat = torch.tensor([x for t in targets for x in t], dtype=torch.long)
    tl = torch.tensor([len(t) for t in targets], dtype=torch.long)
    il = torch.tensor(input_lengths, dtype=torch.long)
    loss = F.ctc_loss(lp, flat, il, tl, blank=0, reduction=reduction, zero_infinity=zero_infinity)
    (grad,) = torch.autograd.grad(loss.sum(), lp)
    return {
        "name": name,
        "dtype": "f64" if dtype == torch.float64 else "f32",
        "batch": batch,
        "time": time,
        "classes": classes,
        "log_probs": enc(lp.detach().transpose(0, 1).reshape(-1).double().tolist()),
        "targets": targets,
        "input_lengths": input_lengths,
        "reduction": reduction,
        "zero_infinity": zero_infinity,
        "loss": enc(loss.detach().double().reshape(-1).tolist()),
        "grad": enc(grad.transpose(0, 1).reshape(-1).double().tolist()),
    }


def main():
    cases = []
    seed = 0
    for dtype in (torch.float64, torch.float32):
        for reduction in ("mean", "sum", "none"):
            seed += 1
            # Ragged input and target lengths, repeated labels, an empty target.
            cases.append(case("ragged", dtype, 12, 5, [[1, 2, 2, 3], [4, 4], [], [1, 3, 1]], [12, 9, 5, 7],
                              reduction, False, seed))
        seed += 1
        # Targets exactly as long as feasible: length + adjacent repeats = input length.
        cases.append(case("tight", dtype, 8, 6, [[1, 1, 2, 2, 3, 4], [5, 5, 5, 5]], [8, 7], "mean", False, seed))
        for zi in (False, True):
            for reduction in ("mean", "sum"):
                seed += 1
                # The second utterance needs 6 frames and has 4: infeasible.
                cases.append(case("infeasible", dtype, 6, 4, [[1, 2], [1, 1, 2, 2]], [6, 4], reduction, zi, seed))
        seed += 1
        cases.append(case("single_frame", dtype, 1, 3, [[2], []], [1, 1], "sum", False, seed))
    out = os.path.join(os.path.dirname(__file__), "..", "crates", "model", "src", "ctc_fixtures.json")
    with open(out, "w") as f:
        json.dump({"torch": torch.__version__, "cases": cases}, f, separators=(",", ":"))
        f.write("\n")
    print(f"wrote {len(cases)} cases to {os.path.normpath(out)}")


if __name__ == "__main__":
    main()
