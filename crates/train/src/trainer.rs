//! The training loop, readable top to bottom: data → tokenizer → model → epochs of
//! (forward, loss, backward, clip, update, schedule) → evaluation → checkpoints → summary.
//!
//! Exact resume: `checkpoints/resume.safetensors` holds, in one atomically written file, the
//! weights, the optimizer moments and a JSON record of the position (epoch, batch index,
//! step), the dropout RNG state, the early-stopping state and how many `metrics.jsonl`
//! lines belong to it. Batch order is a pure function of (seed, epoch), so resuming is
//! skipping batches; nothing depends on wall time.

use crate::config::{Config, MetricMode};
use crate::metrics::Confusion;
use crate::optim::{Optimizer, Param};
use crate::rundir::RunDir;
use crate::task::{self, Prepared};
use crate::{atomic, schedule};
use anyhow::{anyhow, bail, Context, Result};
use candle_core::{DType, Device, Tensor, D};
use candle_nn::VarMap;
use model::classifier::Classifier;
use model::rng::{SeededRng, SeededRngState};
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Instant;

#[derive(Debug, Clone, Default)]
pub struct Clock {
    /// Seconds spent in training steps.
    pub train_seconds: f64,
    /// Seconds of the whole run (training, evaluation, checkpoints), over all its sessions.
    pub wall_seconds: f64,
}

/// Everything besides tensors that a resumed run needs.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Position {
    pub epoch: usize,
    /// Batches of `epoch` already trained.
    pub batch: usize,
    pub step: u64,
    pub dropout_rng: SeededRngState,
    pub best_metric: Option<f64>,
    pub best_epoch: Option<usize>,
    pub bad_epochs: usize,
    pub metric_lines: usize,
    pub train_tokens: u64,
    /// Not saved in the resume file (see [`save_resume`]).
    #[serde(skip)]
    pub clock: Clock,
    /// Running training loss (summed over examples), correct count and examples of the
    /// current epoch, so an epoch's train metrics survive a resume mid-epoch.
    pub epoch_loss_sum: f64,
    pub epoch_correct: usize,
    pub epoch_seen: usize,
    pub finished: bool,
}

pub struct Options {
    pub quiet: bool,
}

/// NaN injection for the test suite: `SLUICE_TEST_NAN_AT_STEP=N` makes the loss NaN at
/// step N, to check that the run stops cleanly with its last good checkpoint.
fn injected_nan(step: u64) -> bool {
    std::env::var("SLUICE_TEST_NAN_AT_STEP").ok().and_then(|s| s.parse::<u64>().ok()) == Some(step)
}

/// Crash injection for the test suite: `SLUICE_TEST_KILL_AT_STEP=N` SIGKILLs the process
/// right after step N, as an out-of-memory killer or a pulled plug would.
fn kill_requested(step: u64) -> bool {
    std::env::var("SLUICE_TEST_KILL_AT_STEP").ok().and_then(|s| s.parse::<u64>().ok()) == Some(step)
}

fn kill_self() -> ! {
    let pid = std::process::id().to_string();
    let _ = std::process::Command::new("kill").args(["-9", &pid]).status();
    std::process::abort()
}

pub fn device_of(cfg: &Config) -> Result<Device> {
    model::device::parse_device(&cfg.run.device).with_context(|| "config key `run.device`")
}

/// Trains from scratch (`resume = false`) or continues the run in `dir`.
pub fn run(cfg: &Config, dir: &RunDir, resume: bool, opts: &Options) -> Result<Map<String, Value>> {
    let device = device_of(cfg)?;
    let prepared = task::prepare(cfg, dir, resume)?;
    let varmap = VarMap::new();
    let vb = model::init::seeded_var_builder(&varmap, cfg.run.seed, DType::F32, &device);
    let net = Classifier::new(&prepared.model_config, vb).context("building the model")?;
    let params = collect_params(&varmap, cfg);
    let mut optimizer = Optimizer::new(&cfg.train);
    let mut pos = Position {
        epoch: 0,
        batch: 0,
        step: 0,
        dropout_rng: SeededRng::new(cfg.run.seed, "dropout").state(),
        best_metric: None,
        best_epoch: None,
        bad_epochs: 0,
        metric_lines: 0,
        clock: Clock::default(),
        train_tokens: 0,
        epoch_loss_sum: 0.0,
        epoch_correct: 0,
        epoch_seen: 0,
        finished: false,
    };
    if resume && dir.resume_state().exists() {
        pos = load_resume(dir, &varmap, &mut optimizer)?;
        let mut lines = dir.metric_lines()?;
        lines.truncate(pos.metric_lines);
        dir.write_metric_lines(&lines)?;
        tracing::info!(epoch = pos.epoch, batch = pos.batch, step = pos.step, "resuming");
    } else if resume {
        tracing::info!("no resume state yet: starting from the beginning");
    }
    let mut rng = SeededRng::from_state(&pos.dropout_rng)?;
    let session = Instant::now();
    let wall_base = pos.clock.wall_seconds;
    let mut metric_lines = dir.metric_lines()?;
    let steps_per_epoch = prepared.train.num_batches();
    let total_steps = total_steps(cfg, steps_per_epoch);

    while !pos.finished {
        let epoch_start = Instant::now();
        let batches = prepared.train.batches_for_epoch(pos.epoch);
        let bar = progress_bar(opts.quiet, batches.len(), pos.epoch);
        bar.set_position(pos.batch as u64);
        let mut tokens = 0u64;
        while pos.batch < batches.len() {
            if cfg.train.max_steps > 0 && pos.step as usize >= cfg.train.max_steps {
                break;
            }
            let b = &batches[pos.batch];
            let t0 = Instant::now();
            let ids = b.ids_tensor(&device)?;
            let out = net.forward(&ids, &b.lengths, true, Some(&mut rng), false)?;
            let loss = task::cross_entropy(&out.logits, &b.labels, &prepared.class_weights)?;
            let loss_value = loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
            let loss_value = if injected_nan(pos.step) { f64::NAN } else { loss_value };
            if !loss_value.is_finite() {
                bar.abandon();
                bail!(
                    "loss is {loss_value} at step {} (epoch {}, batch {}): training stopped; the last good checkpoint is {}",
                    pos.step,
                    pos.epoch,
                    pos.batch,
                    dir.resume_state().display()
                );
            }
            let grads = loss.backward()?;
            let lr = schedule::lr_at(&cfg.train, pos.step as usize, total_steps);
            let report = optimizer
                .step(&params, &grads, lr)
                .with_context(|| format!("optimizer step {} (epoch {}, batch {})", pos.step, pos.epoch, pos.batch))?;
            pos.step += 1;
            pos.batch += 1;
            let n_tok: usize = b.lengths.iter().sum();
            tokens += n_tok as u64;
            pos.train_tokens += n_tok as u64;
            pos.clock.train_seconds += t0.elapsed().as_secs_f64();
            let preds = task::argmax(&out.logits)?;
            pos.epoch_correct += preds.iter().zip(&b.labels).filter(|(p, l)| **p as u32 == **l).count();
            pos.epoch_seen += b.labels.len();
            pos.epoch_loss_sum += (loss_value + report.penalty) * b.labels.len() as f64;
            if kill_requested(pos.step) {
                kill_self();
            }
            bar.set_position(pos.batch as u64);
            bar.set_message(format!(
                "loss {:.4} acc {:.3} {:.0} tok/s",
                pos.epoch_loss_sum / pos.epoch_seen as f64,
                pos.epoch_correct as f64 / pos.epoch_seen as f64,
                tokens as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9)
            ));
            if cfg.train.checkpoint_every > 0
                && pos.step % cfg.train.checkpoint_every as u64 == 0
                && pos.batch < batches.len()
            {
                pos.dropout_rng = rng.state();
                pos.metric_lines = metric_lines.len();
                pos.clock.wall_seconds = wall_base + session.elapsed().as_secs_f64();
                save_resume(dir, &varmap, &optimizer, &pos)?;
            }
        }
        bar.finish_and_clear();
        let epoch_done = pos.batch >= batches.len();
        let out_of_steps = cfg.train.max_steps > 0 && pos.step as usize >= cfg.train.max_steps;

        // Evaluate at each epoch end (and where max_steps cut an epoch short).
        let eval = evaluate(&net, &prepared, &prepared.validation, &device)?;
        let mut line = Map::new();
        line.insert("epoch".into(), json!(pos.epoch));
        line.insert("step".into(), json!(pos.step));
        line.insert("split".into(), json!("validation"));
        if pos.epoch_seen > 0 {
            line.insert("train_loss".into(), json!(pos.epoch_loss_sum / pos.epoch_seen as f64));
            line.insert("train_accuracy".into(), json!(pos.epoch_correct as f64 / pos.epoch_seen as f64));
        }
        line.extend(eval.clone());
        metric_lines.push(serde_json::to_string(&line)?);
        dir.write_metric_lines(&metric_lines)?;
        if !opts.quiet {
            eprintln!(
                "epoch {} step {}: validation loss {:.4} accuracy {:.4} macro-F1 {:.4}",
                pos.epoch, pos.step, eval["loss"].as_f64().unwrap_or(f64::NAN),
                eval["accuracy"].as_f64().unwrap_or(f64::NAN),
                eval["macro_f1"].as_f64().unwrap_or(f64::NAN)
            );
        }
        let metric_name = &cfg.train.early_stopping_metric;
        let value = eval
            .get(metric_name)
            .and_then(Value::as_f64)
            .ok_or_else(|| anyhow!("config key `train.early_stopping_metric`: no validation metric named `{metric_name}` (have: {})", eval.keys().cloned().collect::<Vec<_>>().join(", ")))?;
        let improved = match (pos.best_metric, cfg.train.early_stopping_mode) {
            (None, _) => true,
            (Some(b), MetricMode::Max) => value > b,
            (Some(b), MetricMode::Min) => value < b,
        };
        if improved {
            pos.best_metric = Some(value);
            pos.best_epoch = Some(pos.epoch);
            pos.bad_epochs = 0;
            save_weights(&dir.best(), &varmap, &prepared)?;
        } else {
            pos.bad_epochs += 1;
        }
        save_weights(&dir.last(), &varmap, &prepared)?;
        if epoch_done {
            pos.epoch += 1;
            pos.batch = 0;
            pos.epoch_loss_sum = 0.0;
            pos.epoch_correct = 0;
            pos.epoch_seen = 0;
        }
        let patience_out = cfg.train.patience > 0 && pos.bad_epochs >= cfg.train.patience;
        let epochs_out = cfg.train.max_steps == 0 && pos.epoch >= cfg.train.epochs;
        let epochs_cap = cfg.train.epochs > 0 && cfg.train.max_steps > 0 && pos.epoch >= cfg.train.epochs;
        if patience_out {
            tracing::info!(epoch = pos.epoch, "early stopping: no improvement in {} epochs", pos.bad_epochs);
        }
        pos.finished = out_of_steps || patience_out || epochs_out || epochs_cap;
        pos.dropout_rng = rng.state();
        pos.metric_lines = metric_lines.len();
        pos.clock.wall_seconds = wall_base + session.elapsed().as_secs_f64();
        save_resume(dir, &varmap, &optimizer, &pos)?;
    }
    pos.clock.wall_seconds = wall_base + session.elapsed().as_secs_f64();
    finish(cfg, dir, &net, &varmap, &prepared, &pos, &device, &mut metric_lines)
}

fn total_steps(cfg: &Config, steps_per_epoch: usize) -> usize {
    let by_epochs = cfg.train.epochs * steps_per_epoch;
    match (cfg.train.max_steps, cfg.train.epochs) {
        (0, _) => by_epochs,
        (m, 0) => m,
        (m, _) => m.min(by_epochs),
    }
}

/// Final evaluation from the best checkpoint on validation and test, and `summary.json`.
#[allow(clippy::too_many_arguments)]
fn finish(
    cfg: &Config,
    dir: &RunDir,
    net: &Classifier,
    varmap: &VarMap,
    prepared: &Prepared,
    pos: &Position,
    device: &Device,
    metric_lines: &mut Vec<String>,
) -> Result<Map<String, Value>> {
    load_weights(&dir.best(), varmap)?;
    let mut splits = Map::new();
    for (name, split) in [("validation", &prepared.validation), ("test", &prepared.test)] {
        let m = evaluate(net, prepared, split, device)?;
        let mut line = Map::new();
        line.insert("epoch".into(), json!(pos.best_epoch));
        line.insert("step".into(), json!(pos.step));
        line.insert("split".into(), json!(name));
        line.insert("final".into(), json!(true));
        line.extend(m.clone());
        metric_lines.push(serde_json::to_string(&line)?);
        splits.insert(name.into(), Value::Object(m));
    }
    dir.write_metric_lines(metric_lines)?;
    let mut summary = splits;
    summary.insert("best_epoch".into(), json!(pos.best_epoch));
    summary.insert("best_metric".into(), json!({cfg.train.early_stopping_metric.clone(): pos.best_metric}));
    summary.insert("epochs".into(), json!(pos.epoch));
    summary.insert("steps".into(), json!(pos.step));
    summary.insert("wall_seconds".into(), json!(pos.clock.wall_seconds));
    summary.insert("train_seconds".into(), json!(pos.clock.train_seconds));
    summary.insert(
        "train_tokens_per_s".into(),
        json!(pos.train_tokens as f64 / pos.clock.train_seconds.max(1e-9)),
    );
    summary.insert("seed".into(), json!(cfg.run.seed));
    summary.insert("threads".into(), json!(crate::threads::effective()));
    summary.insert("parameters".into(), json!(count_params(varmap)));
    summary.insert("versions".into(), crate::versions());
    summary.insert("git_commit".into(), json!(crate::git_commit()));
    dir.write_summary(&summary)?;
    Ok(summary)
}

/// Loss, accuracy, precision/recall/F1 and the confusion matrix over a split.
pub fn evaluate(net: &Classifier, prepared: &Prepared, split: &task::Split, device: &Device) -> Result<Map<String, Value>> {
    let mut confusion = Confusion::new(prepared.num_classes);
    let (mut loss_sum, mut n) = (0.0f64, 0usize);
    for b in split.eval_batches() {
        let ids = b.ids_tensor(device)?;
        let out = net.forward(&ids, &b.lengths, false, None, false)?;
        let loss = task::cross_entropy(&out.logits, &b.labels, &[])?;
        loss_sum += loss.to_dtype(DType::F64)?.to_scalar::<f64>()? * b.labels.len() as f64;
        n += b.labels.len();
        for (p, l) in task::argmax(&out.logits)?.iter().zip(&b.labels) {
            confusion.add(*l as usize, *p);
        }
    }
    let mut m = Map::new();
    m.insert("loss".into(), json!(loss_sum / n.max(1) as f64));
    m.extend(confusion.to_json(&prepared.class_names));
    Ok(m)
}

fn collect_params(varmap: &VarMap, cfg: &Config) -> Vec<Param> {
    let data = varmap.data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| {
            let is_bias = name.contains("bias");
            let is_embedding = name.starts_with("embedding.");
            Param {
                name: name.clone(),
                var: data[name].clone(),
                penalised: !is_bias && (!is_embedding || cfg.train.l2_embeddings),
            }
        })
        .collect()
}

fn count_params(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// Model weights, with the task model's config and class names in the metadata, for
/// best/last (`model::checkpoint` format: PyTorch names, same weights ⇒ same bytes).
fn save_weights(path: &Path, varmap: &VarMap, prepared: &Prepared) -> Result<()> {
    let meta = json!({"kind": "classifier", "model": &prepared.model_config,
                      "class_names": &prepared.class_names});
    model::checkpoint::save(path, varmap, Some(&meta)).with_context(|| format!("writing {}", path.display()))
}

/// Loads a checkpoint into `varmap`, refusing one whose tensors do not match the model.
pub fn load_weights(path: &Path, varmap: &VarMap) -> Result<()> {
    model::checkpoint::load_into_varmap(path, varmap)?;
    Ok(())
}

/// The resume state: weights under `model.`, optimizer moments under `optim.`, and the
/// position record as the checkpoint's config. Wall-clock figures live in `clock.json`
/// beside it so that two identical runs write identical resume files.
fn save_resume(dir: &RunDir, varmap: &VarMap, optimizer: &Optimizer, pos: &Position) -> Result<()> {
    let mut tensors: Vec<(String, Tensor)> = model::checkpoint::NamedTensors::named_tensors(varmap)
        .into_iter()
        .map(|(k, v)| (format!("model.{k}"), v))
        .collect();
    for (k, v) in optimizer.state_tensors()? {
        tensors.push((format!("optim.{k}"), v));
    }
    let meta = json!({"position": pos, "optimizer_step": optimizer.step});
    let path = dir.resume_state();
    model::checkpoint::save(&path, &tensors, Some(&meta)).with_context(|| format!("writing {}", path.display()))?;
    atomic::write_json(&dir.clock(), &json!({"train_seconds": pos.clock.train_seconds, "wall_seconds": pos.clock.wall_seconds, "step": pos.step}))
}

fn load_resume(dir: &RunDir, varmap: &VarMap, optimizer: &mut Optimizer) -> Result<Position> {
    let path = dir.resume_state();
    let ckpt = model::checkpoint::read(&path, &Device::Cpu)?;
    let meta = ckpt.config.as_ref().ok_or_else(|| anyhow!("{}: no position record", path.display()))?;
    let mut pos: Position = serde_json::from_value(meta["position"].clone())
        .with_context(|| format!("{}: position record", path.display()))?;
    let step = meta["optimizer_step"]
        .as_u64()
        .ok_or_else(|| anyhow!("{}: no optimizer_step", path.display()))?;
    let weights = ckpt.with_prefix("model");
    {
        let data = varmap.data().lock().map_err(|_| anyhow!("varmap lock poisoned"))?;
        for (name, var) in data.iter() {
            let t = weights
                .get(name)
                .ok_or_else(|| anyhow!("{}: missing tensor `model.{name}`", path.display()))?;
            var.set(&t.to_device(var.device())?.to_dtype(var.dtype())?)
                .with_context(|| format!("{}: tensor `model.{name}`", path.display()))?;
        }
    }
    let optim_state: BTreeMap<String, Tensor> = ckpt.with_prefix("optim").into_iter().collect();
    optimizer.load_state(step, &optim_state)?;
    // The clock file may be one save behind or ahead after a crash; it only feeds throughput.
    if let Ok(text) = std::fs::read_to_string(dir.clock()) {
        if let Ok(v) = serde_json::from_str::<Value>(&text) {
            pos.clock.train_seconds = v["train_seconds"].as_f64().unwrap_or(0.0);
            pos.clock.wall_seconds = v["wall_seconds"].as_f64().unwrap_or(0.0);
        }
    }
    Ok(pos)
}

fn progress_bar(quiet: bool, len: usize, epoch: usize) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if quiet || !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template("epoch {prefix} [{bar:30}] {pos}/{len} {msg}")
            .expect("static template")
            .progress_chars("=> "),
    );
    bar.set_prefix(epoch.to_string());
    bar
}

/// Evaluation of a finished run from its best checkpoint (`train eval`).
pub fn eval_run(dir: &RunDir, split_name: &str) -> Result<Map<String, Value>> {
    let cfg = crate::config::load_recorded(&dir.root)?;
    let device = device_of(&cfg)?;
    let prepared = task::prepare(&cfg, dir, true)?;
    let (net, _varmap) = load_model(dir, &prepared, &device)?;
    let split = match split_name {
        "validation" => &prepared.validation,
        "test" => &prepared.test,
        "train" => &prepared.train,
        other => bail!("--split {other:?}: expected train, validation or test"),
    };
    evaluate(&net, &prepared, split, &device)
}

pub fn load_model(dir: &RunDir, prepared: &Prepared, device: &Device) -> Result<(Classifier, VarMap)> {
    let varmap = VarMap::new();
    let vb = model::init::seeded_var_builder(&varmap, 0, DType::F32, device);
    let net = Classifier::new(&prepared.model_config, vb)?;
    load_weights(&dir.best(), &varmap)?;
    Ok((net, varmap))
}

pub fn argmax_probs(logits: &Tensor) -> Result<Vec<(usize, f32)>> {
    let probs = model::classifier::probabilities(logits)?.to_dtype(DType::F32)?;
    let rows = probs.to_vec2::<f32>()?;
    let idx = probs.argmax(D::Minus1)?.to_vec1::<u32>()?;
    Ok(idx.iter().zip(rows).map(|(i, r)| (*i as usize, r[*i as usize])).collect())
}
