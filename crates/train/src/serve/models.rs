//! The served runs: one [`Model`] per `--run`, whatever its task, and what `/v1/models` says
//! about it.

use super::classify::LoadedClassifier;
use crate::config::TaskKind;
use crate::rundir::RunDir;
use crate::task::forecast::ForecastTask;
use crate::task::Task;
use crate::task::{audio, tag, transcribe, translate};
use anyhow::{bail, Result};
use serde::Serialize;
use std::path::Path;

/// A loaded run. A task that lands later is one variant here, its arm in [`Model::load`] and
/// [`super::queue::run_work`], and its route in [`super::api::router`].
pub enum Model {
    /// `task = "classify"`: `/v1/predict` (texts → labels) and `/v1/inspect`.
    Classify {
        /// The run's name.
        name: String,
        /// The model.
        model: Box<LoadedClassifier>,
    },
    /// `task = "translate"`: `/v1/translate`.
    Translate {
        /// The run's name.
        name: String,
        /// The model.
        model: Box<translate::Loaded>,
        /// Trainable parameters (counted in the checkpoint).
        parameters: usize,
    },
    /// `task = "forecast"`: `/v1/predict` (series → forecasts).
    Forecast {
        /// The run's name.
        name: String,
        /// The task with the best checkpoint's weights (its corpus gives the normalisation).
        model: Box<ForecastTask>,
        /// Whether inputs carry calendar features (then requests give dates).
        calendar: bool,
        /// Trainable parameters.
        parameters: usize,
    },
    /// `task = "tag"`: `/v1/tag` (texts → tokens with tags, and entities).
    Tag {
        /// The run's name.
        name: String,
        /// The model.
        model: Box<tag::LoadedTagger>,
        /// Trainable parameters.
        parameters: usize,
    },
    /// `task = "transcribe"`: `/v1/transcribe` (WAV → text).
    Transcribe {
        /// The run's name.
        name: String,
        /// The model.
        model: Box<transcribe::LoadedTranscriber>,
    },
    /// `task = "audio"`: `/v1/predict` with a WAV body (recordings → digits).
    Audio {
        /// The run's name.
        name: String,
        /// The model.
        model: Box<audio::LoadedAudio>,
    },
}

/// What `/v1/models` lists for one model.
#[derive(Debug, Clone, Serialize)]
pub struct ModelInfo {
    /// The name requests address it by (the run directory's name).
    pub name: String,
    /// The run's task (`classify`, `translate`, ...).
    pub task: String,
    /// The run directory.
    pub run: String,
    /// Class names in label order (classifiers), else empty.
    pub labels: Vec<String>,
    /// Trainable parameters.
    pub parameters: usize,
    /// LSTM layers (of the encoder for translation).
    pub layers: usize,
    /// Directions (1 or 2).
    pub directions: usize,
    /// Hidden units per direction.
    pub hidden: usize,
    /// Gates `/v1/inspect` can trace (classifiers), else empty.
    pub gates: Vec<String>,
    /// Routes this model answers.
    pub routes: Vec<String>,
    /// Tokens per text beyond which a text is truncated (the run's `data.max_len`), if any.
    pub max_len: Option<usize>,
    /// Forecasting runs: what a series must hold.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forecast: Option<ForecastInfo>,
}

/// The input and output geometry of a forecasting run.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastInfo {
    /// Rows per input series.
    pub input_len: usize,
    /// Steps forecast.
    pub horizon: usize,
    /// Value columns of each input row, in order (calendar features are computed from `dates`).
    pub inputs: Vec<String>,
    /// Forecast columns.
    pub targets: Vec<String>,
    /// Whether requests must give each row's date.
    pub dates: bool,
    /// Minutes between rows (60 hourly, 15 for ETTm).
    pub freq_minutes: u32,
    /// The first input window of the run's test split, original scale (z-scores undone, so
    /// within f32 rounding of the file's values): what the page offers to forecast.
    pub example: ForecastExample,
}

/// One input window: rows (a number, or an array for several value columns) and their dates.
#[derive(Debug, Clone, Serialize)]
pub struct ForecastExample {
    /// Rows of value columns.
    pub series: Vec<serde_json::Value>,
    /// The rows' dates (empty when the corpus has none).
    pub dates: Vec<String>,
}

fn forecast_example(c: &data::Forecast) -> ForecastExample {
    let t = &c.test;
    let values = c.input_stats.len();
    let series = (0..t.input_len.min(t.rows))
        .map(|r| {
            let row: Vec<f64> = (0..values)
                .map(|k| {
                    let (mean, std) = c.input_stats[k];
                    // Three decimals: what ETT files hold; the rest is f32 noise of the z-score.
                    ((t.inputs[r * t.in_features + k] as f64 * std + mean) * 1000.0).round() / 1000.0
                })
                .collect();
            if values == 1 {
                serde_json::json!(row[0])
            } else {
                serde_json::json!(row)
            }
        })
        .collect();
    let dates = t.dates.iter().take(t.input_len).cloned().collect();
    ForecastExample { series, dates }
}

/// The name a run is addressed by: its directory's last component.
pub fn run_name(dir: &Path) -> String {
    let canonical = dir.canonicalize().unwrap_or_else(|_| dir.to_path_buf());
    canonical.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "model".into())
}

impl Model {
    /// Loads the run at `dir` for its task.
    pub fn load(dir: &Path) -> Result<Self> {
        let run = RunDir::open(dir)?;
        let cfg = run.load_config()?;
        let name = run_name(dir);
        Ok(match cfg.task {
            TaskKind::Classify => Model::Classify { name, model: Box::new(LoadedClassifier::load(&run, cfg)?) },
            TaskKind::Translate => {
                let model = Box::new(translate::load_run(&run)?);
                let ckpt = model::checkpoint::read(run.best(), &candle_core::Device::Cpu)?;
                let parameters = ckpt.tensors.values().map(|t| t.elem_count()).sum();
                Model::Translate { name, model, parameters }
            }
            TaskKind::Forecast => {
                let best = run.best();
                if !best.exists() {
                    bail!("{} has no best checkpoint ({})", dir.display(), best.display());
                }
                let calendar = cfg.data.calendar;
                let model = Box::new(ForecastTask::new(&cfg)?);
                model::checkpoint::load_into_varmap(&best, model.varmap())?;
                let parameters = model.varmap().all_vars().iter().map(|v| v.elem_count()).sum();
                Model::Forecast { name, model, calendar, parameters }
            }
            TaskKind::Tag => {
                let model = Box::new(tag::LoadedTagger::load(&run)?);
                let ckpt = model::checkpoint::read(run.best(), &candle_core::Device::Cpu)?;
                let parameters = ckpt.tensors.values().map(|t| t.elem_count()).sum();
                Model::Tag { name, model, parameters }
            }
            TaskKind::Transcribe => {
                Model::Transcribe { name, model: Box::new(transcribe::LoadedTranscriber::load(&run, &cfg)?) }
            }
            TaskKind::Audio => Model::Audio { name, model: Box::new(audio::LoadedAudio::load(&run, &cfg)?) },
            other => {
                bail!(
                    "{}: a {other:?} run; train serve serves classification, translation, forecasting, tagging, \
                     transcription and audio classification runs",
                    dir.display()
                )
            }
        })
    }

    /// The name requests address it by.
    pub fn name(&self) -> &str {
        match self {
            Model::Classify { name, .. }
            | Model::Translate { name, .. }
            | Model::Forecast { name, .. }
            | Model::Tag { name, .. }
            | Model::Transcribe { name, .. }
            | Model::Audio { name, .. } => name,
        }
    }

    /// Its `/v1/models` entry; `run` is the directory it was loaded from.
    pub fn info(&self, run: &Path) -> ModelInfo {
        let run = run.display().to_string();
        match self {
            Model::Classify { name, model } => {
                let cell = model.net.config().lstm.cell;
                let gates: &[&str] =
                    if cell == model::config::CellKind::Lstm { &["o", "i", "f", "c", "h"] } else { &["h"] };
                ModelInfo {
                    name: name.clone(),
                    task: "classify".into(),
                    run,
                    labels: model.class_names.clone(),
                    parameters: model.parameters,
                    layers: model.layers(),
                    directions: model.directions(),
                    hidden: model.hidden(),
                    gates: gates.iter().map(|g| g.to_string()).collect(),
                    routes: vec!["/v1/predict".into(), "/v1/inspect".into()],
                    max_len: model.cfg.data.max_len,
                    forecast: None,
                }
            }
            Model::Translate { name, model, parameters } => {
                let c = model.net.config();
                ModelInfo {
                    name: name.clone(),
                    task: "translate".into(),
                    run,
                    labels: Vec::new(),
                    parameters: *parameters,
                    layers: c.encoder.num_layers,
                    directions: c.encoder.num_directions(),
                    hidden: c.encoder.hidden_size,
                    gates: Vec::new(),
                    routes: vec!["/v1/translate".into()],
                    max_len: model.cfg.data.max_len,
                    forecast: None,
                }
            }
            Model::Forecast { name, model, parameters, calendar } => {
                let c = model.corpus();
                let lstm = &model.forecaster_config().lstm;
                ModelInfo {
                    name: name.clone(),
                    task: "forecast".into(),
                    run,
                    labels: c.target_names.clone(),
                    parameters: *parameters,
                    layers: lstm.num_layers,
                    directions: lstm.num_directions(),
                    hidden: lstm.hidden_size,
                    gates: Vec::new(),
                    routes: vec!["/v1/predict".into()],
                    max_len: None,
                    forecast: Some(ForecastInfo {
                        input_len: c.train.input_len,
                        horizon: c.train.horizon,
                        inputs: c.input_names[..c.input_mean.len()].to_vec(),
                        targets: c.target_names.clone(),
                        dates: *calendar,
                        freq_minutes: match c.freq {
                            data::config::Freq::Hourly => 60,
                            data::config::Freq::Min15 => 15,
                        },
                        example: forecast_example(c),
                    }),
                }
            }
            Model::Tag { name, model, parameters } => {
                let lstm = &model.model_config.lstm;
                ModelInfo {
                    name: name.clone(),
                    task: "tag".into(),
                    run,
                    labels: model.labels.clone(),
                    parameters: *parameters,
                    layers: lstm.num_layers,
                    directions: lstm.num_directions(),
                    hidden: lstm.hidden_size,
                    gates: Vec::new(),
                    routes: vec!["/v1/tag".into()],
                    max_len: None,
                    forecast: None,
                }
            }
            Model::Transcribe { name, model } => {
                let lstm = model.lstm();
                ModelInfo {
                    name: name.clone(),
                    task: "transcribe".into(),
                    run,
                    labels: Vec::new(),
                    parameters: model.parameters(),
                    layers: lstm.num_layers,
                    directions: lstm.num_directions(),
                    hidden: lstm.hidden_size,
                    gates: Vec::new(),
                    routes: vec!["/v1/transcribe".into()],
                    max_len: None,
                    forecast: None,
                }
            }
            Model::Audio { name, model } => {
                let (layers, directions, hidden) = model.geometry();
                ModelInfo {
                    name: name.clone(),
                    task: "audio".into(),
                    run,
                    labels: model.class_names(),
                    parameters: model.parameters,
                    layers,
                    directions,
                    hidden,
                    gates: Vec::new(),
                    routes: vec!["/v1/predict".into()],
                    max_len: None,
                    forecast: None,
                }
            }
        }
    }
}
