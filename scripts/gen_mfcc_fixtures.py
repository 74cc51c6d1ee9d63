#!/usr/bin/env python3
"""Reference MFCCs for `data::audio` from python_speech_features 0.6.

Run from the repository root with the project venv:

    .venv/bin/python scripts/gen_mfcc_fixtures.py

Writes into crates/data/tests/fixtures/:
  synth_8k.wav, synth_16k.wav  synthetic mono 16-bit WAVs (seeded), with digital silence at the start so the
                               log(eps) floor of python_speech_features is exercised
  mfcc_reference.json          cases: {name, wav | fsdd, config (our MfccConfig field names), frames, dim, mfcc
                               (row-major frames x dim), cmvn (per-utterance normalised mfcc, when present)}
  fsdd_summary.json            when ../shared/data/fsdd/recordings exists: per file (frames, sum, sum of squares)
                               of the default configuration, so the Rust test can check all 3,000 files.

The conventions we match (python_speech_features, read from its source):
  * samples are the raw int16 values as floats (scipy.io.wavfile.read), no scaling to [-1, 1);
  * pre-emphasis y[0] = x[0], y[n] = x[n] - 0.97 x[n-1];
  * frame length/step = round_half_up(0.025 sr) / round_half_up(0.010 sr); frames = 1 + ceil((n - len) / step)
    (1 when n <= len), the last one zero-padded;
  * window: numpy.hamming (symmetric, 0.54 - 0.46 cos(2 pi n / (N - 1))) -- we pass it, the library's default is
    rectangular;
  * power spectrum |rfft(frame, NFFT)|^2 / NFFT, NFFT = next power of two >= frame length (256 at 8 kHz,
    512 at 16 kHz) -- we pass it, the library's default is 512 regardless of sample rate;
  * mel filterbank of get_filterbanks (bins floor((NFFT + 1) mel2hz(m) / sr), HTK mel scale), 40 filters;
  * filterbank energies (and frame energy) that are exactly 0 are replaced by float64 eps before the log;
  * DCT-II orthonormal (scipy.fftpack.dct norm='ortho'), first 13;
  * default: ceplifter=0 and appendEnergy=False (c0 is the DCT's own c0); the `lifter22_energy` case checks the
    options lifter = 22 and log_energy_c0 = true (the library's defaults) as well;
  * deltas: python_speech_features.delta(feat, 2) (edge padding), delta-deltas = delta(delta, 2), stacked
    [c, d, dd] per frame;
  * per-utterance normalisation: (x - mean) / std over frames, population std (ddof = 0).
"""
import json
import os
import sys

import numpy as np
import scipy.io.wavfile as wavfile
from python_speech_features import delta, mfcc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
FIXTURES = os.path.join(ROOT, "crates", "data", "tests", "fixtures")
FSDD = os.path.join(ROOT, "..", "shared", "data", "fsdd", "recordings")

DEFAULT = dict(
    frame_length_s=0.025,
    frame_step_s=0.01,
    preemphasis=0.97,
    num_filters=40,
    num_ceps=13,
    low_freq_hz=0.0,
    high_freq_hz=None,
    fft_size=None,
    lifter=0,
    log_energy_c0=False,
    delta_order=0,
    delta_window=2,
)


def next_pow2(n):
    p = 1
    while p < n:
        p *= 2
    return p


def features(signal, sr, cfg):
    frame_len = int(np.floor(cfg["frame_length_s"] * sr + 0.5))
    nfft = cfg["fft_size"] or next_pow2(frame_len)
    feat = mfcc(
        signal.astype(np.float64),
        samplerate=sr,
        winlen=cfg["frame_length_s"],
        winstep=cfg["frame_step_s"],
        numcep=cfg["num_ceps"],
        nfilt=cfg["num_filters"],
        nfft=nfft,
        lowfreq=cfg["low_freq_hz"],
        highfreq=cfg["high_freq_hz"],
        preemph=cfg["preemphasis"],
        ceplifter=cfg["lifter"],
        appendEnergy=cfg["log_energy_c0"],
        winfunc=np.hamming,
    )
    parts = [feat]
    if cfg["delta_order"] >= 1:
        d = delta(feat, cfg["delta_window"])
        parts.append(d)
        if cfg["delta_order"] >= 2:
            parts.append(delta(d, cfg["delta_window"]))
    return np.hstack(parts)


def cmvn(feat):
    std = feat.std(axis=0)
    std = np.where(std < 1e-8, 1.0, std)
    return (feat - feat.mean(axis=0)) / std


def synth(sr, seconds, seed):
    rng = np.random.default_rng(seed)
    t = np.arange(int(sr * seconds)) / sr
    # A vowel-like harmonic tone with a gliding pitch, an amplitude envelope and some noise.
    f0 = 120 + 80 * t / seconds
    phase = 2 * np.pi * np.cumsum(f0) / sr
    x = sum(np.sin(k * phase) / k for k in range(1, 12))
    x *= np.sin(np.pi * t / seconds) ** 2
    x += 0.05 * rng.standard_normal(len(t))
    x = np.round(x / np.abs(x).max() * 12000).astype(np.int16)
    silence = np.zeros(int(0.06 * sr), dtype=np.int16)  # > one frame of digital zeros: the eps floor
    return np.concatenate([silence, x])


def short(v):
    # 10 significant digits: far below the 1e-4 tolerance, and half the fixture size of repr().
    return float(f"{v:.10g}")


def case(name, signal, sr, cfg, source, with_cmvn=False):
    feat = features(signal, sr, cfg)
    out = dict(name=name, config=cfg, frames=int(feat.shape[0]), dim=int(feat.shape[1]),
               mfcc=[short(v) for v in feat.ravel()])
    out.update(source)
    if with_cmvn:
        out["cmvn"] = [short(v) for v in cmvn(feat).ravel()]
    return out


def main():
    os.makedirs(FIXTURES, exist_ok=True)
    cases = []
    s8 = synth(8000, 0.37, 1)  # 0.43 s in all: not a whole number of steps, so the last frame is padded
    wavfile.write(os.path.join(FIXTURES, "synth_8k.wav"), 8000, s8)
    s16 = synth(16000, 0.21, 2)
    wavfile.write(os.path.join(FIXTURES, "synth_16k.wav"), 16000, s16)

    cases.append(case("synth_8k_default_dd", s8, 8000, dict(DEFAULT, delta_order=2), {"wav": "synth_8k.wav"},
                      with_cmvn=True))
    cases.append(case("synth_8k_lifter22_energy", s8, 8000,
                      dict(DEFAULT, num_filters=26, lifter=22, log_energy_c0=True), {"wav": "synth_8k.wav"}))
    cases.append(case("synth_16k_default_d", s16, 16000, dict(DEFAULT, delta_order=1, delta_window=1),
                      {"wav": "synth_16k.wav"}))
    cases.append(case("synth_8k_nfft512_band", s8, 8000,
                      dict(DEFAULT, fft_size=512, low_freq_hz=100.0, high_freq_hz=3800.0),
                      {"wav": "synth_8k.wav"}))

    have_fsdd = os.path.isdir(FSDD)
    if have_fsdd:
        for fname in ["0_george_0.wav", "7_yweweler_35.wav"]:
            sr, x = wavfile.read(os.path.join(FSDD, fname))
            cases.append(case("fsdd_" + fname[:-4], x, sr, dict(DEFAULT, delta_order=2), {"fsdd": fname},
                              with_cmvn=True))
        summary = {}
        for fname in sorted(os.listdir(FSDD)):
            if not fname.endswith(".wav"):
                continue
            sr, x = wavfile.read(os.path.join(FSDD, fname))
            feat = features(x, sr, DEFAULT)
            summary[fname] = [int(feat.shape[0]), short(feat.sum()), short((feat ** 2).sum())]
        with open(os.path.join(FIXTURES, "fsdd_summary.json"), "w") as f:
            json.dump({"config": DEFAULT, "files": summary}, f, separators=(",", ":"))
    else:
        print("no FSDD recordings at", FSDD, "- real-file cases skipped", file=sys.stderr)

    with open(os.path.join(FIXTURES, "mfcc_reference.json"), "w") as f:
        json.dump({"generator": "scripts/gen_mfcc_fixtures.py (python_speech_features 0.6)", "cases": cases}, f,
                  separators=(",", ":"))
    print("wrote", len(cases), "cases to", FIXTURES)


if __name__ == "__main__":
    main()
