//! The training loop, open to any model: implement [`Task`] for a model and its data, and
//! [`Trainer`] trains it with the optimizer, learning-rate schedule, penalties, gradient
//! clipping, evaluation, early stopping, `metrics.jsonl`, checkpoints (`best`, `last`,
//! `resume`) and exact resume. The `train` binary's tasks come through the same door
//! ([`crate::launch::run`]: `task::build`, then [`Trainer::fit`] or [`Trainer::resume`]).
//!
//! ```no_run
//! # fn demo(task: &mut dyn train::trainer::Task) -> anyhow::Result<()> {
//! use train::config::TrainConfig;
//! use train::rundir::RunDir;
//! use train::trainer::{Options, Trainer};
//!
//! let cfg: TrainConfig = toml::from_str("epochs = 3\nlr = 0.01\nearly_stopping_metric = \"loss\"\nearly_stopping_mode = \"min\"")?;
//! let dir = RunDir::ensure("runs/mine".into())?;
//! let summary = Trainer::new(&cfg, 42, &dir, Options::default()).fit(task)?;
//! // After an interruption, a new process continues where the last resume state left off:
//! let summary = Trainer::new(&cfg, 42, &dir, Options::default()).resume(task)?;
//! # Ok(()) }
//! ```
//! `crates/train/examples/custom_task.rs` is a complete example with a model of its own.
//!
//! Exact resume: `checkpoints/resume.safetensors` holds, in one atomically written file, the
//! weights, the optimizer moments, the [`state::Cursor`] (epoch, batch, step, dropout RNG,
//! early-stopping state, how many `metrics.jsonl` lines belong to it) and the
//! [`state::EpochStats`]. Batch order is a pure function of (seed, epoch), so resuming is
//! skipping batches; nothing depends on wall time.

mod hooks;
pub mod record;
pub mod state;
pub mod task;

pub use task::{SplitName, StepOutput, Task};

use crate::config::TrainConfig;
use crate::optim::{Optimizer, Param};
use crate::rundir::RunDir;
use crate::schedule;
use anyhow::{anyhow, bail, Context, Result};
use candle_core::DType;
use candle_nn::VarMap;
use hooks::TestHooks;
use model::rng::SeededRng;
use record::{EvalLine, FinalLine};
use serde_json::{json, Map, Value};
use state::{Clock, Cursor, EarlyStopping, EpochStats};
use std::path::Path;
use std::time::Instant;

/// How a [`Trainer`] talks to the person running it.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// No progress bar and no per-epoch line on stderr.
    pub quiet: bool,
}

/// Trains a [`Task`] into a run directory. Made once per session: it reads the test hooks
/// (see `hooks.rs`) when it is made.
pub struct Trainer<'a> {
    config: &'a TrainConfig,
    seed: u64,
    dir: &'a RunDir,
    options: Options,
    hooks: TestHooks,
}

/// What the loop carries from step to step in one session.
struct Session {
    cursor: Cursor,
    stats: EpochStats,
    clock: Clock,
    rng: SeededRng,
    optimizer: Optimizer,
    metric_lines: Vec<String>,
    started: Instant,
    /// Wall seconds of the run's earlier sessions.
    wall_base: f64,
}

impl Session {
    /// Writes the resume state (the one save helper: at `train.checkpoint_every` and at
    /// every epoch end), with the RNG, the metric line count and the clock brought up to now.
    fn save(&mut self, dir: &RunDir, varmap: &VarMap) -> Result<()> {
        self.cursor.dropout_rng = self.rng.state();
        self.cursor.metric_lines = self.metric_lines.len();
        self.clock.wall_seconds = self.wall_base + self.started.elapsed().as_secs_f64();
        state::save(dir, varmap, &self.optimizer, &self.cursor, &self.stats, &self.clock)
    }
}

impl<'a> Trainer<'a> {
    /// A trainer for `config` (the `[train]` section: optimizer, schedule, epochs/max_steps,
    /// clipping, penalties, early stopping, checkpoint cadence) writing into `dir`; `seed`
    /// seeds the dropout RNG handed to [`Task::train_step`].
    pub fn new(config: &'a TrainConfig, seed: u64, dir: &'a RunDir, options: Options) -> Self {
        Self { config, seed, dir, options, hooks: TestHooks::from_env() }
    }

    /// Trains `task` from its current weights, from step 0, replacing whatever the run
    /// directory held; returns the summary (also written to `summary.json`).
    pub fn fit<T: Task + ?Sized>(&self, task: &mut T) -> Result<Map<String, Value>> {
        self.train(task, false)
    }

    /// Continues the run in the directory from its resume state (starting from step 0 when
    /// there is none yet): `task` must be built as for [`Trainer::fit`]; its weights are
    /// replaced by the saved ones. The result is the same, byte for byte, as a run that was
    /// never interrupted.
    pub fn resume<T: Task + ?Sized>(&self, task: &mut T) -> Result<Map<String, Value>> {
        self.check_resumable()?;
        self.train(task, true)
    }

    /// Refuses a finished run without a resume state (e.g. a pruned one): nothing to resume.
    pub fn check_resumable(&self) -> Result<()> {
        let dir = self.dir;
        if !dir.resume_state().exists() && dir.summary().exists() {
            bail!(
                "{} is finished and has no resume state (e.g. a pruned run): nothing to resume; `train eval --run {}` re-evaluates it",
                dir.root.display(),
                dir.root.display()
            );
        }
        Ok(())
    }

    fn train<T: Task + ?Sized>(&self, task: &mut T, resume: bool) -> Result<Map<String, Value>> {
        let (cfg, dir) = (self.config, self.dir);
        let params = collect_params(task);
        let mut optimizer = Optimizer::new(cfg);
        let (cursor, stats, clock, metric_lines) = if resume && dir.resume_state().exists() {
            let (cursor, stats, clock) = state::load(dir, task.varmap(), &mut optimizer)?;
            let mut lines = dir.metric_lines()?;
            lines.truncate(cursor.metric_lines);
            dir.write_metric_lines(&lines)?;
            tracing::info!(epoch = cursor.epoch, batch = cursor.batch, step = cursor.step, "resuming");
            (cursor, stats, clock, lines)
        } else {
            if resume {
                tracing::info!("no resume state yet: starting from the beginning");
            }
            let cursor = Cursor {
                epoch: 0,
                batch: 0,
                step: 0,
                dropout_rng: SeededRng::new(self.seed, "dropout").state(),
                metric_lines: 0,
                finished: false,
                early_stopping: EarlyStopping::default(),
            };
            (cursor, EpochStats::default(), Clock::default(), Vec::new())
        };
        let mut s = Session {
            rng: SeededRng::from_state(&cursor.dropout_rng)?,
            wall_base: clock.wall_seconds,
            cursor,
            stats,
            clock,
            optimizer,
            metric_lines,
            started: Instant::now(),
        };
        let steps_per_epoch = task.start_epoch(0)?;
        let total_steps = total_steps(cfg, steps_per_epoch);

        while !s.cursor.finished {
            // ---- train one epoch (or what is left of it) ----
            let epoch_start = Instant::now();
            let num_batches = task.start_epoch(s.cursor.epoch)?;
            let bar = progress_bar(self.options.quiet, num_batches, s.cursor.epoch);
            bar.set_position(s.cursor.batch as u64);
            let mut tokens = 0u64;
            while s.cursor.batch < num_batches {
                if cfg.max_steps > 0 && s.cursor.step as usize >= cfg.max_steps {
                    break;
                }
                let t0 = Instant::now();
                // forward and loss
                let out = task.train_step(s.cursor.batch, &mut s.rng).with_context(|| {
                    format!("training step {} (epoch {}, batch {})", s.cursor.step, s.cursor.epoch, s.cursor.batch)
                })?;
                let loss_value = out.loss.to_dtype(DType::F64)?.to_scalar::<f64>()?;
                let loss_value = if self.hooks.nan_at(s.cursor.step) { f64::NAN } else { loss_value };
                if !loss_value.is_finite() {
                    bar.abandon();
                    bail!(
                        "loss is {loss_value} at step {} (epoch {}, batch {}): training stopped; the last good state is {} (`train resume --run {}` continues from it)",
                        s.cursor.step,
                        s.cursor.epoch,
                        s.cursor.batch,
                        dir.resume_state().display(),
                        dir.root.display()
                    );
                }
                // backward, then the learning rate of this step, penalties, clipping, update
                let grads = out.loss.backward()?;
                let lr = schedule::lr_at(cfg, s.cursor.step as usize, total_steps);
                let sparse = task.sparse_grads();
                let report = s.optimizer.step_sparse(&params, &grads, &sparse, lr).with_context(|| {
                    format!("optimizer step {} (epoch {}, batch {})", s.cursor.step, s.cursor.epoch, s.cursor.batch)
                })?;
                s.cursor.step += 1;
                s.cursor.batch += 1;
                tokens += out.tokens as u64;
                s.clock.train_seconds += t0.elapsed().as_secs_f64();
                s.stats.add(loss_value + report.penalty, out.examples, out.tokens, out.correct);
                self.hooks.maybe_kill_after(s.cursor.step);
                // log
                bar.set_position(s.cursor.batch as u64);
                let acc = s.stats.train_accuracy().map(|a| format!(" acc {a:.3}")).unwrap_or_default();
                bar.set_message(format!(
                    "loss {:.4}{acc} {:.0} tok/s",
                    s.stats.loss_sum / s.stats.seen as f64,
                    tokens as f64 / epoch_start.elapsed().as_secs_f64().max(1e-9)
                ));
                // resume state mid-epoch (the epoch end saves its own below)
                if cfg.checkpoint_every > 0
                    && s.cursor.step.is_multiple_of(cfg.checkpoint_every as u64)
                    && s.cursor.batch < num_batches
                {
                    s.save(dir, task.varmap())?;
                }
            }
            bar.finish_and_clear();
            let epoch_done = s.cursor.batch >= num_batches;
            let out_of_steps = cfg.max_steps > 0 && s.cursor.step as usize >= cfg.max_steps;

            // ---- evaluate at each epoch end (and where max_steps cut an epoch short) ----
            let eval = task.evaluate(SplitName::Validation)?;
            let line = EvalLine {
                epoch: s.cursor.epoch,
                step: s.cursor.step,
                split: SplitName::Validation.name(),
                train_loss: s.stats.train_loss(),
                train_accuracy: s.stats.train_accuracy(),
                metrics: &eval,
            };
            s.metric_lines.push(record::to_line(&line)?);
            dir.write_metric_lines(&s.metric_lines)?;
            // A plot is a convenience: failing to draw it must not stop training.
            if let Err(e) = crate::curves::write_for_run(dir, &cfg.early_stopping_metric) {
                tracing::warn!("could not write {}: {e:#}", crate::curves::FILE);
            }
            if !self.options.quiet {
                eprintln!("epoch {} step {}: validation {}", s.cursor.epoch, s.cursor.step, record::headline(&eval));
            }

            // ---- checkpoints and early stopping ----
            let metric_name = &cfg.early_stopping_metric;
            let value = eval.get(metric_name).and_then(Value::as_f64).ok_or_else(|| {
                anyhow!(
                    "config key `train.early_stopping_metric`: no validation metric named `{metric_name}` (have: {})",
                    eval.iter().filter(|(_, v)| v.is_number()).map(|(k, _)| k.as_str()).collect::<Vec<_>>().join(", ")
                )
            })?;
            if s.cursor.early_stopping.observe(value, s.cursor.epoch, cfg.early_stopping_mode) {
                save_weights(&dir.best(), task)?;
            }
            save_weights(&dir.last(), task)?;
            if epoch_done {
                s.cursor.epoch += 1;
                s.cursor.batch = 0;
                s.stats.next_epoch();
            }
            let bad_epochs = s.cursor.early_stopping.bad_epochs;
            let patience_out = cfg.patience > 0 && bad_epochs >= cfg.patience;
            let epochs_out = cfg.epochs > 0 && s.cursor.epoch >= cfg.epochs;
            if patience_out {
                tracing::info!(epoch = s.cursor.epoch, "early stopping: no improvement in {bad_epochs} epochs");
            }
            s.cursor.finished = out_of_steps || patience_out || epochs_out;
            s.save(dir, task.varmap())?;
        }
        s.clock.wall_seconds = s.wall_base + s.started.elapsed().as_secs_f64();
        self.finish(task, &mut s)
    }

    /// Final evaluation from the best checkpoint on validation and test, and `summary.json`.
    fn finish<T: Task + ?Sized>(&self, task: &T, s: &mut Session) -> Result<Map<String, Value>> {
        let dir = self.dir;
        model::checkpoint::load_into_varmap(dir.best(), task.varmap())?;
        let best = &s.cursor.early_stopping;
        let mut splits = Map::new();
        for split in [SplitName::Validation, SplitName::Test] {
            let m = task.evaluate(split)?;
            let line = FinalLine {
                epoch: best.best_epoch,
                step: s.cursor.step,
                split: split.name(),
                is_final: true,
                metrics: &m,
            };
            s.metric_lines.push(record::to_line(&line)?);
            splits.insert(split.name().into(), Value::Object(m));
        }
        dir.write_metric_lines(&s.metric_lines)?;
        let (clock, cfg) = (&s.clock, self.config);
        let mut summary = splits;
        summary.insert("best_epoch".into(), json!(best.best_epoch));
        summary.insert("best_metric".into(), json!({cfg.early_stopping_metric.clone(): best.best_metric}));
        summary.insert("epochs".into(), json!(s.cursor.epoch));
        summary.insert("steps".into(), json!(s.cursor.step));
        summary.insert("wall_seconds".into(), json!(clock.wall_seconds));
        summary.insert("train_seconds".into(), json!(clock.train_seconds));
        summary.insert("train_tokens_per_s".into(), json!(s.stats.train_tokens as f64 / clock.train_seconds.max(1e-9)));
        summary.insert("seed".into(), json!(self.seed));
        summary.insert("threads".into(), json!(crate::threads::effective()));
        summary.insert("parameters".into(), json!(count_params(task.varmap())));
        summary.insert("versions".into(), crate::versions());
        summary.insert("git_commit".into(), json!(crate::git_commit()));
        // Which CPU (lscpu's model name, vendor/family/model, SIMD features) and f32 kernel
        // strategy the run's figures (train_tokens_per_s, wall_seconds) were measured with.
        summary.insert("cpu".into(), crate::cpu::describe());
        dir.write_summary(&summary)?;
        Ok(summary)
    }
}

/// Optimizer steps of the whole run: `train.epochs` epochs, cut at `train.max_steps` when
/// that is set (the cosine schedule decays over this many).
fn total_steps(cfg: &TrainConfig, steps_per_epoch: usize) -> usize {
    let by_epochs = cfg.epochs * steps_per_epoch;
    match (cfg.max_steps, cfg.epochs) {
        (0, _) => by_epochs,
        (m, 0) => m,
        (m, _) => m.min(by_epochs),
    }
}

/// The task's parameters in name order, each marked for the L2/L1 penalties or not.
pub fn collect_params<T: Task + ?Sized>(task: &T) -> Vec<Param> {
    let data = task.varmap().data().lock().expect("varmap lock");
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    names
        .into_iter()
        .map(|name| Param { name: name.clone(), var: data[name].clone(), penalised: task.penalised(name) })
        .collect()
}

fn count_params(varmap: &VarMap) -> usize {
    varmap.all_vars().iter().map(|v| v.elem_count()).sum()
}

/// Model weights, with the task model's config and class names in the metadata, for
/// best/last (`model::checkpoint` format: PyTorch names, same weights ⇒ same bytes).
pub fn save_weights<T: Task + ?Sized>(path: &Path, task: &T) -> Result<()> {
    model::checkpoint::save(path, task.varmap(), Some(&task.checkpoint_meta()))
        .with_context(|| format!("writing {}", path.display()))
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
