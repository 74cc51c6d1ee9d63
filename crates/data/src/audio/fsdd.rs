//! The Free Spoken Digit Dataset: a folder of `{digit}_{speaker}_{index}.wav` recordings
//! (a clone of github.com/Jakobovski/free-spoken-digit-dataset, its `recordings/` folder).

use super::{normalize_utterance, read_wav, AudioError, Mfcc, MfccConfig, Normalization, Normalizer};
use rand_chacha::rand_core::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// One recording, as named on disk.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FsddFile {
    /// The file, as `dir` joined with its name.
    pub path: PathBuf,
    /// The spoken digit, 0–9 (the name's first field; the class label).
    pub digit: u8,
    /// The speaker's name (everything between the first and the last `_`, so it may contain `_`).
    pub speaker: String,
    /// The recording's index within its (digit, speaker), 0–49 in the released dataset; the
    /// official split puts 0–4 in the test set.
    pub index: u32,
}

/// The recordings of a folder, sorted by (digit, speaker, index), and the entries that were not
/// `.wav` files (ignored, but reported so nothing disappears silently).
#[derive(Debug, Clone)]
pub struct FsddListing {
    /// Every `.wav` file, sorted by (digit, speaker, index).
    pub files: Vec<FsddFile>,
    /// Entries that are not `.wav` files (sub-folders included), sorted by path.
    pub ignored: Vec<PathBuf>,
}

/// How the recordings are split into train / test.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsddSplit {
    /// The dataset's own split: index 0–4 of every (digit, speaker) is test, 5–49 train.
    /// In TOML: `split = "official"`.
    #[default]
    Official,
    /// All recordings of the named speaker are the test set; the other speakers train.
    /// In TOML: `split = { speaker = "theo" }`.
    Speaker(String),
}

/// The settings of an FSDD run: `data.dir` plus the `[audio]` section of a config (assembled by
/// the train crate; keys documented in `configs/fsdd.toml`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FsddConfig {
    /// The folder holding the `.wav` files (`data.dir`).
    pub dir: PathBuf,
    /// `"official"` (default) or `{ speaker = "name" }`.
    #[serde(default)]
    pub split: FsddSplit,
    /// Share of the training files set aside for validation by a seeded shuffle (0.1).
    #[serde(default = "default_val_fraction")]
    pub val_fraction: f64,
    /// Front-end settings (defaults: 13 MFCCs of 40 mel bands, 25 ms / 10 ms, no deltas).
    #[serde(default)]
    pub mfcc: MfccConfig,
    /// `"train_set"` (default), `"utterance"` or `"none"`.
    #[serde(default)]
    pub normalization: Normalization,
}

fn default_val_fraction() -> f64 {
    0.1
}

/// Files per split.
#[derive(Debug, Clone, Default)]
pub struct SplitFiles {
    /// Training files (those not drawn for validation), in listing order.
    pub train: Vec<FsddFile>,
    /// `val_fraction` of the training side, drawn by the seeded shuffle, in listing order.
    pub validation: Vec<FsddFile>,
    /// The held-out files: index 0–4 (official split) or every file of the held-out speaker.
    pub test: Vec<FsddFile>,
}

/// One utterance: `features` is (frames × dim) row-major, `label` the spoken digit.
#[derive(Debug, Clone, PartialEq)]
pub struct AudioExample {
    /// `frames × dim` values, row-major, normalised as the config asks.
    pub features: Vec<f32>,
    /// Feature frames (one per 10 ms step by default; at least 1).
    pub frames: usize,
    /// The spoken digit, 0–9.
    pub label: usize,
    /// The speaker's name, from the file name.
    pub speaker: String,
    /// The source WAV file.
    pub path: PathBuf,
}

/// The featurised corpus.
#[derive(Debug, Clone)]
pub struct FsddCorpus {
    /// Training utterances, in listing order (digit, speaker, index).
    pub train: Vec<AudioExample>,
    /// Validation utterances drawn from the training side, in listing order.
    pub validation: Vec<AudioExample>,
    /// Test utterances, in listing order.
    pub test: Vec<AudioExample>,
    /// Features per frame: `num_ceps · (1 + delta_order)`.
    pub dim: usize,
    /// Sample rate in Hz shared by every file (8000 for FSDD).
    pub sample_rate: u32,
    /// Fitted on the training split when `normalization = "train_set"`; store it with the run
    /// and give it to [`file_features`] at prediction time.
    pub normalizer: Option<Normalizer>,
    /// Directory entries that were not `.wav` files.
    pub ignored: Vec<PathBuf>,
}

fn bad_name(path: &Path, reason: impl Into<String>) -> AudioError {
    AudioError::BadFileName { path: path.to_path_buf(), reason: reason.into() }
}

fn parse_name(path: &Path) -> Result<FsddFile, AudioError> {
    let stem = path.file_stem().and_then(|s| s.to_str()).ok_or_else(|| bad_name(path, "the name is not UTF-8"))?;
    let (digit, rest) = stem.split_once('_').ok_or_else(|| bad_name(path, "no `_` after the digit"))?;
    let (speaker, index) = rest.rsplit_once('_').ok_or_else(|| bad_name(path, "no `_` between speaker and index"))?;
    let digit = match digit.as_bytes() {
        [d @ b'0'..=b'9'] => d - b'0',
        _ => return Err(bad_name(path, format!("`{digit}` is not a digit 0-9"))),
    };
    if speaker.is_empty() {
        return Err(bad_name(path, "empty speaker name"));
    }
    let index = index.parse().map_err(|_| bad_name(path, format!("`{index}` is not a recording index")))?;
    Ok(FsddFile { path: path.to_path_buf(), digit, speaker: speaker.to_string(), index })
}

/// Lists and parses the recordings in `dir`. Every `.wav` must be named
/// `{digit}_{speaker}_{index}.wav`; anything else in the folder is returned in `ignored`.
///
/// Errors: [`AudioError::Io`] when the folder cannot be read, [`AudioError::BadFileName`] for a
/// misnamed `.wav`, [`AudioError::NoFiles`] when there is none.
pub fn list_fsdd(dir: &Path) -> Result<FsddListing, AudioError> {
    let io = |source| AudioError::Io { path: dir.to_path_buf(), source };
    let mut files = Vec::new();
    let mut ignored = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let path = entry.map_err(io)?.path();
        let is_wav = path.is_file() && path.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav"));
        if is_wav {
            files.push(parse_name(&path)?);
        } else {
            ignored.push(path);
        }
    }
    if files.is_empty() {
        return Err(AudioError::NoFiles { dir: dir.to_path_buf() });
    }
    // read_dir order is the file system's; sorting makes the seeded split reproducible anywhere.
    files.sort_by(|a, b| (a.digit, &a.speaker, a.index).cmp(&(b.digit, &b.speaker, b.index)));
    ignored.sort();
    Ok(FsddListing { files, ignored })
}

/// Tags the validation draw's stream so it never coincides with another purpose seeded by the
/// same run seed.
const VALIDATION_STREAM: u64 = 0xF5DD_0000_0000_0001;

/// Fisher–Yates over ChaCha8 words, with Lemire's unbiased bounded integers written out here so
/// the split does not change if `rand`'s sampling algorithms do.
fn shuffle<T>(v: &mut [T], seed: u64) {
    let mut rng = ChaCha8Rng::seed_from_u64(seed ^ VALIDATION_STREAM);
    for i in (1..v.len()).rev() {
        let n = i as u64 + 1;
        let threshold = n.wrapping_neg() % n;
        let j = loop {
            let m = rng.next_u64() as u128 * n as u128;
            if m as u64 >= threshold {
                break (m >> 64) as usize;
            }
        };
        v.swap(i, j);
    }
}

/// Splits sorted recordings into train / validation / test. Validation is `val_fraction` of the
/// training files (rounded half up), drawn by a ChaCha8 shuffle seeded with `seed`.
///
/// Errors: [`AudioError::InvalidConfig`] when `val_fraction` is outside [0, 1),
/// [`AudioError::UnknownSpeaker`] when the held-out speaker has no file.
pub fn split_fsdd(
    files: Vec<FsddFile>,
    split: &FsddSplit,
    val_fraction: f64,
    seed: u64,
) -> Result<SplitFiles, AudioError> {
    if !(0.0..1.0).contains(&val_fraction) {
        return Err(AudioError::InvalidConfig {
            key: "val_fraction",
            reason: format!("{val_fraction} is outside [0, 1)"),
        });
    }
    let (mut train, test): (Vec<_>, Vec<_>) = match split {
        FsddSplit::Official => files.into_iter().partition(|f| f.index >= 5),
        FsddSplit::Speaker(name) => {
            if !files.iter().any(|f| &f.speaker == name) {
                let known: BTreeSet<&str> = files.iter().map(|f| f.speaker.as_str()).collect();
                let dir = files.first().and_then(|f| f.path.parent()).map(Path::to_path_buf).unwrap_or_default();
                return Err(AudioError::UnknownSpeaker {
                    dir,
                    speaker: name.clone(),
                    known: known.into_iter().collect::<Vec<_>>().join(", "),
                });
            }
            files.into_iter().partition(|f| &f.speaker != name)
        }
    };
    shuffle(&mut train, seed);
    let n_val = (train.len() as f64 * val_fraction).round() as usize;
    let mut validation: Vec<_> = train.drain(..n_val).collect();
    // Back to the listing order: the batcher does its own seeded shuffling.
    let key = |f: &FsddFile| (f.digit, f.speaker.clone(), f.index);
    train.sort_by_key(key);
    validation.sort_by_key(key);
    Ok(SplitFiles { train, validation, test })
}

/// Features of one WAV file: MFCCs, then the normalisation (`normalizer` is required for
/// `Normalization::TrainSet`). This is what `predict` runs on a user's file.
///
/// Errors: those of [`read_wav`] and [`Mfcc::new`]; [`AudioError::TooShort`] for a file
/// shorter than one analysis frame; [`AudioError::Normalizer`] when
/// `TrainSet` comes without a normaliser or the features are not whole frames of its dimension.
pub fn file_features(
    path: &Path,
    config: &MfccConfig,
    normalization: Normalization,
    normalizer: Option<&Normalizer>,
) -> Result<super::Features, AudioError> {
    wav_features(&read_wav(path)?, path, config, normalization, normalizer)
}

/// [`file_features`] of a WAV already decoded (`path` names it in errors).
pub fn wav_features(
    wav: &super::Wav,
    path: &Path,
    config: &MfccConfig,
    normalization: Normalization,
    normalizer: Option<&Normalizer>,
) -> Result<super::Features, AudioError> {
    let mfcc = Mfcc::new(config, wav.sample_rate)?;
    // Zero-padding would turn a click into one made-up frame, and the model would answer it
    // with a made-up digit.
    let frame_len = mfcc.frame_geometry().0;
    if wav.samples.len() < frame_len {
        return Err(AudioError::TooShort {
            path: path.into(),
            samples: wav.samples.len(),
            sample_rate: wav.sample_rate,
            frame_len,
        });
    }
    let mut f = mfcc.compute(&wav.samples);
    match (normalization, normalizer) {
        (Normalization::None, _) => {}
        (Normalization::Utterance, _) => normalize_utterance(&mut f.data, f.dim),
        (Normalization::TrainSet, Some(n)) => n.apply(&mut f.data)?,
        (Normalization::TrainSet, None) => {
            return Err(AudioError::Normalizer {
                reason: "normalization = \"train_set\" needs the normaliser fitted on the training split".into(),
            })
        }
    }
    Ok(f)
}

/// Lists, splits and featurises the corpus of `config.dir`; `seed` draws the validation files.
///
/// Errors: those of [`list_fsdd`], [`split_fsdd`], [`read_wav`] and [`Mfcc::new`] (checked
/// at the first file's sample rate); [`AudioError::SampleRateMismatch`] when a file's rate
/// differs from the first one's; [`AudioError::Normalizer`] when the training split is empty
/// under `normalization = "train_set"`.
pub fn load_fsdd(config: &FsddConfig, seed: u64) -> Result<FsddCorpus, AudioError> {
    let listing = list_fsdd(&config.dir)?;
    let split = split_fsdd(listing.files, &config.split, config.val_fraction, seed)?;
    // All files share one extractor; the first file fixes the sample rate.
    let mut mfcc: Option<Mfcc> = None;
    let mut featurise = |files: Vec<FsddFile>| -> Result<Vec<AudioExample>, AudioError> {
        files
            .into_iter()
            .map(|f| {
                let wav = read_wav(&f.path)?;
                let m = match &mfcc {
                    Some(m) => m,
                    None => mfcc.insert(Mfcc::new(&config.mfcc, wav.sample_rate)?),
                };
                if wav.sample_rate != m.sample_rate() {
                    return Err(AudioError::SampleRateMismatch {
                        path: f.path,
                        expected: m.sample_rate(),
                        found: wav.sample_rate,
                    });
                }
                let mut feats = m.compute(&wav.samples);
                if config.normalization == Normalization::Utterance {
                    normalize_utterance(&mut feats.data, feats.dim);
                }
                Ok(AudioExample {
                    features: feats.data,
                    frames: feats.frames,
                    label: f.digit as usize,
                    speaker: f.speaker,
                    path: f.path,
                })
            })
            .collect()
    };
    let mut train = featurise(split.train)?;
    let mut validation = featurise(split.validation)?;
    let mut test = featurise(split.test)?;
    let mfcc = mfcc.expect("list_fsdd returns at least one file");
    let dim = mfcc.dim();
    let normalizer = if config.normalization == Normalization::TrainSet {
        let n = Normalizer::fit(dim, train.iter().map(|e| e.features.as_slice()))?;
        for e in train.iter_mut().chain(&mut validation).chain(&mut test) {
            n.apply(&mut e.features)?;
        }
        Some(n)
    } else {
        None
    };
    Ok(FsddCorpus {
        train,
        validation,
        test,
        dim,
        sample_rate: mfcc.sample_rate(),
        normalizer,
        ignored: listing.ignored,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audio::mfcc::tests::fsdd_dir;

    fn write_wav(path: &Path, sample_rate: u32, n: usize, seed: u32) {
        let spec =
            hound::WavSpec { channels: 1, sample_rate, bits_per_sample: 16, sample_format: hound::SampleFormat::Int };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..n as u32 {
            let v = ((i.wrapping_mul(2654435761).wrapping_add(seed * 97)) >> 20) as i16 - 2048;
            w.write_sample(v).unwrap();
        }
        w.finalize().unwrap();
    }

    /// 3 speakers × 10 digits × 8 recordings of 1,000-2,000 samples.
    fn tiny_corpus(dir: &Path) {
        for speaker in ["ann", "bob", "cy_d"] {
            for digit in 0..10 {
                for index in 0..8 {
                    let name = format!("{digit}_{speaker}_{index}.wav");
                    write_wav(&dir.join(name), 8000, 1000 + 125 * index as usize, digit * 8 + index);
                }
            }
        }
    }

    #[test]
    fn splits_are_disjoint_seeded_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        tiny_corpus(dir.path());
        std::fs::write(dir.path().join("README.md"), "not audio").unwrap();
        let listing = list_fsdd(dir.path()).unwrap();
        assert_eq!(listing.files.len(), 240);
        assert_eq!(listing.ignored.len(), 1);
        assert_eq!(listing.files.iter().filter(|f| f.speaker == "cy_d").count(), 80);

        let s = split_fsdd(listing.files.clone(), &FsddSplit::Official, 0.25, 7).unwrap();
        assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (67, 23, 150));
        assert!(s.test.iter().all(|f| f.index < 5));
        let mut all: Vec<_> = s.train.iter().chain(&s.validation).chain(&s.test).map(|f| f.path.clone()).collect();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), 240);
        let again = split_fsdd(listing.files.clone(), &FsddSplit::Official, 0.25, 7).unwrap();
        assert_eq!(again.validation, s.validation);
        let other = split_fsdd(listing.files.clone(), &FsddSplit::Official, 0.25, 8).unwrap();
        assert_ne!(other.validation, s.validation);

        let s = split_fsdd(listing.files.clone(), &FsddSplit::Speaker("bob".into()), 0.0, 7).unwrap();
        assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (160, 0, 80));
        assert!(s.test.iter().all(|f| f.speaker == "bob") && s.train.iter().all(|f| f.speaker != "bob"));

        let err = split_fsdd(listing.files.clone(), &FsddSplit::Speaker("zed".into()), 0.1, 7).unwrap_err();
        assert!(err.to_string().contains("zed") && err.to_string().contains("ann, bob, cy_d"), "{err}");
        assert!(split_fsdd(listing.files, &FsddSplit::Official, 1.0, 7).is_err());
    }

    #[test]
    fn bad_names_are_errors_naming_the_file() {
        for name in ["x_bob_1.wav", "12_bob_1.wav", "3_bob.wav", "3__1.wav", "3_bob_one.wav", "nounderscore.wav"] {
            let dir = tempfile::tempdir().unwrap();
            write_wav(&dir.path().join("1_ann_1.wav"), 8000, 500, 1);
            write_wav(&dir.path().join(name), 8000, 500, 1);
            let err = list_fsdd(dir.path()).unwrap_err();
            assert!(matches!(err, AudioError::BadFileName { .. }), "{name}: {err}");
            assert!(err.to_string().contains(name), "{err}");
        }
        let dir = tempfile::tempdir().unwrap();
        assert!(matches!(list_fsdd(dir.path()).unwrap_err(), AudioError::NoFiles { .. }));
        assert!(list_fsdd(&dir.path().join("nope")).unwrap_err().to_string().contains("nope"));
    }

    #[test]
    fn a_wav_shorter_than_one_frame_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("click.wav");
        write_wav(&p, 8000, 150, 1);
        let e = file_features(&p, &MfccConfig::default(), Normalization::Utterance, None).unwrap_err();
        assert!(matches!(e, AudioError::TooShort { samples: 150, frame_len: 200, .. }), "{e:?}");
        assert!(e.to_string().contains("click.wav") && e.to_string().contains("25.0 ms"), "{e}");
        write_wav(&p, 8000, 200, 1);
        assert!(file_features(&p, &MfccConfig::default(), Normalization::Utterance, None).is_ok());
    }

    #[test]
    fn load_normalises_with_train_statistics() {
        let dir = tempfile::tempdir().unwrap();
        tiny_corpus(dir.path());
        let cfg: FsddConfig = serde_json::from_value(serde_json::json!({
            "dir": dir.path(),
            "mfcc": {"delta_order": 1},
        }))
        .unwrap();
        assert_eq!(cfg.split, FsddSplit::Official);
        assert_eq!(cfg.normalization, Normalization::TrainSet);
        let c = load_fsdd(&cfg, 3).unwrap();
        assert_eq!((c.train.len(), c.validation.len(), c.test.len()), (81, 9, 150));
        assert_eq!((c.dim, c.sample_rate), (26, 8000));
        let e = &c.test[0];
        assert_eq!(e.features.len(), e.frames * c.dim);
        assert_eq!(e.label, 0);
        // Train-set statistics: the training features are centred with unit variance.
        let refit = Normalizer::fit(c.dim, c.train.iter().map(|e| e.features.as_slice())).unwrap();
        assert!(refit.mean.iter().all(|m| m.abs() < 1e-4), "{:?}", refit.mean);
        assert!(refit.std.iter().all(|s| (s - 1.0).abs() < 1e-4), "{:?}", refit.std);
        // predict's path gives the same features for a file.
        let f = file_features(&e.path, &cfg.mfcc, cfg.normalization, c.normalizer.as_ref()).unwrap();
        assert_eq!(f.data, e.features);
        assert!(file_features(&e.path, &cfg.mfcc, Normalization::TrainSet, None).is_err());

        // A file at another sample rate is named.
        write_wav(&dir.path().join("9_zoe_7.wav"), 16000, 3000, 1);
        let err = load_fsdd(&cfg, 3).unwrap_err();
        assert!(err.to_string().contains("9_zoe_7.wav"), "{err}");
    }

    #[test]
    fn config_from_toml_like_json() {
        let cfg: FsddConfig = serde_json::from_str(
            r#"{"dir": "x", "split": {"speaker": "theo"}, "val_fraction": 0.2, "normalization": "utterance"}"#,
        )
        .unwrap();
        assert_eq!(cfg.split, FsddSplit::Speaker("theo".into()));
        assert_eq!(cfg.normalization, Normalization::Utterance);
        let err = serde_json::from_str::<FsddConfig>(r#"{"dir": "x", "fraction": 0.2}"#).unwrap_err();
        assert!(err.to_string().contains("fraction"), "{err}");
    }

    /// Runs when ../shared/data/fsdd/recordings exists: counts, the official split, every file's
    /// MFCCs against python_speech_features (frames, sum, sum of squares), and the extraction time.
    #[test]
    fn real_fsdd_counts_and_all_files_match_reference() {
        let Some(dir) = fsdd_dir() else {
            eprintln!("../shared/data/fsdd/recordings not found: skipped");
            return;
        };
        let listing = list_fsdd(&dir).unwrap();
        assert_eq!(listing.files.len(), 3000);
        let s = split_fsdd(listing.files.clone(), &FsddSplit::Official, 0.0, 0).unwrap();
        assert_eq!((s.train.len(), s.test.len()), (2700, 300));
        let s = split_fsdd(listing.files.clone(), &FsddSplit::Official, 0.1, 0).unwrap();
        assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (2430, 270, 300));
        let s = split_fsdd(listing.files.clone(), &FsddSplit::Speaker("theo".into()), 0.1, 0).unwrap();
        assert_eq!((s.train.len(), s.validation.len(), s.test.len()), (2250, 250, 500));

        #[derive(Deserialize)]
        struct Summary {
            config: MfccConfig,
            files: std::collections::BTreeMap<String, (usize, f64, f64)>,
        }
        let text = std::fs::read_to_string(crate::audio::mfcc::tests::fixtures().join("fsdd_summary.json")).unwrap();
        let summary: Summary = serde_json::from_str(&text).unwrap();
        let mfcc = Mfcc::new(&summary.config, 8000).unwrap();
        let start = std::time::Instant::now();
        let mut frames = 0;
        let mut feats = Vec::with_capacity(listing.files.len());
        for f in &listing.files {
            let wav = read_wav(&f.path).unwrap();
            let x = mfcc.compute(&wav.samples);
            frames += x.frames;
            feats.push(x);
        }
        let secs = start.elapsed().as_secs_f64();
        eprintln!("FSDD: read + MFCC of {} files ({frames} frames) in {secs:.2} s on one thread", listing.files.len());
        let (mut worst_sum, mut worst_sq) = (0.0f64, 0.0f64);
        for (f, x) in listing.files.iter().zip(&feats) {
            let name = f.path.file_name().unwrap().to_str().unwrap();
            let &(n, sum, sq) = summary.files.get(name).unwrap_or_else(|| panic!("{name} not in summary"));
            assert_eq!(x.frames, n, "{name}");
            let our_sum: f64 = x.data.iter().map(|&v| v as f64).sum();
            let our_sq: f64 = x.data.iter().map(|&v| v as f64 * v as f64).sum();
            // The sum can cancel, so it is scaled by the sum of squares' root times the count.
            let sum_err = (our_sum - sum).abs() / (sq.sqrt() * (x.data.len() as f64).sqrt());
            let sq_err = (our_sq - sq).abs() / sq;
            assert!(sum_err <= 1e-4 && sq_err <= 1e-4, "{name}: sum {our_sum} vs {sum}, sq {our_sq} vs {sq}");
            worst_sum = worst_sum.max(sum_err);
            worst_sq = worst_sq.max(sq_err);
        }
        eprintln!(
            "FSDD vs python_speech_features: worst scaled sum error {worst_sum:.1e}, sum-of-squares {worst_sq:.1e}"
        );

        // The whole path a run takes: list, split, MFCC + deltas + delta-deltas, train-set normalisation.
        let cfg = FsddConfig {
            dir: dir.clone(),
            split: FsddSplit::Official,
            val_fraction: 0.1,
            mfcc: MfccConfig { delta_order: 2, ..MfccConfig::default() },
            normalization: Normalization::TrainSet,
        };
        let start = std::time::Instant::now();
        let c = load_fsdd(&cfg, 42).unwrap();
        eprintln!("FSDD: load_fsdd (39 features, train-set normalisation) in {:.2} s", start.elapsed().as_secs_f64());
        assert_eq!((c.train.len(), c.validation.len(), c.test.len()), (2430, 270, 300));
        assert_eq!((c.dim, c.sample_rate), (39, 8000));
        for digit in 0..10 {
            assert_eq!(c.test.iter().filter(|e| e.label == digit).count(), 30);
        }
    }
}
