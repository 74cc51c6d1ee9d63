//! `corpus = "audio"` on clips the tests write: both layouts, every manifest format, resampling,
//! stereo, label rules, carved splits and every bad-input error.

use super::*;
use crate::config::CorpusKind;
use crate::table::tests::{write_parquet, PqCol};

/// A tone of `hz` Hz, `n` samples at `rate`, on `channels` identical channels.
pub(crate) fn write_tone(path: &Path, rate: u32, channels: u16, hz: f64, n: usize) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let spec =
        hound::WavSpec { channels, sample_rate: rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
    let mut w = hound::WavWriter::create(path, spec).unwrap();
    for t in 0..n {
        let v = (8000.0 * (2.0 * std::f64::consts::PI * hz * t as f64 / rate as f64).sin()) as i16;
        for _ in 0..channels {
            w.write_sample(v).unwrap();
        }
    }
    w.finalize().unwrap();
}

const TONES: [(&str, f64); 3] = [("high", 1800.0), ("low", 300.0), ("mid", 900.0)];

/// `<root>/<class>/<i>.wav`, `per_class` clips per class; the `mid` clips at 16 kHz, the
/// others at 8 kHz.
fn folder_corpus(root: &Path, per_class: usize) {
    for (class, hz) in TONES {
        for i in 0..per_class {
            let rate = if class == "mid" { 16_000 } else { 8_000 };
            write_tone(&root.join(class).join(format!("{i}.wav")), rate, 1, hz + 10.0 * i as f64, rate as usize / 5);
        }
    }
}

fn cfg(dir: &Path) -> DataConfig {
    DataConfig {
        corpus: CorpusKind::Audio,
        dir: Some(dir.into()),
        validation_split: 0.25,
        test_split: 0.25,
        ..Default::default()
    }
}

fn front() -> ClipFrontEnd {
    ClipFrontEnd {
        sample_rate: None,
        stereo: Stereo::Refuse,
        mfcc: MfccConfig::default(),
        normalization: Normalization::TrainSet,
    }
}

fn err(c: &DataConfig, f: &ClipFrontEnd) -> String {
    load_clips(c, f, 1).unwrap_err().to_string()
}

#[test]
fn a_folder_per_class_with_carved_splits() {
    let tmp = tempfile::tempdir().unwrap();
    folder_corpus(tmp.path(), 8);
    std::fs::write(tmp.path().join("README.txt"), "tones").unwrap();
    let c = load_clips(&cfg(tmp.path()), &front(), 1).unwrap();
    assert_eq!(c.class_names, ["high", "low", "mid"]);
    let f = &c.features;
    // The first training clip (class `high`) fixes the rate; the 16 kHz clips are resampled.
    assert_eq!(f.sample_rate, 8_000);
    assert_eq!((f.train.len(), f.validation.len(), f.test.len()), (12, 6, 6));
    for split in [&f.validation, &f.test] {
        for class in 0..3 {
            assert_eq!(split.iter().filter(|e| e.label == class).count(), 2);
        }
    }
    // 0.2 s at 8 kHz: 19 frames of 25 ms every 10 ms, whatever the file's rate.
    let frames: Vec<usize> = f.train.iter().chain(&f.test).map(|e| e.frames).collect();
    assert!(frames.iter().all(|&n| n == 19), "{frames:?}");
    assert!(f.normalizer.is_some());
    assert_eq!(f.ignored, [tmp.path().join("README.txt")]);
    // Seeded: the same seed carves the same clips, another seed others.
    let again = load_clips(&cfg(tmp.path()), &front(), 1).unwrap();
    let paths = |c: &ClipCorpus| c.features.test.iter().map(|e| e.path.clone()).collect::<Vec<_>>();
    assert_eq!(paths(&c), paths(&again));
    assert_ne!(paths(&c), paths(&load_clips(&cfg(tmp.path()), &front(), 2).unwrap()));
    // A configured rate, and a configured class order.
    let fixed = ClipFrontEnd { sample_rate: Some(16_000), ..front() };
    let c2 = load_clips(
        &DataConfig { labels: Some(vec!["mid".into(), "low".into(), "high".into()]), ..cfg(tmp.path()) },
        &fixed,
        1,
    )
    .unwrap();
    assert_eq!(c2.features.sample_rate, 16_000);
    assert_eq!(c2.class_names, ["mid", "low", "high"]);
    let mid = c2.features.train.iter().find(|e| e.path.parent().unwrap().ends_with("mid")).unwrap();
    assert_eq!(mid.label, 0);
}

#[test]
fn split_folders_and_integer_class_names() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    for (split, n) in [("train", 4), ("test", 2)] {
        for (class, hz) in [("10", 300.0), ("2", 900.0)] {
            for i in 0..n {
                write_tone(&d.join(split).join(class).join(format!("{i}.wav")), 8_000, 1, hz, 1_600);
            }
        }
    }
    let c = DataConfig { train_file: Some("train".into()), test_file: Some("test".into()), test_split: 0.0, ..cfg(d) };
    let clips = load_clips(&c, &front(), 1).unwrap();
    // Integers sort numerically.
    assert_eq!(clips.class_names, ["2", "10"]);
    assert_eq!((clips.features.train.len(), clips.features.validation.len(), clips.features.test.len()), (6, 2, 4));
    // A class in test that train never saw.
    write_tone(&d.join("test/7/0.wav"), 8_000, 1, 500.0, 1_600);
    let e = err(&c, &front());
    assert!(e.contains("test/7") && e.contains("class `7`") && e.contains("occurs in the training split"), "{e}");
}

/// The same three-class corpus as a manifest in every format.
#[test]
fn manifests_in_every_format() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    folder_corpus(&d.join("wav"), 4);
    let mut rows = Vec::new();
    for (class, _) in TONES {
        for i in 0..4 {
            rows.push((format!("wav/{class}/{i}.wav"), class));
        }
    }
    let csv: String =
        std::iter::once("file,kind\n".to_string()).chain(rows.iter().map(|(a, l)| format!("{a},{l}\n"))).collect();
    std::fs::write(d.join("m.csv"), &csv).unwrap();
    std::fs::write(d.join("m.tsv"), csv.replace(',', "\t")).unwrap();
    let jsonl: String = rows.iter().map(|(a, l)| format!("{{\"file\": \"{a}\", \"kind\": \"{l}\"}}\n")).collect();
    std::fs::write(d.join("m.jsonl"), jsonl).unwrap();
    write_parquet(
        &d.join("m.parquet"),
        &[
            ("file", PqCol::Str(rows.iter().map(|r| Some(r.0.clone())).collect())),
            ("kind", PqCol::Str(rows.iter().map(|r| Some(r.1.to_string())).collect())),
        ],
    );
    let mut seen = Vec::new();
    for name in ["m.csv", "m.tsv", "m.jsonl", "m.parquet"] {
        let c = DataConfig {
            train_file: Some(name.into()),
            audio_column: "file".into(),
            label_column: "kind".into(),
            ..cfg(d)
        };
        let clips = load_clips(&c, &front(), 1).unwrap();
        assert_eq!(clips.class_names, ["high", "low", "mid"], "{name}");
        let f = &clips.features;
        seen.push((f.train.iter().map(|e| (e.path.clone(), e.label)).collect::<Vec<_>>(), f.test[0].features.clone()));
    }
    assert!(seen.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn bad_input_names_file_row_and_column() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    folder_corpus(&d.join("wav"), 4);
    let c = DataConfig { train_file: Some("m.csv".into()), ..cfg(d) };
    let write = |extra: &str| {
        let mut s = String::from("audio,label\n");
        for (class, _) in TONES {
            for i in 0..4 {
                s.push_str(&format!("wav/{class}/{i}.wav,{class}\n"));
            }
        }
        s.push_str(extra);
        std::fs::write(d.join("m.csv"), s).unwrap();
    };
    let manifest = |extra: &str| {
        write(extra);
        err(&c, &front())
    };
    // A manifest naming a missing WAV.
    let e = manifest("wav/low/gone.wav,low\n");
    assert!(
        e.contains("m.csv:14")
            && e.contains("column `audio`")
            && e.contains("gone.wav")
            && e.contains("does not exist"),
        "{e}"
    );
    // A WAV shorter than one analysis frame (25 ms = 200 samples at 8 kHz).
    write_tone(&d.join("wav/short.wav"), 8_000, 1, 300.0, 120);
    let e = manifest("wav/short.wav,low\n");
    assert!(
        e.contains("m.csv:14: column `audio`")
            && e.contains("short.wav")
            && e.contains("shorter than one analysis frame"),
        "{e}"
    );
    // Bytes that are not WAV.
    std::fs::write(d.join("wav/junk.wav"), b"ID3 this is an mp3, really").unwrap();
    let e = manifest("wav/junk.wav,low\n");
    assert!(
        e.contains("m.csv:14: column `audio`") && e.contains("junk.wav") && e.contains("not a readable WAV"),
        "{e}"
    );
    // Stereo: refused by default, averaged on request.
    write_tone(&d.join("wav/st.wav"), 8_000, 2, 300.0, 1_600);
    let e = manifest("wav/st.wav,low\n");
    assert!(e.contains("st.wav") && e.contains("2 channels") && e.contains("audio.stereo"), "{e}");
    let downmix = ClipFrontEnd { stereo: Stereo::Downmix, ..front() };
    assert!(load_clips(&c, &downmix, 1).is_ok());
    // Other sample formats: 24-bit integers and 32-bit floats are read, 64-bit floats are not.
    for (name, bits, format) in [("i24.wav", 24, hound::SampleFormat::Int), ("f32.wav", 32, hound::SampleFormat::Float)]
    {
        let spec = hound::WavSpec { channels: 1, sample_rate: 8_000, bits_per_sample: bits, sample_format: format };
        let mut w = hound::WavWriter::create(d.join("wav").join(name), spec).unwrap();
        for t in 0..1_600 {
            let x = (2.0 * std::f64::consts::PI * 300.0 * t as f64 / 8_000.0).sin() * 0.25;
            match format {
                hound::SampleFormat::Int => w.write_sample((x * 8_388_607.0) as i32).unwrap(),
                hound::SampleFormat::Float => w.write_sample(x as f32).unwrap(),
            }
        }
        w.finalize().unwrap();
        let samples = read_clip(&d.join("wav").join(name), 8_000, Stereo::Refuse).unwrap();
        // On the 16-bit scale: a quarter of full scale peaks near 8192.
        let peak = samples.iter().fold(0.0f64, |m, v| m.max(v.abs()));
        assert!((peak - 8192.0).abs() < 10.0, "{name}: {peak}");
    }
    let mut f64_wav = std::fs::read(d.join("wav/f32.wav")).unwrap();
    f64_wav[34] = 64; // bits per sample in the fmt chunk
    std::fs::write(d.join("wav/f64.wav"), f64_wav).unwrap();
    let e = read_clip(&d.join("wav/f64.wav"), 8_000, Stereo::Refuse).unwrap_err().to_string();
    assert!(e.contains("f64.wav") && (e.contains("64-bit float") || e.contains("not a readable WAV")), "{e}");
    // An unknown column lists the columns the file has.
    write("");
    let e = err(&DataConfig { audio_column: "path".into(), ..c.clone() }, &front());
    assert!(e.contains("m.csv") && e.contains("missing column `path`") && e.contains("audio, label"), "{e}");
    // A label outside data.labels.
    let e = err(&DataConfig { labels: Some(vec!["low".into(), "high".into()]), ..c.clone() }, &front());
    assert!(e.contains("m.csv:10") && e.contains("column `label`") && e.contains("one of data.labels"), "{e}");
    // A class in the test manifest that train never saw.
    std::fs::write(d.join("t.csv"), "audio,label\nwav/low/0.wav,low\nwav/mid/0.wav,bass\n").unwrap();
    let e = err(&DataConfig { test_file: Some("t.csv".into()), test_split: 0.0, ..c.clone() }, &front());
    assert!(e.contains("t.csv:3") && e.contains("column `label`") && e.contains("`bass`"), "{e}");
    // A missing manifest, one class only.
    let e = err(&DataConfig { train_file: Some("nope.csv".into()), ..c.clone() }, &front());
    assert!(e.contains("nope.csv") && e.contains("not found"), "{e}");
    std::fs::write(d.join("one.csv"), "audio,label\nwav/low/0.wav,low\nwav/low/1.wav,low\n").unwrap();
    let e = err(&DataConfig { train_file: Some("one.csv".into()), ..c.clone() }, &front());
    assert!(e.contains("one class only"), "{e}");
    // Mixed label types in a typed (JSON) column.
    std::fs::write(
        d.join("mixed.jsonl"),
        "{\"audio\": \"wav/low/0.wav\", \"label\": 1}\n{\"audio\": \"wav/mid/0.wav\", \"label\": \"mid\"}\n",
    )
    .unwrap();
    let e = err(&DataConfig { train_file: Some("mixed.jsonl".into()), ..c.clone() }, &front());
    assert!(e.contains("mixed.jsonl:2") && e.contains("an integer label"), "{e}");
    // A clip directly in a class-folder root.
    write_tone(&d.join("loose/a.wav"), 8_000, 1, 300.0, 1_600);
    let e = err(&DataConfig { train_file: Some("loose".into()), ..c.clone() }, &front());
    assert!(e.contains("a.wav") && e.contains("a folder per class"), "{e}");
}

#[test]
fn config_keys_of_corpus_audio() {
    let ok = cfg(Path::new("x"));
    ok.validate().unwrap();
    for (c, key) in [
        (DataConfig { dir: None, ..ok.clone() }, "data.dir"),
        (DataConfig { dir: None, hub: Some("a/b".into()), ..ok.clone() }, "data.hub"),
        (DataConfig { text_column: "t".into(), ..ok.clone() }, "data.text_column"),
        (DataConfig { audio_column: " ".into(), ..ok.clone() }, "data.audio_column"),
        (DataConfig { validation_split: 0.0, ..ok.clone() }, "data.validation_split"),
        (
            DataConfig {
                corpus: CorpusKind::Fsdd,
                dir: Some("x".into()),
                audio_column: "f".into(),
                ..Default::default()
            },
            "data.audio_column",
        ),
    ] {
        let e = c.validate().unwrap_err().to_string();
        assert!(e.contains(&format!("`{key}`")), "{e} should name {key}");
    }
}
