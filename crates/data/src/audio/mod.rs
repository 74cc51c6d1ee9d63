//! Audio front end: WAV files → MFCC frames, and the Free Spoken Digit Dataset (FSDD) corpus.
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

mod fsdd;
mod mfcc;
mod normalize;
mod wav;

pub use fsdd::{
    file_features, list_fsdd, load_fsdd, split_fsdd, AudioExample, FsddConfig, FsddCorpus, FsddFile, FsddListing,
    FsddSplit, SplitFiles,
};
pub use mfcc::{Features, Mfcc, MfccConfig};
pub use normalize::{normalize_utterance, Normalization, Normalizer};
pub use wav::{read_wav, Wav};

use std::path::PathBuf;

/// Everything that can go wrong in the audio front end; each variant names the file or key.
#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("{path}: not a readable WAV file: {source}")]
    Wav {
        path: PathBuf,
        #[source]
        source: hound::Error,
    },
    #[error("{path}: expected mono 16-bit integer PCM, found {channels} channel(s), {bits}-bit {format}")]
    UnsupportedFormat { path: PathBuf, channels: u16, bits: u16, format: &'static str },
    #[error("{path}: the WAV file holds no samples")]
    Empty { path: PathBuf },
    #[error("{path}: truncated: the header promises {expected} samples but the data ends after {got}")]
    Truncated { path: PathBuf, expected: u64, got: u64 },
    #[error("invalid audio config `{key}`: {reason}")]
    InvalidConfig { key: &'static str, reason: String },
    #[error("{path}: expected a file name `{{digit}}_{{speaker}}_{{index}}.wav`: {reason}")]
    BadFileName { path: PathBuf, reason: String },
    #[error("{path}: sample rate {found} Hz differs from {expected} Hz of the corpus' first file")]
    SampleRateMismatch { path: PathBuf, expected: u32, found: u32 },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{dir}: no `.wav` files found")]
    NoFiles { dir: PathBuf },
    #[error("{dir}: held-out speaker `{speaker}` has no recordings (speakers: {known})")]
    UnknownSpeaker { dir: PathBuf, speaker: String, known: String },
    #[error("normaliser: {reason}")]
    Normalizer { reason: String },
    #[error("{path}: normaliser JSON: {source}")]
    NormalizerJson {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
}
