//! Train a model of your own with sluice's trainer: the loop, optimizer, schedule, clipping,
//! early stopping, `metrics.jsonl`, checkpoints and exact resume, around a model and data
//! defined right here.
//!
//! The model is candle-nn's LSTM with a linear head of our own; the task is to tell whether a
//! sequence of ±1 values (with a little noise) sums above zero, on data generated from a seed.
//! The demo trains once without interruption, then again with a crash part-way through,
//! resumes the crashed run in a fresh task (as a new process would) and checks that both
//! runs end with the same bytes in `last.safetensors`, `best.safetensors` and `metrics.jsonl`.
//!
//! ```text
//! cargo run --release -p train --example custom_task [-- OUT_DIR]
//! ```
//! `cargo test --release -p train --example custom_task` runs the same demo as a test.

use anyhow::{bail, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::{Module, VarMap, RNN};
use model::rng::SeededRng;
use serde_json::{json, Map, Value};
use std::cell::Cell;
use std::path::{Path, PathBuf};
use train::config::TrainConfig;
use train::rundir::RunDir;
use train::trainer::{Options, SplitName, StepOutput, Task, Trainer};

/// Time steps per sequence (odd, so a sum is never zero).
const STEPS: usize = 11;
const HIDDEN: usize = 16;
const DROPOUT: f64 = 0.1;
const SEED: u64 = 7;

/// The `[train]` section, as it would read in a config file: every key of it works here.
const TRAIN: &str = r#"
optimizer = "adam"
lr = 0.02
schedule = "cosine"
warmup_steps = 4
epochs = 4
batch_size = 16
clip_norm = 1.0
l2 = 1e-5
early_stopping_metric = "accuracy"
early_stopping_mode = "max"
checkpoint_every = 5
"#;

/// One sequence and its label (1: the values sum above zero).
struct Example {
    values: Vec<f32>,
    label: u32,
}

/// `n` sequences drawn from their own named stream of `seed`.
fn examples(seed: u64, split: &str, n: usize) -> Vec<Example> {
    let mut rng = SeededRng::new(seed, &format!("sign/{split}"));
    (0..n)
        .map(|_| {
            let signs: Vec<f32> = (0..STEPS).map(|_| if rng.below(2) == 1 { 1.0 } else { -1.0 }).collect();
            let label = u32::from(signs.iter().sum::<f32>() > 0.0);
            let values = signs.iter().map(|s| s + rng.normal(0.0, 0.1) as f32).collect();
            Example { values, label }
        })
        .collect()
}

/// The model: an LSTM over the sequence, dropout, and a linear head on its last state.
struct SignModel {
    lstm: candle_nn::LSTM,
    head: candle_nn::Linear,
}

impl SignModel {
    fn new(vb: candle_nn::VarBuilder) -> Result<Self> {
        let lstm = candle_nn::lstm(1, HIDDEN, candle_nn::LSTMConfig::default(), vb.pp("lstm"))?;
        let head = candle_nn::linear(HIDDEN, 2, vb.pp("head"))?;
        Ok(Self { lstm, head })
    }

    /// Logits (batch, 2) of `xs` (batch, time, 1); dropout masks from `rng` when training.
    fn forward(&self, xs: &Tensor, rng: Option<&mut SeededRng>) -> Result<Tensor> {
        let states = self.lstm.seq(xs)?;
        let mut last = states.last().expect("sequences are not empty").h().clone(); // (batch, hidden)
        if let Some(rng) = rng {
            let mask = rng.dropout_mask(last.shape(), DROPOUT, DType::F32, xs.device())?;
            last = (last * mask)?;
        }
        Ok(self.head.forward(&last)?)
    }
}

/// The task the trainer drives: data, batches in a seeded order, the model, loss, metrics.
struct SignTask {
    varmap: VarMap,
    model: SignModel,
    train: Vec<Example>,
    validation: Vec<Example>,
    test: Vec<Example>,
    batch_size: usize,
    /// The current epoch's order of training examples.
    order: Vec<usize>,
    /// Simulated crash: `train_step` fails once this many steps have run in this process.
    crash_after: Option<usize>,
    steps_run: Cell<usize>,
}

impl SignTask {
    fn new(cfg: &TrainConfig, crash_after: Option<usize>) -> Result<Self> {
        let varmap = VarMap::new();
        // Seeded initialisation: the same seed gives the same starting weights.
        let vb = model::init::seeded_var_builder(&varmap, SEED, DType::F32, &Device::Cpu);
        let model = SignModel::new(vb)?;
        Ok(Self {
            varmap,
            model,
            train: examples(SEED, "train", 256),
            validation: examples(SEED, "validation", 64),
            test: examples(SEED, "test", 64),
            batch_size: cfg.batch_size,
            order: Vec::new(),
            crash_after,
            steps_run: Cell::new(0),
        })
    }

    /// Inputs (batch, time, 1) and labels of the examples `idx` of `set`.
    fn batch(set: &[Example], idx: &[usize]) -> Result<(Tensor, Vec<u32>)> {
        let values: Vec<f32> = idx.iter().flat_map(|&i| set[i].values.iter().copied()).collect();
        let xs = Tensor::from_vec(values, (idx.len(), STEPS, 1), &Device::Cpu)?;
        Ok((xs, idx.iter().map(|&i| set[i].label).collect()))
    }

    fn loss_and_correct(logits: &Tensor, labels: &[u32]) -> Result<(Tensor, usize)> {
        let targets = Tensor::new(labels, logits.device())?;
        let loss = candle_nn::loss::cross_entropy(logits, &targets)?;
        let predicted = logits.argmax(D::Minus1)?.to_vec1::<u32>()?;
        Ok((loss, predicted.iter().zip(labels).filter(|(p, l)| p == l).count()))
    }
}

impl Task for SignTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        !name.contains("bias")
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        // A pure function of (seed, epoch): what makes resuming mid-epoch exact.
        let mut rng = SeededRng::new(SEED, &format!("order/{epoch}"));
        self.order = (0..self.train.len()).collect();
        rng.shuffle(&mut self.order);
        Ok(self.order.len().div_ceil(self.batch_size))
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        if self.crash_after == Some(self.steps_run.get()) {
            bail!("simulated crash after {} steps", self.steps_run.get());
        }
        self.steps_run.set(self.steps_run.get() + 1);
        let idx = &self.order[index * self.batch_size..((index + 1) * self.batch_size).min(self.order.len())];
        let (xs, labels) = Self::batch(&self.train, idx)?;
        let logits = self.model.forward(&xs, Some(rng))?;
        let (loss, correct) = Self::loss_and_correct(&logits, &labels)?;
        Ok(StepOutput { loss, examples: idx.len(), tokens: idx.len() * STEPS, correct: Some(correct) })
    }

    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let set = match split {
            SplitName::Train => &self.train,
            SplitName::Validation => &self.validation,
            SplitName::Test => &self.test,
        };
        let (mut loss_sum, mut correct) = (0.0, 0);
        let all: Vec<usize> = (0..set.len()).collect();
        for idx in all.chunks(64) {
            let (xs, labels) = Self::batch(set, idx)?;
            let (loss, c) = Self::loss_and_correct(&self.model.forward(&xs, None)?, &labels)?;
            loss_sum += loss.to_scalar::<f32>()? as f64 * idx.len() as f64;
            correct += c;
        }
        let n = set.len() as f64;
        let metrics = json!({"loss": loss_sum / n, "accuracy": correct as f64 / n});
        Ok(metrics.as_object().expect("an object").clone())
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "sign_lstm", "hidden": HIDDEN, "steps": STEPS})
    }
}

/// What the demo found.
struct Report {
    /// The uninterrupted run's summary.
    summary: Map<String, Value>,
    /// The crash that stopped the second run.
    crash: String,
    /// Run files that differ between the uninterrupted and the resumed run (none expected).
    differing: Vec<&'static str>,
}

/// Trains in `root/full`, then in `root/interrupted` with a crash after 23 steps (the resume
/// state is saved every 5), resumes that run and compares the two.
fn demo(root: &Path) -> Result<Report> {
    let cfg: TrainConfig = toml::from_str(TRAIN)?;
    let options = Options { quiet: true };

    let full = RunDir::ensure(root.join("full"))?;
    let summary = Trainer::new(&cfg, SEED, &full, options.clone()).fit(&mut SignTask::new(&cfg, None)?)?;

    let interrupted = RunDir::ensure(root.join("interrupted"))?;
    let crash = match Trainer::new(&cfg, SEED, &interrupted, options.clone()).fit(&mut SignTask::new(&cfg, Some(23))?) {
        Ok(_) => bail!("the crash was not simulated"),
        Err(e) => format!("{e:#}"),
    };
    // A new process would build its task afresh; the trainer restores weights, optimizer
    // moments, RNG and position from checkpoints/resume.safetensors.
    Trainer::new(&cfg, SEED, &interrupted, options).resume(&mut SignTask::new(&cfg, None)?)?;

    let mut differing = Vec::new();
    for file in ["checkpoints/last.safetensors", "checkpoints/best.safetensors", "metrics.jsonl"] {
        if std::fs::read(full.root.join(file))? != std::fs::read(interrupted.root.join(file))? {
            differing.push(file);
        }
    }
    Ok(Report { summary, crash, differing })
}

fn main() -> Result<()> {
    let root = match std::env::args_os().nth(1) {
        Some(dir) => PathBuf::from(dir),
        None => std::env::temp_dir().join(format!("sluice-custom-task-{}", std::process::id())),
    };
    let report = demo(&root)?;
    println!("runs in {}", root.display());
    println!("test: {}", report.summary["test"]);
    println!("interrupted run: {}", report.crash);
    if !report.differing.is_empty() {
        bail!("the resumed run differs from the uninterrupted one in {}", report.differing.join(", "));
    }
    println!("resumed run = uninterrupted run, byte for byte (last, best, metrics.jsonl)");
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_custom_task_trains_and_resumes_exactly() {
        let tmp = tempfile::tempdir().unwrap();
        let report = super::demo(tmp.path()).unwrap();
        assert!(report.differing.is_empty(), "differs after resume: {:?}", report.differing);
        assert!(report.crash.contains("simulated crash after 23 steps"), "{}", report.crash);
        let accuracy = report.summary["test"]["accuracy"].as_f64().unwrap();
        assert!(accuracy > 0.8, "the sign of a sum should be learnt, test accuracy {accuracy}");
        for file in ["summary.json", "curves.svg", "checkpoints/resume.safetensors"] {
            assert!(tmp.path().join("full").join(file).exists(), "no {file}");
        }
        let lines = std::fs::read_to_string(tmp.path().join("full/metrics.jsonl")).unwrap();
        // One line per epoch and two final ones.
        assert_eq!(lines.lines().count(), 4 + 2, "{lines}");
    }
}
