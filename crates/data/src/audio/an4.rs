//! Transcribed speech corpora in the AN4 layout (`../shared/data/an4/`): JSON Lines manifests,
//! one utterance per line, `{"audio": "wav/…/x.wav", "text": "P I T T S", "speaker": "fash",
//! "duration": 1.0}` with `audio` relative to the manifest's folder (other keys, like `id` and
//! `phones`, are ignored); a character vocabulary; and loading a recording for the front end
//! (mono or downmixed, resampled to the model's rate, refused when shorter than one frame).

use super::AudioError;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// Errors of this module; each names the file (and line) and what was expected.
#[derive(Debug, thiserror::Error)]
pub enum SpeechError {
    /// A manifest or recording could not be read.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A manifest line is not the expected JSON object.
    #[error("{path}:{line}: {reason}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong, and what was expected.
        reason: String,
    },
    /// The front end refused a recording or a setting.
    #[error(transparent)]
    Audio(#[from] AudioError),
    /// A recording does not fit the model or the settings.
    #[error("{path}: {reason}")]
    Recording {
        /// The WAV file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// One manifest line.
#[derive(Debug, Clone, PartialEq)]
pub struct Utterance {
    /// The recording, resolved against the manifest's folder.
    pub audio: PathBuf,
    /// The transcript, whitespace collapsed.
    pub text: String,
    /// The speaker (empty when the manifest has none).
    pub speaker: String,
    /// Seconds, as the manifest says (0 when absent).
    pub duration: f64,
    /// `id` when given, else the file stem.
    pub id: String,
}

#[derive(Deserialize)]
struct Line {
    audio: String,
    text: String,
    #[serde(default)]
    speaker: Option<String>,
    #[serde(default)]
    duration: Option<f64>,
    #[serde(default)]
    id: Option<String>,
}

/// Reads a manifest. Blank lines are skipped; any other line must be a JSON object with
/// string `audio` and `text`; the recording must exist.
pub fn read_manifest(path: &Path) -> Result<Vec<Utterance>, SpeechError> {
    let text = std::fs::read_to_string(path).map_err(|source| SpeechError::Io { path: path.into(), source })?;
    let base = path.parent().unwrap_or(Path::new("."));
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        if raw.trim().is_empty() {
            continue;
        }
        let bad = |reason: String| SpeechError::Manifest { path: path.into(), line: i + 1, reason };
        let l: Line = serde_json::from_str(raw).map_err(|e| {
            bad(format!("expected a JSON object with string keys \"audio\" and \"text\" (and optionally \"speaker\", \"duration\", \"id\"): {e}"))
        })?;
        let audio = base.join(&l.audio);
        if !audio.is_file() {
            return Err(bad(format!("audio file {} not found", audio.display())));
        }
        if let Some(d) = l.duration.filter(|d| !d.is_finite() || *d < 0.0) {
            return Err(bad(format!("duration {d}: expected a non-negative number of seconds")));
        }
        let id =
            l.id.unwrap_or_else(|| audio.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default());
        out.push(Utterance {
            audio,
            text: l.text.split_whitespace().collect::<Vec<_>>().join(" "),
            speaker: l.speaker.unwrap_or_default(),
            duration: l.duration.unwrap_or(0.0),
            id,
        });
    }
    Ok(out)
}

/// Characters ↔ CTC class ids: 0 is the blank, then the characters in code-point order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CharVocab {
    /// The characters of ids 1, 2, ….
    pub chars: Vec<char>,
}

impl CharVocab {
    /// Every character of the given transcripts.
    pub fn from_texts<'a>(texts: impl IntoIterator<Item = &'a str>) -> Self {
        let set: BTreeSet<char> = texts.into_iter().flat_map(str::chars).collect();
        Self { chars: set.into_iter().collect() }
    }

    /// Classes including the blank.
    pub fn num_classes(&self) -> usize {
        self.chars.len() + 1
    }

    /// The id of `c`, if known.
    pub fn id(&self, c: char) -> Option<u32> {
        self.chars.binary_search(&c).ok().map(|i| i as u32 + 1)
    }

    /// The space's id, if the vocabulary has one.
    pub fn space(&self) -> Option<u32> {
        self.id(' ')
    }

    /// A transcript as ids; `Err(c)` names the first unknown character.
    pub fn encode(&self, text: &str) -> Result<Vec<u32>, char> {
        text.chars().map(|c| self.id(c).ok_or(c)).collect()
    }

    /// Ids (no blanks) as text; unknown ids are skipped.
    pub fn decode(&self, ids: &[u32]) -> String {
        ids.iter().filter_map(|&i| self.chars.get((i as usize).wrapping_sub(1)).copied()).collect()
    }
}

/// What to do with a recording of more than one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum Stereo {
    /// Refuse it with an error naming the file.
    #[default]
    Refuse,
    /// Average the channels.
    Downmix,
}

/// Reads a WAV file (16-bit integer or 32-bit float PCM) as mono floats in [−1, 1) at
/// `sample_rate`: other channel counts downmixed or refused per `stereo`, other rates
/// resampled ([`super::logmel::resample`]). Refuses an empty file or other sample formats.
pub fn load_audio(path: &Path, sample_rate: u32, stereo: Stereo) -> Result<Vec<f32>, SpeechError> {
    let reader = hound::WavReader::open(path)
        .map_err(|source| SpeechError::Audio(AudioError::Wav { path: path.into(), source }))?;
    wav_samples(reader, path, sample_rate, stereo)
}

/// [`load_audio`] on a WAV file already in memory (a request to `train serve`); errors name
/// `name` where they would name the file.
pub fn decode_audio(bytes: &[u8], name: &Path, sample_rate: u32, stereo: Stereo) -> Result<Vec<f32>, SpeechError> {
    let reader = hound::WavReader::new(std::io::Cursor::new(bytes))
        .map_err(|source| SpeechError::Audio(AudioError::Wav { path: name.into(), source }))?;
    wav_samples(reader, name, sample_rate, stereo)
}

fn wav_samples<R: std::io::Read>(
    reader: hound::WavReader<R>,
    path: &Path,
    sample_rate: u32,
    stereo: Stereo,
) -> Result<Vec<f32>, SpeechError> {
    let spec = reader.spec();
    let fail = |reason: String| SpeechError::Recording { path: path.into(), reason };
    if spec.channels > 1 && stereo == Stereo::Refuse {
        return Err(fail(format!(
            "{} channels; expected mono (set transcribe.stereo = \"downmix\" to average the channels)",
            spec.channels
        )));
    }
    let interleaved: Vec<f32> = match (spec.sample_format, spec.bits_per_sample) {
        (hound::SampleFormat::Int, 16) => reader
            .into_samples::<i16>()
            .map(|s| s.map(|v| v as f32 / 32768.0))
            .collect::<Result<_, _>>()
            .map_err(|e| fail(format!("reading the samples: {e}")))?,
        (hound::SampleFormat::Float, 32) => reader
            .into_samples::<f32>()
            .collect::<Result<_, _>>()
            .map_err(|e| fail(format!("reading the samples: {e}")))?,
        (f, b) => return Err(fail(format!("{b}-bit {f:?} samples; expected 16-bit integer or 32-bit float PCM"))),
    };
    if interleaved.is_empty() {
        return Err(SpeechError::Audio(AudioError::Empty { path: path.into() }));
    }
    let ch = spec.channels.max(1) as usize;
    let mono: Vec<f32> =
        if ch == 1 { interleaved } else { interleaved.chunks(ch).map(|c| c.iter().sum::<f32>() / ch as f32).collect() };
    Ok(super::logmel::resample(&mono, spec.sample_rate, sample_rate))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wav(path: &Path, channels: u16, rate: u32, n: usize) {
        let spec = hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: 16,
            sample_format: hound::SampleFormat::Int,
        };
        let mut w = hound::WavWriter::create(path, spec).unwrap();
        for i in 0..n * channels as usize {
            w.write_sample(((i % 50) as i16 - 25) * 100).unwrap();
        }
        w.finalize().unwrap();
    }

    #[test]
    fn manifest_lines_and_errors() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("wav")).unwrap();
        wav(&dir.path().join("wav/a.wav"), 1, 16_000, 800);
        let m = dir.path().join("train.jsonl");
        std::fs::write(
            &m,
            "{\"audio\": \"wav/a.wav\", \"text\": \" YES  NO \", \"speaker\": \"s1\", \"duration\": 0.05, \"phones\": \"Y\"}\n\n",
        )
        .unwrap();
        let u = read_manifest(&m).unwrap();
        assert_eq!(u.len(), 1);
        assert_eq!((u[0].text.as_str(), u[0].speaker.as_str(), u[0].id.as_str()), ("YES NO", "s1", "a"));
        for (line, want) in [
            ("{\"audio\": \"wav/b.wav\", \"text\": \"X\"}", "train.jsonl:2: audio file"),
            ("{\"text\": \"X\"}", "train.jsonl:2: expected a JSON object"),
            ("not json", "train.jsonl:2: expected a JSON object"),
            ("{\"audio\": \"wav/a.wav\", \"text\": \"X\", \"duration\": -1}", "train.jsonl:2: duration -1"),
        ] {
            std::fs::write(&m, format!("{{\"audio\": \"wav/a.wav\", \"text\": \"A\"}}\n{line}\n")).unwrap();
            let e = read_manifest(&m).unwrap_err().to_string();
            assert!(e.contains(want), "{e}");
        }
    }

    #[test]
    fn vocabulary_round_trip() {
        let v = CharVocab::from_texts(["YES NO", "GO"]);
        assert_eq!(v.chars, vec![' ', 'E', 'G', 'N', 'O', 'S', 'Y']);
        assert_eq!(v.num_classes(), 8);
        let ids = v.encode("NO GO").unwrap();
        assert!(!ids.contains(&0));
        assert_eq!(v.decode(&ids), "NO GO");
        assert_eq!(v.encode("NOX"), Err('X'));
        assert_eq!(v.space(), Some(1));
    }

    #[test]
    fn stereo_and_rates() {
        let dir = tempfile::tempdir().unwrap();
        let st = dir.path().join("st.wav");
        wav(&st, 2, 16_000, 1000);
        let e = load_audio(&st, 16_000, Stereo::Refuse).unwrap_err().to_string();
        assert!(e.contains("st.wav") && e.contains("2 channels"), "{e}");
        assert_eq!(load_audio(&st, 16_000, Stereo::Downmix).unwrap().len(), 1000);
        let low = dir.path().join("low.wav");
        wav(&low, 1, 8_000, 800);
        assert_eq!(load_audio(&low, 16_000, Stereo::Refuse).unwrap().len(), 1600);
    }
}
