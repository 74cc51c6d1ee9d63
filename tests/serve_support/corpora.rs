//! Tiny corpora the serve tests train runs on (a tagging corpus, spelled-tone utterances, FSDD-
//! shaped digit tones), and a multipart/form-data body builder.

use crate::common::wav_bytes;
use std::fs;
use std::path::{Path, PathBuf};

/// A `multipart/form-data` body of files `(file name, bytes)`: (Content-Type, body).
pub fn multipart(files: &[(&str, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "sluice-test-boundary-7f3a";
    let mut body = Vec::new();
    for (name, bytes) in files {
        body.extend_from_slice(
            format!(
                "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"{name}\"\r\n\
                 Content-Type: audio/wav\r\n\r\n"
            )
            .as_bytes(),
        );
        body.extend_from_slice(bytes);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        self.0 >> 33
    }
    fn noise(&mut self) -> f64 {
        (self.next() % 1000) as f64 / 1000.0 - 0.5
    }
}

/// A tiny entity corpus in CoNLL columns (IOB2), trained to BIOES; returns the config path.
pub fn tag_config(dir: &Path) -> PathBuf {
    const PEOPLE: [&str; 4] = ["Anna", "Boris", "Chen", "Dana"];
    const PLACES: [&str; 3] = ["Oslo", "Lima", "Quito"];
    let data = dir.join("conll");
    fs::create_dir_all(&data).unwrap();
    let sentence = |k: usize| -> Vec<(&str, &str)> {
        let (p, l) = (PEOPLE[k % 4], PLACES[(k / 4) % 3]);
        match k % 3 {
            0 => vec![(p, "B-PER"), ("lives", "O"), ("in", "O"), (l, "B-LOC"), (".", "O")],
            1 => vec![("the", "O"), ("mayor", "O"), ("of", "O"), (l, "B-LOC"), ("met", "O"), (p, "B-PER")],
            _ => vec![(p, "B-PER"), ("Smith", "I-PER"), ("left", "O"), (l, "B-LOC")],
        }
    };
    for (name, range) in [("train.txt", 0..36), ("dev.txt", 36..42), ("test.txt", 42..48)] {
        let mut s = String::new();
        for k in range {
            for (w, t) in sentence(k) {
                s.push_str(&format!("{w} X X {t}\n"));
            }
            s.push('\n');
        }
        fs::write(data.join(name), s).unwrap();
    }
    let cfg = format!(
        "task = \"tag\"\n[run]\nname = \"ner\"\nseed = 3\nthreads = 1\n[data]\ndir = \"{}\"\n\
         train_file = \"train.txt\"\nvalidation_file = \"dev.txt\"\ntest_file = \"test.txt\"\n\
         [model]\nembedding_dim = 8\nhidden = 8\n[train]\nlr = 0.02\nepochs = 8\nbatch_size = 8\n\
         early_stopping_metric = \"f1\"\ncheckpoint_every = 0\n\
         [tag]\nformat = \"conll\"\ntag_scheme = \"iob2\"\ntarget_scheme = \"bioes\"\nchar_dim = 4\nchar_hidden = 4\n",
        data.display()
    );
    let path = dir.join("ner.toml");
    fs::write(&path, cfg).unwrap();
    path
}

/// The samples of spelled `text` at 8 kHz: each letter (A, B, C) a tone at its own pitch,
/// spaces and both ends near-silence (as tests/transcribe_cli.rs writes them).
pub fn utterance(text: &str, seed: u64) -> Vec<i16> {
    let rate = 8000u64;
    let mut rng = Lcg(seed);
    let mut out = Vec::new();
    let silence = |ms: u64, out: &mut Vec<i16>, rng: &mut Lcg| {
        for _ in 0..ms * rate / 1000 {
            out.push((40.0 * rng.noise()) as i16);
        }
    };
    silence(40, &mut out, &mut rng);
    for c in text.chars() {
        if c == ' ' {
            silence(100, &mut out, &mut rng);
            continue;
        }
        let f = match c {
            'A' => 500.0,
            'B' => 1300.0,
            _ => 2500.0,
        };
        let n = (90 + rng.next() % 40) * rate / 1000;
        for t in 0..n {
            let x = (2.0 * std::f64::consts::PI * f * t as f64 / rate as f64).sin();
            out.push((8000.0 * x + 200.0 * rng.noise()) as i16);
        }
    }
    silence(40, &mut out, &mut rng);
    out
}

/// A spelled-tone transcription corpus (AN4's manifest layout) and a short config over it.
pub fn transcribe_config(dir: &Path) -> PathBuf {
    let data = dir.join("tones");
    fs::create_dir_all(data.join("wav")).unwrap();
    let mut rng = Lcg(17);
    for (split, n) in [("train", 24), ("dev", 4), ("test", 4)] {
        let mut lines = String::new();
        for i in 0..n {
            let len = 2 + rng.next() % 3;
            let letters: Vec<&str> = (0..len).map(|_| ["A", "B", "C"][(rng.next() % 3) as usize]).collect();
            let text = letters.join(" ");
            let rel = format!("wav/{split}_{i}.wav");
            fs::write(data.join(&rel), wav_bytes(8000, 1, &utterance(&text, rng.next()))).unwrap();
            lines.push_str(&format!(
                "{{\"audio\": \"{rel}\", \"text\": \"{text}\", \"speaker\": \"s{}\", \"duration\": 0.5}}\n",
                i % 3
            ));
        }
        fs::write(data.join(format!("{split}.jsonl")), lines).unwrap();
    }
    let cfg = format!(
        "task = \"transcribe\"\n[run]\nname = \"tones\"\nseed = 5\nthreads = 1\n[transcribe]\ndir = \"{}\"\n\
         train = \"train.jsonl\"\nvalidation = \"dev.jsonl\"\ntest = \"test.jsonl\"\nsample_rate = 8000\nstack = 2\n\
         beam = 3\nnormalization = \"utterance\"\n[transcribe.features]\nnum_mels = 16\n[model]\nhidden = 16\n\
         layers = 1\n[train]\nlr = 0.01\nepochs = 3\nbatch_size = 8\nearly_stopping_metric = \"cer\"\n\
         early_stopping_mode = \"min\"\ncheckpoint_every = 0\n",
        data.display()
    );
    let path = dir.join("tones.toml");
    fs::write(&path, cfg).unwrap();
    path
}

/// FSDD-shaped digit tones (`{digit}_{speaker}_{index}.wav`) and a short audio config over them.
pub fn audio_config(dir: &Path) -> PathBuf {
    let data = dir.join("recordings");
    fs::create_dir_all(&data).unwrap();
    let mut rng = Lcg(99);
    for (s, speaker) in ["ann", "bob"].iter().enumerate() {
        for digit in 0..10 {
            for index in 0..8 {
                let n = 1200 + 160 * index + 40 * s;
                let f = 300.0 + 250.0 * digit as f64;
                let samples: Vec<i16> = (0..n)
                    .map(|t| {
                        let x = (2.0 * std::f64::consts::PI * f * t as f64 / 8000.0).sin();
                        (6000.0 * x + 300.0 * rng.noise()) as i16
                    })
                    .collect();
                fs::write(data.join(format!("{digit}_{speaker}_{index}.wav")), wav_bytes(8000, 1, &samples)).unwrap();
            }
        }
    }
    let cfg = format!(
        "task = \"audio\"\n[run]\nname = \"digits\"\nseed = 3\nthreads = 1\n[data]\ncorpus = \"fsdd\"\ndir = \"{}\"\n\
         [audio]\nsplit = \"official\"\nval_fraction = 0.2\n[model]\nhidden = 8\npooling = \"mean\"\n\
         [train]\nepochs = 2\nbatch_size = 8\nlr = 0.02\ncheckpoint_every = 0\n",
        data.display()
    );
    let path = dir.join("digits.toml");
    fs::write(&path, cfg).unwrap();
    path
}

/// A tiny ETT-shaped forecasting corpus (as tests/forecast_cli.rs writes it): 300 hourly rows,
/// and its config; with each row's (date, OT).
pub fn forecast_config(tmp: &Path) -> (PathBuf, Vec<(String, f64)>) {
    let data = tmp.join("ett");
    std::fs::create_dir_all(&data).unwrap();
    let mut state = 99u64;
    let mut noise = move || {
        state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((state >> 33) as f64 / (1u64 << 31) as f64) - 0.5
    };
    let mut csv = String::from("date,HUFL,OT\n");
    let mut rows = Vec::new();
    for i in 0..300usize {
        let (day, hour) = (1 + i / 24, i % 24);
        let phase = i as f64 * std::f64::consts::TAU / 24.0;
        let hufl = 5.0 + 2.0 * phase.sin() + 0.1 * noise();
        let ot = 30.0 + 4.0 * (phase + 0.5).cos() + 0.02 * i as f64 + 0.2 * noise();
        let date = format!("2016-07-{day:02} {hour:02}:00:00");
        let ot_s = format!("{ot:.3}");
        csv.push_str(&format!("{date},{hufl:.3},{ot_s}\n"));
        rows.push((date, ot_s.parse().unwrap()));
    }
    std::fs::write(data.join("tiny.csv"), csv).unwrap();
    let cfg = format!(
        "task = \"forecast\"\n[run]\nname = \"ett\"\nseed = 5\nthreads = 1\n[data]\ncorpus = \"ett\"\ndir = \"{}\"\n\
         file = \"tiny.csv\"\ninput_len = 24\nhorizon = 6\nsplit_rows = [180, 60, 60]\nfeatures = \"S\"\ncalendar = true\n\
         [model]\nhidden = 8\nbidirectional = false\n[forecast]\nrevin = true\n[train]\nepochs = 2\nbatch_size = 16\n\
         lr = 0.01\nearly_stopping_metric = \"mse\"\nearly_stopping_mode = \"min\"\ncheckpoint_every = 0\n",
        data.display()
    );
    let path = tmp.join("ett.toml");
    std::fs::write(&path, cfg).unwrap();
    (path, rows)
}
