//! Your own labelled audio clips (`corpus = "audio"`): a folder per class, or a manifest.
//!
//! Each split (`train_file`, `validation_file`, `test_file`, relative to `dir`) is either
//! - a folder holding one sub-folder per class, `<split>/<label>/*.wav` (with no `train_file`,
//!   `dir` itself is the training folder), or
//! - a manifest table (CSV/TSV/JSON Lines/Parquet, optionally `.gz`, read by [`crate::table`])
//!   with `audio_column` (a WAV path relative to the manifest's folder) and `label_column`.
//!
//! Labels follow `corpus = "text"`'s rules: integers or strings, the class list from
//! `data.labels` or the training split sorted (integers numerically); a split without its own
//! file is carved from train (`validation_split`, `test_split`: seeded, stratified). Clips are
//! read as mono (more channels refused, or averaged with `stereo = "downmix"`), resampled by
//! `rubato` to the corpus rate (`audio.sample_rate`, else the first training clip's rate), and
//! featurised by the FSDD front end (MFCCs, normalisation). Every problem is an error naming
//! the file, and for a manifest also its line (or Parquet row) and column.

use super::an4::Stereo;
use super::{normalize_utterance, AudioError, AudioExample, Features, FsddCorpus, Mfcc, MfccConfig};
use super::{Normalization, Normalizer};
use crate::config::DataConfig;
use crate::labels::{carve_plan, class_list, Label};
use crate::table::{Cell, Format, Row, Table};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// The `[audio]` settings a `corpus = "audio"` run reads (assembled by the train crate).
#[derive(Debug, Clone, PartialEq)]
pub struct ClipFrontEnd {
    /// Every clip is resampled to this rate; unset: the first training clip's rate.
    pub sample_rate: Option<u32>,
    /// Clips with more than one channel: refused, or averaged.
    pub stereo: Stereo,
    /// The MFCC front end.
    pub mfcc: MfccConfig,
    /// Per-utterance, train-set or no normalisation.
    pub normalization: Normalization,
}

/// The featurised clips and their class names (index = label).
#[derive(Debug, Clone)]
pub struct ClipCorpus {
    /// Splits, feature width, the corpus rate, the train-set normaliser and ignored entries,
    /// as for FSDD (`speaker` is empty).
    pub features: FsddCorpus,
    /// Class names in label order.
    pub class_names: Vec<String>,
}

/// Where a clip was named: a class folder, or a manifest row.
#[derive(Debug, Clone)]
enum Origin {
    Folder,
    Row { manifest: PathBuf, row: usize, unit: &'static str, column: String },
}

impl Origin {
    /// `e` with the manifest's line/row and column in front, when the clip came from one.
    fn locate(&self, e: AudioError) -> AudioError {
        match self {
            Origin::Folder => e,
            Origin::Row { manifest, row, unit, column } => AudioError::InManifest {
                manifest: manifest.clone(),
                row: *row,
                unit,
                column: column.clone(),
                source: Box::new(e),
            },
        }
    }
}

#[derive(Debug, Clone)]
struct Clip {
    path: PathBuf,
    label: Label,
    origin: Origin,
}

/// One split as listed: its clips, where it came from (folder or manifest) and the entries
/// of a folder that are not `.wav` files.
struct Listed {
    clips: Vec<Clip>,
    source: PathBuf,
    /// The manifest and its label column, to build errors about its rows.
    table: Option<(Table, usize)>,
    ignored: Vec<PathBuf>,
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> AudioError + '_ {
    move |source| AudioError::Io { path: path.into(), source }
}

fn is_wav(p: &Path) -> bool {
    p.extension().is_some_and(|e| e.eq_ignore_ascii_case("wav"))
}

/// `<root>/<label>/*.wav`, classes and files sorted by name.
fn list_folder(root: &Path) -> Result<Listed, AudioError> {
    let mut classes = Vec::new();
    let mut ignored = Vec::new();
    for entry in std::fs::read_dir(root).map_err(io(root))? {
        let path = entry.map_err(io(root))?.path();
        if path.is_dir() {
            classes.push(path);
        } else if is_wav(&path) {
            return Err(AudioError::Class {
                path,
                reason: format!("a clip directly in {}: expected a folder per class, `<label>/*.wav`", root.display()),
            });
        } else {
            ignored.push(path);
        }
    }
    classes.sort();
    let mut clips = Vec::new();
    for class in classes {
        let name = class.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut files = Vec::new();
        for entry in std::fs::read_dir(&class).map_err(io(&class))? {
            let path = entry.map_err(io(&class))?.path();
            if path.is_file() && is_wav(&path) {
                files.push(path);
            } else {
                ignored.push(path);
            }
        }
        if files.is_empty() {
            return Err(AudioError::NoFiles { dir: class });
        }
        files.sort();
        let label = Label::parse(name.trim());
        clips.extend(files.into_iter().map(|path| Clip { path, label: label.clone(), origin: Origin::Folder }));
    }
    if clips.is_empty() {
        return Err(AudioError::Class {
            path: root.into(),
            reason: "no class folders: expected a folder per class, `<label>/*.wav`".into(),
        });
    }
    ignored.sort();
    Ok(Listed { clips, source: root.into(), table: None, ignored })
}

/// The manifest's rows: an existing WAV file (relative to the manifest's folder) and a label.
fn list_manifest(path: &Path, cfg: &DataConfig) -> Result<Listed, AudioError> {
    let table = Table::read(path)?;
    let audio = table.column(&cfg.audio_column, "data.audio_column")?;
    let label = table.column(&cfg.label_column, "data.label_column")?;
    let base = path.parent().unwrap_or(Path::new("."));
    // JSON and Parquet cells keep their types: one column holds integers or strings, not both.
    let typed = !matches!(table.format, Format::Csv | Format::Tsv);
    let mut first_kind: Option<(bool, usize)> = None;
    let mut clips = Vec::with_capacity(table.rows.len());
    for row in &table.rows {
        let file = match &row.cells[audio] {
            Cell::Str(s) if !s.trim().is_empty() => s.trim(),
            _ => {
                return Err(table.cell_error(row, audio, "a WAV file's path, relative to the manifest's folder").into())
            }
        };
        let wav = base.join(file);
        if !wav.is_file() {
            return Err(table
                .error_at(
                    row,
                    audio,
                    "a WAV file's path, relative to the manifest's folder",
                    format!("`{file}` ({} does not exist)", wav.display()),
                )
                .into());
        }
        let (value, is_int) = match &row.cells[label] {
            Cell::Int(i) => (Label::Int(*i), true),
            Cell::Str(s) if !s.trim().is_empty() => (Label::parse(s.trim()), false),
            _ => return Err(table.cell_error(row, label, "a label: an integer or a non-empty string").into()),
        };
        if typed {
            match first_kind {
                None => first_kind = Some((is_int, row.pos)),
                Some((int, pos)) if int != is_int => {
                    let kind = if int { "an integer" } else { "a string" };
                    return Err(table
                        .cell_error(row, label, format!("{kind} label, like the first label of the column ({pos})"))
                        .into());
                }
                _ => {}
            }
        }
        let origin = Origin::Row {
            manifest: path.into(),
            row: row.pos,
            unit: table.row_unit(),
            column: cfg.audio_column.clone(),
        };
        clips.push(Clip { path: wav, label: value, origin });
    }
    Ok(Listed { clips, source: path.into(), table: Some((table, label)), ignored: Vec::new() })
}

/// A split named `name` in `dir`: a folder per class, or a manifest.
fn list_split(dir: &Path, name: Option<&str>, cfg: &DataConfig) -> Result<Listed, AudioError> {
    let path = name.map_or_else(|| dir.to_path_buf(), |n| dir.join(n));
    if path.is_dir() {
        return list_folder(&path);
    }
    if !path.exists() {
        return Err(crate::Error::MissingFile {
            path,
            hint: Some("a folder per class (`<label>/*.wav`) or a manifest table, named in [data]".into()),
        }
        .into());
    }
    list_manifest(&path, cfg)
}

/// An error about `clip`'s label: a manifest cell error, or one naming the class folder.
fn label_error(listed: &Listed, clip: &Clip, expected: String) -> AudioError {
    let name = clip.label.name();
    match (&listed.table, &clip.origin) {
        (Some((t, col)), Origin::Row { row, .. }) => {
            let r = Row { pos: *row, cells: vec![Cell::Null; t.columns.len()] };
            t.error_at(&r, *col, expected, format!("`{name}`")).into()
        }
        _ => AudioError::Class {
            path: clip.path.parent().map(Path::to_path_buf).unwrap_or_default(),
            reason: format!("class `{name}`: expected {expected}"),
        },
    }
}

/// Reads a WAV file as mono samples on the 16-bit integer scale (so a 16-bit file gives its
/// integer values, as FSDD's reader does) at `sample_rate` Hz: 8/16/24/32-bit integer or 32-bit
/// float PCM; more than one channel refused or averaged per `stereo`; other rates resampled
/// ([`super::resample::resample`]).
///
/// Errors: [`AudioError::Wav`] for a missing file or bytes that are not WAV,
/// [`AudioError::Stereo`], [`AudioError::ClipFormat`] for other sample formats,
/// [`AudioError::Empty`], [`AudioError::Truncated`], [`AudioError::Resample`].
pub fn read_clip(path: &Path, sample_rate: u32, stereo: Stereo) -> Result<Vec<f64>, AudioError> {
    let reader = hound::WavReader::open(path).map_err(|source| AudioError::Wav { path: path.into(), source })?;
    clip_of(reader, path, sample_rate, stereo)
}

/// [`read_clip`] of a WAV file's bytes (a request body in `train serve`); `name` names it in
/// errors.
pub fn parse_clip(bytes: &[u8], name: &Path, sample_rate: u32, stereo: Stereo) -> Result<Vec<f64>, AudioError> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|source| AudioError::Wav { path: name.into(), source })?;
    clip_of(reader, name, sample_rate, stereo)
}

fn clip_of<R: std::io::Read>(
    mut reader: hound::WavReader<R>,
    path: &Path,
    sample_rate: u32,
    stereo: Stereo,
) -> Result<Vec<f64>, AudioError> {
    let spec = reader.spec();
    if spec.channels > 1 && stereo == Stereo::Refuse {
        return Err(AudioError::Stereo { path: path.into(), channels: spec.channels });
    }
    let expected = reader.len() as u64;
    if expected == 0 {
        return Err(AudioError::Empty { path: path.into() });
    }
    let cut = |e: hound::Error, got: usize| match e {
        hound::Error::IoError(io)
            if io.kind() == std::io::ErrorKind::UnexpectedEof
                || io.to_string().contains("Failed to read enough bytes") =>
        {
            AudioError::Truncated { path: path.into(), expected, got: got as u64 }
        }
        other => AudioError::Wav { path: path.into(), source: other },
    };
    let mut interleaved = Vec::with_capacity(expected as usize);
    match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, bits @ 1..=32) => {
            let scale = 2f64.powi(16 - bits as i32);
            for s in reader.samples::<i32>() {
                let v = s.map_err(|e| cut(e, interleaved.len()))?;
                interleaved.push(v as f64 * scale);
            }
        }
        (hound::SampleFormat::Float, 32) => {
            for s in reader.samples::<f32>() {
                let v = s.map_err(|e| cut(e, interleaved.len()))?;
                interleaved.push(v as f64 * 32768.0);
            }
        }
        (f, bits) => {
            return Err(AudioError::ClipFormat {
                path: path.into(),
                bits,
                format: if f == hound::SampleFormat::Int { "integer PCM" } else { "float" },
            })
        }
    }
    let ch = spec.channels.max(1) as usize;
    let mono: Vec<f64> =
        if ch == 1 { interleaved } else { interleaved.chunks(ch).map(|c| c.iter().sum::<f64>() / ch as f64).collect() };
    super::resample::resample(path, &mono, spec.sample_rate, sample_rate)
}

/// MFCCs of one clip (read by [`read_clip`] at `mfcc`'s rate), normalised per `normalization`
/// (`normalizer` is required for `TrainSet`; `None` there leaves the features raw, for fitting).
///
/// Errors: those of [`read_clip`]; [`AudioError::TooShort`] for a clip shorter than one
/// analysis frame (after resampling).
pub fn clip_features(
    path: &Path,
    mfcc: &Mfcc,
    stereo: Stereo,
    normalization: Normalization,
    normalizer: Option<&Normalizer>,
) -> Result<Features, AudioError> {
    clip_sample_features(&read_clip(path, mfcc.sample_rate(), stereo)?, path, mfcc, normalization, normalizer)
}

/// [`clip_features`] of samples already read at `mfcc`'s rate (by [`read_clip`] or
/// [`parse_clip`]); `path` names the clip in errors.
pub fn clip_sample_features(
    samples: &[f64],
    path: &Path,
    mfcc: &Mfcc,
    normalization: Normalization,
    normalizer: Option<&Normalizer>,
) -> Result<Features, AudioError> {
    // Zero-padding would turn a click into one made-up frame, and the model would answer it
    // with a made-up class.
    let frame_len = mfcc.frame_geometry().0;
    if samples.len() < frame_len {
        return Err(AudioError::TooShort {
            path: path.into(),
            samples: samples.len(),
            sample_rate: mfcc.sample_rate(),
            frame_len,
        });
    }
    let mut f = mfcc.compute_f64(samples);
    match (normalization, normalizer) {
        (Normalization::Utterance, _) => normalize_utterance(&mut f.data, f.dim),
        (Normalization::TrainSet, Some(n)) => n.apply(&mut f.data)?,
        _ => {}
    }
    Ok(f)
}

/// Lists, labels, splits and featurises the clips of a `corpus = "audio"` config; `seed` draws
/// the carved validation/test clips.
///
/// Errors: a missing split file or folder, a manifest that cannot be read or lacks a column
/// (listing the columns it has), a row naming a missing WAV, a label outside `data.labels`, a
/// validation/test class that train lacks, fewer than two classes, an empty split, and every
/// error of [`clip_features`]; each names the file (and line/row and column).
pub fn load_clips(cfg: &DataConfig, front: &ClipFrontEnd, seed: u64) -> Result<ClipCorpus, AudioError> {
    cfg.validate()?;
    let dir = cfg.dir.as_deref().expect("validated: corpus audio has a dir");
    let train = list_split(dir, cfg.train_file.as_deref(), cfg)?;
    let validation = cfg.validation_file.as_deref().map(|n| list_split(dir, Some(n), cfg)).transpose()?;
    let test = cfg.test_file.as_deref().map(|n| list_split(dir, Some(n), cfg)).transpose()?;

    let class_names = class_list(cfg.labels.as_deref(), train.clips.iter().map(|c| &c.label));
    let index: BTreeMap<&str, usize> = class_names.iter().enumerate().map(|(i, n)| (n.as_str(), i)).collect();
    let resolve = |listed: &Listed, known: Option<&[bool]>| -> Result<Vec<(PathBuf, usize, Origin)>, AudioError> {
        let mut out = Vec::with_capacity(listed.clips.len());
        for clip in &listed.clips {
            let name = clip.label.name();
            match index.get(name.as_str()) {
                Some(&i) if known.is_none_or(|k| k[i]) => out.push((clip.path.clone(), i, clip.origin.clone())),
                Some(_) => {
                    return Err(label_error(
                        listed,
                        clip,
                        "a class that occurs in the training split (the model never learns the others)".into(),
                    ))
                }
                None if cfg.labels.is_some() => {
                    return Err(label_error(listed, clip, format!("one of data.labels = [{}]", class_names.join(", "))))
                }
                None => {
                    return Err(label_error(
                        listed,
                        clip,
                        format!(
                            "a class that occurs in the training split ([{}]; the model never learns the others)",
                            class_names.join(", ")
                        ),
                    ))
                }
            }
        }
        Ok(out)
    };
    let mut train_clips = resolve(&train, None)?;
    if class_names.len() < 2 {
        return Err(AudioError::Class {
            path: train.source.clone(),
            reason: format!(
                "one class only (`{}`): classification needs at least two",
                class_names.first().cloned().unwrap_or_default()
            ),
        });
    }
    let mut in_train = vec![false; class_names.len()];
    for c in &train_clips {
        in_train[c.1] = true;
    }
    let empty = |listed: &Listed, split: &str| {
        AudioError::from(crate::Error::EmptySplit { path: listed.source.clone(), split: split.into(), detail: None })
    };
    let checked = |listed: Option<&Listed>, split: &str| -> Result<Option<Vec<_>>, AudioError> {
        let Some(l) = listed else { return Ok(None) };
        let clips = resolve(l, Some(&in_train))?;
        if clips.is_empty() {
            return Err(empty(l, split));
        }
        Ok(Some(clips))
    };
    let validation_clips = checked(validation.as_ref(), "validation")?;
    let test_clips = checked(test.as_ref(), "test")?;
    if train_clips.is_empty() {
        return Err(empty(&train, "train"));
    }

    // Splits without their own file are carved from train, per class, with the run seed.
    let fv = if validation_clips.is_none() { cfg.validation_split } else { 0.0 };
    let ft = if test_clips.is_none() { cfg.test_split } else { 0.0 };
    let mut parts: [Vec<(PathBuf, usize, Origin)>; 3] = Default::default();
    if fv > 0.0 || ft > 0.0 {
        let labels: Vec<usize> = train_clips.iter().map(|c| c.1).collect();
        let dest = carve_plan(&labels, class_names.len(), fv, ft, seed);
        for (c, d) in std::mem::take(&mut train_clips).into_iter().zip(dest) {
            parts[d as usize].push(c);
        }
        train_clips = std::mem::take(&mut parts[0]);
        for (split, key, rows, f) in
            [("validation", "validation_split", &parts[1], fv), ("test", "test_split", &parts[2], ft)]
        {
            if f > 0.0 && rows.is_empty() {
                return Err(crate::Error::EmptySplit {
                    path: train.source.clone(),
                    split: split.into(),
                    detail: Some(format!("data.{key} = {f} of {} clips rounds to none in every class", labels.len())),
                }
                .into());
            }
        }
        if train_clips.is_empty() {
            return Err(empty(&train, "train"));
        }
    }
    let [_, carved_validation, carved_test] = parts;
    let validation_clips = validation_clips.unwrap_or(carved_validation);
    let test_clips = test_clips.unwrap_or(carved_test);

    // One extractor at the corpus rate: the configured one, else the first training clip's.
    let rate = match front.sample_rate {
        Some(r) => r,
        None => {
            let (path, _, origin) = &train_clips[0];
            hound::WavReader::open(path)
                .map(|r| r.spec().sample_rate)
                .map_err(|source| origin.locate(AudioError::Wav { path: path.clone(), source }))?
        }
    };
    let mfcc = Mfcc::new(&front.mfcc, rate)?;
    let utterance =
        if front.normalization == Normalization::Utterance { Normalization::Utterance } else { Normalization::None };
    let featurise = |clips: Vec<(PathBuf, usize, Origin)>| -> Result<Vec<AudioExample>, AudioError> {
        clips
            .into_iter()
            .map(|(path, label, origin)| {
                let f = clip_features(&path, &mfcc, front.stereo, utterance, None).map_err(|e| origin.locate(e))?;
                Ok(AudioExample { features: f.data, frames: f.frames, label, speaker: String::new(), path })
            })
            .collect()
    };
    let mut train_ex = featurise(train_clips)?;
    let mut validation_ex = featurise(validation_clips)?;
    let mut test_ex = featurise(test_clips)?;
    let dim = mfcc.dim();
    let normalizer = if front.normalization == Normalization::TrainSet {
        let n = Normalizer::fit(dim, train_ex.iter().map(|e| e.features.as_slice()))?;
        for e in train_ex.iter_mut().chain(&mut validation_ex).chain(&mut test_ex) {
            n.apply(&mut e.features)?;
        }
        Some(n)
    } else {
        None
    };
    let mut ignored: Vec<PathBuf> = train.ignored;
    for l in validation.into_iter().chain(test) {
        ignored.extend(l.ignored);
    }
    Ok(ClipCorpus {
        features: FsddCorpus {
            train: train_ex,
            validation: validation_ex,
            test: test_ex,
            dim,
            sample_rate: rate,
            normalizer,
            ignored,
        },
        class_names,
    })
}

#[cfg(test)]
#[path = "clips_tests.rs"]
mod tests;
