//! Audio front end: WAV files → MFCC frames, the Free Spoken Digit Dataset (FSDD) corpus, and
//! your own labelled clips (`corpus = "audio"`: [`load_clips`], resampled by `rubato`).
//!
//! The pipeline follows `python_speech_features` 0.6 exactly (checked against it by
//! `scripts/gen_mfcc_fixtures.py` and the fixtures in `crates/data/tests/fixtures/`):
//! raw int16 samples as floats → pre-emphasis (0.97) → 25 ms frames every 10 ms (the last one
//! zero-padded) → Hamming window → power spectrum `|rfft|² / NFFT` (NFFT = next power of two ≥
//! the frame length) → 40-band mel filterbank → log → orthonormal DCT-II → 13 MFCCs, then
//! optional deltas / delta-deltas and per-utterance or train-set mean/variance normalisation.
//!
//! ```no_run
//! use data::audio::{read_wav, Mfcc, MfccConfig};
//! let wav = read_wav("0_george_0.wav".as_ref())?;
//! let mfcc = Mfcc::new(&MfccConfig::default(), wav.sample_rate)?;
//! let feats = mfcc.compute(&wav.samples); // feats.frames × feats.dim, row-major
//! assert_eq!(feats.dim, 13);
//! # Ok::<(), data::audio::AudioError>(())
//! ```

pub mod an4;
mod clips;
mod fsdd;
pub mod logmel;
mod mfcc;
mod normalize;
mod resample;
mod wav;

pub use clips::{clip_features, clip_sample_features, load_clips, parse_clip, read_clip, ClipCorpus, ClipFrontEnd};
pub use fsdd::{
    file_features, list_fsdd, load_fsdd, split_fsdd, wav_features, AudioExample, FsddConfig, FsddCorpus, FsddFile,
    FsddListing, FsddSplit, SplitFiles,
};
pub use mfcc::{Features, Mfcc, MfccConfig};
pub use normalize::{normalize_utterance, Normalization, Normalizer};
pub use resample::resample;
pub use wav::{parse_wav, read_wav, Wav};

use std::path::PathBuf;

/// Everything that can go wrong in the audio front end; each variant names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    /// `hound` could not open or decode the file: missing, unreadable, not a RIFF/WAVE header,
    /// or a read error inside the data chunk ([`read_wav`]).
    #[error("{path}: not a readable WAV file: {source}")]
    Wav {
        /// The WAV file.
        path: PathBuf,
        /// `hound`'s error.
        #[source]
        source: hound::Error,
    },
    /// The file is not mono 16-bit integer PCM ([`read_wav`]).
    #[error("{path}: expected mono 16-bit integer PCM, found {channels} channel(s), {bits}-bit {format}")]
    UnsupportedFormat {
        /// The WAV file.
        path: PathBuf,
        /// Channel count from the header.
        channels: u16,
        /// Bits per sample from the header.
        bits: u16,
        /// `"integer PCM"` or `"float"`.
        format: &'static str,
    },
    /// The header declares zero samples ([`read_wav`]).
    #[error("{path}: the WAV file holds no samples")]
    Empty {
        /// The WAV file.
        path: PathBuf,
    },
    /// The data chunk ends before the sample count its header declares ([`read_wav`]).
    #[error("{path}: truncated: the header promises {expected} samples but the data ends after {got}")]
    Truncated {
        /// The WAV file.
        path: PathBuf,
        /// Samples the header declares.
        expected: u64,
        /// Samples actually read before the data ran out.
        got: u64,
    },
    /// A recording shorter than one analysis frame: it has no features to classify.
    #[error(
        "{path}: {samples} samples ({:.1} ms at {sample_rate} Hz) is shorter than one analysis frame of {frame_len} samples; expected a recording of at least {:.1} ms",
        *samples as f64 * 1000.0 / *sample_rate as f64,
        *frame_len as f64 * 1000.0 / *sample_rate as f64
    )]
    TooShort {
        /// The WAV file.
        path: PathBuf,
        /// Samples it holds.
        samples: usize,
        /// Its sample rate.
        sample_rate: u32,
        /// Samples of one frame (`audio.mfcc.frame_len_s` at this rate).
        frame_len: usize,
    },
    /// A setting is out of range: an [`MfccConfig`] field or the sample rate ([`Mfcc::new`]), or
    /// `val_fraction` ([`split_fsdd`]).
    #[error("invalid audio config `{key}`: {reason}")]
    InvalidConfig {
        /// The field's name within its section, e.g. `"num_ceps"` (the `[audio.mfcc]` key) or
        /// `"val_fraction"`.
        key: &'static str,
        /// What is wrong with the value, and the allowed range.
        reason: String,
    },
    /// A `.wav` file is not named `{digit}_{speaker}_{index}.wav` ([`list_fsdd`]).
    #[error("{path}: expected a file name `{{digit}}_{{speaker}}_{{index}}.wav`: {reason}")]
    BadFileName {
        /// The misnamed file.
        path: PathBuf,
        /// Which part of the name failed to parse.
        reason: String,
    },
    /// A recording's sample rate differs from that of the first file featurised ([`load_fsdd`]).
    #[error("{path}: sample rate {found} Hz differs from {expected} Hz of the corpus' first file")]
    SampleRateMismatch {
        /// The odd file.
        path: PathBuf,
        /// The corpus' rate in Hz, fixed by the first file read.
        expected: u32,
        /// This file's rate in Hz.
        found: u32,
    },
    /// Reading a directory or reading/writing a normaliser file failed.
    #[error("{path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The corpus folder holds no `.wav` file ([`list_fsdd`]).
    #[error("{dir}: no `.wav` files found")]
    NoFiles {
        /// The corpus folder.
        dir: PathBuf,
    },
    /// `split = { speaker = "..." }` names a speaker with no recordings ([`split_fsdd`]).
    #[error("{dir}: held-out speaker `{speaker}` has no recordings (speakers: {known})")]
    UnknownSpeaker {
        /// The corpus folder (the parent of the first listed file).
        dir: PathBuf,
        /// The requested speaker.
        speaker: String,
        /// The speakers present, sorted and comma-separated.
        known: String,
    },
    /// A [`Normalizer`] cannot be fitted (dimension 0, no frames) or applied (features not whole
    /// frames of its dimension), a loaded one is inconsistent, or `normalization = "train_set"`
    /// was asked for without a normaliser ([`file_features`]).
    #[error("normaliser: {reason}")]
    Normalizer {
        /// What is wrong.
        reason: String,
    },
    /// A clip has more than one channel and `audio.stereo` is "refuse" ([`read_clip`]).
    #[error("{path}: {channels} channels; expected mono (set audio.stereo = \"downmix\" to average the channels)")]
    Stereo {
        /// The WAV file.
        path: PathBuf,
        /// Channel count from the header.
        channels: u16,
    },
    /// A clip's samples are in a format [`read_clip`] does not read.
    #[error("{path}: {bits}-bit {format} samples; expected 8/16/24/32-bit integer or 32-bit float PCM")]
    ClipFormat {
        /// The WAV file.
        path: PathBuf,
        /// Bits per sample from the header.
        bits: u16,
        /// `"integer PCM"` or `"float"`.
        format: &'static str,
    },
    /// `rubato` refused to convert between the two rates ([`resample`]).
    #[error("{path}: cannot resample from {from} Hz to {to} Hz: {reason}")]
    Resample {
        /// The WAV file.
        path: PathBuf,
        /// The clip's rate.
        from: u32,
        /// The corpus rate.
        to: u32,
        /// `rubato`'s message.
        reason: String,
    },
    /// A problem with a clip named by a manifest row: the row and column, then the problem.
    #[error("{}:{row}: column `{column}`: {source}", manifest.display())]
    InManifest {
        /// The manifest.
        manifest: PathBuf,
        /// 1-based line (CSV/TSV/JSON Lines; the header is line 1) or row (Parquet).
        row: usize,
        /// "line" or "row".
        unit: &'static str,
        /// The audio column.
        column: String,
        /// What is wrong with the clip.
        #[source]
        source: Box<AudioError>,
    },
    /// A class folder or class of `corpus = "audio"` that cannot be used ([`load_clips`]).
    #[error("{path}: {reason}")]
    Class {
        /// The folder (or clip) concerned.
        path: PathBuf,
        /// What is wrong, and what was expected.
        reason: String,
    },
    /// The `[data]` settings or a manifest table of `corpus = "audio"` ([`load_clips`]): a
    /// config key, a missing file, an unreadable table, a missing column, a bad cell.
    #[error(transparent)]
    Data(#[from] crate::Error),
    /// A normaliser file could not be serialised or parsed as JSON ([`Normalizer::save`],
    /// [`Normalizer::load`]).
    #[error("{path}: normaliser JSON: {source}")]
    NormalizerJson {
        /// The normaliser file.
        path: PathBuf,
        /// `serde_json`'s error.
        #[source]
        source: serde_json::Error,
    },
}
