//! The long-time-lag problems (seed §1.1: why LSTM exists), generated from the seed so they
//! need no download: the adding problem (`task = "adding"`, regression of the sum of two
//! marked values, MSE; always predicting 1 scores ≈ 0.167) and the copy task
//! (`task = "copy"`, recall 10 symbols after T blanks; accuracy over the recalled symbols).
//! Fresh training samples every epoch, fixed validation and test sets (see `data::synthetic`).

use super::{PredictArgs, Registration, SplitName, StepOutput, Task};
use crate::config::Config;
use crate::rundir::RunDir;
use anyhow::{bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;
use data::batch::{CopyBatch, FloatBatch};
use data::synthetic::{AddingSet, CopySet, COPY_SYMBOLS, COPY_VOCAB};
use model::forecaster::{mse_loss, Forecaster, ForecasterConfig};
use model::rng::SeededRng;
use model::tagger::{Tagger, TaggerConfig};
use serde_json::{json, Map, Value};

const EVAL_BATCH: usize = 250;

/// How the registry builds the adding problem and predicts with its runs.
pub const ADDING: Registration =
    Registration { build: |cfg, _, _| Ok(Box::new(AddingTask::new(cfg)?)), predict: predict_adding };

/// How the registry builds the copy task and predicts with its runs.
pub const COPY: Registration =
    Registration { build: |cfg, _, _| Ok(Box::new(CopyTask::new(cfg)?)), predict: predict_copy };

/// How many test sequences `train predict` shows.
const SHOW: usize = 10;

/// Consecutive index chunks: synthetic training samples are already a fresh random draw.
fn chunks(n: usize, batch: usize) -> Vec<Vec<usize>> {
    (0..n).collect::<Vec<_>>().chunks(batch).map(<[usize]>::to_vec).collect()
}

fn penalised(name: &str) -> bool {
    !name.contains("bias")
}

/// The adding problem: the generated sets plus the regression model.
pub struct AddingTask {
    data: data::AddingTask,
    model_config: ForecasterConfig,
    net: Forecaster,
    varmap: VarMap,
    device: Device,
    batch_size: usize,
    epoch_set: Option<AddingSet>,
    plan: Vec<Vec<usize>>,
}

impl AddingTask {
    /// Generates the validation and test sets and builds the model.
    pub fn new(cfg: &Config) -> Result<Self> {
        let device = cfg.run.device()?;
        let data = match data::load(&cfg.data, cfg.run.seed).context("generating the adding problem")? {
            data::Corpus::Adding(t) => t,
            _ => bail!("task \"adding\" needs data.corpus = \"adding\""),
        };
        // Inputs (value, marker) → one output: the final state read out once.
        let mut model_config = ForecasterConfig::new(cfg.model.lstm(2), 1, 1);
        model_config.head_dropout = cfg.model.head_dropout;
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let net = Forecaster::new(&model_config, vb).context("building the model")?;
        Ok(Self {
            data,
            model_config,
            net,
            varmap,
            device,
            batch_size: cfg.train.batch_size,
            epoch_set: None,
            plan: Vec::new(),
        })
    }

    fn tensors(&self, b: &FloatBatch) -> Result<(Tensor, Tensor)> {
        let x = Tensor::from_slice(&b.x, (b.batch_size, b.time, b.in_features), &self.device)?;
        let y = Tensor::from_slice(&b.y, (b.batch_size, 1, 1), &self.device)?;
        Ok((x, y))
    }

    fn eval_set(&self, split: SplitName) -> Result<&AddingSet> {
        match split {
            SplitName::Validation => Ok(&self.data.validation),
            SplitName::Test => Ok(&self.data.test),
            SplitName::Train => self.epoch_set.as_ref().context("no training epoch generated yet"),
        }
    }

    /// Predictions for every sequence of `set`.
    pub fn predict_set(&self, set: &AddingSet) -> Result<Vec<f32>> {
        let mut out = Vec::with_capacity(set.len());
        for ix in chunks(set.len(), EVAL_BATCH) {
            let b = FloatBatch::gather(set, &ix);
            let (x, _) = self.tensors(&b)?;
            out.extend(self.net.forward(&x, false, None)?.flatten_all()?.to_vec1::<f32>()?);
        }
        Ok(out)
    }
}

impl Task for AddingTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        penalised(name)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        let set = self.data.train_epoch(epoch as u64);
        self.plan = chunks(set.len(), self.batch_size);
        self.epoch_set = Some(set);
        Ok(self.plan.len())
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        let set = self.epoch_set.as_ref().context("start_epoch was not called")?;
        let b = FloatBatch::gather(set, &self.plan[index]);
        let (x, y) = self.tensors(&b)?;
        let p = self.net.forward(&x, true, Some(rng))?;
        Ok(StepOutput { loss: mse_loss(&p, &y)?, examples: b.batch_size, tokens: b.batch_size * b.time, correct: None })
    }

    /// `loss` (= `mse`), `mse`, `mae`, and `baseline_mse` (always predicting 1, ≈ 0.167).
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let set = self.eval_set(split)?;
        let pred = self.predict_set(set)?;
        let n = set.len().max(1) as f64;
        let mse = pred.iter().zip(&set.y).map(|(p, y)| ((p - y) as f64).powi(2)).sum::<f64>() / n;
        let mae = pred.iter().zip(&set.y).map(|(p, y)| ((p - y) as f64).abs()).sum::<f64>() / n;
        let baseline = set.y.iter().map(|y| ((y - 1.0) as f64).powi(2)).sum::<f64>() / n;
        let mut m = Map::new();
        m.insert("loss".into(), json!(mse));
        m.insert("mse".into(), json!(mse));
        m.insert("mae".into(), json!(mae));
        m.insert("baseline_mse".into(), json!(baseline));
        Ok(m)
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "adding", "model": &self.model_config, "length": self.data.length})
    }
}

/// The copy task: the generated sets plus the tagger.
pub struct CopyTask {
    data: data::CopyTask,
    model_config: TaggerConfig,
    net: Tagger,
    varmap: VarMap,
    device: Device,
    batch_size: usize,
    epoch_set: Option<CopySet>,
    plan: Vec<Vec<usize>>,
}

/// Per-step outputs of a copy batch.
struct CopyScores {
    /// Mean cross-entropy over every step.
    loss: Tensor,
    /// Cross-entropy summed over the recalled (last 10) steps, per batch.
    recall_ce: f64,
    /// Correct recalled symbols, and sequences with all 10 right.
    correct: usize,
    perfect: usize,
}

impl CopyTask {
    /// Generates the validation and test sets and builds the model.
    pub fn new(cfg: &Config) -> Result<Self> {
        let device = cfg.run.device()?;
        let data = match data::load(&cfg.data, cfg.run.seed).context("generating the copy task")? {
            data::Corpus::Copy(t) => t,
            _ => bail!("task \"copy\" needs data.corpus = \"copy\""),
        };
        let model_config =
            TaggerConfig { vocab_size: COPY_VOCAB, num_classes: COPY_VOCAB, lstm: cfg.model.lstm(COPY_VOCAB) };
        let varmap = VarMap::new();
        let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
        let net = Tagger::new(&model_config, vb).context("building the model")?;
        Ok(Self {
            data,
            model_config,
            net,
            varmap,
            device,
            batch_size: cfg.train.batch_size,
            epoch_set: None,
            plan: Vec::new(),
        })
    }

    fn scores(&self, b: &CopyBatch, train: bool, rng: Option<&mut SeededRng>) -> Result<(CopyScores, Vec<u32>)> {
        let ids = Tensor::from_slice(&b.input, (b.batch_size, b.time), &self.device)?;
        let target = Tensor::from_slice(&b.target, (b.batch_size, b.time, 1), &self.device)?;
        let logits = self.net.forward(&ids, train, rng)?; // (batch, time, vocab)
        let logp = candle_nn::ops::log_softmax(&logits, D::Minus1)?;
        let nll = logp.gather(&target, 2)?.squeeze(2)?.neg()?; // (batch, time)
        let loss = nll.mean_all()?;
        let start = b.time - COPY_SYMBOLS;
        let recall_ce = nll.narrow(1, start, COPY_SYMBOLS)?.sum_all()?.to_dtype(DType::F64)?.to_scalar::<f64>()?;
        let pred = logits.narrow(1, start, COPY_SYMBOLS)?.argmax(D::Minus1)?.flatten_all()?.to_vec1::<u32>()?;
        let (mut correct, mut perfect) = (0, 0);
        for r in 0..b.batch_size {
            let want = &b.target[r * b.time + start..(r + 1) * b.time];
            let got = &pred[r * COPY_SYMBOLS..(r + 1) * COPY_SYMBOLS];
            let c = want.iter().zip(got).filter(|(a, b)| a == b).count();
            correct += c;
            perfect += usize::from(c == COPY_SYMBOLS);
        }
        Ok((CopyScores { loss, recall_ce, correct, perfect }, pred))
    }

    fn eval_set(&self, split: SplitName) -> Result<&CopySet> {
        match split {
            SplitName::Validation => Ok(&self.data.validation),
            SplitName::Test => Ok(&self.data.test),
            SplitName::Train => self.epoch_set.as_ref().context("no training epoch generated yet"),
        }
    }

    /// The recalled symbols (last 10 outputs) of every sequence of `set`.
    pub fn predict_set(&self, set: &CopySet) -> Result<Vec<u32>> {
        let mut out = Vec::new();
        for ix in chunks(set.len(), EVAL_BATCH) {
            out.extend(self.scores(&CopyBatch::gather(set, &ix), false, None)?.1);
        }
        Ok(out)
    }
}

impl Task for CopyTask {
    fn varmap(&self) -> &VarMap {
        &self.varmap
    }

    fn penalised(&self, name: &str) -> bool {
        penalised(name)
    }

    fn start_epoch(&mut self, epoch: usize) -> Result<usize> {
        let set = self.data.train_epoch(epoch as u64);
        self.plan = chunks(set.len(), self.batch_size);
        self.epoch_set = Some(set);
        Ok(self.plan.len())
    }

    fn train_step(&self, index: usize, rng: &mut SeededRng) -> Result<StepOutput> {
        let set = self.epoch_set.as_ref().context("start_epoch was not called")?;
        let b = CopyBatch::gather(set, &self.plan[index]);
        let (s, _) = self.scores(&b, true, Some(rng))?;
        Ok(StepOutput { loss: s.loss, examples: b.batch_size, tokens: b.batch_size * b.time, correct: None })
    }

    /// `loss` (cross-entropy per step over the whole sequence), `accuracy` (recalled symbols
    /// right), `sequence_accuracy` (all 10 right), `recall_loss` (cross-entropy per recalled
    /// symbol) and `baseline_loss` (the memoryless strategy's 10·ln 8 / (T + 20)).
    fn evaluate(&self, split: SplitName) -> Result<Map<String, Value>> {
        let set = self.eval_set(split)?;
        let (mut loss, mut recall, mut correct, mut perfect) = (0.0, 0.0, 0usize, 0usize);
        for ix in chunks(set.len(), EVAL_BATCH) {
            let b = CopyBatch::gather(set, &ix);
            let (s, _) = self.scores(&b, false, None)?;
            loss += s.loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * b.batch_size as f64;
            recall += s.recall_ce;
            correct += s.correct;
            perfect += s.perfect;
        }
        let n = set.len().max(1) as f64;
        let mut m = Map::new();
        m.insert("loss".into(), json!(loss / n));
        m.insert("accuracy".into(), json!(correct as f64 / (n * COPY_SYMBOLS as f64)));
        m.insert("sequence_accuracy".into(), json!(perfect as f64 / n));
        m.insert("recall_loss".into(), json!(recall / (n * COPY_SYMBOLS as f64)));
        m.insert("baseline_loss".into(), json!(COPY_SYMBOLS as f64 * 8f64.ln() / set.seq_len() as f64));
        Ok(m)
    }

    fn checkpoint_meta(&self) -> Value {
        json!({"kind": "copy", "model": &self.model_config, "length": self.data.length})
    }
}

/// `train predict` takes no inputs for the synthetic tasks: the run's config regenerates the
/// same test set, and the first sequences are shown with the model's answer.
fn no_inputs(args: &PredictArgs) -> Result<()> {
    if !args.inputs.is_empty() || args.csv.is_some() || args.plot.is_some() {
        bail!("adding/copy runs take no inputs, --csv or --plot: `train predict --run DIR [--json]` prints test sequences with the model's answers");
    }
    Ok(())
}

fn load_best(dir: &RunDir, varmap: &VarMap) -> Result<()> {
    model::checkpoint::load_into_varmap(dir.best(), varmap)
        .with_context(|| format!("loading {}", dir.best().display()))?;
    Ok(())
}

/// `train predict` for the adding problem: the first test sequences' marked steps, target and
/// prediction (`--json` for JSON lines).
pub fn predict_adding(dir: &RunDir, cfg: &Config, args: &PredictArgs) -> Result<()> {
    no_inputs(args)?;
    let task = AddingTask::new(cfg)?;
    load_best(dir, task.varmap())?;
    let set = &task.data.test;
    let pred = task.predict_set(set)?;
    for (i, (p, y)) in pred.iter().zip(&set.y).enumerate().take(SHOW) {
        let t = set.length;
        let marked: Vec<usize> = (0..t).filter(|&s| set.x[(i * t + s) * 2 + 1] == 1.0).collect();
        if args.json {
            println!("{}", json!({"index": i, "marked_steps": marked, "target": y, "prediction": p}));
        } else {
            println!("test[{i}] marked steps {marked:?}: target {y:.4} prediction {p:.4}");
        }
    }
    Ok(())
}

/// `train predict` for the copy task: the first test sequences' symbols and what the model
/// recalled (`--json` for JSON lines).
pub fn predict_copy(dir: &RunDir, cfg: &Config, args: &PredictArgs) -> Result<()> {
    no_inputs(args)?;
    let task = CopyTask::new(cfg)?;
    load_best(dir, task.varmap())?;
    let set = &task.data.test;
    let pred = task.predict_set(set)?;
    let l = set.seq_len();
    for i in 0..SHOW.min(set.len()) {
        let symbols = &set.input[i * l..i * l + COPY_SYMBOLS];
        let recalled = &pred[i * COPY_SYMBOLS..(i + 1) * COPY_SYMBOLS];
        if args.json {
            println!("{}", json!({"index": i, "symbols": symbols, "recalled": recalled}));
        } else {
            let s = |v: &[u32]| v.iter().map(u32::to_string).collect::<String>();
            println!("test[{i}] symbols {} recalled {}", s(symbols), s(recalled));
        }
    }
    Ok(())
}
