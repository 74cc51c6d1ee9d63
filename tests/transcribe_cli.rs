//! End-to-end tests of `task = "transcribe"` on a tiny corpus the test writes: "spelled"
//! utterances whose letters are tones (A, B, C at three pitches) separated by short silences
//! standing for the spaces, in AN4's manifest layout. Registered as a test of the `train`
//! crate (see crates/train/Cargo.toml).

mod common;

use common::{ok, run_with_sets as run, stderr, train, write_wav};
use std::fs;
use std::path::{Path, PathBuf};

const RATE: u32 = 8000;

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

/// The samples of `text` at `rate`: each letter a tone of 90–130 ms, each space 100 ms of
/// near-silence, 40 ms of near-silence at both ends.
fn utterance(text: &str, rate: u32, rng: &mut Lcg) -> Vec<i16> {
    let mut out = Vec::new();
    let silence = |ms: u64, out: &mut Vec<i16>, rng: &mut Lcg| {
        for _ in 0..ms * rate as u64 / 1000 {
            out.push((40.0 * rng.noise()) as i16);
        }
    };
    silence(40, &mut out, rng);
    for c in text.chars() {
        if c == ' ' {
            silence(100, &mut out, rng);
            continue;
        }
        let f = match c {
            'A' => 500.0,
            'B' => 1300.0,
            _ => 2500.0,
        };
        let n = (90 + rng.next() % 40) * rate as u64 / 1000;
        for t in 0..n {
            let x = (2.0 * std::f64::consts::PI * f * t as f64 / rate as f64).sin();
            out.push((8000.0 * x + 200.0 * rng.noise()) as i16);
        }
    }
    silence(40, &mut out, rng);
    out
}

/// Manifests `train.jsonl` (60), `dev.jsonl` (10), `test.jsonl` (10) of 2–4 letters each.
fn write_corpus(dir: &Path) -> Vec<(PathBuf, String)> {
    fs::create_dir_all(dir.join("wav")).unwrap();
    let mut rng = Lcg(17);
    let mut test = Vec::new();
    for (split, n) in [("train", 60), ("dev", 10), ("test", 10)] {
        let mut lines = String::new();
        for i in 0..n {
            let len = 2 + rng.next() % 3;
            let letters: Vec<String> =
                (0..len).map(|_| ["A", "B", "C"][(rng.next() % 3) as usize].to_string()).collect();
            let text = letters.join(" ");
            let rel = format!("wav/{split}_{i}.wav");
            write_wav(&dir.join(&rel), RATE, 1, &utterance(&text, RATE, &mut rng));
            let speaker = format!("s{}", i % 3);
            lines.push_str(&format!(
                "{{\"audio\": \"{rel}\", \"text\": \"{text}\", \"speaker\": \"{speaker}\", \"duration\": 0.5}}\n"
            ));
            if split == "test" {
                test.push((dir.join(&rel), text));
            }
        }
        fs::write(dir.join(format!("{split}.jsonl")), lines).unwrap();
    }
    test
}

fn write_config(dir: &Path, data: &Path) -> PathBuf {
    let cfg = format!(
        r#"task = "transcribe"

[run]
name = "tones"
seed = 5
threads = 1

[transcribe]
dir = "{}"
train = "train.jsonl"
validation = "dev.jsonl"
test = "test.jsonl"
sample_rate = 8000
stack = 2
beam = 4
normalization = "utterance"

[transcribe.features]
num_mels = 24

[transcribe.augment]
freq_masks = 1
freq_width = 3
time_masks = 1
time_width = 3

[model]
hidden = 32
layers = 1

[train]
lr = 0.01
epochs = 40
batch_size = 8
clip_norm = 5.0
early_stopping_metric = "cer"
early_stopping_mode = "min"
checkpoint_every = 0
"#,
        data.display()
    );
    let path = dir.join("tones.toml");
    fs::write(&path, cfg).unwrap();
    path
}

fn stdout(out: &std::process::Output) -> String {
    String::from_utf8(out.stdout.clone()).unwrap()
}

/// The tone corpus is learnt to zero test errors; a rerun gives the same bytes; `transcribe`,
/// `predict` and `eval` agree with the summary; bad WAVs are clear errors.
#[test]
fn learns_tones_to_zero_errors_and_transcribes() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("corpus");
    let test = write_corpus(&data);
    let cfg = write_config(tmp.path(), &data);
    let (a, b) = (tmp.path().join("a"), tmp.path().join("b"));
    let summary = run(&cfg, &a, &[]);
    let t = &summary["test"];
    assert_eq!(t["wer"].as_f64(), Some(0.0), "{t}");
    assert_eq!(t["cer"].as_f64(), Some(0.0), "{t}");
    assert_eq!(t["cer_no_space"].as_f64(), Some(0.0), "{t}");
    assert_eq!(t["beam"].as_u64(), Some(4));
    let shown = t["examples"].as_array().unwrap();
    assert_eq!(shown[0]["reference"], shown[0]["hypothesis"]);

    // Same config and seed: identical metrics and checkpoint bytes.
    run(&cfg, &b, &[]);
    let metrics = |p: &Path| fs::read_to_string(p.join("metrics.jsonl")).unwrap();
    assert_eq!(metrics(&a), metrics(&b));
    assert_eq!(
        fs::read(a.join("checkpoints/best.safetensors")).unwrap(),
        fs::read(b.join("checkpoints/best.safetensors")).unwrap()
    );

    // transcribe: `text<TAB>file` per file, equal to the references.
    let files: Vec<String> = test.iter().take(4).map(|(p, _)| p.display().to_string()).collect();
    let mut args = vec!["transcribe", "--run", a.to_str().unwrap()];
    args.extend(files.iter().map(String::as_str));
    let out = train(&args, &[]);
    ok(&out);
    let text = stdout(&out);
    for ((line, file), (_, reference)) in text.lines().zip(&files).zip(&test) {
        assert_eq!(line, format!("{reference}\t{file}"));
    }
    // Greedy (--beam 1) reads the same here; predict is the same command.
    args.extend(["--beam", "1"]);
    let greedy = train(&args, &[]);
    ok(&greedy);
    assert_eq!(stdout(&greedy), text);
    let mut pargs = vec!["predict", "--run", a.to_str().unwrap()];
    pargs.extend(files.iter().map(String::as_str));
    assert_eq!(stdout(&train(&pargs, &[])), text);

    // --json: per-character times, in order, inside the recording.
    let out = train(&["transcribe", "--run", a.to_str().unwrap(), "--json", &files[0]], &[]);
    ok(&out);
    let v: serde_json::Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["text"], test[0].1.as_str());
    let chars = v["chars"].as_array().unwrap();
    assert_eq!(chars.iter().map(|c| c["char"].as_str().unwrap()).collect::<String>(), test[0].1);
    let mut last = 0.0;
    for c in chars {
        let (s, e) = (c["start"].as_f64().unwrap(), c["end"].as_f64().unwrap());
        assert!(s >= last && e > s && e <= 1.0, "{v}");
        last = e;
    }

    // A recording at another rate is resampled and reads the same; stereo is refused unless
    // downmixed; too short for one frame, or not a WAV, is refused naming the file.
    let mut rng = Lcg(99);
    let hi = tmp.path().join("hi.wav");
    write_wav(&hi, 16_000, 1, &utterance("C A B", 16_000, &mut rng));
    let st = tmp.path().join("stereo.wav");
    let mono = utterance("B C", RATE, &mut rng);
    write_wav(&st, RATE, 2, &mono.iter().flat_map(|&s| [s, s]).collect::<Vec<_>>());
    let short = tmp.path().join("short.wav");
    write_wav(&short, RATE, 1, &[0; 100]);
    let junk = tmp.path().join("junk.wav");
    fs::write(&junk, "not audio").unwrap();
    let transcribe = |f: &Path, sets: &[&str]| {
        let mut args = vec!["transcribe", "--run", a.to_str().unwrap(), f.to_str().unwrap()];
        args.extend_from_slice(sets);
        train(&args, &[])
    };
    let out = transcribe(&hi, &[]);
    ok(&out);
    assert_eq!(stdout(&out).split('\t').next(), Some("C A B"));
    let out = transcribe(&st, &[]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("stereo.wav") && e.contains("2 channels") && e.contains("downmix"), "{e}");
    let out = transcribe(&short, &[]);
    assert!(!out.status.success());
    let e = stderr(&out);
    assert!(e.contains("short.wav") && e.contains("shorter than one"), "{e}");
    let out = transcribe(&junk, &[]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("junk.wav"), "{}", stderr(&out));
    let out = transcribe(&hi, &["--beam", "0"]);
    assert!(!out.status.success() && stderr(&out).contains("--beam"), "{}", stderr(&out));

    // Downmixing, set in the run's config, reads the stereo file.
    let conf = fs::read_to_string(a.join("config.toml")).unwrap();
    assert!(conf.contains("stereo = \"refuse\""), "{conf}");
    let conf = conf.replace("stereo = \"refuse\"", "stereo = \"downmix\"");
    fs::write(a.join("config.toml"), conf).unwrap();
    let out = transcribe(&st, &[]);
    ok(&out);
    assert_eq!(stdout(&out).split('\t').next(), Some("B C"));

    // A character language model of the training transcripts, switched on after training:
    // the unambiguous tones still read the same.
    let conf = fs::read_to_string(a.join("config.toml")).unwrap();
    let conf = conf.replace("lm = \"none\"", "lm = \"char\"").replace("lm_weight = 0.0", "lm_weight = 0.3");
    fs::write(a.join("config.toml"), conf).unwrap();
    let out = transcribe(&hi, &[]);
    ok(&out);
    assert_eq!(stdout(&out).split('\t').next(), Some("C A B"));
    let out = train(&["eval", "--run", a.to_str().unwrap(), "--split", "test"], &[]);
    ok(&out);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["cer"].as_f64(), Some(0.0), "{e}");
    let conf = fs::read_to_string(a.join("config.toml")).unwrap();
    fs::write(a.join("config.toml"), conf.replace("lm = \"char\"", "lm = \"none\"")).unwrap();

    // eval reproduces the summary's test error rates.
    let out = train(&["eval", "--run", a.to_str().unwrap(), "--split", "test"], &[]);
    ok(&out);
    let e: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(e["cer"], t["cer"]);
    assert_eq!(e["wer"], t["wer"]);
}

/// A manifest line that is not the expected object, a missing recording, and keys out of
/// range are refused naming the file and line or the key.
#[test]
fn bad_manifests_and_settings_are_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("corpus");
    write_corpus(&data);
    let cfg = write_config(tmp.path(), &data);
    let fail = |sets: &[&str]| {
        let dir = tmp.path().join("x");
        let mut args = vec!["--config", cfg.to_str().unwrap(), "--run-dir", dir.to_str().unwrap(), "--quiet"];
        for s in sets {
            args.extend(["--set", s]);
        }
        let out = train(&args, &[]);
        assert!(!out.status.success());
        assert!(!dir.exists(), "a failed start leaves no run directory");
        stderr(&out)
    };
    let e = fail(&["transcribe.stack=0"]);
    assert!(e.contains("transcribe.stack"), "{e}");
    let e = fail(&["transcribe.features.num_mels=0"]);
    assert!(e.contains("transcribe.features.num_mels"), "{e}");
    let e = fail(&["transcribe.reduction=\"none\""]);
    assert!(e.contains("transcribe.reduction"), "{e}");
    let mut dev = fs::read_to_string(data.join("dev.jsonl")).unwrap();
    dev.push_str("{\"audio\": \"wav/missing.wav\", \"text\": \"A\"}\n");
    fs::write(data.join("dev.jsonl"), &dev).unwrap();
    let e = fail(&[]);
    assert!(e.contains("dev.jsonl:11") && e.contains("missing.wav"), "{e}");
    fs::write(data.join("dev.jsonl"), "{\"text\": \"A\"}\n").unwrap();
    let e = fail(&[]);
    assert!(e.contains("dev.jsonl:1") && e.contains("\"audio\""), "{e}");
}
