#!/usr/bin/env python3
"""PyTorch reference fixtures for crates/model (nn.LSTM / nn.GRU / nn.RNN parity).

Run:  .venv/bin/python scripts/gen_lstm_fixtures.py
Writes crates/model/tests/fixtures/*.safetensors (float64, a few KB each).

Each case file holds, computed by PyTorch in float64:
  param.<name>   the module's parameters (PyTorch names)
  x              input (batch, time, input), batch_first
  lengths        int64 per-sequence lengths (padding past them; run via pack_padded_sequence)
  h0, c0         initial states (layers*dirs, batch, hidden) when the case uses them
  out            padded output (batch, time, dirs*hidden), zeros on padding
  h_n, c_n       final states (layers*dirs, batch, hidden)
  w_out, w_h, w_c  random weights of the scalar loss
                 L = sum(out*w_out) + sum(h_n*w_h) [+ sum(c_n*w_c)]
  grad.<name>, grad.x, grad.h0, grad.c0   dL/d(...)
metadata: {"cell", "input_size", "hidden_size", "num_layers", "bidirectional", "has_init"}.

With `--check-ours WEIGHTS IO` it instead loads a checkpoint written by sluice (the test
write_checkpoint_for_pytorch puts one in target/tmp) into nn.LSTM and compares outputs.

Also writes lstm_state_dict.safetensors: a bare nn.LSTM state_dict (float32) saved with
safetensors.torch.save_file, plus lstm_state_dict_expected.safetensors with an input and
the module's float32 output on it.
"""
import os
import torch
from torch import nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence
from safetensors.torch import save_file

OUT = os.path.join(os.path.dirname(__file__), "..", "crates", "model", "tests", "fixtures")
torch.manual_seed(1234)


def make(cell, input_size, hidden, layers, bidir):
    cls = {"lstm": nn.LSTM, "gru": nn.GRU, "rnn": nn.RNN}[cell]
    return cls(input_size, hidden, num_layers=layers, bidirectional=bidir, batch_first=True).double()


def case(name, cell, input_size, hidden, layers, bidir, lengths, time, has_init):
    m = make(cell, input_size, hidden, layers, bidir)
    dirs = 2 if bidir else 1
    batch = len(lengths)
    x = torch.randn(batch, time, input_size, dtype=torch.float64, requires_grad=True)
    lengths_t = torch.tensor(lengths, dtype=torch.int64)
    init = None
    h0 = c0 = None
    if has_init:
        h0 = (0.5 * torch.randn(layers * dirs, batch, hidden, dtype=torch.float64)).requires_grad_()
        if cell == "lstm":
            c0 = (0.5 * torch.randn(layers * dirs, batch, hidden, dtype=torch.float64)).requires_grad_()
            init = (h0, c0)
        else:
            init = h0
    packed = pack_padded_sequence(x, lengths_t, batch_first=True, enforce_sorted=False)
    out_p, state = m(packed, init)
    out, _ = pad_packed_sequence(out_p, batch_first=True, total_length=time)
    if cell == "lstm":
        h_n, c_n = state
    else:
        h_n, c_n = state, None
    w_out = torch.randn_like(out)
    w_h = torch.randn_like(h_n)
    loss = (out * w_out).sum() + (h_n * w_h).sum()
    t = {}
    if c_n is not None:
        w_c = torch.randn_like(c_n)
        loss = loss + (c_n * w_c).sum()
        t["c_n"] = c_n.detach()
        t["w_c"] = w_c
    loss.backward()
    t.update({"x": x.detach(), "lengths": lengths_t, "out": out.detach(), "h_n": h_n.detach(),
              "w_out": w_out, "w_h": w_h, "grad.x": x.grad})
    if has_init:
        t["h0"] = h0.detach()
        t["grad.h0"] = h0.grad
        if c0 is not None:
            t["c0"] = c0.detach()
            t["grad.c0"] = c0.grad
    for pname, p in m.named_parameters():
        t["param." + pname] = p.detach()
        t["grad." + pname] = p.grad
    meta = {"cell": cell, "input_size": str(input_size), "hidden_size": str(hidden),
            "num_layers": str(layers), "bidirectional": str(bidir).lower(), "has_init": str(has_init).lower()}
    save_file({k: v.contiguous() for k, v in t.items()}, os.path.join(OUT, name + ".safetensors"), metadata=meta)


def main():
    os.makedirs(OUT, exist_ok=True)
    case("lstm_1l_init", "lstm", 3, 4, 1, False, [5, 5], 5, True)
    case("lstm_2l_bi_packed", "lstm", 3, 4, 2, True, [6, 4, 1], 6, False)
    case("lstm_2l_bi_packed_init", "lstm", 2, 3, 2, True, [2, 5, 3], 5, True)
    case("gru_1l_init", "gru", 3, 4, 1, False, [5, 5], 5, True)
    case("gru_2l_bi_packed", "gru", 3, 4, 2, True, [6, 4, 1], 6, False)
    case("gru_2l_bi_packed_init", "gru", 2, 3, 2, True, [2, 5, 3], 5, True)
    case("rnn_2l_bi_packed", "rnn", 3, 4, 2, True, [6, 4, 1], 6, True)

    # A plain PyTorch state_dict, as a user would save it, and what the module outputs.
    m = nn.LSTM(5, 6, num_layers=2, bidirectional=True, batch_first=True)
    save_file({k: v.contiguous() for k, v in m.state_dict().items()}, os.path.join(OUT, "lstm_state_dict.safetensors"))
    x = torch.randn(2, 4, 5)
    with torch.no_grad():
        out, (h, c) = m(x)
    save_file({k: v.contiguous() for k, v in {"x": x, "out": out, "h_n": h, "c_n": c}.items()}, os.path.join(OUT, "lstm_state_dict_expected.safetensors"))


def check_ours(weights, io):
    """Loads a checkpoint written by sluice into nn.LSTM (strict names and shapes) and
    compares PyTorch's output with ours on the same input."""
    import json
    import sys
    from safetensors import safe_open
    from safetensors.torch import load_file
    with safe_open(weights, "pt") as f:
        meta = f.metadata()
    cfg = json.loads(meta["config"])
    m = nn.LSTM(cfg["input_size"], cfg["hidden_size"], num_layers=cfg["num_layers"],
                bidirectional=cfg["bidirectional"], batch_first=True)
    m.load_state_dict(load_file(weights), strict=True)
    t = load_file(io)
    with torch.no_grad():
        out, _ = m(t["x"])
    err = (out - t["out"]).abs().max().item()
    print(f"format {meta['format']} v{meta['format_version']}: loaded strictly; max |torch - ours| = {err:.2e}")
    sys.exit(0 if err < 1e-5 else 1)


if __name__ == "__main__":
    import sys
    if len(sys.argv) == 4 and sys.argv[1] == "--check-ours":
        check_ours(sys.argv[2], sys.argv[3])
    else:
        main()
