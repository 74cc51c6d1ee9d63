//! `train transcribe --run DIR FILE.wav... [--beam N] [--json]` (and `train predict` on a
//! transcription run): text per file from the run's best checkpoint, with the run's front end,
//! normalisation and language model; `--json` adds each character's time span from the CTC
//! alignment (the most probable path of the decoded text, `model::ctc::align`).

use super::{
    build_lm, clean, decode, featurize_samples, normalize_groups, SpeechExample, NORMALIZER_FILE, TRANSCRIPTS_FILE,
};
use crate::config::{Config, LmKind, SpeechNorm, TranscribeConfig};
use crate::rundir::RunDir;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor};
use candle_nn::VarMap;
use data::audio::an4::{load_audio, CharVocab, Utterance};
use data::audio::logmel::{LogMel, LogMelConfig};
use data::audio::Normalizer;
use model::ctc_decode::NgramLm;
use model::speech::{SpeechModel, SpeechModelConfig};
use serde_json::json;
use std::path::PathBuf;

/// Arguments of `train transcribe`.
#[derive(Debug, Clone, clap::Args)]
pub struct TranscribeArgs {
    /// A finished `task = "transcribe"` run.
    #[arg(long)]
    pub run: PathBuf,
    /// Beam width (1 = greedy); default: the run's `transcribe.beam`.
    #[arg(long)]
    pub beam: Option<usize>,
    /// One JSON object per file, with per-character times.
    #[arg(long)]
    pub json: bool,
    /// WAV files (16-bit integer or 32-bit float PCM; other rates are resampled).
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
}

/// One character of a transcript and where the alignment puts it.
#[derive(Debug, Clone, PartialEq)]
pub struct CharTime {
    /// The character.
    pub ch: char,
    /// Start of its first frame, in seconds.
    pub start_s: f64,
    /// End of its last frame, in seconds.
    pub end_s: f64,
}

/// One file's transcript.
#[derive(Debug, Clone, PartialEq)]
pub struct Transcript {
    /// The text, whitespace runs collapsed.
    pub text: String,
    /// Every emitted character (spaces included) with its time span.
    pub chars: Vec<CharTime>,
}

/// What the checkpoint records about the model and its front end.
struct Meta {
    model: SpeechModelConfig,
    vocab: CharVocab,
    sample_rate: u32,
    features: LogMelConfig,
}

fn read_meta(path: &std::path::Path) -> Result<Meta> {
    let ckpt = model::checkpoint::read(path, &Device::Cpu)?;
    let meta = ckpt
        .config
        .ok_or_else(|| anyhow!("{}: no model config in the metadata (not a sluice checkpoint)", path.display()))?;
    if meta["kind"] != "speech_ctc" {
        bail!("{}: a {} checkpoint, expected a speech_ctc one (a transcription run)", path.display(), meta["kind"]);
    }
    let field = |k: &str| meta.get(k).cloned().ok_or_else(|| anyhow!("{}: no `{k}` in the metadata", path.display()));
    Ok(Meta {
        model: serde_json::from_value(field("model")?).with_context(|| format!("{}: model config", path.display()))?,
        vocab: CharVocab {
            chars: field("vocab")?
                .as_str()
                .ok_or_else(|| anyhow!("{}: `vocab` is not a string", path.display()))?
                .chars()
                .collect(),
        },
        sample_rate: serde_json::from_value(field("sample_rate")?)?,
        features: serde_json::from_value(field("features")?)
            .with_context(|| format!("{}: features", path.display()))?,
    })
}

/// Transcribes `files` with a finished run's best checkpoint (beam width `beam`, default the
/// run's `transcribe.beam`). Each file is normalised by its own statistics under
/// `normalization = "utterance" | "speaker"`, by the stored train-set statistics under
/// `"train_set"`.
pub fn transcribe(dir: &RunDir, cfg: &Config, files: &[PathBuf], beam: Option<usize>) -> Result<Vec<Transcript>> {
    let m = LoadedTranscriber::load(dir, cfg)?;
    let beam = m.beam(beam)?;
    files
        .iter()
        .map(|path| {
            let f = m.features(load_audio(path, m.t.sample_rate, m.t.stereo)?, path)?;
            m.transcribe_features(f, path, beam)
        })
        .collect()
}

/// A finished transcription run in memory: `train transcribe` loads one per call, `train serve`
/// once.
pub struct LoadedTranscriber {
    meta: Meta,
    /// The run's `[transcribe]` settings with the checkpoint's front end.
    pub t: TranscribeConfig,
    net: SpeechModel,
    logmel: LogMel,
    stored: Option<Normalizer>,
    lm: Option<NgramLm>,
    _varmap: VarMap,
}

impl LoadedTranscriber {
    /// Loads the run's best checkpoint, normaliser and language model.
    pub fn load(dir: &RunDir, cfg: &Config) -> Result<Self> {
        let meta = read_meta(&dir.best())?;
        let mut t = cfg.transcribe.clone();
        t.sample_rate = meta.sample_rate;
        t.features = meta.features.clone();
        let device = Device::Cpu;
        let varmap = VarMap::new();
        let net = SpeechModel::new(&meta.model, model::init::seeded_var_builder(&varmap, 0, DType::F32, &device))?;
        model::checkpoint::load_into_varmap(dir.best(), &varmap)?;
        let logmel = LogMel::new(&meta.features, meta.sample_rate)?;
        let stored = match t.normalization {
            SpeechNorm::TrainSet => Some(Normalizer::load(&dir.root.join(NORMALIZER_FILE))?),
            _ => None,
        };
        let lm = if t.lm != LmKind::None {
            let p = dir.root.join(TRANSCRIPTS_FILE);
            let text = std::fs::read_to_string(&p).with_context(|| format!("reading {}", p.display()))?;
            let texts: Vec<String> = serde_json::from_str(&text)
                .with_context(|| format!("{}: expected a JSON list of strings", p.display()))?;
            build_lm(&t, &meta.vocab, &texts)?
        } else {
            None
        };
        Ok(Self { meta, t, net, logmel, stored, lm, _varmap: varmap })
    }

    /// The beam width to use: `beam`, else the run's `transcribe.beam`; 0 is refused.
    pub fn beam(&self, beam: Option<usize>) -> Result<usize> {
        let beam = beam.unwrap_or(self.t.beam);
        if beam == 0 {
            bail!("--beam: expected at least 1 (1 = greedy)");
        }
        Ok(beam)
    }

    /// The log-mel frames of one recording's samples (mono, at `t.sample_rate`); refuses one
    /// too long or too short, naming `path`.
    pub fn features(&self, samples: Vec<f32>, path: &std::path::Path) -> Result<data::audio::Features> {
        featurize_samples(samples, path, &self.t, &self.logmel)
    }

    /// The LSTM's configuration.
    pub fn lstm(&self) -> &model::LstmConfig {
        &self.meta.model.lstm
    }

    /// Trainable parameters.
    pub fn parameters(&self) -> usize {
        self._varmap.all_vars().iter().map(|v| v.elem_count()).sum()
    }

    /// Transcribes one recording's frames (from [`Self::features`]); `path` names it in errors.
    pub fn transcribe_features(
        &self,
        f: data::audio::Features,
        path: &std::path::Path,
        beam: usize,
    ) -> Result<Transcript> {
        let (meta, t) = (&self.meta, &self.t);
        let dim = self.logmel.dim();
        let step_s = meta.features.frame_step_s * meta.model.stack as f64;
        let classes = meta.model.num_classes;
        let mut ex = vec![SpeechExample {
            features: f.data,
            frames: f.frames,
            target: Vec::new(),
            utterance: Utterance {
                audio: path.to_path_buf(),
                text: String::new(),
                speaker: String::new(),
                duration: 0.0,
                id: String::new(),
            },
        }];
        match (&self.stored, t.normalization) {
            (Some(n), _) => n.apply(&mut ex[0].features)?,
            (None, SpeechNorm::Utterance | SpeechNorm::Speaker) => normalize_groups(&mut ex, dim, false)?,
            _ => {}
        }
        let x = Tensor::from_vec(ex.remove(0).features, (1, f.frames, dim), &Device::Cpu)?;
        let (lp, steps) = self.net.forward(&x, &[f.frames], false, None)?;
        let lp: Vec<f64> = lp.to_dtype(DType::F64)?.flatten_all()?.to_vec1()?;
        let labels = decode(&lp, classes, steps[0], beam, t, self.lm.as_ref());
        let spans = model::ctc::align(&lp, classes, steps[0], &labels).unwrap_or_default();
        let chars = labels
            .iter()
            .zip(spans)
            .filter_map(|(&id, (a, b))| {
                let ch = meta.vocab.decode(&[id]).chars().next()?;
                Some(CharTime { ch, start_s: a as f64 * step_s, end_s: (b + 1) as f64 * step_s })
            })
            .collect();
        Ok(Transcript { text: clean(&meta.vocab.decode(&labels)), chars })
    }
}

/// Prints `text<TAB>file` per file, or with `json` one object per line: `file`, `text`,
/// `chars` (`char`, `start`, `end` in seconds).
pub fn print_transcripts(ts: &[Transcript], files: &[PathBuf], json: bool) -> Result<()> {
    for (t, file) in ts.iter().zip(files) {
        if json {
            let chars: Vec<_> = t
                .chars
                .iter()
                .map(|c| json!({"char": c.ch.to_string(), "start": round(c.start_s), "end": round(c.end_s)}))
                .collect();
            println!("{}", json!({"file": file, "text": t.text, "chars": chars}));
        } else {
            println!("{}\t{}", t.text, file.display());
        }
    }
    Ok(())
}

fn round(s: f64) -> f64 {
    (s * 1000.0).round() / 1000.0
}

/// `train transcribe`.
pub fn cli(args: &TranscribeArgs) -> Result<()> {
    let dir = RunDir::open(&args.run)?;
    let cfg = crate::config::load_recorded(&dir.root)?;
    if cfg.task != crate::config::TaskKind::Transcribe {
        bail!(
            "{}: a task = \"{}\" run; `transcribe` needs a task = \"transcribe\" run",
            args.run.display(),
            cfg.task.name()
        );
    }
    let ts = transcribe(&dir, &cfg, &args.files, args.beam)?;
    print_transcripts(&ts, &args.files, args.json)
}
